package model

import (
	"fmt"
	"math/rand/v2"
)

// Tape runs the model over windows of flows (S hosts × T consecutive flows
// each) and keeps what backpropagation through time needs. It is the
// building block of `metaids train`: Forward, then any mix of the loss
// methods (or gradients of your own added through DEmb, DLogits and DPred),
// then Backward.
//
// Inputs and per-flow outputs are addressed by (s, t): sequence s, step t.
// A Tape is reused across batches; it allocates only in NewTape.
//
// A per-flow model (Model.PerFlow) runs on the same windows, each flow as a
// window of its own that starts from a zero state: (s, t) addresses the same
// flow, and the losses and gradients mean the same, but nothing flows from
// one step to the next.
type Tape struct {
	m  *Model
	tp *tape[float32] // the tape of the last Forward: seq or flat
	// seq holds windows of n flows; flat, made on the first per-flow
	// Forward, holds maxS·n windows of one flow. Both lay the flows of a
	// batch out in the same order, [s][t] flattened, so the inputs, labels
	// and masks of one serve the other unchanged.
	seq, flat *tape[float32]
	maxS, n   int
	s         int // sequences of the last Forward
}

// NewTape returns a tape for windows of steps flows and up to maxSeqs
// sequences of m's shape.
func NewTape(m *Model, maxSeqs, steps int) *Tape {
	seq := newTape[float32](m.features, m.hidden, len(m.classes), maxSeqs, steps)
	return &Tape{m: m, tp: seq, seq: seq, maxS: maxSeqs, n: steps}
}

// ForwardOptions are the optional parts of a forward pass.
type ForwardOptions struct {
	// H0 and C0 are the sequences' initial states (S×H); nil means zeros.
	// Carrying the final states of one window into the next gives truncated
	// BPTT over long streams; no gradient flows into them.
	// A per-flow model ignores them.
	H0, C0 []float32
	// Dropout is the probability of zeroing each embedding element before
	// the classifier (survivors are scaled by 1/(1−Dropout)). 0 at
	// evaluation.
	Dropout float32
	// Rng draws the dropout masks; required when Dropout > 0.
	Rng *rand.Rand
}

// Forward runs m over seqs sequences of raw features x, laid out [s][t][f]
// (S×T×F), and clears the gradients. m must have the shape the tape was made
// for; it is used again by Backward.
func (tp *Tape) Forward(m *Model, x []float32, seqs int, opt ForwardOptions) {
	if m.features != tp.tp.f || m.hidden != tp.tp.h || len(m.classes) != tp.tp.c {
		panic(fmt.Sprintf("model: Tape.Forward: model of F=%d H=%d C=%d on a tape for F=%d H=%d C=%d",
			m.features, m.hidden, len(m.classes), tp.tp.f, tp.tp.h, tp.tp.c))
	}
	if opt.Dropout < 0 || opt.Dropout >= 1 {
		panic(fmt.Sprintf("model: Tape.Forward: dropout %g outside [0, 1)", opt.Dropout))
	}
	tp.m = m
	if !m.perFlow {
		tp.tp = tp.seq
		tp.tp.forward(aliasParams(&m.P), m.mean, m.invStd, x, seqs, opt.H0, opt.C0, opt.Dropout, opt.Rng)
		tp.s = tp.tp.s
		return
	}
	if seqs < 1 || seqs > tp.maxS {
		panic(fmt.Sprintf("model: Tape.Forward: %d sequences on a tape for %d", seqs, tp.maxS))
	}
	if tp.flat == nil {
		tp.flat = newTape[float32](m.features, m.hidden, len(m.classes), tp.maxS*tp.n, 1)
	}
	tp.tp = tp.flat
	tp.tp.forward(aliasParams(&m.P), m.mean, m.invStd, x, seqs*tp.n, nil, nil, opt.Dropout, opt.Rng)
	tp.s = seqs
}

// Seqs returns the number of sequences of the last Forward.
func (tp *Tape) Seqs() int { return tp.s }

// Steps returns the window length T.
func (tp *Tape) Steps() int { return tp.n }

func (tp *Tape) check(s, t int) {
	if s < 0 || s >= tp.s || t < 0 || t >= tp.n {
		panic(fmt.Sprintf("model: Tape: (s, t) = (%d, %d) outside %d×%d", s, t, tp.s, tp.n))
	}
}

// at returns the offset of flow (s, t) in a buffer of width w of the tape
// in use.
func (tp *Tape) at(s, t, w int) int {
	if tp.tp == tp.flat {
		return tp.tp.at(s*tp.n+t, 0, w)
	}
	return tp.tp.at(s, t, w)
}

