package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync/atomic"

	"github.com/metaids/metaids/schemas"
)

// Params holds the trainable tensors, row-major, in PyTorch's layout and gate
// order (torch.nn.LSTMCell and torch.nn.Linear), so weights can be exchanged
// with a reference implementation unchanged. F is the feature count, H the
// hidden size and C the number of classes.
//
// A Params also holds gradients (see Model.NewGrads) and optimizer moments;
// a nil tensor there means "not trained" (the head-only fine-tuning leaves the
// encoder's nil).
type Params struct {
	WeightIH []float32 // 4H×F, row blocks i, f, g, o
	WeightHH []float32 // 4H×H, row blocks i, f, g, o
	BiasIH   []float32 // 4H
	BiasHH   []float32 // 4H
	PredW    []float32 // F×H: next-flow predictor from h_{t-1} to normalised x_t
	PredB    []float32 // F
	ClsW     []float32 // C×(H+F): classifier over z = [h_t, normalised x_t]
	ClsB     []float32 // C
}

// Tensor names, as in the ModelUpdate record and the model file. They follow
// the PyTorch state_dict of the reference (testdata/golden.py).
const (
	TensorWeightIH = "lstm.weight_ih"
	TensorWeightHH = "lstm.weight_hh"
	TensorBiasIH   = "lstm.bias_ih"
	TensorBiasHH   = "lstm.bias_hh"
	TensorPredW    = "predictor.weight"
	TensorPredB    = "predictor.bias"
	TensorClsW     = "classifier.weight"
	TensorClsB     = "classifier.bias"
)

// Tensor is a named view of one parameter tensor. Vectors have Cols == 1.
type Tensor struct {
	Name       string
	Rows, Cols int
	Data       []float32
}

// tensors lists p's tensors with their names and shapes for a model of f
// features, h hidden units and c classes; the order is fixed and is the
// order of serialisation.
func (p *Params) tensors(f, h, c int) []Tensor {
	return []Tensor{
		{TensorWeightIH, 4 * h, f, p.WeightIH},
		{TensorWeightHH, 4 * h, h, p.WeightHH},
		{TensorBiasIH, 4 * h, 1, p.BiasIH},
		{TensorBiasHH, 4 * h, 1, p.BiasHH},
		{TensorPredW, f, h, p.PredW},
		{TensorPredB, f, 1, p.PredB},
		{TensorClsW, c, h + f, p.ClsW},
		{TensorClsB, c, 1, p.ClsB},
	}
}

// slots returns pointers to p's tensors in the order of tensors, so generic
// code (the optimizer, clipping) can walk them.
func (p *Params) slots() []*[]float32 {
	return []*[]float32{&p.WeightIH, &p.WeightHH, &p.BiasIH, &p.BiasHH, &p.PredW, &p.PredB, &p.ClsW, &p.ClsB}
}

// Zero sets every element of p's non-nil tensors to 0, to reuse a gradient.
func (p *Params) Zero() {
	for _, s := range p.slots() {
		clear(*s)
	}
}

// Model is the LSTM encoder with its two heads, the feature normalisation and
// the metadata that travels with it. Create one with New, FromUpdate or Read.
//
// A Model is safe for concurrent use by Step and the head functions as long
// as nothing changes it; training and fine-tuning change it in place.
type Model struct {
	Name          string // the models-topic key
	Version       int64
	ParentVersion int64 // the version this one was derived from, 0 if none
	CreatedNs     int64
	SpecHash      string // the feature spec the model expects
	// Thresholds[k] is the probability of class k above which the scorer
	// alerts; index 0 (benign) is unused. len(Thresholds) == NumClasses().
	Thresholds []float32
	// AnomalyThreshold is the anomaly score (mean squared prediction error in
	// normalised units) above which the scorer alerts.
	AnomalyThreshold float32
	// Exemplars are stored embeddings of labelled flows, replayed by the
	// adapter so fine-tuning does not forget known classes.
	Exemplars []schemas.Exemplar
	// GateBenign are embeddings of benign flows the head was never fitted
	// on (training's validation split), EmbeddingDim values per flow, one
	// after another. The adapter's gate measures a candidate's benign
	// false-positive rate on them as well as on its held-back exemplars:
	// those are a quarter of 64, too few to resolve a tolerance of 0.02.
	// The head never trains on them, so they stay unbiased through any
	// number of updates; a new encoder brings its own. Optional.
	GateBenign []float32
	// GateKnown are embeddings of flows of the known attack classes the
	// head was never fitted on (training's validation split), each with its
	// class. The gate measures whether a candidate still names each known
	// class on them as well as on its held-back exemplars, a quarter of 64:
	// there one flow is 0.0625 and a family relabelled by a few poisoned
	// labels can lose a tenth of its flows unseen. Like GateBenign it
	// belongs to the encoder. Optional.
	GateKnown []schemas.Exemplar
	// Campaigns name the alerting flows of hosts that analysts labelled
	// (see Campaign); the adapter writes them with the head. At most
	// MaxCampaigns.
	Campaigns []Campaign
	// P are the weights. Code that writes to them other than through this
	// package must call WeightsChanged afterwards.
	P Params

	features, hidden int
	perFlow          bool // Config.PerFlow: state reset before every step
	classes          []string
	mean, std        []float32
	invStd           []float32 // 1/std, what normalisation multiplies by

	// gen counts weight changes, so a Workspace knows when its packed copy
	// of the weights is stale.
	gen atomic.Uint64
}

