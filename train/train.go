package train

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/metaids/metaids/dataset"
	"github.com/metaids/metaids/features"
	"github.com/metaids/metaids/model"
)

// Phases of training, as reported by Progress and Epoch.
const (
	PhasePretrain = "pretrain"
	PhaseTrain    = "train"
)

// Progress is what Train reports after every optimizer step.
type Progress struct {
	Phase        string
	Epoch        int // 1-based, within the phase
	Epochs       int // the phase's maximum
	Step, Steps  int // over the whole run; Steps assumes no early stop
	Loss         float64
	ValMetric    float64 // of the last finished epoch; NaN before the first
	BestEpoch    int
	EarlyStopped bool
}

// Epoch records one epoch: the mean training losses (each unweighted) and
// the validation numbers early stopping used.
type Epoch struct {
	Phase       string  `json:"phase"`
	Epoch       int     `json:"epoch"`
	Predict     float64 `json:"predict_loss"`
	Classify    float64 `json:"classify_loss"`
	Meta        float64 `json:"meta_loss"`
	Adversarial float64 `json:"adversarial_loss"`
	// ValPredict is the mean anomaly score of the validation flows the
	// predictor is trained for (benign and unlabelled); ValClassify the
	// class-balanced cross-entropy of labelled validation flows; ValMetric
	// what early stopping minimised.
	ValPredict  float64 `json:"val_predict"`
	ValClassify float64 `json:"val_classify"`
	ValMetric   float64 `json:"val_metric"`
	Seconds     float64 `json:"seconds"`
}

// Result is a trained model with its history.
type Result struct {
	Model *model.Model
	// History has one entry per epoch run, both phases.
	History []Epoch
	// BestEpoch indexes History: the epoch whose model was kept.
	BestEpoch int
	// Disabled names the features switched off because the data could not
	// measure them (dt_prev for per-class samples).
	Disabled []string
	Duration time.Duration
}

// ref is one flow of a training stream: stream s, position p.
type ref struct{ s, p int32 }

// adversary perturbs windows on a tape: the part of training that the
// robustness evaluation reuses.
type adversary struct {
	m      *model.Model
	tape   *model.Tape
	f, t   int
	x      []float32 // [s][t][f] windows
	xadv   []float32
	dx     []float32
	attack []bool // flows an attacker controls (labelled attacks)
	advIdx []int  // attacker-controlled features
	lo, hi []float32
	std    []float32
	noG    *model.Params // all nil: input gradients only
	h0, c0 []float32     // per-window initial states; nil for zeros
}

// trainer holds the state of one run.
type trainer struct {
	adversary
	cfg  Config
	d    *dataset.Dataset
	rng  *rand.Rand
	nCls int

	trainS []dataset.Stream // Train split only
	valS   []dataset.Stream // Train and Val: what validation may see
	all    []ref            // every training flow
	byCls  [][]ref          // training flows per class

	g      *model.Params
	opt    *model.AdamW
	labels []int
	pmask  []bool // next-flow prediction targets
	off    []int  // features switched off

	// State replay: windows that start mid-stream may start from the final
	// state of an earlier window (of any host) instead of zeros.
	fresh  []bool      // per slot: the window starts its stream
	pool   [][]float32 // saved [h, c] states
	poolAt int

	episode episode
	prog    func(Progress)
	step    int
	steps   int
}

