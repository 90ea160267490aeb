package eval

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/metaids/metaids/model"
)

// LiveSummary describes a live run: the replay and what the pipeline did
// with it.
type LiveSummary struct {
	Rate       float64 `json:"replay_rate"`
	Partitions int     `json:"partitions"`
}

func runLive(ctx context.Context, cfg Config, m *model.Model, es *evalSet, log *slog.Logger, reg prometheus.Registerer) (*outcome, error) {
	return nil, errNoLive
}
