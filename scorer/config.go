package scorer

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/metaids/metaids/schemas"
	"github.com/metaids/metaids/stream"
)

// Limits enforced by Validate.
const (
	maxStepFlows   = 1 << 16
	maxBatchRecs   = 1 << 16
	maxHostsCap    = 1 << 26
	maxExplain     = 32
	maxTopicLength = 249
	// minCheckpoint bounds how often a replica checkpoints. It is also
	// what keeps a stopping replica's last checkpoint, written after it
	// has left the group, ahead of the new owner's first (see
	// checkpoint.go).
	minCheckpoint = 100 * time.Millisecond
)

// Alert output formats, the values of Settings.Alerts.Outputs.
const (
	FormatAvro = "avro" // schemas.Alert, Confluent-framed Avro
	FormatECS  = "ecs"  // Elastic Common Schema JSON (schemas.AlertECS)
	FormatOCSF = "ocsf" // OCSF Detection Finding JSON (schemas.AlertOCSF)
)

// Config holds the scorer stage's settings. cmd/metaids binds it at the top
// level of its configuration: the Kafka settings every stage shares under
// "kafka" (flags -kafka.*) and the scorer's own under "scorer" (flags
// -scorer.*).
type Config struct {
	stream.Config `yaml:"kafka"`
	Scorer        Settings       `yaml:"scorer"`
	Shutdown      ShutdownConfig `yaml:"shutdown"`
	// SchemaRegistry, when its URL is set, supplies the Avro schema ids
	// (flags -schema-registry.*); empty uses the fixed ids.
	SchemaRegistry schemas.RegistryConfig `yaml:"schema-registry"`
}

// ShutdownConfig bounds the drain on SIGTERM.
type ShutdownConfig struct {
	// Timeout is how long the stage may take, after it is told to stop, to
	// finish the batch in hand, produce, commit and leave its group. Flag
	// -shutdown.timeout; default 30s.
	Timeout time.Duration `yaml:"timeout" help:"time to finish the batch in hand, commit and leave the group on shutdown"`
}

// DefaultConfig returns the default settings of both parts.
func DefaultConfig() Config {
	return Config{Config: stream.DefaultConfig(), Scorer: DefaultSettings(), Shutdown: ShutdownConfig{Timeout: 30 * time.Second}, SchemaRegistry: schemas.DefaultRegistryConfig()}
}

// Validate reports every invalid setting, each error naming its flag.
func (c Config) Validate() error {
	var errs []error
	if c.Shutdown.Timeout < 0 {
		errs = append(errs, fmt.Errorf("-shutdown.timeout: must not be negative, got %s", c.Shutdown.Timeout))
	}
	return errors.Join(c.Config.Validate(), c.Scorer.Validate(), c.SchemaRegistry.Validate(), errors.Join(errs...))
}

// Settings are the scorer's own settings, under the YAML key "scorer", so
// that each field's flag is -scorer.<path>.
type Settings struct {
	// Group is the consumer group over the features topic; every replica
	// of one pipeline's scorer uses the same. Flag -scorer.group; default
	// "metaids-scorer".
	Group string `yaml:"group" help:"consumer group over the features topic"`

	Batch   BatchConfig  `yaml:"batch"`
	State   StateConfig  `yaml:"state"`
	Model   ModelConfig  `yaml:"model"`
	Alerts  AlertConfig  `yaml:"alerts"`
	Actions ActionConfig `yaml:"actions"`
}

// BatchConfig sizes the work done at once.
type BatchConfig struct {
	// MaxRecords is the most features messages handed to the scorer at
	// once; their outputs are produced together and their offsets committed
	// together. Flag -scorer.batch.max-records; default 32.
	MaxRecords int `yaml:"max-records" help:"most features messages scored and committed together"`
	// MaxFlows is the most hosts advanced by one model step. A wave with
	// more hosts is stepped in pieces; the model's workspace is sized by it.
	// Flag -scorer.batch.max-flows; default 4096.
	MaxFlows int `yaml:"max-flows" help:"most hosts advanced by one model step"`
}

// StateConfig bounds the per-host state.
type StateConfig struct {
	// MaxHosts caps the hosts held per features partition; past it the
	// least recently seen host is evicted and starts afresh if it returns.
	// Memory is about partitions held × MaxHosts × bytes per host
	// (metaids_scorer_state_bytes_per_host, about 650 B at H=64). Flag
	// -scorer.state.max-hosts; default 1000000.
	MaxHosts int `yaml:"max-hosts" help:"most hosts whose state is held per features partition"`
	// TTL drops a host that has sent no flow for this long in event time,
	// measured against the newest flow of its partition. Flag
	// -scorer.state.ttl; default 1h.
	TTL time.Duration `yaml:"ttl" help:"idle time (event time) after which a host's state is dropped"`
	// CheckpointInterval is how often, in wall time, the states of hosts
	// that changed are written to the compacted scorer.state topic, so a
	// replica that takes over a partition (a rebalance, a restart)
	// restores its hosts instead of starting them from zero. A replica
	// also checkpoints when it stops. 0 turns checkpoints and restores
	// off. Flag -scorer.state.checkpoint-interval; default 30s.
	CheckpointInterval time.Duration `yaml:"checkpoint-interval" help:"how often changed host states are checkpointed to the scorer.state topic; 0 disables warm restarts"`
}