// Train trains a model on d's Train split, early-stopping on its Val split,
// and sets the class and anomaly thresholds and the exemplars from the
// deployed path's outputs on Val and Train. The Test split and held-out
// families are never read. progress, if not nil, is called after every
// optimizer step and after every epoch's validation.
func Train(ctx context.Context, d *dataset.Dataset, cfg Config, progress func(Progress)) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("train config: %w", err)
	}
	cfg = perFlowConfig(cfg)
	start := time.Now()
	tr, err := newTrainer(d, cfg, progress)
	if err != nil {
		return nil, err
	}
	res := &Result{Model: tr.m}
	for _, j := range tr.off {
		res.Disabled = append(res.Disabled, features.Default().Feature(j).Name)
	}
	spe := tr.stepsPerEpoch()
	tr.steps = spe * (cfg.PretrainEpochs + cfg.Epochs)
	phases := []struct {
		name   string
		epochs int
		w      Weights
	}{
		{PhasePretrain, cfg.PretrainEpochs, Weights{Predict: 1}},
		{PhaseTrain, cfg.Epochs, cfg.Weights},
	}
	for _, ph := range phases {
		if ph.epochs == 0 {
			continue
		}
		if ph.name == PhasePretrain && cfg.Weights.Predict == 0 {
			continue // nothing to pretrain for
		}
		es := &model.EarlyStopping{Patience: cfg.Patience, MinDelta: 1e-4}
		bestAt := len(res.History)
		for ep := 1; ep <= ph.epochs; ep++ {
			t0 := time.Now()
			e, err := tr.epoch(ctx, ph.name, ep, ph.epochs, spe, ph.w)
			if err != nil {
				return nil, err
			}
			e.ValPredict, e.ValClassify = tr.validate()
			e.ValMetric = ph.w.Predict*e.ValPredict + ph.w.Classify*e.ValClassify
			e.Seconds = time.Since(t0).Seconds()
			res.History = append(res.History, e)
			improved, stop := es.Observe(e.ValMetric, tr.m)
			if improved {
				bestAt = len(res.History) - 1
			}
			if tr.prog != nil {
				tr.prog(Progress{Phase: ph.name, Epoch: ep, Epochs: ph.epochs, Step: tr.step, Steps: tr.steps,
					ValMetric: e.ValMetric, BestEpoch: bestAt + 1, EarlyStopped: stop})
			}
			if stop {
				// Steps planned for the rest of this phase will not run.
				tr.steps -= spe * (ph.epochs - ep)
				break
			}
		}
		best, _ := es.Best()
		tr.m = best
		res.BestEpoch = bestAt
		// A fresh optimizer for the next phase: its moments belong to the
		// weights it was stepping, not to the restored best.
		tr.opt, _ = model.NewAdamW(tr.adamw())
	}
	tr.m.Name = "metaids"
	if err := tr.finish(); err != nil {
		return nil, err
	}
	res.Model = tr.m
	res.Duration = time.Since(start)
	return res, nil
}

func (tr *trainer) adamw() model.AdamWConfig {
	a := model.DefaultAdamW()
	a.LR = float32(tr.cfg.LR)
	a.WeightDecay = float32(tr.cfg.WeightDecay)
	return a
}

func newTrainer(d *dataset.Dataset, cfg Config, progress func(Progress)) (*trainer, error) {
	spec := features.Default()
	tr := &trainer{
		cfg: cfg, d: d, prog: progress,
		rng:  rand.New(rand.NewPCG(cfg.Seed, 0)),
		nCls: len(d.Classes),
	}
	tr.f, tr.t = features.NumFeatures, cfg.Window
	tr.trainS = d.Streams(d.In(dataset.Train))
	tr.valS = d.Streams(d.In(dataset.Train, dataset.Val))
	tr.byCls = make([][]ref, tr.nCls)
	for s, st := range tr.trainS {
		for p, i := range st.Idx {
			r := ref{int32(s), int32(p)}
			tr.all = append(tr.all, r)
			if c := d.Class[i]; c >= 0 {
				tr.byCls[c] = append(tr.byCls[c], r)
			}
		}
	}
	if len(tr.all) == 0 {
		return nil, fmt.Errorf("train: %w: the train split is empty", dataset.ErrNoData)
	}
	mcfg := model.Config{Name: "metaids", Features: tr.f, Hidden: cfg.Hidden, Classes: d.Classes, SpecHash: spec.Hash(), PerFlow: cfg.PerFlow}
	m, err := model.New(mcfg, rand.New(rand.NewPCG(cfg.Seed, 1)))
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	tr.m = m
	// Normalisation and the adversary's box come from the training stream
	// only. A feature the data cannot measure (NaN throughout) is switched
	// off: its weights stay zero and its normalisation makes any value the
	// scorer writes there vanish.
	var mean []float32
	mean, tr.std, tr.lo, tr.hi = stats(tr.trainS, tr.f)
	if !cfg.NormAll {
		normal := d.Streams(func(i int) bool { return d.Split[i] == dataset.Train && d.Class[i] <= 0 })
		if len(normal) > 0 {
			m, s, _, _ := stats(normal, tr.f)
			for j := range m {
				// A feature benign traffic never shows keeps the
				// statistics of all flows rather than none.
				if m[j] == m[j] {
					mean[j], tr.std[j] = m[j], s[j]
				}
			}
		}
	}
	for j := range tr.f {
		if math.IsNaN(float64(mean[j])) {
			tr.off = append(tr.off, j)
			mean[j], tr.std[j], tr.lo[j], tr.hi[j] = 0, 1e6, 0, 0
		}
	}
	if err := m.SetNorm(mean, tr.std); err != nil {
		return nil, fmt.Errorf("train: normalisation: %w", err)
	}
	tr.zeroOff()
	for _, j := range spec.AttackerControlled() {
		if !slices.Contains(tr.off, j) {
			tr.advIdx = append(tr.advIdx, j)
		}
	}
	maxS := cfg.Batch + cfg.Meta.Ways*(cfg.Meta.Shots+cfg.Meta.Queries) + 2*cfg.Meta.Queries
	tr.tape = model.NewTape(m, maxS, cfg.Window)
	tr.g = m.NewGrads()
	tr.noG = &model.Params{}
	if tr.opt, err = model.NewAdamW(tr.adamw()); err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	n := maxS * cfg.Window
	tr.x = make([]float32, n*tr.f)
	tr.xadv = make([]float32, cfg.Batch*cfg.Window*tr.f)
	tr.dx = make([]float32, cfg.Batch*cfg.Window*tr.f)
	tr.labels = make([]int, n)
	tr.pmask = make([]bool, n)
	tr.attack = make([]bool, n)
	tr.fresh = make([]bool, maxS)
	tr.h0 = make([]float32, maxS*cfg.Hidden)
	tr.c0 = make([]float32, maxS*cfg.Hidden)
	return tr, nil
}