// New returns a model of cfg's shape with PyTorch's default initialisation:
// every LSTM tensor uniform in ±1/√H, each Linear uniform in ±1/√(fan in).
// Normalisation is the identity (mean 0, std 1) until SetNorm.
func New(cfg Config, rng *rand.Rand) (*Model, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("model config: %w", err)
	}
	f, h, c := cfg.Features, cfg.Hidden, len(cfg.Classes)
	m := newShaped(f, h, c)
	m.Name = cfg.Name
	m.SpecHash = cfg.SpecHash
	m.perFlow = cfg.PerFlow
	copy(m.classes, cfg.Classes)
	for k := range m.Thresholds {
		m.Thresholds[k] = 0.5
	}
	m.AnomalyThreshold = 1
	for i := range m.std {
		m.std[i], m.invStd[i] = 1, 1
	}
	uniform := func(x []float32, fanIn int) {
		k := 1 / math.Sqrt(float64(fanIn))
		for i := range x {
			x[i] = float32((2*rng.Float64() - 1) * k)
		}
	}
	uniform(m.P.WeightIH, h)
	uniform(m.P.WeightHH, h)
	uniform(m.P.BiasIH, h)
	uniform(m.P.BiasHH, h)
	uniform(m.P.PredW, h)
	uniform(m.P.PredB, h)
	uniform(m.P.ClsW, h+f)
	uniform(m.P.ClsB, h+f)
	return m, nil
}

// newShaped allocates a zero model of the given shape.
func newShaped(f, h, c int) *Model {
	return &Model{
		features:   f,
		hidden:     h,
		classes:    make([]string, c),
		Thresholds: make([]float32, c),
		mean:       make([]float32, f),
		std:        make([]float32, f),
		invStd:     make([]float32, f),
		P:          *newParams(f, h, c),
	}
}

func newParams(f, h, c int) *Params {
	return &Params{
		WeightIH: make([]float32, 4*h*f),
		WeightHH: make([]float32, 4*h*h),
		BiasIH:   make([]float32, 4*h),
		BiasHH:   make([]float32, 4*h),
		PredW:    make([]float32, f*h),
		PredB:    make([]float32, f),
		ClsW:     make([]float32, c*(h+f)),
		ClsB:     make([]float32, c),
	}
}

// Features returns F, the raw feature vector length.
func (m *Model) Features() int { return m.features }

// Hidden returns H, the LSTM's hidden size.
func (m *Model) Hidden() int { return m.hidden }

// PerFlow reports whether m is a per-flow baseline (Config.PerFlow): Step
// and Tape reset the state before every flow, so h_{t−1} is always zero,
// the predictor's guess is its bias alone and the embedding's h half
// depends on the current flow only.
func (m *Model) PerFlow() bool { return m.perFlow }

// EmbeddingDim returns H+F, the length of an embedding z = [h_t, x̂_t].
func (m *Model) EmbeddingDim() int { return m.hidden + m.features }

// NumClasses returns C.
func (m *Model) NumClasses() int { return len(m.classes) }

// Classes returns the class names in output order. The caller must not
// modify the slice.
func (m *Model) Classes() []string { return m.classes }

// ClassIndex returns the index of the named class.
func (m *Model) ClassIndex(name string) (int, bool) {
	i := slices.Index(m.classes, name)
	return i, i >= 0
}

// Norm returns the per-feature mean and standard deviation that Step and
// Tape.Forward apply to raw features: x̂ = (x − mean)/std. The caller must
// not modify the slices; use SetNorm.
func (m *Model) Norm() (mean, std []float32) { return m.mean, m.std }

