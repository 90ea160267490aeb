package train

import (
	"errors"
	"fmt"

	"github.com/metaids/metaids/model"
)

// Config holds the trainer's hyper-parameters. Every run is seeded: the same
// data and Config give the same model on the same machine.
type Config struct {
	// Seed seeds weight initialisation, window sampling, episodes, dropout
	// and exemplar choice. Default 1.
	Seed uint64 `yaml:"seed" help:"seed of everything random in training"`
	// Hidden is the LSTM's hidden size. Default 64.
	Hidden int `yaml:"hidden" help:"LSTM hidden size"`
	// Window is T, the flows per training window (truncated BPTT). The LSTM
	// only learns to weigh evidence over about this many of a host's flows:
	// attacks that show only as a run longer than benign runs of the same
	// flows need a window that holds both (128, with BurnIn 8 and Batch 16,
	// on the sequence scenario; docs/benchmarks.md). Longer windows cost
	// per-class samples like CIC-IDS2017's, whose host order means little,
	// so the default stays short. Default 16.
	Window int `yaml:"window" help:"flows per training window (truncated backpropagation through time)"`
	// BurnIn is how many leading flows of a window that does not start at
	// the beginning of its host's stream only warm the state up and get no
	// loss, so the losses see states with some history, as the scorer's
	// states have. Default 4.
	BurnIn int `yaml:"burn-in" help:"leading flows of a mid-stream window that get no loss"`
	// StateReplay is the probability that a window starting mid-stream
	// starts from the saved final state of another window instead of zeros,
	// so the model copes with whatever state a host's history left (see
	// trainer.initStates). Default 0.5.
	StateReplay float64 `yaml:"state-replay" help:"probability that a mid-stream window starts from another window's final state"`
	// ColdStart is the probability that a window starting mid-stream is
	// scored from a zero state with no burn-in, as the scorer scores a host
	// it has never seen (or has evicted): every host's first flows. Trained
	// only on each stream's true beginning, the synthetic model called a
	// fresh host's first NTP flow a port scan (p 0.68). Default 0.25.
	ColdStart float64 `yaml:"cold-start" help:"probability that a mid-stream window is scored from a zero state without burn-in, like a new host"`
	// Batch is the number of windows per optimizer step. Default 64.
	Batch int `yaml:"batch" help:"windows per optimizer step"`
	// PretrainEpochs is the number of epochs of self-supervised next-flow
	// prediction before the multi-task phase. Default 4.
	PretrainEpochs int `yaml:"pretrain-epochs" help:"epochs of self-supervised pretraining (next-flow prediction only)"`
	// Epochs is the most epochs of the multi-task phase; early stopping
	// usually ends it sooner. Default 30.
	Epochs int `yaml:"epochs" help:"maximum epochs of the multi-task phase"`
	// StepsPerEpoch is the number of optimizer steps per epoch; 0 sizes an
	// epoch to see about every training flow once, between 10 and 200
	// steps. Default 0.
	StepsPerEpoch int `yaml:"steps-per-epoch" help:"optimizer steps per epoch; 0 sizes it from the data"`
	// Patience is how many epochs without improvement on the validation
	// split early stopping waits. Default 6.
	Patience int `yaml:"patience" help:"epochs without validation improvement before stopping"`
	// Dropout is the dropout probability on the classifier's input.
	// Default 0.3.
	Dropout float64 `yaml:"dropout" help:"dropout probability on the classifier input"`
	// LR is AdamW's learning rate. Default 3e-3.
	LR float64 `yaml:"lr" help:"AdamW learning rate"`
	// WeightDecay is AdamW's decoupled weight decay. Default 0.01.
	WeightDecay float64 `yaml:"weight-decay" help:"AdamW weight decay"`
	// ClipNorm clips the gradient's global norm. Default 5.
	ClipNorm float64 `yaml:"clip-norm" help:"gradient norm clipping"`
	// Weights weigh the objectives; 0 turns one off.
	Weights Weights `yaml:"weight"`
	// Meta shapes the episodes of meta-training.
	Meta Meta `yaml:"meta"`
	// Adv sets the adversarial augmentation and the robustness evaluation.
	Adv Adv `yaml:"adv"`
	// TargetFPR bounds the benign false-positive rate on validation data:
	// the anomaly threshold is set for it, and class thresholds (chosen
	// for F1) are raised until the classifier's alerts respect it too.
	// Default 0.01.
	TargetFPR float64 `yaml:"target-fpr" help:"benign false-positive rate allowed on validation data for the class thresholds"`
	// AnomalyFPR is the share of benign validation flows the anomaly
	// threshold lets through. It is lower than TargetFPR because an
	// anomaly alert names no family and comes on top of the class alerts:
	// at 1% it made two thirds of CIC-IDS2017's false positives in eval.
	// Default 0.002.
	AnomalyFPR float64 `yaml:"anomaly-fpr" help:"benign false-positive rate allowed on validation data for the anomaly threshold"`
	// Exemplars is how many embeddings per class the model stores for the
	// adapter to replay. Default 64.
	Exemplars int `yaml:"exemplars" help:"stored embeddings per class, replayed by the adapter"`
	// GateBenign is how many benign validation flows' embeddings the model
	// carries for the adapter's gate (model.Model.GateBenign): the gate
	// measures a candidate's false-positive rate on them, flows the head
	// never trained on. 0 stores none. Default 256.
	GateBenign int `yaml:"gate-benign" help:"benign validation embeddings the model carries for the adapter's false-positive check"`
	// GateKnown is how many validation flows' embeddings of each known
	// attack class the model carries for the gate (model.Model.GateKnown):
	// the gate checks that a candidate still names each class on them.
	// 0 stores none. Default 32, so that with the 16 held-back exemplars a
	// class's recall rests on 48 flows and a full update of a dozen classes
	// still fits a 1 MiB record.
	GateKnown int `yaml:"gate-known" help:"validation embeddings per known attack class the model carries for the adapter's recall check"`
	// PredictAttacks makes known-attack flows targets of the next-flow
	// predictor too. Off by default: they are still its context, but a
	// predictor trained to anticipate known attacks makes them look normal
	// to the anomaly score, which is the detector of last resort for
	// families nobody labelled. Unlabelled flows are always targets.
	PredictAttacks bool `yaml:"predict-attacks" help:"also train the next-flow predictor on flows labelled as attacks"`
	// PredictL2 is an L2 penalty on the next-flow predictor's weights (not
	// its bias), pulling its guess towards the typical normal flow unless
	// the host's history really tells more. Without it the predictor learns
	// to echo a host's recent flows, which makes a flood of identical attack
	// flows look perfectly normal after its first few. Chosen on the
	// validation split of the CIC-IDS2017 sample (mean validation anomaly
	// ROC AUC over three seeds: 0.84 at 0, 0.86 at 0.01 and 0.1, 0.91 at 1).
	// Default 1.
	PredictL2 float64 `yaml:"predict-l2" help:"L2 penalty on the next-flow predictor's weights, towards predicting the typical normal flow"`
	// NormAll fits the normalisation on every training flow instead of
	// only the benign and unlabelled ones. Off by default: the anomaly
	// score is a squared error in normalised units, and it should measure
	// deviations in units of normal traffic's spread, not of a class mix
	// that is often a sampling artefact (86% attacks in the CIC sample).
	NormAll bool `yaml:"norm-all" help:"fit the feature normalisation on all training flows, not only benign and unlabelled ones"`
	// PerFlow trains the per-flow baseline (model.Config.PerFlow) instead
	// of the per-host LSTM, with the objectives adjusted as perFlowConfig
	// says. It is chosen by `metaids train -baseline per-flow` and by eval's
	// -baseline, not by a flag of its own. Default false.
	PerFlow bool `yaml:"-"`
}