// stats returns the mean, standard deviation (at least minStd), minimum and maximum of each feature over
// the streams' finite values; NaN where a feature has none.
func stats(streams []dataset.Stream, f int) (mean, std, lo, hi []float32) {
	sum, sq := make([]float64, f), make([]float64, f)
	cnt := make([]int, f)
	lo, hi = make([]float32, f), make([]float32, f)
	for j := range f {
		lo[j], hi[j] = float32(math.Inf(1)), float32(math.Inf(-1))
	}
	for _, s := range streams {
		for r := 0; r < len(s.X); r += f {
			for j, v := range s.X[r : r+f] {
				if v-v != 0 {
					continue
				}
				sum[j] += float64(v)
				cnt[j]++
				lo[j], hi[j] = min(lo[j], v), max(hi[j], v)
			}
		}
	}
	mean, std = make([]float32, f), make([]float32, f)
	for j := range f {
		if cnt[j] == 0 {
			mean[j], std[j] = float32(math.NaN()), float32(math.NaN())
			continue
		}
		mean[j] = float32(sum[j] / float64(cnt[j]))
	}
	for _, s := range streams {
		for r := 0; r < len(s.X); r += f {
			for j, v := range s.X[r : r+f] {
				if v-v == 0 {
					dv := float64(v) - float64(mean[j])
					sq[j] += dv * dv
				}
			}
		}
	}
	for j := range f {
		if cnt[j] > 0 {
			std[j] = float32(max(math.Sqrt(sq[j]/float64(cnt[j])), minStd))
		}
	}
	return mean, std, lo, hi
}

// minStd floors the normalisation's standard deviations. Features are
// log1p counts, fractions and 0/1 indicators, so a tenth is below any
// difference that matters; a feature (nearly) constant in training, such as
// a flag benign traffic never sets, then reads at most 10 per unit of
// change, which the anomaly score notices and the LSTM's gates survive. A
// floor of 1e-3 made such values 1000 and wrecked training.
const minStd = 0.1

// zeroOff keeps switched-off features out of the model: their input
// columns, classifier columns and predictor rows stay zero.
func (tr *trainer) zeroOff() {
	if len(tr.off) == 0 {
		return
	}
	p, f, h := &tr.m.P, tr.f, tr.m.Hidden()
	k := h + f
	for _, j := range tr.off {
		for r := range 4 * h {
			p.WeightIH[r*f+j] = 0
		}
		for c := range tr.nCls {
			p.ClsW[c*k+h+j] = 0
		}
		clear(p.PredW[j*h : (j+1)*h])
		p.PredB[j] = 0
	}
	tr.m.WeightsChanged()
}

