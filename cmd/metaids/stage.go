package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
)

// stage is what every pipeline stage exposes to the binary.
type stage interface {
	Run(ctx context.Context) error
	Ready() bool
}

// Common is the part of every stage command's configuration that is not
// the stage's own: the ops server and logging.
type Common struct {
	HTTP OpsConfig `yaml:"http"`
	Log  LogConfig `yaml:"log"`
}

func defaultCommon() Common {
	return Common{HTTP: OpsConfig{HTTPAddr: "127.0.0.1:9464"}, Log: LogConfig{Format: "json", Level: "info"}}
}

// stageCmd is one stage subcommand: its configuration (a struct that holds
// the stage's Config inline plus Common), how to validate it and how to
// build the stage.
type stageCmd[C any] struct {
	name     string
	cfg      *C
	Common   func(*C) *Common
	validate func(*C) error
	build    func(*C, *slog.Logger, prometheus.Registerer) (stage, error)
}

// run parses flags, validates, builds the stage and runs it beside the ops
// server; the first of the two to return stops the other. Exit codes: 2 for
// a usage or configuration error, 1 for a runtime failure, 0 for a clean stop.
func (sc stageCmd[C]) run(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("metaids "+sc.name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	b := bind(fs, sc.cfg)
	if err := b.load(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		fmt.Fprintf(stderr, "metaids %s: %v\n", sc.name, err)
		return exitUsage
	}
	cm := sc.Common(sc.cfg)
	log, err := newLogger(stderr, cm.Log)
	if err == nil {
		err = sc.validate(sc.cfg)
	}
	if err != nil {
		fmt.Fprintf(stderr, "metaids %s: invalid configuration:\n%v\n", sc.name, err)
		return exitUsage
	}
	// The stages add their own "stage" attribute to the logger.
	reg := newRegistry()
	// Building the stage loads keys and model files without contacting the
	// brokers, so -config.check catches those too.
	st, err := sc.build(sc.cfg, log, reg)
	if err != nil {
		if b.check {
			fmt.Fprintf(stderr, "metaids %s: invalid configuration:\n%v\n", sc.name, err)
			return exitUsage
		}
		log.Error("start failed", "err", err)
		return exitRuntime
	}
	if b.check {
		fmt.Fprintf(stderr, "metaids %s: configuration OK\n", sc.name)
		return exitOK
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		err := st.Run(gctx)
		if err == nil && ctx.Err() == nil {
			// The stage stopped on its own: stop the ops server too.
			return errStopped
		}
		return err
	})
	g.Go(func() error { return serveOps(gctx, cm.HTTP.HTTPAddr, reg, st.Ready, log) })
	if err := g.Wait(); err != nil && !errors.Is(err, errStopped) {
		log.Error("stage failed", "err", err)
		return exitRuntime
	}
	log.Info("stopped")
	return exitOK
}

var errStopped = errors.New("stage stopped")