// SetNorm sets the normalisation statistics. Every std must be positive and
// everything finite.
func (m *Model) SetNorm(mean, std []float32) error {
	if len(mean) != m.features || len(std) != m.features {
		return fmt.Errorf("normalisation: %w: got %d means and %d stds, want %d", ErrShape, len(mean), len(std), m.features)
	}
	for i := range mean {
		if !finite32(mean[i]) || !finite32(std[i]) {
			return fmt.Errorf("normalisation of feature %d: %w", i, ErrNonFinite)
		}
		if !(std[i] > 0) || !finite32(1/std[i]) {
			return fmt.Errorf("normalisation of feature %d: std must be positive, got %g", i, std[i])
		}
	}
	copy(m.mean, mean)
	copy(m.std, std)
	for i, s := range std {
		m.invStd[i] = 1 / s
	}
	m.WeightsChanged()
	return nil
}

// FitNorm returns the per-feature mean and standard deviation of n raw
// feature vectors x (n×F row-major), for SetNorm. A feature whose spread is
// below minStd gets std minStd, so constant features do not divide by zero.
func FitNorm(x []float32, f int, minStd float64) (mean, std []float32) {
	if f <= 0 || len(x)%f != 0 {
		panic(fmt.Sprintf("model: FitNorm: %d values are not rows of %d features", len(x), f))
	}
	n := len(x) / f
	mean, std = make([]float32, f), make([]float32, f)
	if n == 0 {
		for j := range std {
			std[j] = float32(max(minStd, 1))
		}
		return mean, std
	}
	sum, sq := make([]float64, f), make([]float64, f)
	for r := range n {
		for j, v := range x[r*f : (r+1)*f] {
			sum[j] += float64(v)
		}
	}
	for j := range sum {
		sum[j] /= float64(n)
	}
	for r := range n {
		for j, v := range x[r*f : (r+1)*f] {
			d := float64(v) - sum[j]
			sq[j] += d * d
		}
	}
	for j := range f {
		mean[j] = float32(sum[j])
		std[j] = float32(max(math.Sqrt(sq[j]/float64(n)), minStd))
	}
	return mean, std
}

// Tensors returns views of the model's parameter tensors with their names and
// shapes, in serialisation order.
func (m *Model) Tensors() []Tensor {
	return m.P.tensors(m.features, m.hidden, len(m.classes))
}

// NewGrads returns a zero Params of the model's shape, for gradients.
func (m *Model) NewGrads() *Params {
	return newParams(m.features, m.hidden, len(m.classes))
}

// NewHeadGrads returns a Params with only the classifier tensors allocated,
// for head-only training: the optimizer leaves nil tensors alone.
func (m *Model) NewHeadGrads() *Params {
	return &Params{
		ClsW: make([]float32, len(m.P.ClsW)),
		ClsB: make([]float32, len(m.P.ClsB)),
	}
}

// WeightsChanged tells cached copies of the weights (in Workspaces) that they
// are stale. Everything in this package that changes weights calls it.
func (m *Model) WeightsChanged() { m.gen.Add(1) }

// Clone returns a deep copy of m, so a fine-tuned candidate can be built
// while the original keeps serving.
func (m *Model) Clone() *Model {
	c := newShaped(m.features, m.hidden, len(m.classes))
	c.Name, c.Version, c.ParentVersion, c.CreatedNs = m.Name, m.Version, m.ParentVersion, m.CreatedNs
	c.SpecHash = m.SpecHash
	c.perFlow = m.perFlow
	c.AnomalyThreshold = m.AnomalyThreshold
	copy(c.classes, m.classes)
	copy(c.Thresholds, m.Thresholds)
	copy(c.mean, m.mean)
	copy(c.std, m.std)
	copy(c.invStd, m.invStd)
	c.Exemplars = cloneExemplars(m.Exemplars)
	c.GateBenign = slices.Clone(m.GateBenign)
	c.GateKnown = cloneExemplars(m.GateKnown)
	c.Campaigns = cloneCampaigns(m.Campaigns)
	dst, src := c.P.slots(), m.P.slots()
	for i := range dst {
		copy(*dst[i], *src[i])
	}
	return c
}

func cloneExemplars(ex []schemas.Exemplar) []schemas.Exemplar {
	if ex == nil {
		return nil
	}
	out := make([]schemas.Exemplar, len(ex))
	for i, e := range ex {
		out[i] = schemas.Exemplar{Class: e.Class, Embedding: slices.Clone(e.Embedding)}
	}
	return out
}

// finite32 reports whether v is neither NaN nor infinite: v−v is 0 exactly
// then, and NaN otherwise. It is cheap enough for the step's hot loop.
func finite32(v float32) bool { return v-v == 0 }