func (tr *trainer) stepsPerEpoch() int {
	if tr.cfg.StepsPerEpoch > 0 {
		return tr.cfg.StepsPerEpoch
	}
	per := tr.cfg.Batch * (tr.cfg.Window - tr.cfg.BurnIn)
	return min(max((len(tr.all)+per-1)/per, 10), 200)
}

// fill writes the window of training stream r.s that ends at flow r.p (or
// starts at the stream's beginning, when r.p is earlier than a window) into
// slot, and returns r.p's position in it. A stream shorter than the window is
// padded with copies of its last flow, masked out of every loss: the LSTM is
// causal, so padding after the real flows changes none of their outputs.
func (tr *trainer) fill(slot int, r ref) int {
	st := &tr.trainS[r.s]
	T, F, B := tr.t, tr.f, tr.cfg.BurnIn
	start := max(0, int(r.p)-(T-1))
	n := min(T, st.Len()-start)
	cold := start > 0 && tr.cfg.ColdStart > 0 && tr.rng.Float64() < tr.cfg.ColdStart
	tr.fresh[slot] = start == 0 || cold // initStates gives fresh slots zero states
	x := tr.x[slot*T*F : (slot+1)*T*F]
	copy(x, st.X[start*F:(start+n)*F])
	for t := n; t < T; t++ {
		copy(x[t*F:(t+1)*F], x[(n-1)*F:n*F])
	}
	for t := range T {
		o := slot*T + t
		valid := t < n && (start == 0 || cold || t >= B)
		tr.labels[o], tr.pmask[o], tr.attack[o] = -1, false, false
		if !valid {
			continue
		}
		c := tr.d.Class[st.Idx[start+t]]
		tr.labels[o] = c
		tr.pmask[o] = c <= 0 || tr.cfg.PredictAttacks
		tr.attack[o] = c > 0
	}
	return int(r.p) - start
}

// sampleClassRef draws a training flow: a quarter of the time benign, else a
// family chosen with probability proportional to the square root of its
// size, so small families are seen often without drowning the large ones.
func (tr *trainer) sampleClassRef() ref {
	if len(tr.byCls[0]) > 0 && (tr.rng.Float64() < 0.25 || tr.nCls == 1) {
		return tr.byCls[0][tr.rng.IntN(len(tr.byCls[0]))]
	}
	var tot float64
	for c := 1; c < tr.nCls; c++ {
		tot += math.Sqrt(float64(len(tr.byCls[c])))
	}
	if tot == 0 {
		return tr.all[tr.rng.IntN(len(tr.all))]
	}
	u := tr.rng.Float64() * tot
	for c := 1; c < tr.nCls; c++ {
		w := math.Sqrt(float64(len(tr.byCls[c])))
		if u < w && len(tr.byCls[c]) > 0 {
			return tr.byCls[c][tr.rng.IntN(len(tr.byCls[c]))]
		}
		u -= w
	}
	c := tr.byCls[tr.nCls-1]
	return c[tr.rng.IntN(len(c))]
}

// epoch runs one epoch of the phase with objective weights w.
func (tr *trainer) epoch(ctx context.Context, phase string, ep, eps, steps int, w Weights) (Epoch, error) {
	e := Epoch{Phase: phase, Epoch: ep}
	for range steps {
		if err := ctx.Err(); err != nil {
			return e, err
		}
		l := tr.trainStep(w)
		e.Predict += l[0] / float64(steps)
		e.Classify += l[1] / float64(steps)
		e.Meta += l[2] / float64(steps)
		e.Adversarial += l[3] / float64(steps)
		tr.step++
		if tr.prog != nil {
			tr.prog(Progress{Phase: phase, Epoch: ep, Epochs: eps, Step: tr.step, Steps: tr.steps,
				Loss: w.Predict*l[0] + w.Classify*l[1] + w.Meta*l[2] + w.Adversarial*l[3], ValMetric: math.NaN()})
		}
	}
	return e, nil
}

