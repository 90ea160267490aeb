package eval

import (
	"errors"
	"fmt"
	"time"

	"github.com/metaids/metaids/adapter"
	"github.com/metaids/metaids/dataset"
	"github.com/metaids/metaids/scorer"
	"github.com/metaids/metaids/stream"
	"github.com/metaids/metaids/train"
)

// Formats accepted by Config.Format: the dataset formats whose files carry
// their own labels.
const (
	FormatAuto   = "auto"
	FormatCIC    = string(dataset.FormatCIC)
	FormatZeek   = string(dataset.FormatZeek)
	FormatLUFlow = string(dataset.FormatLUFlow)
)

// Modes, the Report's Mode.
const (
	ModeLive    = "live"
	ModeOffline = "offline"
)

// Config is one evaluation. Each field maps onto a flag of `metaids eval`
// (its yaml key, dotted for nested structs), an environment variable and a
// key of the YAML file.
type Config struct {
	// Data are the dataset files, directories (every dataset file inside)
	// or globs to evaluate on. Required.
	Data []string `yaml:"data" help:"dataset files, directories or globs to evaluate on (repeatable): CICFlowMeter CSV, Zeek conn.log with Stratosphere labels, LUFlow CSV, gzipped or not"`
	// Format is the format the data must be in: auto (each file sniffed),
	// cic, zeek or luflow. A file in another format is an error. Default
	// auto.
	Format string `yaml:"format" help:"data format: auto, cic, zeek or luflow"`
	// Model is a model file written by `metaids train`; every row of Data is
	// then evaluated. Default none: train one.
	Model string `yaml:"model" help:"model file (from metaids train) to evaluate; default: train one"`
	// Train are dataset files, directories or globs to train the model on,
	// with train's standard settings, leaving out the new families. All
	// their rows are training or validation flows: -dataset.train-fraction
	// splits only data that is also evaluated. Without
	// Train and Model the model is trained on Data itself: the rows not of a
	// new family, earliest TrainFraction of each class, and only the rest is
	// evaluated. Default none.
	Train []string `yaml:"train" help:"dataset files, directories or globs to train on (repeatable); default: the earliest rows of -data"`
	// NewFamilies are the attack families the model must not know: left
	// out of training, and taught by K labels during the replay. Names
	// are as the dataset writes them ("DoS Slowloris"). Default none: the
	// run measures detection of the known families only, with no labels
	// and no update.
	NewFamilies []string `yaml:"new-family" help:"attack families held out of training and taught by labels during the replay (repeatable; none: detection only, no labels)"`
	// Shots is K, the labelled flows per new family. Default 10.
	Shots int `yaml:"shots" help:"labelled flows per new family (K)"`
	// Seed seeds training; it replaces -trainer.seed. Default 1.
	Seed uint64 `yaml:"seed" help:"seed of training (replaces -trainer.seed)"`
	// Offline runs the model in this process without Kafka instead of the
	// stages over an embedded broker. Default false.
	Offline bool `yaml:"offline" help:"score in-process without Kafka instead of running the stages over an embedded broker"`
	// Baseline also evaluates a baseline side by side, in the same mode
	// on the same rows: train.BaselinePerFlow trains the per-flow model
	// with the same data, settings and seed as the model (so not with
	// Model). The report's Baseline holds its numbers and where the two
	// differ. Default "" (none).
	Baseline string `yaml:"baseline" help:"also evaluate a baseline side by side: per-flow (the same features and heads on each flow alone, trained with the same data, settings and seed)"`
	// BaselineModel is a baseline model file to evaluate side by side
	// instead of training one. Default none.
	BaselineModel string `yaml:"baseline-model" help:"baseline model file (from metaids train -baseline per-flow) to evaluate side by side"`
	// FixedFPR is the benign false-positive rate at which the report gives
	// each model's recall. The threshold on the attack score 1 − p(benign)
	// is set on the benign flows of the training data's validation split,
	// before any evaluated flow is scored; with a model file there are none
	// and the number is left out. Default 0.01.
	FixedFPR float64 `yaml:"fixed-fpr" help:"benign false-positive rate, set on the training data's benign validation flows, at which recall is reported"`

	Live    LiveConfig     `yaml:"live"`
	Scorer  ScorerConfig   `yaml:"scorer"`
	Adapter AdaptConfig    `yaml:"adapter"`
	Dataset dataset.Config `yaml:"dataset"`
	Trainer train.Config   `yaml:"trainer"`
}

