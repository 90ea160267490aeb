package adapter

import (
	"errors"
	"fmt"
	"time"

	"github.com/metaids/metaids/model"
	"github.com/metaids/metaids/schemas"
	"github.com/metaids/metaids/stream"
)

// Limits enforced by Validate. They bound memory and the cost of one fit.
const (
	maxMinLabels         = 10000
	maxExemplarsPerClass = 4096
	maxJoinEntries       = 10_000_000
	maxPendingLabels     = 1_000_000
	maxFineTuneSteps     = 100_000
	maxFineTuneBatch     = 1 << 16
	maxAnalysts          = 1 << 20
	maxCampaignIdle      = 24 * time.Hour
)

// Config is the adapter stage's configuration. The Kafka settings sit under
// the YAML key "kafka" (flags -kafka.*), the adapter's own under "adapter"
// (flags -adapter.*).
type Config struct {
	stream.Config `yaml:"kafka"`
	Adapter       Settings `yaml:"adapter"`
	// SchemaRegistry, when its URL is set, supplies the Avro schema ids
	// (flags -schema-registry.*); empty uses the fixed ids.
	SchemaRegistry schemas.RegistryConfig `yaml:"schema-registry"`
	Shutdown       ShutdownConfig         `yaml:"shutdown"`
}

// ShutdownConfig bounds the drain on SIGTERM.
type ShutdownConfig struct {
	// Timeout is how long the stage may take, after it is told to stop, to
	// record how far it has read the labels. Flag -shutdown.timeout;
	// default 30s.
	Timeout time.Duration `yaml:"timeout" help:"time to record the labels read so far on shutdown"`
}

// Settings are the adapter's own settings.
type Settings struct {
	// Model is the name of the model the adapter fine-tunes: the Name of
	// the ModelUpdates it reads and writes (-adapter.model). Default
	// "metaids".
	Model string `yaml:"model"`
	// Group is the consumer group under which the adapter records how far
	// it has read the labels topic (-adapter.group). It never joins the
	// group: only one adapter may run per model. Default "metaids-adapter".
	Group string `yaml:"group"`
	// SigningKey is the PEM PKCS #8 Ed25519 private key the adapter signs
	// its updates with (-adapter.signing-key). Required.
	SigningKey string `yaml:"signing-key"`
	// TrustedKeys are PEM PKIX Ed25519 public keys whose updates on the
	// models topic the adapter builds on, such as `metaids train`'s; its
	// own key is always trusted (-adapter.trusted-keys). Default none.
	TrustedKeys []string `yaml:"trusted-keys"`
	// MinLabels is how many new joined labels of one class start a fit
	// (-adapter.min-labels). Default 5.
	MinLabels int `yaml:"min-labels"`
	// FitInterval is how often the adapter fits whatever joined labels it
	// holds, however few; 0 fits only on MinLabels
	// (-adapter.fit-interval). Default 1m.
	FitInterval time.Duration `yaml:"fit-interval"`
	// ExemplarsPerClass caps the embeddings kept per class in the model
	// update and replayed by later fits (-adapter.exemplars-per-class).
	// Default 64.
	ExemplarsPerClass int `yaml:"exemplars-per-class"`
	// NewClassThreshold is the alerting threshold given to a new family's
	// class (-adapter.new-class-threshold). Default 0.5.
	NewClassThreshold float64 `yaml:"new-class-threshold"`
	// NewLabelWeight is the weight, in fine-tuning, of a class's new labels
	// taken together, relative to that class's replayed exemplars. At 1 a
	// handful of false-positive labels carry as much weight as the class's
	// whole memory, so they move the head where they lie; a label stream
	// that contradicts the memory then shows up in the gate
	// (-adapter.new-label-weight). Default 1.
	NewLabelWeight float64 `yaml:"new-label-weight"`
	// CampaignIdle is how long a host may pause and still be in the attack
	// campaign its labels name: its alerting flows are named as labelled
	// while they come no further apart than this (model.Campaign). 0 names
	// flows by the head alone (-adapter.campaign-idle). Default 10m.
	CampaignIdle time.Duration `yaml:"campaign-idle"`

	Join      JoinConfig      `yaml:"join"`
	Gate      GateConfig      `yaml:"gate"`
	FineTune  FineTuneConfig  `yaml:"finetune"`
	RateLimit RateLimitConfig `yaml:"rate-limit"`
}

