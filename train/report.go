package train

import (
	"context"
	"fmt"
	"time"

	"github.com/metaids/metaids/dataset"
	"github.com/metaids/metaids/features"
	"github.com/metaids/metaids/model"
)

// Options are the evaluation settings of Run.
type Options struct {
	// FewShotK lists the support sizes of the few-shot evaluation.
	FewShotK []int
	// Ablations also trains the model without each objective (meta-training,
	// adversarial augmentation, pretraining) and with pretraining alone, and
	// evaluates each the same way, so the value of every objective is
	// measured.
	Ablations bool
	// RobustFlows bounds the attack flows of the robustness evaluation.
	RobustFlows int
	// FineTune is the head fine-tuning of the few-shot evaluation after the
	// prototype initialisation; the adapter's default unless set.
	FineTune model.FineTuneConfig
}

// DefaultOptions returns K = 1, 5, 10, 20, no ablations, 1000 flows and
// the adapter's default fine-tuning.
func DefaultOptions() Options {
	return Options{FewShotK: []int{1, 5, 10, 20}, RobustFlows: 1000, FineTune: model.DefaultFineTune()}
}

// Report is the JSON report of a training run. Every number comes from the
// test split (or the held-out families) at thresholds chosen on the
// validation split.
type Report struct {
	Data       DataSummary  `json:"data"`
	Config     Config       `json:"config"`
	Model      ModelSummary `json:"model"`
	Training   Training     `json:"training"`
	Test       *Eval        `json:"test"`
	FewShot    []FewShot    `json:"few_shot,omitempty"`
	Robustness Robustness   `json:"robustness"`
	Ablations  []Ablation   `json:"ablations,omitempty"`
	Notes      []string     `json:"notes"`
}

// DataSummary describes the data and its split.
type DataSummary struct {
	Flows   int               `json:"flows"`
	Hosts   int               `json:"hosts"`
	DeltaT  bool              `json:"dt_prev_from_gaps"`
	Classes []string          `json:"classes"`
	Holdout []string          `json:"holdout,omitempty"`
	Splits  map[string][4]int `json:"splits"` // per label: train, val, test, holdout
	Loader  *dataset.Stats    `json:"loader,omitempty"`
}

// ModelSummary describes the trained model.
type ModelSummary struct {
	SpecHash         string    `json:"spec_hash"`
	Hidden           int       `json:"hidden"`
	Classes          []string  `json:"classes"`
	Thresholds       []float32 `json:"thresholds"`
	AnomalyThreshold float32   `json:"anomaly_threshold"`
	Exemplars        int       `json:"exemplars"`
	Disabled         []string  `json:"disabled_features,omitempty"`
}

// Training summarises the run.
type Training struct {
	Seconds   float64 `json:"seconds"`
	BestEpoch int     `json:"best_epoch"` // index into History
	History   []Epoch `json:"history"`
}

// Ablation is one variant's headline numbers, measured as for the main
// model.
type Ablation struct {
	Name       string     `json:"name"`
	Seconds    float64    `json:"seconds"`
	Classifier Binary     `json:"classifier"`
	AnomalyAUC Metric     `json:"anomaly_roc_auc"`
	FewShot    []FewShot  `json:"few_shot,omitempty"`
	Robustness Robustness `json:"robustness"`
}

// variants are the ablations: name and what changes.
var variants = []struct {
	name string
	mod  func(*Config)
}{
	{"no-meta", func(c *Config) { c.Weights.Meta = 0 }},
	{"no-adversarial", func(c *Config) { c.Weights.Adversarial = 0 }},
	{"no-pretraining", func(c *Config) { c.PretrainEpochs, c.Weights.Predict = 0, 0 }},
	{"pretrain-only", func(c *Config) { c.Epochs = 0 }},
}

// RunProgress is Progress with the name of the model being trained ("main"
// or an ablation).
type RunProgress struct {
	Progress
	Run string
}

// Run trains the model on d and evaluates it (and, with opt.Ablations, its
// ablations) into a report.
func Run(ctx context.Context, d *dataset.Dataset, cfg Config, opt Options, progress func(RunProgress)) (*Result, *Report, error) {
	prog := func(name string) func(Progress) {
		if progress == nil {
			return nil
		}
		return func(p Progress) { progress(RunProgress{p, name}) }
	}
	res, err := Train(ctx, d, cfg, prog("main"))
	if err != nil {
		return nil, nil, err
	}
	m := res.Model
	sc := Score(m, d)
	rep := &Report{
		Config: cfg,
		Data: DataSummary{Flows: d.Len(), Hosts: len(d.Hosts), DeltaT: d.DeltaT, Classes: d.Classes,
			Holdout: d.Holdout, Splits: d.Counts()},
		Model: ModelSummary{SpecHash: m.SpecHash, Hidden: m.Hidden(), Classes: m.Classes(), Thresholds: m.Thresholds,
			AnomalyThreshold: m.AnomalyThreshold, Exemplars: len(m.Exemplars), Disabled: res.Disabled},
		Training:   Training{Seconds: res.Duration.Seconds(), BestEpoch: res.BestEpoch, History: res.History},
		Test:       Evaluate(m, d, sc),
		FewShot:    EvalFewShot(m, d, sc, opt.FewShotK, opt.FineTune, cfg.Seed),
		Robustness: EvalRobustness(m, d, sc, cfg, opt.RobustFlows),
	}
	rep.Notes = notes(d, res)
	if opt.Ablations {
		for _, v := range variants {
			c := cfg
			v.mod(&c)
			t0 := time.Now()
			r, err := Train(ctx, d, c, prog(v.name))
			if err != nil {
				return nil, nil, fmt.Errorf("ablation %s: %w", v.name, err)
			}
			rep.Ablations = append(rep.Ablations, ablation(v.name, r.Model, d, c, opt, time.Since(t0)))
		}
	}
	return res, rep, nil
}

func ablation(name string, m *model.Model, d *dataset.Dataset, cfg Config, opt Options, took time.Duration) Ablation {
	sc := Score(m, d)
	ev := Evaluate(m, d, sc)
	return Ablation{Name: name, Seconds: took.Seconds(), Classifier: ev.Classifier, AnomalyAUC: ev.AnomalyROC.AUC,
		FewShot: EvalFewShot(m, d, sc, opt.FewShotK, opt.FineTune, cfg.Seed), Robustness: EvalRobustness(m, d, sc, cfg, opt.RobustFlows)}
}

// notes explains the choices a reader of the numbers needs to know.
func notes(d *dataset.Dataset, res *Result) []string {
	n := []string{
		"split: per class by time; the earliest share of each class trains (its latest part validates), the rest tests; thresholds, normalisation and early stopping never see the test split",
		"evaluation runs the deployed path (model.Step over every host's full stream in time order); test flows have the context of the flows before them, as in a scorer running since before the test period",
	}
	if !d.DeltaT {
		spec := features.Default()
		n = append(n, fmt.Sprintf("%s, %s and %s switched off: the data are per-class random samples, so the gaps between a host's flows, and which of its responders recur, reflect each class's sampling rate (benign hosts minutes to hours apart, the attacker sub-second) and would be a shortcut; the features are marked missing in training and their weights are zero in the model",
			spec.Feature(features.IdxDeltaT).Name, spec.Feature(features.IdxDstRepeat).Name, spec.Feature(features.IdxDeltaDst).Name))
	}
	if len(d.Holdout) > 0 {
		n = append(n, "few-shot: a held-out family's earliest K flows are the labels; recall is on its remaining flows, FPR on the benign test flows, with the encoder frozen")
	}
	return n
}
