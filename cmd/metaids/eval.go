package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/metaids/metaids/eval"
)

// evalConfig is `metaids eval`: the harness's settings (eval.Config, at the
// top level: -data, -new-family, -shots, -live.rate, -adapter.gate.* …),
// where to write the report and plots, and the log.
type evalConfig struct {
	Eval eval.Config `yaml:",inline"`
	// Out is the JSON report to write. Required.
	Out string `yaml:"out" help:"JSON report file to write"`
	// Plots is the directory for the PNG plots; default <out>.plots,
	// "none" for none.
	Plots string    `yaml:"plots" help:"directory for PNG plots (default <out without .json>.plots; none to skip)"`
	Log   LogConfig `yaml:"log"`
}

func defaultEvalConfig() evalConfig {
	return evalConfig{Eval: eval.DefaultConfig(), Log: LogConfig{Format: "text", Level: "info"}}
}

// Validate reports every problem, each naming its flag.
func (c evalConfig) Validate() error {
	var errs []error
	if err := c.Eval.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.Out == "" {
		errs = append(errs, errors.New("-out: the JSON report to write is required"))
	}
	return errors.Join(errs...)
}

// evalMulti are the flags that take several values: each may repeat, and
// each takes every argument after it up to the next flag, so that a glob
// the shell expanded (-data dir/*.csv.gz) reads as the files it named.
var evalMulti = []string{"data", "train", "new-family"}

func runEval(ctx context.Context, args []string, stderr io.Writer) int {
	return runEvalTo(ctx, args, os.Stdout, stderr)
}

// runEvalTo is runEval with the table's writer, for tests.
func runEvalTo(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg := defaultEvalConfig()
	fs := flag.NewFlagSet("metaids eval", flag.ContinueOnError)
	fs.SetOutput(stderr)
	b := bind(fs, &cfg)
	if err := b.load(joinMulti(args, evalMulti...)); err != nil {
		if err == flag.ErrHelp {
			return exitOK
		}
		fmt.Fprintf(stderr, "metaids eval: %v\n", err)
		return exitUsage
	}
	if rest := fs.Args(); len(rest) > 0 {
		fmt.Fprintf(stderr, "metaids eval: unexpected arguments %q\n", rest)
		return exitUsage
	}
	log, err := newLogger(stderr, cfg.Log)
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		fmt.Fprintf(stderr, "metaids eval: %v\n", err)
		return exitUsage
	}
	if b.check {
		fmt.Fprintln(stderr, "metaids eval: configuration OK")
		return exitOK
	}
	if err := evalMain(ctx, cfg, stdout, log); err != nil {
		log.Error("evaluation failed", "err", err)
		return exitRuntime
	}
	return exitOK
}

func evalMain(ctx context.Context, cfg evalConfig, stdout io.Writer, log *slog.Logger) error {
	t0 := time.Now()
	rep, err := eval.Run(ctx, cfg.Eval, log)
	if err != nil {
		return err
	}
	if dir := filepath.Dir(cfg.Out); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("write report: %w", err)
		}
	}
	js, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if err := os.WriteFile(cfg.Out, append(js, '\n'), 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	if err := eval.WriteTable(stdout, rep); err != nil {
		return fmt.Errorf("write table: %w", err)
	}
	if dir := derived(cfg.Plots, cfg.Out, ".plots"); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("plots: %w", err)
		}
		files, err := eval.WritePlots(dir, rep)
		if err != nil {
			return err
		}
		log.Info("plots written", "dir", dir, "files", len(files))
	}
	log.Info("report written", "file", cfg.Out, "seconds", time.Since(t0).Seconds())
	return nil
}