// JoinConfig bounds the label/score join.
type JoinConfig struct {
	// Window is how long a label waits for its flow's score, and how long
	// (in the scores' own time) scores are kept for labels to come
	// (-adapter.join.window). Default 10m.
	Window time.Duration `yaml:"window"`
	// MaxScores caps the scores kept for joining, oldest dropped first
	// (-adapter.join.max-scores). Default 100000.
	MaxScores int `yaml:"max-scores"`
	// MaxAlerts caps the alert id → flow id entries kept from the alerts
	// topic (-adapter.join.max-alerts). Default 100000.
	MaxAlerts int `yaml:"max-alerts"`
	// MaxLabels caps the labels held, waiting for a score or a fit; a label
	// beyond it is dropped and counted (-adapter.join.max-labels).
	// Default 10000.
	MaxLabels int `yaml:"max-labels"`
}

// GateConfig sets the regression gate.
type GateConfig struct {
	// Holdout is the share of the new labels, and of each class's
	// exemplars, held back from fitting to evaluate the candidate
	// (-adapter.gate.holdout). Default 0.25.
	Holdout float64 `yaml:"holdout"`
	// RecallTolerance is the most any existing class's recall on the
	// held-back data may drop (-adapter.gate.recall-tolerance).
	// Default 0.05.
	RecallTolerance float64 `yaml:"recall-tolerance"`
	// FPRTolerance is the most the benign false-positive rate on the
	// held-back data (the model's gate set included) may rise
	// (-adapter.gate.fpr-tolerance): a candidate is rejected when the rise
	// exceeds it with 90% confidence. Default 0.02.
	FPRTolerance float64 `yaml:"fpr-tolerance"`
	// MinAgreement is the least share of each class's held-back new labels
	// the candidate must reproduce. Labels it cannot learn contradict the
	// exemplars of the classes it keeps, as a label calling a known family
	// benign does (-adapter.gate.min-agreement). Default 0.5.
	MinAgreement float64 `yaml:"min-agreement"`
}

// FineTuneConfig sets the head's fine-tuning (AdamW, encoder frozen).
type FineTuneConfig struct {
	// Steps is the number of AdamW steps. A new family whose flows sit
	// close to a benign pattern in the embedding (a DNS tunnel beside
	// ordinary DNS) needs enough steps for the benign exemplars to push
	// the prototype row off them; with 60 steps at 0.005 the synthetic
	// demo's tunnel raised the benign false-positive rate to 0.375 and was
	// rejected. Poisoned labels stay visible to the gate's agreement check
	// however long the fit (-adapter.finetune.steps). Default 300.
	Steps int `yaml:"steps"`
	// BatchSize is the examples per step; 0 uses all
	// (-adapter.finetune.batch-size). Default 128.
	BatchSize int `yaml:"batch-size"`
	// LR is the learning rate (-adapter.finetune.lr). Default 0.02.
	LR float64 `yaml:"lr"`
	// WeightDecay is AdamW's decoupled weight decay
	// (-adapter.finetune.weight-decay). Default 0.01.
	WeightDecay float64 `yaml:"weight-decay"`
}

// RateLimitConfig limits each analyst's labels with a token bucket, timed
// by the labels' record timestamps so a replay after a restart decides as
// the first reading did.
type RateLimitConfig struct {
	// PerMinute is the sustained rate of labels per analyst
	// (-adapter.rate-limit.per-minute). Default 60.
	PerMinute float64 `yaml:"per-minute"`
	// Burst is how many labels an analyst may send at once
	// (-adapter.rate-limit.burst). Default 100.
	Burst int `yaml:"burst"`
	// MaxAnalysts caps the analysts tracked; beyond it, labels from new
	// analysts are refused until idle ones are forgotten
	// (-adapter.rate-limit.max-analysts). Default 4096.
	MaxAnalysts int `yaml:"max-analysts"`
}

// DefaultConfig returns the defaults documented on each field.
func DefaultConfig() Config {
	return Config{
		Config:         stream.DefaultConfig(),
		SchemaRegistry: schemas.DefaultRegistryConfig(),
		Shutdown:       ShutdownConfig{Timeout: 30 * time.Second},
		Adapter: Settings{
			Model:             "metaids",
			Group:             "metaids-adapter",
			MinLabels:         5,
			FitInterval:       time.Minute,
			ExemplarsPerClass: 64,
			NewClassThreshold: 0.5,
			NewLabelWeight:    1,
			CampaignIdle:      10 * time.Minute,
			Join:              JoinConfig{Window: 10 * time.Minute, MaxScores: 100000, MaxAlerts: 100000, MaxLabels: 10000},
			Gate:              GateConfig{Holdout: 0.25, RecallTolerance: 0.05, FPRTolerance: 0.02, MinAgreement: 0.5},
			FineTune:          FineTuneConfig{Steps: 300, BatchSize: 128, LR: 0.02, WeightDecay: 0.01},
			RateLimit:         RateLimitConfig{PerMinute: 60, Burst: 100, MaxAnalysts: 4096},
		},
	}
}

