package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/metaids/metaids/dataset"
	"github.com/metaids/metaids/integration"
)

// Scenarios `metaids generate` writes.
const (
	scenarioSequence = "sequence"
	scenarioDefault  = "default"
)

// generateConfig is `metaids generate`: write a synthetic scenario as
// flow-log files, labelled where the format has label columns, so that
// `metaids train -data` and `metaids eval -data` read it like any dataset
// and `metaids replay` ships it like a log shipper.
type generateConfig struct {
	// Scenario is sequence (integration.SequenceScenario: attacks only a
	// host's sequence gives away, and benign look-alikes) or default (the
	// traffic of `metaids train -synthetic`, the demo's attacks). Default
	// sequence.
	Scenario string `yaml:"scenario" help:"scenario to write: sequence (sequence-only attacks and benign look-alikes, in a train and a test part) or default (the traffic of train -synthetic)"`
	// Part is the sequence scenario's part, train or test: they differ in
	// hosts, infected hosts and time. Default train.
	Part string `yaml:"part" help:"part of the sequence scenario: train or test"`
	// Format is the output format: zeek (conn.log TSV with Stratosphere's
	// label and detailed-label columns), cic (CICFlowMeter CSV with a
	// Label column), or the unlabelled goflow2, nprobe or zeek-json JSON
	// lines. Default zeek.
	Format string `yaml:"format" help:"output format: zeek or cic (labelled), goflow2, nprobe or zeek-json (unlabelled JSON lines)"`
	// Out is the directory to write to, created if missing. The file is
	// named <scenario>-<part><ext>; `-data DIR` reads every file of DIR,
	// so give each part a directory of its own. Required.
	Out string `yaml:"out" help:"directory to write the file to (one directory per part: -data DIR reads them all)"`

	Sequence      integration.SequenceConfig `yaml:"sequence"`
	SyntheticData dataset.SyntheticConfig    `yaml:"synthetic-data"`
	Log           LogConfig                  `yaml:"log"`
}

func defaultGenerateConfig() generateConfig {
	return generateConfig{
		Scenario:      scenarioSequence,
		Part:          string(integration.PartTrain),
		Format:        integration.OutZeek,
		Sequence:      integration.DefaultSequenceConfig(),
		SyntheticData: dataset.DefaultSyntheticConfig(),
		Log:           LogConfig{Format: "text", Level: "info"},
	}
}

// Validate reports every problem, each naming its flag.
func (c generateConfig) Validate() error {
	var errs []error
	switch c.Scenario {
	case scenarioSequence:
		if c.Part != string(integration.PartTrain) && c.Part != string(integration.PartTest) {
			errs = append(errs, fmt.Errorf("-part: want train or test, got %q", c.Part))
		}
		if err := c.Sequence.Validate(); err != nil {
			errs = append(errs, err)
		}
	case scenarioDefault:
		if c.Part != string(integration.PartTrain) {
			errs = append(errs, fmt.Errorf("-part: the default scenario has no parts, got %q", c.Part))
		}
		if err := c.SyntheticData.Validate(); err != nil {
			errs = append(errs, err)
		}
	default:
		errs = append(errs, fmt.Errorf("-scenario: want sequence or default, got %q", c.Scenario))
	}
	if !slices.Contains(integration.OutFormats, c.Format) {
		errs = append(errs, fmt.Errorf("-format: want one of %s, got %q", strings.Join(integration.OutFormats, ", "), c.Format))
	}
	if c.Out == "" {
		errs = append(errs, errors.New("-out: the directory to write to is required"))
	}
	return errors.Join(errs...)
}

func runGenerate(ctx context.Context, args []string, stderr io.Writer) int {
	cfg := defaultGenerateConfig()
	fs := flag.NewFlagSet("metaids generate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	b := bind(fs, &cfg)
	if err := b.load(args); err != nil {
		if err == flag.ErrHelp {
			return exitOK
		}
		fmt.Fprintf(stderr, "metaids generate: %v\n", err)
		return exitUsage
	}
	if rest := fs.Args(); len(rest) > 0 {
		fmt.Fprintf(stderr, "metaids generate: unexpected arguments %q\n", rest)
		return exitUsage
	}
	log, err := newLogger(stderr, cfg.Log)
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		fmt.Fprintf(stderr, "metaids generate: %v\n", err)
		return exitUsage
	}
	if b.check {
		fmt.Fprintln(stderr, "metaids generate: configuration OK")
		return exitOK
	}
	if err := generateMain(ctx, cfg, log); err != nil {
		log.Error("generate failed", "err", err)
		return exitRuntime
	}
	return exitOK
}

// generateEvents returns the configured scenario's events and the file's
// base name.
func generateEvents(cfg generateConfig) ([]integration.Event, string, error) {
	if cfg.Scenario == scenarioDefault {
		evs, err := dataset.SyntheticEvents(cfg.SyntheticData)
		return evs, scenarioDefault, err
	}
	sc, err := integration.SequenceScenario(cfg.Sequence, integration.Part(cfg.Part))
	if err != nil {
		return nil, "", err
	}
	return sc.Events(), scenarioSequence + "-" + cfg.Part, nil
}

func generateMain(ctx context.Context, cfg generateConfig, log *slog.Logger) error {
	t0 := time.Now()
	evs, name, err := generateEvents(cfg)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.Out, 0o755); err != nil {
		return fmt.Errorf("-out: %w", err)
	}
	path := filepath.Join(cfg.Out, name+integration.Ext(cfg.Format))
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("-out: %w", err)
	}
	defer f.Close()
	w, err := integration.NewWriter(f, cfg.Format)
	if err != nil {
		return err
	}
	labels := map[string]int{}
	for i := range evs {
		// Generation is quick; a cancelled run should still stop promptly
		// on a slow disk.
		if i%4096 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		if err := w.Write(&evs[i]); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
		labels[evs[i].Label]++
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	args := []any{"file", path, "format", cfg.Format, "flows", len(evs), "seconds", time.Since(t0).Seconds()}
	for _, l := range slices.Sorted(maps.Keys(labels)) {
		args = append(args, l, labels[l])
	}
	log.Info("scenario written", args...)
	return nil
}