func (tp *Tape) view(buf []float32, s, t, w int) []float32 {
	tp.check(s, t)
	o := tp.at(s, t, w)
	return buf[o : o+w : o+w]
}

// Emb returns the embedding z_t = [h_t, x̂_t] of sequence s at step t (before
// dropout).
func (tp *Tape) Emb(s, t int) []float32 { return tp.view(tp.tp.z, s, t, tp.tp.k) }

// Logits returns the classifier's logits (after dropout of its input).
func (tp *Tape) Logits(s, t int) []float32 { return tp.view(tp.tp.logits, s, t, tp.tp.c) }

// Pred returns the predictor's guess of x̂_t, made from h_{t−1}.
func (tp *Tape) Pred(s, t int) []float32 { return tp.view(tp.tp.pred, s, t, tp.tp.f) }

// Normalized returns x̂_t, the normalised input.
func (tp *Tape) Normalized(s, t int) []float32 { return tp.view(tp.tp.xn, s, t, tp.tp.f) }

// DEmb returns the gradient slot dL/dz_t; add a loss's gradient into it
// (the prototypical loss does).
func (tp *Tape) DEmb(s, t int) []float32 { return tp.view(tp.tp.demb, s, t, tp.tp.k) }

// DLogits returns the gradient slot dL/dlogits_t.
func (tp *Tape) DLogits(s, t int) []float32 { return tp.view(tp.tp.dlog, s, t, tp.tp.c) }

// DPred returns the gradient slot dL/dpred_t.
func (tp *Tape) DPred(s, t int) []float32 { return tp.view(tp.tp.dpred, s, t, tp.tp.f) }

// Final returns sequence s's state after the last step, for H0 and C0 of
// the next window.
func (tp *Tape) Final(s int) (h, c []float32) {
	tp.check(s, 0)
	i := s
	if tp.tp == tp.flat {
		i = s*tp.n + tp.n - 1
	}
	o := (tp.tp.n*tp.tp.s + i) * tp.tp.h
	return tp.tp.hs[o : o+tp.tp.h], tp.tp.cs[o : o+tp.tp.h]
}

// ZeroGrad clears the gradient slots; Forward does it too.
func (tp *Tape) ZeroGrad() { tp.tp.zeroGrad() }

// PredictLoss adds weight × the next-flow loss to the gradients and returns
// the loss: the mean over sequences, steps t ≥ from and observed features of
// the squared error of the prediction against x̂_t. (The scorer's anomaly
// score is the same error for one flow.) from > 0 skips predictions made
// from a zero state, when windows do not start at the beginning of a stream.
// A missing (non-finite) raw feature has nothing to be predicted against and
// is left out.
func (tp *Tape) PredictLoss(weight float32, from int) float64 {
	if from < 0 || from >= tp.n {
		panic(fmt.Sprintf("model: PredictLoss: from = %d outside the window of %d steps", from, tp.n))
	}
	if tp.tp == tp.flat {
		return tp.tp.predictLoss(weight, func(i, _ int) bool { return i%tp.n >= from })
	}
	return tp.tp.predictLoss(weight, func(_, t int) bool { return t >= from })
}

// PredictLossMask is PredictLoss over the flows with mask[s·T+t] set, for
// a trainer that predicts only some flows (say, benign ones).
func (tp *Tape) PredictLossMask(weight float32, mask []bool) float64 {
	if len(mask) != tp.s*tp.n {
		panic(fmt.Sprintf("model: PredictLossMask: %d mask entries for %d sequences of %d steps", len(mask), tp.s, tp.n))
	}
	return tp.tp.predictLoss(weight, func(s, t int) bool { return mask[s*tp.tp.n+t] })
}

// ClassLoss adds weight × the classifier's mean cross-entropy over labelled
// flows to the gradients. labels[s·T+t] is the class of sequence s's flow t,
// or −1 for none. It returns the loss and how many of the n labelled flows
// the arg max got right.
func (tp *Tape) ClassLoss(labels []int, weight float32) (loss float64, correct, n int) {
	return tp.tp.classLoss(labels, weight)
}

// Backward propagates the accumulated output gradients through time. It adds
// the parameter gradients to g (allocate with Model.NewGrads; tensors left
// nil are not computed) and, unless dx is nil, writes dL/dx for the raw
// inputs into dx ([s][t][f], like Forward's x), which is what FGSM or PGD
// adversarial augmentation steps along.
func (tp *Tape) Backward(g *Params, dx []float32) {
	tp.tp.backward(aliasParams(g), dx)
}