// ModelConfig says where models come from and whom to trust.
type ModelConfig struct {
	// Name is the model's key on the models topic; updates for other
	// names are ignored. Flag -scorer.model.name; default "metaids".
	Name string `yaml:"name" help:"model name: the key of its records on the models topic"`
	// Keys are PEM files of the Ed25519 public keys whose signatures the
	// scorer accepts (schemas.LoadPublicKeys). Flag -scorer.model.keys;
	// required.
	Keys []string `yaml:"keys" help:"PEM Ed25519 public keys trusted to sign models, comma-separated"`
	// File is a model to start from when the models topic holds none: one
	// Confluent-framed Avro ModelUpdate, as `metaids train` writes it to
	// the topic. It must verify like any update; a newer one on the topic
	// replaces it. Flag -scorer.model.file; default "" (wait for the topic).
	File string `yaml:"file" help:"signed model update file to start from when the models topic has none"`
}

// AlertConfig shapes the alerts.
type AlertConfig struct {
	// Outputs maps each alerts topic (without the prefix) to its format:
	// avro (Confluent-framed schemas.Alert), ecs or ocsf. Empty means
	// alerts=avro; it is empty by default rather than holding that pair
	// because YAML adds keys to a map it decodes into instead of replacing
	// it. Flag -scorer.alerts.outputs as topic=format pairs; default
	// empty (alerts=avro).
	Outputs map[string]string `yaml:"outputs" help:"alert topics and their formats (avro, ecs, ocsf) as topic=format pairs"`
	// Window is how long, in event time from its first flow, one alert
	// aggregates the flows of its host and class. A storm of flows is one
	// alert with a growing count; after the window the next flow opens a
	// new alert. Flag -scorer.alerts.window; default 10m.
	Window time.Duration `yaml:"window" help:"event time one alert aggregates a host's flows of one class"`
	// Republish is the least wall time between two publications of one
	// alert as its count grows. Flag -scorer.alerts.republish; default 10s.
	Republish time.Duration `yaml:"republish" help:"least time between re-publications of a growing alert"`
	// AnomalyWarmup is how many flows a host must have had before its
	// anomaly score may raise an alert: the predictor's guess from a
	// fresh, zero state is no guess at all. Flag
	// -scorer.alerts.anomaly-warmup; default 4.
	AnomalyWarmup int `yaml:"anomaly-warmup" help:"flows a host must have had before an anomaly alerts"`
	// Explain is how many features each alert lists as its explanation.
	// Flag -scorer.alerts.explain; default 5.
	Explain int `yaml:"explain" help:"features each alert lists as its explanation"`
}

// outputs returns Outputs with the default filled in.
func (a AlertConfig) outputs() map[string]string {
	if len(a.Outputs) == 0 {
		return map[string]string{"alerts": FormatAvro}
	}
	return a.Outputs
}

// ActionConfig shapes the block and rate-limit recommendations.
type ActionConfig struct {
	// Topic receives the Avro Actions (without the prefix); empty turns
	// recommendations off. Flag -scorer.actions.topic; default "actions".
	Topic string `yaml:"topic" help:"topic for block and rate-limit recommendations; empty disables them"`
	// Hysteresis is how long, in event time, a host's alerts must persist
	// before a recommendation is issued, so one stray alert blocks nothing.
	// Flag -scorer.actions.hysteresis; default 1m.
	Hysteresis time.Duration `yaml:"hysteresis" help:"event time a host must keep alerting before an action is recommended"`
	// Calm is how long, in event time, a host must stay free of alerts for
	// its recommendation to be withdrawn. Flag -scorer.actions.calm;
	// default 5m.
	Calm time.Duration `yaml:"calm" help:"event time without alerts after which an action is withdrawn"`
	// Duration is the suggested lifetime of a recommendation; the scorer
	// renews it while the host keeps alerting. Flag
	// -scorer.actions.duration; default 15m.
	Duration time.Duration `yaml:"duration" help:"suggested duration of a block or rate limit"`
	// BlockSeverity is the alert severity from which a block, rather than
	// a rate limit, is recommended: low, medium, high or critical. Flag
	// -scorer.actions.block-severity; default high.
	BlockSeverity string `yaml:"block-severity" help:"alert severity from which a block rather than a rate limit is recommended"`
}