// LiveConfig shapes the live replay.
type LiveConfig struct {
	// Rate is the replay rate in flows per second; 0 replays as fast as
	// the broker acknowledges. A replay far faster than the traffic was
	// recorded squeezes many flows into the time an update takes to go
	// live, and those are scored by the old model, as they would be in
	// production at that rate. Default 1000.
	Rate float64 `yaml:"rate" help:"replay rate in flows per second (0: as fast as the broker acknowledges)"`
	// Partitions is the partition count of the pipeline's topics; offline
	// mode mirrors it, since the scorer ages hosts per features partition.
	// One by default, so the adapter reads the labels in the order they
	// were sent (it fits them partition by partition) and offline mode,
	// which fits them in that order, can fit exactly the same. Default 1.
	Partitions int `yaml:"partitions" help:"partitions of the pipeline topics (offline mode mirrors it)"`
	// Sync pauses the replay after each new family's K-th flow until the
	// update those labels teach serves (or the gate rejects it), so the
	// update scores every flow after the K-th, as offline, whatever the
	// replay rate; the time that takes is the adaptation latency. Without
	// it the replay runs on and the flows in between are scored by the old
	// model, as many as the rate puts into that time. Default true.
	Sync bool `yaml:"sync" help:"pause the replay after a new family's K-th flow until its update serves or is rejected"`
	// Timeout bounds each wait on the pipeline: for the stages to become
	// ready, for an update while paused, and for the last scores after
	// the replay. Default 2m.
	Timeout time.Duration `yaml:"timeout" help:"longest wait for the stages to start or for outstanding scores"`
}

// ScorerConfig holds the scorer settings that decide scores and alerts,
// applied by the live scorer and mirrored by the offline one.
type ScorerConfig struct {
	// AnomalyWarmup is how many flows a host must have had before its
	// anomaly score may alert (-scorer.alerts.anomaly-warmup of the
	// scorer). Default 4.
	AnomalyWarmup int `yaml:"anomaly-warmup" help:"flows a host must have had before an anomaly alerts (the scorer's -scorer.alerts.anomaly-warmup)"`
	// TTL drops a host's state after this much idle event time
	// (-scorer.state.ttl of the scorer). Default 1h.
	TTL time.Duration `yaml:"ttl" help:"idle event time after which a host's state starts afresh (the scorer's -scorer.state.ttl)"`
}

// AdaptConfig holds the adapter settings that decide a fit, applied by the
// live adapter and mirrored by the offline fit. The flags and defaults are
// the adapter's.
type AdaptConfig struct {
	// ExemplarsPerClass caps the embeddings kept per class. Default 64.
	ExemplarsPerClass int `yaml:"exemplars-per-class" help:"the adapter's -adapter.exemplars-per-class"`
	// NewClassThreshold is a new family's alert threshold. Default 0.5.
	NewClassThreshold float64 `yaml:"new-class-threshold" help:"the adapter's -adapter.new-class-threshold"`
	// NewLabelWeight weighs new labels against replayed exemplars.
	// Default 1.
	NewLabelWeight float64 `yaml:"new-label-weight" help:"the adapter's -adapter.new-label-weight"`
	// CampaignIdle is the pause that ends a labelled host's campaign; 0
	// names alerts by the head alone. Default 10m.
	CampaignIdle time.Duration          `yaml:"campaign-idle" help:"the adapter's -adapter.campaign-idle"`
	Gate         adapter.GateConfig     `yaml:"gate"`
	FineTune     adapter.FineTuneConfig `yaml:"finetune"`
}

