package ingest

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/metaids/metaids/features"
	"github.com/metaids/metaids/schemas"
	"github.com/metaids/metaids/stream"
)

// Limits enforced by Validate.
const (
	maxBatchRecords = 1 << 16
	maxPartitions   = 1 << 14
	maxTopicLen     = 249
	// maxRowBytes bounds one features row in an Arrow batch: the fixed
	// columns (flow id, ports, protocol, times, NumFeatures float32s) plus
	// two IPv6 addresses in text with their string offsets.
	maxRowBytes = 8 + 2 + 2 + 1 + 8 + 8 + 4*features.NumFeatures + 2*(39+4)
	// batchOverhead covers a features message's schema, metadata and padding.
	batchOverhead = 16 << 10
	// deadLetterOverhead is room in a produce request for a dead letter's
	// fields besides the original value: reason, error text, coordinates.
	deadLetterOverhead = 8 << 10
)

// Config holds the ingest stage's settings. cmd/metaids binds it at the top
// level of its configuration: the Kafka settings every stage shares under
// "kafka" (flags -kafka.*), the stage's own under "ingest" (-ingest.*), the
// features batcher's under "features" (-features.*) and the drain timeout
// under "shutdown" (-shutdown.timeout).
//
// The stage flushes every features batch at the end of each consumed batch
// of input, before it commits, so -features.batch.linger does not delay a
// flow: -ingest.batch.max-records and -kafka.reader.max-wait bound the wait,
// and -features.batch.max-rows the size of each features message.
type Config struct {
	stream.Config `yaml:"kafka"`
	Ingest        Settings        `yaml:"ingest"`
	Features      features.Config `yaml:"features"`
	Shutdown      ShutdownConfig  `yaml:"shutdown"`
	// SchemaRegistry, when its URL is set, supplies the Avro schema ids
	// (flags -schema-registry.*); empty uses the fixed ids.
	SchemaRegistry schemas.RegistryConfig `yaml:"schema-registry"`
}

// Settings are the stage's own settings, under the YAML key "ingest", so
// that each field's flag is -ingest.<name>. The decoder and validator
// settings are inlined: -ingest.formats, -ingest.max-record-bytes,
// -ingest.time-zone, -ingest.max-age, -ingest.max-future, -ingest.replay.
type Settings struct {
	// Group is the consumer group over the input topics; every replica of
	// one pipeline's ingest uses the same, and the input partitions are
	// shared among them. Flag -ingest.group; default "metaids-ingest".
	Group string `yaml:"group" help:"consumer group over the input topics"`

	// Inputs are the input topics, without -kafka.topic-prefix. The
	// topics named in -ingest.formats are inputs too, so that flag alone
	// can say what to read and how. Flag -ingest.inputs; default none
	// beyond those of -ingest.formats.
	Inputs []string `yaml:"inputs" help:"input topics (without the prefix), comma-separated; the topics of -ingest.formats are read too"`

	DecoderConfig   `yaml:",inline"`
	ValidatorConfig `yaml:",inline"`

	Batch BatchConfig `yaml:"batch"`

	// CreateTopics creates the output topics, features and flows.dlq, when
	// they do not exist, with Partitions partitions and the broker's
	// default replication factor. Existing topics are left alone. Input
	// topics belong to the shippers and are never created. A broker that
	// cannot be reached is retried, with -kafka.retry.backoff doubling up to
	// -kafka.retry.backoff-max, until it answers or the stage is stopped.
	// Flag -ingest.create-topics; default true.
	CreateTopics bool `yaml:"create-topics" help:"create the features and flows.dlq topics when missing"`

	// Partitions is the partition count of output topics the stage
	// creates. It caps the scorer's replicas. Flag -ingest.partitions;
	// default 12.
	Partitions int `yaml:"partitions" help:"partitions of the output topics the stage creates"`
}

// BatchConfig sizes the work handled, produced and committed together.
type BatchConfig struct {
	// MaxRecords is the most input records handed to the stage at once.
	// Their flows are flushed into features batches, produced with their
	// dead letters, and their offsets committed, together; larger
	// batches mean fewer, larger features messages. Flag
	// -ingest.batch.max-records; default 4096.
	MaxRecords int `yaml:"max-records" help:"most input records decoded, produced and committed together"`
}

// ShutdownConfig bounds the drain on SIGTERM.
type ShutdownConfig struct {
	// Timeout is how long the stage may take, after it is told to stop,
	// to finish the batch in hand, commit and leave its group. Flag
	// -shutdown.timeout; default 30s.
	Timeout time.Duration `yaml:"timeout" help:"time to finish the batch in hand, commit and leave the group on shutdown"`
}