// trainStep runs one optimizer step and returns the unweighted losses:
// prediction, classification, prototypical, adversarial.
func (tr *trainer) trainStep(w Weights) (loss [4]float64) {
	S := tr.cfg.Batch
	classes := w.Classify > 0 || w.Meta > 0 || w.Adversarial > 0
	for s := range S {
		if classes {
			tr.fill(s, tr.sampleClassRef())
		} else {
			tr.fill(s, tr.all[tr.rng.IntN(len(tr.all))])
		}
	}
	seqs := S
	if w.Meta > 0 {
		seqs += tr.sampleEpisode(S)
	}
	T, F, H := tr.t, tr.f, tr.cfg.Hidden
	tr.initStates(seqs)
	tr.g.Zero()
	tr.tape.Forward(tr.m, tr.x[:seqs*T*F], seqs, model.ForwardOptions{
		H0: tr.h0[:seqs*H], C0: tr.c0[:seqs*H], Dropout: float32(tr.cfg.Dropout), Rng: tr.rng})
	tr.saveStates(S)
	if w.Predict > 0 {
		loss[0] = tr.predictLoss(seqs, float32(w.Predict))
	}
	if w.Classify > 0 {
		loss[1], _, _ = tr.tape.ClassLoss(tr.labels[:seqs*T], float32(w.Classify))
	}
	if seqs > S {
		loss[2] = tr.metaLoss(float32(w.Meta))
	}
	tr.tape.Backward(tr.g, nil)
	if w.Adversarial > 0 && tr.cfg.Adv.Epsilon > 0 && slices.Contains(tr.attack[:S*T], true) {
		eps := float32(tr.cfg.Adv.Epsilon)
		tr.perturb(S, eps, tr.cfg.Adv.Steps)
		tr.tape.Forward(tr.m, tr.xadv, S, model.ForwardOptions{
			H0: tr.h0[:S*H], C0: tr.c0[:S*H], Dropout: float32(tr.cfg.Dropout), Rng: tr.rng})
		loss[3], _, _ = tr.tape.ClassLoss(tr.labels[:S*T], float32(w.Adversarial))
		tr.tape.Backward(tr.g, nil)
	}
	if l2 := float32(tr.cfg.PredictL2); l2 > 0 && w.Predict > 0 {
		for j, v := range tr.m.P.PredW {
			tr.g.PredW[j] += l2 * v
		}
	}
	if tr.cfg.ClipNorm > 0 {
		model.ClipGradNorm(tr.g, tr.cfg.ClipNorm)
	}
	tr.opt.Step(tr.m, tr.g)
	tr.zeroOff()
	return loss
}

// statePool bounds the saved states replayed as initial states.
const statePool = 1024

// initStates sets each window's initial state: zeros for a window that
// starts its host's stream (the scorer's state for a new host), and for one
// that starts mid-stream, with probability StateReplay, the final state of
// an earlier window of any host, else zeros. The scorer keeps a host's
// state for as long as the host is active, so a family nobody trained on
// (or a long benign stretch) can leave it anywhere; trained only from zero
// states, a model was seen to call every later attack of that host benign.
// Starting from states it did not make, the model learns to judge a flow by
// the host's recent flows (the burn-in) whatever came before.
func (tr *trainer) initStates(seqs int) {
	H := tr.cfg.Hidden
	for s := range seqs {
		h, c := tr.h0[s*H:(s+1)*H], tr.c0[s*H:(s+1)*H]
		if !tr.fresh[s] && len(tr.pool) > 0 && tr.rng.Float64() < tr.cfg.StateReplay {
			st := tr.pool[tr.rng.IntN(len(tr.pool))]
			copy(h, st[:H])
			copy(c, st[H:])
			continue
		}
		clear(h)
		clear(c)
	}
}

// saveStates keeps the final states of a few of the first S windows.
func (tr *trainer) saveStates(S int) {
	if tr.cfg.StateReplay == 0 {
		return
	}
	H := tr.cfg.Hidden
	for range min(8, S) {
		h, c := tr.tape.Final(tr.rng.IntN(S))
		st := make([]float32, 2*H)
		copy(st, h)
		copy(st[H:], c)
		if len(tr.pool) < statePool {
			tr.pool = append(tr.pool, st)
		} else {
			tr.pool[tr.poolAt] = st
			tr.poolAt = (tr.poolAt + 1) % statePool
		}
	}
}

// startStates returns forward options with the first S windows' initial
// states, for the adversary's passes over the same windows.
func (tr *adversary) startStates(S int) model.ForwardOptions {
	if tr.h0 == nil {
		return model.ForwardOptions{}
	}
	H := tr.m.Hidden()
	return model.ForwardOptions{H0: tr.h0[:S*H], C0: tr.c0[:S*H]}
}