// DefaultSettings returns the defaults documented on each field. Model.Keys
// has none: trust has to be configured.
func DefaultSettings() Settings {
	return Settings{
		Group: "metaids-scorer",
		Batch: BatchConfig{MaxRecords: 32, MaxFlows: 4096},
		State: StateConfig{MaxHosts: 1_000_000, TTL: time.Hour, CheckpointInterval: 30 * time.Second},
		Model: ModelConfig{Name: "metaids"},
		Alerts: AlertConfig{
			Window:        10 * time.Minute,
			Republish:     10 * time.Second,
			AnomalyWarmup: 4,
			Explain:       5,
		},
		Actions: ActionConfig{
			Topic:         "actions",
			Hysteresis:    time.Minute,
			Calm:          5 * time.Minute,
			Duration:      15 * time.Minute,
			BlockSeverity: schemas.SeverityHigh,
		},
	}
}

// Validate reports every invalid setting, each error naming its flag.
func (s Settings) Validate() error {
	var errs []error
	bad := func(flag, format string, args ...any) {
		errs = append(errs, fmt.Errorf("-scorer."+flag+": "+format, args...))
	}
	if s.Group == "" {
		bad("group", "must not be empty")
	}
	if s.Batch.MaxRecords < 1 || s.Batch.MaxRecords > maxBatchRecs {
		bad("batch.max-records", "must be between 1 and %d, got %d", maxBatchRecs, s.Batch.MaxRecords)
	}
	if s.Batch.MaxFlows < 1 || s.Batch.MaxFlows > maxStepFlows {
		bad("batch.max-flows", "must be between 1 and %d, got %d", maxStepFlows, s.Batch.MaxFlows)
	}
	if s.State.MaxHosts < 1 || s.State.MaxHosts > maxHostsCap {
		bad("state.max-hosts", "must be between 1 and %d, got %d", maxHostsCap, s.State.MaxHosts)
	}
	if s.State.TTL <= 0 {
		bad("state.ttl", "must be positive, got %s", s.State.TTL)
	}
	if s.State.CheckpointInterval != 0 && s.State.CheckpointInterval < minCheckpoint {
		bad("state.checkpoint-interval", "must be 0 (off) or at least %s, got %s", minCheckpoint, s.State.CheckpointInterval)
	}
	if s.Model.Name == "" {
		bad("model.name", "must not be empty")
	}
	if len(s.Model.Keys) == 0 {
		bad("model.keys", "at least one trusted public key is required: the scorer runs only signed models")
	}
	outputs := s.Alerts.outputs()
	for _, topic := range slices.Sorted(maps.Keys(outputs)) {
		if err := checkTopic(topic); err != nil {
			bad("alerts.outputs", "topic %q: %v", topic, err)
		}
		switch f := outputs[topic]; f {
		case FormatAvro, FormatECS, FormatOCSF:
		default:
			bad("alerts.outputs", "topic %q: format must be %s, %s or %s, got %q", topic, FormatAvro, FormatECS, FormatOCSF, f)
		}
	}
	if s.Alerts.Window <= 0 {
		bad("alerts.window", "must be positive, got %s", s.Alerts.Window)
	}
	if s.Alerts.Republish < 0 {
		bad("alerts.republish", "must not be negative, got %s", s.Alerts.Republish)
	}
	if s.Alerts.AnomalyWarmup < 0 {
		bad("alerts.anomaly-warmup", "must not be negative, got %d", s.Alerts.AnomalyWarmup)
	}
	if s.Alerts.Explain < 0 || s.Alerts.Explain > maxExplain {
		bad("alerts.explain", "must be between 0 and %d, got %d", maxExplain, s.Alerts.Explain)
	}
	if s.Actions.Topic != "" {
		if err := checkTopic(s.Actions.Topic); err != nil {
			bad("actions.topic", "%v", err)
		}
		if _, ok := outputs[s.Actions.Topic]; ok {
			bad("actions.topic", "%q is also an alerts topic", s.Actions.Topic)
		}
	}
	if s.Actions.Hysteresis < 0 {
		bad("actions.hysteresis", "must not be negative, got %s", s.Actions.Hysteresis)
	}
	if s.Actions.Calm <= 0 {
		bad("actions.calm", "must be positive, got %s", s.Actions.Calm)
	}
	if s.Actions.Duration < time.Second {
		bad("actions.duration", "must be at least 1s, got %s", s.Actions.Duration)
	}
	if severityRank(s.Actions.BlockSeverity) < 0 {
		bad("actions.block-severity", "must be low, medium, high or critical, got %q", s.Actions.BlockSeverity)
	}
	return errors.Join(errs...)
}

// checkTopic applies Kafka's rules for topic names.
func checkTopic(t string) error {
	if t == "" || len(t) > maxTopicLength {
		return fmt.Errorf("must be 1 to %d characters", maxTopicLength)
	}
	if t == "." || t == ".." {
		return errors.New("must not be . or ..")
	}
	for _, r := range t {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Errorf("may hold only letters, digits, '.', '_' and '-', got %q", r)
		}
	}
	return nil
}
