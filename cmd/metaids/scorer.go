package main

import (
	"context"
	"io"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/metaids/metaids/scorer"
)

// scorerConfig is `metaids scorer`: -kafka.*, -scorer.*, -http.*, -log.*.
type scorerConfig struct {
	scorer.Config `yaml:",inline"`
	Common        `yaml:",inline"`
}

func runScorer(ctx context.Context, args []string, stderr io.Writer) int {
	cfg := scorerConfig{Config: scorer.DefaultConfig(), Common: defaultCommon()}
	return stageCmd[scorerConfig]{
		name:     "scorer",
		cfg:      &cfg,
		Common:   func(c *scorerConfig) *Common { return &c.Common },
		validate: func(c *scorerConfig) error { return c.Config.Validate() },
		build: func(c *scorerConfig, log *slog.Logger, reg prometheus.Registerer) (stage, error) {
			return scorer.New(c.Config, log, reg)
		},
	}.run(ctx, args, stderr)
}