// DefaultConfig returns the defaults documented on each field.
func DefaultConfig() Config {
	sc := scorer.DefaultSettings()
	ad := adapter.DefaultConfig().Adapter
	return Config{
		Format:   FormatAuto,
		Shots:    10,
		Seed:     1,
		FixedFPR: 0.01,
		Live:     LiveConfig{Rate: 1000, Partitions: 1, Sync: true, Timeout: 2 * time.Minute},
		Scorer:   ScorerConfig{AnomalyWarmup: sc.Alerts.AnomalyWarmup, TTL: sc.State.TTL},
		Adapter: AdaptConfig{
			ExemplarsPerClass: ad.ExemplarsPerClass,
			NewClassThreshold: ad.NewClassThreshold,
			NewLabelWeight:    ad.NewLabelWeight,
			CampaignIdle:      ad.CampaignIdle,
			Gate:              ad.Gate,
			FineTune:          ad.FineTune,
		},
		Dataset: dataset.DefaultConfig(),
		Trainer: train.DefaultConfig(),
	}
}

// Validate reports every problem with c, each naming its flag.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if len(c.Data) == 0 {
		bad("-data: give dataset files, directories or globs to evaluate on")
	}
	switch c.Format {
	case FormatAuto, FormatCIC, FormatZeek, FormatLUFlow:
	default:
		bad("-format: want auto, cic, zeek or luflow, got %q", c.Format)
	}
	if c.Model != "" && len(c.Train) > 0 {
		bad("-model: not with -train: evaluate a model file or train one, not both")
	}
	switch {
	case c.Baseline != "" && c.Baseline != train.BaselinePerFlow:
		bad("-baseline: want %s, got %q", train.BaselinePerFlow, c.Baseline)
	case c.Baseline != "" && c.BaselineModel != "":
		bad("-baseline: not with -baseline-model: train a baseline or evaluate a file, not both")
	case c.Baseline != "" && c.Model != "":
		bad("-baseline: trains on -train or the data's earliest rows, not with -model; give -baseline-model")
	}
	if !(c.FixedFPR > 0 && c.FixedFPR < 0.5) {
		bad("-fixed-fpr: must be in (0, 0.5), got %g", c.FixedFPR)
	}
	seen := map[string]bool{}
	for _, f := range c.NewFamilies {
		switch {
		case f == "" || verdictOf(f) == "":
			bad("-new-family: %q is not a family name", f)
		case isBenign(f):
			bad("-new-family: %q is benign traffic, not a family", f)
		case seen[f]:
			bad("-new-family: %q given twice", f)
		}
		seen[f] = true
	}
	if c.Shots < 1 || c.Shots > 1000 {
		bad("-shots: must be between 1 and 1000, got %d", c.Shots)
	}
	if !(c.Live.Rate >= 0 && c.Live.Rate <= 1e7) {
		bad("-live.rate: must be between 0 and 1e7 flows/s, got %g", c.Live.Rate)
	}
	if c.Live.Partitions < 1 || c.Live.Partitions > 256 {
		bad("-live.partitions: must be between 1 and 256, got %d", c.Live.Partitions)
	}
	if c.Live.Timeout < time.Second {
		bad("-live.timeout: must be at least 1s, got %s", c.Live.Timeout)
	}
	if c.Scorer.AnomalyWarmup < 0 {
		bad("-scorer.anomaly-warmup: must not be negative, got %d", c.Scorer.AnomalyWarmup)
	}
	if c.Scorer.TTL <= 0 {
		bad("-scorer.ttl: must be positive, got %s", c.Scorer.TTL)
	}
	// The adapter checks its own settings; these are the ones it would
	// refuse, named by the same flags.
	ac := c.Adapter.settings()
	ac.SigningKey = "(generated)"
	if err := (adapter.Config{Config: stream.DefaultConfig(), Adapter: ac, Shutdown: adapter.DefaultConfig().Shutdown}).Validate(); err != nil {
		errs = append(errs, err)
	}
	if len(c.Dataset.Holdout) > 0 {
		bad("-dataset.holdout-family: use -new-family, which holds families out and teaches them")
	}
	if err := c.Dataset.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Trainer.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// settings returns the adapter stage's settings for a, with the stage's
// defaults for everything eval does not set.
func (a AdaptConfig) settings() adapter.Settings {
	s := adapter.DefaultConfig().Adapter
	s.ExemplarsPerClass = a.ExemplarsPerClass
	s.NewClassThreshold = a.NewClassThreshold
	s.NewLabelWeight = a.NewLabelWeight
	s.CampaignIdle = a.CampaignIdle
	s.Gate = a.Gate
	s.FineTune = a.FineTune
	return s
}
