package main

import (
	"context"
	"io"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/metaids/metaids/adapter"
)

// adapterConfig is `metaids adapter`: -kafka.*, -adapter.*, -http.*, -log.*.
type adapterConfig struct {
	adapter.Config `yaml:",inline"`
	Common         `yaml:",inline"`
}

func runAdapter(ctx context.Context, args []string, stderr io.Writer) int {
	cfg := adapterConfig{Config: adapter.DefaultConfig(), Common: defaultCommon()}
	return stageCmd[adapterConfig]{
		name:     "adapter",
		cfg:      &cfg,
		Common:   func(c *adapterConfig) *Common { return &c.Common },
		validate: func(c *adapterConfig) error { return c.Config.Validate() },
		build: func(c *adapterConfig, log *slog.Logger, reg prometheus.Registerer) (stage, error) {
			return adapter.New(c.Config, log, reg)
		},
	}.run(ctx, args, stderr)
}
