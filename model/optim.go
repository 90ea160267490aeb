package model

import (
	"errors"
	"fmt"
	"math"
)

// AdamWConfig holds AdamW's hyper-parameters (Loshchilov & Hutter, as in
// torch.optim.AdamW).
type AdamWConfig struct {
	// LR is the learning rate. Default 1e-3.
	LR float32 `yaml:"lr"`
	// Beta1 and Beta2 are the moment decay rates. Defaults 0.9 and 0.999.
	Beta1 float32 `yaml:"beta1"`
	Beta2 float32 `yaml:"beta2"`
	// Eps keeps the update finite where the second moment is 0. Default 1e-8.
	Eps float32 `yaml:"eps"`
	// WeightDecay is the decoupled decay, applied to weight matrices but not
	// to biases (decaying biases only hurts). Default 0.01.
	WeightDecay float32 `yaml:"weight_decay"`
}

// DefaultAdamW returns the defaults documented on AdamWConfig's fields.
func DefaultAdamW() AdamWConfig {
	return AdamWConfig{LR: 1e-3, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01}
}

// Validate reports every problem with c, each naming the field.
func (c AdamWConfig) Validate() error {
	var errs []error
	if !(c.LR > 0) || !finite32(c.LR) {
		errs = append(errs, fmt.Errorf("lr: must be positive, got %g", c.LR))
	}
	if !(c.Beta1 >= 0 && c.Beta1 < 1) {
		errs = append(errs, fmt.Errorf("beta1: must be in [0, 1), got %g", c.Beta1))
	}
	if !(c.Beta2 >= 0 && c.Beta2 < 1) {
		errs = append(errs, fmt.Errorf("beta2: must be in [0, 1), got %g", c.Beta2))
	}
	if !(c.Eps > 0) || !finite32(c.Eps) {
		errs = append(errs, fmt.Errorf("eps: must be positive, got %g", c.Eps))
	}
	if !(c.WeightDecay >= 0) || !finite32(c.WeightDecay) {
		errs = append(errs, fmt.Errorf("weight_decay: must be non-negative, got %g", c.WeightDecay))
	}
	return errors.Join(errs...)
}

// AdamW is the optimizer state over a model's parameters: the step count and
// the first and second moments, allocated on first use.
type AdamW struct {
	cfg  AdamWConfig
	t    int
	m, v Params
}

// NewAdamW returns an optimizer with cfg, which must be valid.
func NewAdamW(cfg AdamWConfig) (*AdamW, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("adamw: %w", err)
	}
	return &AdamW{cfg: cfg}, nil
}

// Step applies one update to m's parameters from the gradients g. Tensors
// that are nil in g are left alone (a frozen encoder); a tensor whose size
// changed since the last step (a class was added) restarts its moments.
func (o *AdamW) Step(m *Model, g *Params) {
	o.t++
	c := o.cfg
	bc1 := 1 - math.Pow(float64(c.Beta1), float64(o.t))
	bc2 := 1 - math.Pow(float64(c.Beta2), float64(o.t))
	lr := float64(c.LR)
	ps, gs, ms, vs := m.P.slots(), g.slots(), o.m.slots(), o.v.slots()
	for i := range ps {
		p, gr := *ps[i], *gs[i]
		if gr == nil {
			continue
		}
		if len(gr) != len(p) {
			panic(fmt.Sprintf("model: AdamW.Step: gradient of %d values for a tensor of %d", len(gr), len(p)))
		}
		if len(*ms[i]) != len(p) {
			*ms[i], *vs[i] = make([]float32, len(p)), make([]float32, len(p))
		}
		mm, vv := *ms[i], *vs[i]
		decay := float32(1)
		if isWeight(i) {
			decay = float32(1 - lr*float64(c.WeightDecay))
		}
		for j, gv := range gr {
			mm[j] = c.Beta1*mm[j] + (1-c.Beta1)*gv
			vv[j] = c.Beta2*vv[j] + (1-c.Beta2)*gv*gv
			mh := float64(mm[j]) / bc1
			vh := float64(vv[j]) / bc2
			p[j] = p[j]*decay - float32(lr*mh/(math.Sqrt(vh)+float64(c.Eps)))
		}
	}
	m.WeightsChanged()
}

// isWeight reports whether slot i of Params.slots is a weight matrix.
func isWeight(i int) bool { return i == 0 || i == 1 || i == 4 || i == 6 }

// ClipGradNorm scales g so that the L2 norm over all its non-nil tensors is
// at most maxNorm (torch.nn.utils.clip_grad_norm_), and returns the norm
// before clipping. maxNorm ≤ 0 only measures.
func ClipGradNorm(g *Params, maxNorm float64) float64 {
	var sq float64
	for _, s := range g.slots() {
		for _, v := range *s {
			sq += float64(v) * float64(v)
		}
	}
	norm := math.Sqrt(sq)
	if maxNorm > 0 && norm > maxNorm {
		scale := float32(maxNorm / (norm + 1e-6))
		for _, s := range g.slots() {
			for j := range *s {
				(*s)[j] *= scale
			}
		}
	}
	return norm
}

// EarlyStopping tracks a validation metric across epochs, keeps a copy of
// the best model and says when to stop: after Patience epochs without an
// improvement of more than MinDelta.
type EarlyStopping struct {
	Patience       int
	MinDelta       float64
	HigherIsBetter bool // true for accuracy, false for a loss

	best   float64
	bad    int
	seen   bool
	bestM  *Model
	epochs int
}

// Observe records one epoch's metric for m and reports whether it improved
// on the best so far and whether training should stop.
func (e *EarlyStopping) Observe(metric float64, m *Model) (improved, stop bool) {
	e.epochs++
	better := !e.seen
	if e.seen {
		if e.HigherIsBetter {
			better = metric > e.best+e.MinDelta
		} else {
			better = metric < e.best-e.MinDelta
		}
	}
	if better && !math.IsNaN(metric) {
		e.best, e.bad, e.seen = metric, 0, true
		e.bestM = m.Clone()
		return true, false
	}
	e.bad++
	return false, e.bad > e.Patience
}

// Best returns a copy of the best model observed and its metric; nil before
// any observation.
func (e *EarlyStopping) Best() (*Model, float64) { return e.bestM, e.best }