// Validate reports every invalid setting, each error naming its flag.
func (c Config) Validate() error {
	errs := []error{c.Config.Validate(), c.SchemaRegistry.Validate()}
	if c.Shutdown.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("-shutdown.timeout: must be positive, got %s", c.Shutdown.Timeout))
	}
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	s := c.Adapter
	if s.Model == "" {
		bad("-adapter.model: must not be empty")
	}
	if s.Group == "" {
		bad("-adapter.group: must not be empty")
	}
	if s.SigningKey == "" {
		bad("-adapter.signing-key: required: the adapter signs every update it publishes")
	}
	for i, k := range s.TrustedKeys {
		if k == "" {
			bad("-adapter.trusted-keys: entry %d is empty", i)
		}
	}
	intIn := func(flag string, v, lo, hi int) {
		if v < lo || v > hi {
			bad("%s: must be between %d and %d, got %d", flag, lo, hi, v)
		}
	}
	floatIn := func(flag string, v, lo, hi float64) {
		if !(v >= lo && v <= hi) {
			bad("%s: must be between %g and %g, got %g", flag, lo, hi, v)
		}
	}
	intIn("-adapter.min-labels", s.MinLabels, 1, maxMinLabels)
	if s.FitInterval < 0 {
		bad("-adapter.fit-interval: must not be negative, got %v", s.FitInterval)
	}
	intIn("-adapter.exemplars-per-class", s.ExemplarsPerClass, 1, maxExemplarsPerClass)
	floatIn("-adapter.new-class-threshold", s.NewClassThreshold, 0, 1)
	if !(s.NewLabelWeight > 0 && s.NewLabelWeight <= 100) {
		bad("-adapter.new-label-weight: must be in (0, 100], got %g", s.NewLabelWeight)
	}

	if s.CampaignIdle < 0 || s.CampaignIdle > maxCampaignIdle {
		bad("-adapter.campaign-idle: must be between 0 and %v, got %v", maxCampaignIdle, s.CampaignIdle)
	}

	j := s.Join
	if j.Window <= 0 {
		bad("-adapter.join.window: must be positive, got %v", j.Window)
	}
	intIn("-adapter.join.max-scores", j.MaxScores, 1, maxJoinEntries)
	intIn("-adapter.join.max-alerts", j.MaxAlerts, 1, maxJoinEntries)
	intIn("-adapter.join.max-labels", j.MaxLabels, 1, maxPendingLabels)

	g := s.Gate
	// Below 1: some held-back data is needed, and at least one label of
	// each class must be left to fit.
	floatIn("-adapter.gate.holdout", g.Holdout, 0, 0.9)
	floatIn("-adapter.gate.recall-tolerance", g.RecallTolerance, 0, 1)
	floatIn("-adapter.gate.fpr-tolerance", g.FPRTolerance, 0, 1)
	floatIn("-adapter.gate.min-agreement", g.MinAgreement, 0, 1)

	f := s.FineTune
	intIn("-adapter.finetune.steps", f.Steps, 1, maxFineTuneSteps)
	intIn("-adapter.finetune.batch-size", f.BatchSize, 0, maxFineTuneBatch)
	if !(f.LR > 0 && f.LR <= 1) {
		bad("-adapter.finetune.lr: must be in (0, 1], got %g", f.LR)
	}
	floatIn("-adapter.finetune.weight-decay", f.WeightDecay, 0, 1)

	r := s.RateLimit
	if !(r.PerMinute > 0 && r.PerMinute <= 1e6) {
		bad("-adapter.rate-limit.per-minute: must be in (0, 1e6], got %g", r.PerMinute)
	}
	intIn("-adapter.rate-limit.burst", r.Burst, 1, 1_000_000)
	intIn("-adapter.rate-limit.max-analysts", r.MaxAnalysts, 1, maxAnalysts)
	return errors.Join(errs...)
}

// fineTune returns the model package's settings for s.
func (s Settings) fineTune() model.FineTuneConfig {
	ft := model.DefaultFineTune()
	ft.Steps = s.FineTune.Steps
	ft.BatchSize = s.FineTune.BatchSize
	ft.AdamW.LR = float32(s.FineTune.LR)
	ft.AdamW.WeightDecay = float32(s.FineTune.WeightDecay)
	return ft
}
