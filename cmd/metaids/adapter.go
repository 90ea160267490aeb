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
	common         `yaml:",inline"`
}

func runAdapter(ctx context.Context, args []string, stderr io.Writer) int {
	cfg := adapterConfig{Config: adapter.DefaultConfig(), common: defaultCommon()}
	return stageCmd[adapterConfig]{
		name:     "adapter",
		cfg:      &cfg,
		common:   func(c *adapterConfig) *common { return &c.common },
		validate: func(c *adapterConfig) error { return c.Config.Validate() },
		build: func(c *adapterConfig, log *slog.Logger, reg prometheus.Registerer) (stage, error) {
			return adapter.New(c.Config, log, reg)
		},
	}.run(ctx, args, stderr)
}