// Weights weigh the training objectives.
type Weights struct {
	// Predict weighs next-flow prediction (self-supervised). Default 1.
	Predict float64 `yaml:"predict" help:"weight of next-flow prediction"`
	// Classify weighs the cross-entropy of benign vs known families.
	// Default 1.
	Classify float64 `yaml:"classify" help:"weight of classification"`
	// Meta weighs the prototypical loss of episodic meta-training.
	// Default 0.5.
	Meta float64 `yaml:"meta" help:"weight of episodic prototypical meta-training"`
	// Adversarial weighs the classification loss on adversarially
	// perturbed windows. Default 0.5.
	Adversarial float64 `yaml:"adversarial" help:"weight of adversarial augmentation"`
}

// Meta shapes the N-way K-shot episodes.
type Meta struct {
	// Ways is N, the classes per episode (benign is always one). Default 5.
	Ways int `yaml:"ways" help:"classes per episode"`
	// Shots is K, the support flows per class. Default 5.
	Shots int `yaml:"shots" help:"support flows per class and episode"`
	// Queries is the query flows per class. Default 8.
	Queries int `yaml:"queries" help:"query flows per class and episode"`
}

// Adv sets the adversary: L∞ perturbations of at most Epsilon standard
// deviations on the features the spec marks attacker-controlled, of attack
// flows only, kept within the range seen in training.
type Adv struct {
	// Epsilon is the budget in units of each feature's standard deviation.
	// Default 0.3.
	Epsilon float64 `yaml:"epsilon" help:"adversarial budget in standard deviations of each attacker-controlled feature"`
	// Steps is the PGD steps in training; 1 is FGSM. Default 1.
	Steps int `yaml:"steps" help:"PGD steps of adversarial augmentation (1 = FGSM)"`
	// EvalSteps is the PGD steps of the robustness evaluation. Default 10.
	EvalSteps int `yaml:"eval-steps" help:"PGD steps of the robustness evaluation"`
}

