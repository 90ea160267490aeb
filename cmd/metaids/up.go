package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"golang.org/x/sync/errgroup"

	"github.com/metaids/metaids/integration/pipeline"
)

// UpConfig is `metaids up`: every stage in one process, on the embedded
// broker unless -kafka.brokers points at a cluster. Each stage keeps its
// own flags (-ingest.*, -scorer.*, -adapter.*) as when it runs alone.
type UpConfig struct {
	pipeline.Config `yaml:",inline"`
	Common          `yaml:",inline"`
}

func runUp(ctx context.Context, args []string, stderr io.Writer) int {
	cfg := UpConfig{Config: pipeline.DefaultConfig(), Common: defaultCommon()}
	fs := flag.NewFlagSet("metaids up", flag.ContinueOnError)
	fs.SetOutput(stderr)
	b := bind(fs, &cfg)
	if err := b.load(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		fmt.Fprintf(stderr, "metaids up: %v\n", err)
		return exitUsage
	}
	log, err := newLogger(stderr, cfg.Log)
	if err == nil {
		err = cfg.Config.Validate()
	}
	if err != nil {
		fmt.Fprintf(stderr, "metaids up: invalid configuration:\n%v\n", err)
		return exitUsage
	}
	if b.check {
		fmt.Fprintln(stderr, "metaids up: configuration OK")
		return exitOK
	}
	reg := newRegistry()
	p, err := pipeline.Start(ctx, &cfg.Config, nil, log, reg)
	if err != nil {
		log.Error("start failed", "err", err)
		return exitRuntime
	}
	defer p.Close()
	if p.Broker != nil {
		fmt.Fprintf(stderr, "metaids up: brokers %s (point shippers at flows.<format> topics here)\n", p.Broker.Addr())
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return p.Run(gctx) })
	g.Go(func() error { return serveOps(gctx, cfg.HTTP.HTTPAddr, reg, p.Ready, log) })
	if err := g.Wait(); err != nil && ctx.Err() == nil {
		log.Error("pipeline failed", "err", err)
		return exitRuntime
	}
	log.Info("stopped")
	return exitOK
}