// predictLoss is the next-flow loss over the prediction targets (pmask),
// ignoring missing features: the mean squared error of the predictor against
// the normalised flow, which is the scorer's anomaly score. The tape's own
// PredictLoss cannot mask flows, so the gradient goes in through DPred.
func (tr *trainer) predictLoss(seqs int, w float32) float64 {
	T, F := tr.t, tr.f
	var sum float64
	cnt := 0
	for s := range seqs {
		for t := range T {
			if !tr.pmask[s*T+t] {
				continue
			}
			pred, xn, dp := tr.tape.Pred(s, t), tr.tape.Normalized(s, t), tr.tape.DPred(s, t)
			raw := tr.x[(s*T+t)*F : (s*T+t+1)*F]
			for j := range F {
				if raw[j]-raw[j] != 0 {
					continue
				}
				d := pred[j] - xn[j]
				sum += float64(d * d)
				dp[j] = 2 * d
				cnt++
			}
		}
	}
	if cnt == 0 {
		return 0
	}
	scale := w / float32(cnt)
	for s := range seqs {
		for t := range T {
			if tr.pmask[s*T+t] {
				dp := tr.tape.DPred(s, t)
				for j := range dp {
					dp[j] *= scale
				}
			}
		}
	}
	// The anomaly score averages over all F features; report the loss in
	// the same units.
	return sum / float64(cnt)
}

// perturb writes into xadv the first S windows of x moved by PGD (FGSM for
// one step) to raise the classification loss, within eps standard
// deviations on the attacker-controlled features of attack flows, and
// inside the range of the training data.
func (tr *trainer) perturb(S int, eps float32, steps int) {
	tr.pgd(S, eps, steps, tr.labels[:S*tr.t], +1)
}

// pgd perturbs the first S windows of x into xadv. sign +1 ascends the
// classification loss of labels (untargeted, for training), −1 descends it
// (targeted evasion towards the labels given, for evaluation).
func (tr *adversary) pgd(S int, eps float32, steps int, labels []int, sign float32) {
	T, F := tr.t, tr.f
	n := S * T * F
	x, xa := tr.x[:n], tr.xadv[:n]
	copy(xa, x)
	alpha := eps
	if steps > 1 {
		alpha = 2.5 * eps / float32(steps)
	}
	for range steps {
		tr.tape.Forward(tr.m, xa, S, tr.startStates(S))
		tr.tape.ClassLoss(labels, 1)
		tr.tape.Backward(tr.noG, tr.dx[:n])
		for o := range S * T {
			if !tr.attack[o] {
				continue
			}
			for _, j := range tr.advIdx {
				k := o*F + j
				g := tr.dx[k] * sign
				if g == 0 || g-g != 0 {
					continue
				}
				step := alpha * tr.std[j]
				v := xa[k]
				if g > 0 {
					v += step
				} else {
					v -= step
				}
				b := eps * tr.std[j]
				v = min(max(v, x[k]-b), x[k]+b)
				xa[k] = min(max(v, tr.lo[j]), tr.hi[j])
			}
		}
	}
}

// validate runs the model over the validation streams as the scorer would
// and returns the mean anomaly score of the prediction targets among the
// validation flows and the class-balanced cross-entropy of the labelled ones.
func (tr *trainer) validate() (pred, ce float64) {
	var pn int
	sum := make([]float64, tr.nCls)
	cnt := make([]int, tr.nCls)
	d := tr.d
	infer(tr.m, tr.valS, func(i int) bool { return d.Split[i] == dataset.Val }, func(i int, o *out) {
		c := d.Class[i]
		if c <= 0 || tr.cfg.PredictAttacks {
			pred += float64(o.anomaly)
			pn++
		}
		if c >= 0 {
			// Capped at ln 100 per flow: a handful of validation flows of
			// a tiny family (two Heartbleed flows) would otherwise swing
			// the class-balanced mean, and early stopping with it.
			sum[c] -= math.Log(max(float64(o.probs[c]), 0.01))
			cnt[c]++
		}
	})
	if pn > 0 {
		pred /= float64(pn)
	}
	k := 0
	for c := range sum {
		if cnt[c] > 0 {
			ce += sum[c] / float64(cnt[c])
			k++
		}
	}
	if k > 0 {
		ce /= float64(k)
	}
	return pred, ce
}