// DefaultConfig returns the defaults documented on Config's fields.
func DefaultConfig() Config {
	return Config{
		Seed: 1, Hidden: 64, Window: 16, BurnIn: 4, StateReplay: 0.5, ColdStart: 0.25, Batch: 64,
		PretrainEpochs: 4, Epochs: 30, Patience: 6,
		Dropout: 0.3, LR: 3e-3, WeightDecay: 0.01, ClipNorm: 5,
		Weights:   Weights{Predict: 1, Classify: 1, Meta: 0.5, Adversarial: 0.5},
		Meta:      Meta{Ways: 5, Shots: 5, Queries: 8},
		Adv:       Adv{Epsilon: 0.3, Steps: 1, EvalSteps: 10},
		TargetFPR: 0.01, AnomalyFPR: 0.002, Exemplars: 64, GateBenign: 256, GateKnown: 32, PredictL2: 1,
	}
}

// Validate reports every problem with c, each naming its flag.
func (c Config) Validate() error {
	var errs []error
	bad := func(flag string, ok bool, want string, got any) {
		if !ok {
			errs = append(errs, fmt.Errorf("-train.%s: must be %s, got %v", flag, want, got))
		}
	}
	bad("hidden", c.Hidden >= 1 && c.Hidden <= 1024, "between 1 and 1024", c.Hidden)
	bad("window", c.Window >= 2 && c.Window <= 256, "between 2 and 256", c.Window)
	bad("burn-in", c.BurnIn >= 0 && c.BurnIn < c.Window, "at least 0 and below -train.window", c.BurnIn)
	bad("state-replay", c.StateReplay >= 0 && c.StateReplay <= 1, "in [0, 1]", c.StateReplay)
	bad("anomaly-fpr", c.AnomalyFPR > 0 && c.AnomalyFPR < 0.5, "in (0, 0.5)", c.AnomalyFPR)
	bad("cold-start", c.ColdStart >= 0 && c.ColdStart <= 1, "in [0, 1]", c.ColdStart)
	bad("batch", c.Batch >= 1 && c.Batch <= 4096, "between 1 and 4096", c.Batch)
	bad("pretrain-epochs", c.PretrainEpochs >= 0 && c.PretrainEpochs <= 1000, "between 0 and 1000", c.PretrainEpochs)
	bad("epochs", c.Epochs >= 0 && c.Epochs <= 1000, "between 0 and 1000", c.Epochs)
	bad("epochs", c.Epochs+c.PretrainEpochs > 0, "positive with -train.pretrain-epochs", c.Epochs)
	bad("steps-per-epoch", c.StepsPerEpoch >= 0 && c.StepsPerEpoch <= 100000, "between 0 and 100000", c.StepsPerEpoch)
	bad("patience", c.Patience >= 0, "non-negative", c.Patience)
	bad("dropout", c.Dropout >= 0 && c.Dropout < 1, "in [0, 1)", c.Dropout)
	bad("lr", c.LR > 0 && c.LR < 1, "in (0, 1)", c.LR)
	bad("weight-decay", c.WeightDecay >= 0 && c.WeightDecay < 1, "in [0, 1)", c.WeightDecay)
	bad("clip-norm", c.ClipNorm >= 0, "non-negative", c.ClipNorm)
	for _, w := range []struct {
		name string
		v    float64
	}{{"predict", c.Weights.Predict}, {"classify", c.Weights.Classify}, {"meta", c.Weights.Meta}, {"adversarial", c.Weights.Adversarial}} {
		bad("weight."+w.name, w.v >= 0 && w.v <= 100, "between 0 and 100", w.v)
	}
	bad("meta.ways", c.Meta.Ways >= 2 && c.Meta.Ways <= 64, "between 2 and 64", c.Meta.Ways)
	bad("meta.shots", c.Meta.Shots >= 1 && c.Meta.Shots <= 64, "between 1 and 64", c.Meta.Shots)
	bad("meta.queries", c.Meta.Queries >= 1 && c.Meta.Queries <= 64, "between 1 and 64", c.Meta.Queries)
	bad("adv.epsilon", c.Adv.Epsilon >= 0 && c.Adv.Epsilon <= 10, "between 0 and 10", c.Adv.Epsilon)
	bad("adv.steps", c.Adv.Steps >= 1 && c.Adv.Steps <= 100, "between 1 and 100", c.Adv.Steps)
	bad("adv.eval-steps", c.Adv.EvalSteps >= 1 && c.Adv.EvalSteps <= 1000, "between 1 and 1000", c.Adv.EvalSteps)
	bad("predict-l2", c.PredictL2 >= 0 && c.PredictL2 <= 1000, "between 0 and 1000", c.PredictL2)
	bad("target-fpr", c.TargetFPR > 0 && c.TargetFPR < 0.5, "in (0, 0.5)", c.TargetFPR)
	bad("exemplars", c.Exemplars >= 0 && c.Exemplars <= 10000, "between 0 and 10000", c.Exemplars)
	bad("gate-benign", c.GateBenign >= 0 && c.GateBenign <= model.MaxGateBenign, fmt.Sprintf("between 0 and %d", model.MaxGateBenign), c.GateBenign)
	bad("gate-known", c.GateKnown >= 0 && c.GateKnown <= 1024, "between 0 and 1024", c.GateKnown)
	return errors.Join(errs...)
}