// DefaultConfig returns the defaults documented on each field. No input
// topic is configured: which shippers feed the stage has to be said.
func DefaultConfig() Config {
	return Config{
		Config:   stream.DefaultConfig(),
		Ingest:   DefaultSettings(),
		Features: features.DefaultConfig(),
		Shutdown: ShutdownConfig{Timeout: 30 * time.Second},

		SchemaRegistry: schemas.DefaultRegistryConfig(),
	}
}

// DefaultSettings returns the defaults of the stage's own settings.
func DefaultSettings() Settings {
	return Settings{
		Group:           "metaids-ingest",
		DecoderConfig:   DefaultDecoderConfig(),
		ValidatorConfig: DefaultValidatorConfig(),
		Batch:           BatchConfig{MaxRecords: 4096},
		CreateTopics:    true,
		Partitions:      12,
	}
}

// Validate reports every invalid setting, each error naming its flag.
func (c Config) Validate() error {
	errs := []error{c.Config.Validate(), c.Ingest.Validate(), c.Features.Validate(), c.SchemaRegistry.Validate()}
	// Reading its own output would loop every record forever.
	topics := schemas.Topics{Prefix: c.TopicPrefix}
	for _, t := range c.Ingest.InputTopics() {
		if full := c.Topic(t); full == topics.Features() || full == topics.DLQ() {
			errs = append(errs, fmt.Errorf("-ingest.inputs: %q is an output topic of ingest", t))
		}
	}
	if c.Shutdown.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("-shutdown.timeout: must be positive, got %s", c.Shutdown.Timeout))
	}
	// A features message that outgrows a produce request can never be
	// written, and the stage would retry it forever: refuse the pair of
	// settings instead.
	if c.Features.Batch.MaxRows > 0 && c.Config.Writer.BatchBytes > 0 {
		if need := int64(c.Features.Batch.MaxRows)*maxRowBytes + batchOverhead; need > c.Config.Writer.BatchBytes {
			errs = append(errs, fmt.Errorf("-features.batch.max-rows: %d rows make features messages of up to %d bytes, more than -kafka.writer.batch-bytes (%d)",
				c.Features.Batch.MaxRows, need, c.Config.Writer.BatchBytes))
		}
	}
	if c.Config.Writer.BatchBytes > 0 && c.Config.Writer.BatchBytes <= 2*deadLetterOverhead {
		errs = append(errs, fmt.Errorf("-kafka.writer.batch-bytes: must exceed %d to hold a dead letter, got %d", 2*deadLetterOverhead, c.Config.Writer.BatchBytes))
	}
	return errors.Join(errs...)
}

// Validate reports every invalid setting of the stage's own part.
func (s Settings) Validate() error {
	var errs []error
	bad := func(flag, format string, args ...any) {
		errs = append(errs, fmt.Errorf("-ingest."+flag+": "+format, args...))
	}
	if s.Group == "" {
		bad("group", "must not be empty")
	}
	if len(s.Inputs) == 0 && len(s.Formats) == 0 {
		bad("inputs", "at least one input topic is required (or name topics in -ingest.formats)")
	}
	for _, t := range s.Inputs {
		if err := checkTopic(t); err != nil {
			bad("inputs", "topic %q: %v", t, err)
		}
	}
	for _, t := range slices.Sorted(maps.Keys(s.Formats)) {
		if err := checkTopic(t); err != nil {
			bad("formats", "topic %q: %v", t, err)
		}
	}
	errs = append(errs, s.DecoderConfig.Validate(), s.ValidatorConfig.Validate())
	if s.Batch.MaxRecords < 1 || s.Batch.MaxRecords > maxBatchRecords {
		bad("batch.max-records", "must be between 1 and %d, got %d", maxBatchRecords, s.Batch.MaxRecords)
	}
	if s.Partitions < 1 || s.Partitions > maxPartitions {
		bad("partitions", "must be between 1 and %d, got %d", maxPartitions, s.Partitions)
	}
	return errors.Join(errs...)
}

// InputTopics returns the input topics, without the prefix: Inputs and the
// topics of Formats, sorted and without duplicates.
func (s Settings) InputTopics() []string {
	topics := slices.Concat(s.Inputs, slices.Collect(maps.Keys(s.Formats)))
	slices.Sort(topics)
	return slices.Compact(topics)
}

// checkTopic applies Kafka's rules for topic names.
func checkTopic(t string) error {
	if t == "" || len(t) > maxTopicLen {
		return fmt.Errorf("must be 1 to %d characters", maxTopicLen)
	}
	if t == "." || t == ".." {
		return errors.New("must not be . or ..")
	}
	for _, r := range t {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Errorf("character %q is not allowed (letters, digits, '.', '_', '-')", r)
		}
	}
	return nil
}
