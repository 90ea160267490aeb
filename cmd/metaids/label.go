package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/metaids/metaids/adapter"
	"github.com/metaids/metaids/schemas"
	"github.com/metaids/metaids/stream"
)

// labelConfig is `metaids label`: what an analyst or a SOAR playbook runs to
// tell the adapter that flows are benign or belong to a family.
type labelConfig struct {
	Kafka stream.Config `yaml:"kafka"`
	Label struct {
		// Flow ids (16 hex digits) to label.
		Flows []string `yaml:"flows" help:"flow ids to label, comma-separated"`
		// Alert ids to label.
		Alerts []string `yaml:"alerts" help:"alert ids to label, comma-separated"`
		// File of labels (CSV with a header, or JSON); "-" reads standard input.
		File string `yaml:"file" help:"CSV or JSON file of labels (- for standard input)"`
		// Format of File: csv or json; empty picks it from the file name.
		Format string `yaml:"format" help:"format of -label.file: csv or json (default from the file name)"`
		// Verdict for -label.flows/-label.alerts: benign or a family name.
		Verdict string `yaml:"verdict" help:"verdict: benign, or the attack family's name"`
		Analyst string `yaml:"analyst" help:"who is labelling (defaults to $USER)"`
		Reason  string `yaml:"reason" help:"why, in a few words, for the audit trail"`
	} `yaml:"label"`
}

func runLabel(ctx context.Context, args []string, stderr io.Writer) int {
	var cfg labelConfig
	cfg.Kafka = stream.DefaultConfig()
	cfg.Label.Analyst = os.Getenv("USER")
	fs := flag.NewFlagSet("metaids label", flag.ContinueOnError)
	fs.SetOutput(stderr)
	b := bind(fs, &cfg)
	if err := b.load(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		fmt.Fprintf(stderr, "metaids label: %v\n", err)
		return exitUsage
	}
	labels, err := collectLabels(&cfg)
	if err == nil {
		err = cfg.Kafka.Validate()
	}
	if err != nil {
		fmt.Fprintf(stderr, "metaids label: %v\n", err)
		return exitUsage
	}
	if b.check {
		fmt.Fprintf(stderr, "metaids label: configuration OK (%d labels)\n", len(labels))
		return exitOK
	}
	p, err := stream.NewProducer(cfg.Kafka, nil, nil)
	if err != nil {
		fmt.Fprintf(stderr, "metaids label: %v\n", err)
		return exitRuntime
	}
	defer p.Close()
	topic := schemas.Topics{Prefix: cfg.Kafka.TopicPrefix}.Labels()
	if err := adapter.SendLabels(ctx, p, topic, labels); err != nil {
		fmt.Fprintf(stderr, "metaids label: %v\n", err)
		return exitRuntime
	}
	fmt.Fprintf(stderr, "metaids label: sent %d labels to %s\n", len(labels), topic)
	return exitOK
}

func collectLabels(cfg *labelConfig) ([]schemas.Label, error) {
	l := &cfg.Label
	var out []schemas.Label
	if len(l.Flows)+len(l.Alerts) > 0 && l.Verdict == "" {
		return nil, errors.New("-label.verdict: required with -label.flows or -label.alerts (benign or a family name)")
	}
	for _, id := range l.Flows {
		fid, err := schemas.ParseID(id)
		if err != nil {
			return nil, fmt.Errorf("-label.flows: %w", err)
		}
		out = append(out, adapter.FlowLabel(fid, l.Verdict, l.Analyst, l.Reason))
	}
	for _, id := range l.Alerts {
		out = append(out, adapter.AlertLabel(id, l.Verdict, l.Analyst, l.Reason))
	}
	if l.File != "" {
		format := l.Format
		if format == "" {
			format = strings.TrimPrefix(strings.ToLower(filepath.Ext(l.File)), ".")
			if format == "jsonl" || format == "ndjson" {
				format = "json"
			}
		}
		var r io.Reader = os.Stdin
		if l.File != "-" {
			f, err := os.Open(l.File)
			if err != nil {
				return nil, fmt.Errorf("-label.file: %w", err)
			}
			defer f.Close()
			r = f
		}
		got, err := adapter.ReadLabels(r, format)
		if err != nil {
			return nil, fmt.Errorf("-label.file %s: %w", l.File, err)
		}
		out = append(out, got...)
	}
	if len(out) == 0 {
		return nil, errors.New("nothing to send: give -label.flows, -label.alerts or -label.file")
	}
	return out, nil
}
