package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"golang.org/x/sync/errgroup"

	"github.com/metaids/metaids/ingest"
)

// ingestConfig is `metaids ingest`: the stage's settings (-kafka.*,
// -ingest.*, -features.*, -shutdown.timeout) plus the ops server (-http.addr)
// and the logs (-log.*).
type ingestConfig struct {
	ingest.Config `yaml:",inline"`
	HTTP          OpsConfig `yaml:"http"`
	Log           LogConfig `yaml:"log"`
}

func runIngest(ctx context.Context, args []string, stderr io.Writer) int {
	cfg := ingestConfig{
		Config: ingest.DefaultConfig(),
		HTTP:   OpsConfig{HTTPAddr: "127.0.0.1:9464"},
		Log:    LogConfig{Format: "json", Level: "info"},
	}
	fs := flag.NewFlagSet("metaids ingest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	b := bind(fs, &cfg)
	if err := b.load(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		fmt.Fprintf(stderr, "metaids ingest: %v\n", err)
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "metaids ingest: unexpected arguments %q: input topics go in -ingest.inputs or -ingest.formats\n", fs.Args())
		return exitUsage
	}
	log, err := newLogger(stderr, cfg.Log)
	if err == nil {
		err = cfg.Config.Validate()
	}
	if err != nil {
		fmt.Fprintf(stderr, "metaids ingest: invalid configuration:\n%v\n", err)
		return exitUsage
	}
	if b.check {
		fmt.Fprintln(stderr, "metaids ingest: configuration OK")
		return exitOK
	}
	log = log.With("stage", "ingest")
	reg := newRegistry()
	st, err := ingest.New(cfg.Config, log, reg)
	if err != nil {
		log.Error("start failed", "err", err)
		return exitRuntime
	}
	// The stage and the ops server run side by side; the first to return
	// stops the other. On SIGTERM the stage drains by itself, within
	// -shutdown.timeout.
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		err := st.Run(gctx)
		if err == nil && ctx.Err() == nil {
			return errIngestStopped // stopped on its own: stop the ops server too
		}
		return err
	})
	g.Go(func() error { return serveOps(gctx, cfg.HTTP.HTTPAddr, reg, st.Ready, log) })
	if err := g.Wait(); err != nil && !errors.Is(err, errIngestStopped) {
		log.Error("stage failed", "err", err)
		return exitRuntime
	}
	log.Info("stopped")
	return exitOK
}

var errIngestStopped = errors.New("ingest stopped")
