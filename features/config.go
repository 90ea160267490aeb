package features

import (
	"errors"
	"fmt"
	"time"
)

// Limits enforced by Validate.
const (
	maxBatchRows   = 1 << 20
	maxBatchLinger = time.Minute
	maxPartitions  = 1 << 20
)

// Config holds the settings of the features batcher. The ingest stage
// embeds it under the key "features", so the YAML path and flag of each
// field are features.batch.*.
type Config struct {
	Batch BatchConfig `yaml:"batch"`
}

// BatchConfig says when a partition's batch is flushed.
type BatchConfig struct {
	// MaxRows flushes a partition's batch as soon as it holds this many
	// flows. Larger batches amortise the per-message cost on the topic and
	// in the scorer; smaller ones cut latency under load. Flag
	// -features.batch.max-rows; default 3840, the most whose message of
	// worst-case rows (IPv6 host and peer) fits a 1 MiB produce request,
	// Kafka's default message size limit.
	MaxRows int `yaml:"max-rows"`
	// Linger flushes a partition's batch once its oldest flow has waited
	// this long, so a quiet partition still reaches the scorer promptly.
	// Zero flushes at every FlushExpired call. Flag -features.batch.linger;
	// default 50ms.
	Linger time.Duration `yaml:"linger"`
}

// DefaultConfig returns the default settings.
func DefaultConfig() Config {
	return Config{Batch: BatchConfig{MaxRows: 3840, Linger: 50 * time.Millisecond}}
}

// Validate reports every invalid setting, each error naming its flag.
func (c Config) Validate() error {
	var errs []error
	if c.Batch.MaxRows < 1 || c.Batch.MaxRows > maxBatchRows {
		errs = append(errs, fmt.Errorf("-features.batch.max-rows: must be between 1 and %d, got %d", maxBatchRows, c.Batch.MaxRows))
	}
	if c.Batch.Linger < 0 || c.Batch.Linger > maxBatchLinger {
		errs = append(errs, fmt.Errorf("-features.batch.linger: must be between 0s and %s, got %s", maxBatchLinger, c.Batch.Linger))
	}
	return errors.Join(errs...)
}
