package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
)

// The classifier head on its own: what the adapter uses. Embeddings come from
// the scorer (StepOut.Emb) or the exemplars; the encoder stays frozen.

// checkEmb panics unless emb is whole rows of the embedding length.
func (m *Model) checkEmb(fn string, emb []float32) int {
	d := m.EmbeddingDim()
	if len(emb)%d != 0 {
		panic(fmt.Sprintf("model: %s: %d values are not rows of %d", fn, len(emb), d))
	}
	return len(emb) / d
}

// HeadLogits writes the classifier's logits for the embeddings emb (n×(H+F))
// into dst, reusing its capacity, and returns it (n×C).
func (m *Model) HeadLogits(dst, emb []float32) []float32 {
	n := m.checkEmb("HeadLogits", emb)
	c, d := m.NumClasses(), m.EmbeddingDim()
	dst = grow(dst, n*c)
	for i := range n {
		copy(dst[i*c:(i+1)*c], m.P.ClsB)
	}
	gemm(false, true, n, c, d, 1, emb, d, m.P.ClsW, d, 1, dst, c)
	return dst
}

// HeadProbs is HeadLogits followed by a softmax per row.
func (m *Model) HeadProbs(dst, emb []float32) []float32 {
	dst = m.HeadLogits(dst, emb)
	c := m.NumClasses()
	for i := 0; i < len(dst); i += c {
		softmax(dst[i:i+c], dst[i:i+c])
	}
	return dst
}

// softmax writes the softmax of logits into dst (which may be logits).
func softmax(dst, logits []float32) {
	mx := logits[0]
	for _, v := range logits[1:] {
		mx = max(mx, v)
	}
	var sum float32
	for j, v := range logits {
		e := expf(v - mx)
		dst[j] = e
		sum += e
	}
	inv := 1 / sum
	for j := range dst {
		dst[j] *= inv
	}
}

// FineTuneConfig controls FineTuneHead.
type FineTuneConfig struct {
	// Steps is the number of optimizer steps. Default 200.
	Steps int `yaml:"steps"`
	// BatchSize is the number of examples per step, drawn without
	// replacement each pass; 0 uses all of them every step. Default 256.
	BatchSize int `yaml:"batch_size"`
	// Balance weights each class by the inverse of its count, so a new
	// family's handful of examples is not drowned by the replayed
	// exemplars. Default true.
	Balance bool `yaml:"balance"`
	// ClipNorm clips the gradient's global norm; 0 turns it off. Default 5.
	ClipNorm float64 `yaml:"clip_norm"`
	// AdamW is the optimizer. Default DefaultAdamW with LR 1e-2.
	AdamW AdamWConfig `yaml:"adamw"`
}

// DefaultFineTune returns the defaults documented on FineTuneConfig.
func DefaultFineTune() FineTuneConfig {
	opt := DefaultAdamW()
	opt.LR = 1e-2
	return FineTuneConfig{Steps: 200, BatchSize: 256, Balance: true, ClipNorm: 5, AdamW: opt}
}

// FineTuneHead trains the classifier head (and nothing else) with AdamW on
// (embedding, class) pairs: emb is n×(H+F), labels[i] the class of row i. It
// returns the mean cross-entropy over all pairs after training. The pairs
// come from outside (labels, exemplars), so they are checked and a bad one is
// an error, not a panic.
func (m *Model) FineTuneHead(emb []float32, labels []int, cfg FineTuneConfig, rng *rand.Rand) (float64, error) {
	d, c := m.EmbeddingDim(), m.NumClasses()
	if len(emb)%d != 0 || len(emb)/d != len(labels) || len(labels) == 0 {
		return 0, fmt.Errorf("fine-tune head: %w: %d embedding values for %d labels of %d", ErrShape, len(emb), len(labels), d)
	}
	if cfg.Steps < 0 || cfg.BatchSize < 0 {
		return 0, fmt.Errorf("fine-tune head: steps %d and batch size %d must not be negative", cfg.Steps, cfg.BatchSize)
	}
	counts := make([]int, c)
	for i, y := range labels {
		if y < 0 || y >= c {
			return 0, fmt.Errorf("fine-tune head: label %d of row %d outside the %d classes", y, i, c)
		}
		counts[y]++
	}
	for i, v := range emb {
		if !finite32(v) {
			return 0, fmt.Errorf("fine-tune head: embedding row %d: %w", i/d, ErrNonFinite)
		}
	}
	opt, err := NewAdamW(cfg.AdamW)
	if err != nil {
		return 0, fmt.Errorf("fine-tune head: %w", err)
	}
	weight := make([]float32, c)
	for k, n := range counts {
		weight[k] = 1
		if cfg.Balance && n > 0 {
			weight[k] = float32(len(labels)) / float32(n*nonZero(counts))
		}
	}
	n := len(labels)
	bs := cfg.BatchSize
	if bs == 0 || bs > n {
		bs = n
	}
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	g := m.NewHeadGrads()
	batch := make([]float32, bs*d)
	by := make([]int, bs)
	pos := n
	for range cfg.Steps {
		for i := range bs {
			if pos == n {
				rng.Shuffle(n, func(a, b int) { order[a], order[b] = order[b], order[a] })
				pos = 0
			}
			r := order[pos]
			pos++
			copy(batch[i*d:(i+1)*d], emb[r*d:(r+1)*d])
			by[i] = labels[r]
		}
		g.Zero()
		m.headGrad(g, batch, by, weight)
		if cfg.ClipNorm > 0 {
			ClipGradNorm(g, cfg.ClipNorm)
		}
		opt.Step(m, g)
	}
	return m.headLoss(emb, labels, weight), nil
}

func nonZero(counts []int) int {
	n := 0
	for _, v := range counts {
		if v > 0 {
			n++
		}
	}
	return n
}

// headGrad adds the gradient of the weighted mean cross-entropy of the head
// on (emb, labels) to g's classifier tensors.
func (m *Model) headGrad(g *Params, emb []float32, labels []int, weight []float32) {
	c, d := m.NumClasses(), m.EmbeddingDim()
	dl := m.HeadProbs(nil, emb)
	var wsum float32
	for _, y := range labels {
		wsum += weight[y]
	}
	for i, y := range labels {
		row := dl[i*c : (i+1)*c]
		row[y]--
		s := weight[y] / wsum
		for j := range row {
			row[j] *= s
		}
	}
	gemm(true, false, c, d, len(labels), 1, dl, c, emb, d, 1, g.ClsW, d)
	colSum(g.ClsB, dl, len(labels), c)
}

// headLoss returns the weighted mean cross-entropy of the head.
func (m *Model) headLoss(emb []float32, labels []int, weight []float32) float64 {
	c := m.NumClasses()
	lg := m.HeadLogits(nil, emb)
	lp := make([]float64, c)
	var loss, wsum float64
	for i, y := range labels {
		logSoftmax(lp, lg[i*c:(i+1)*c])
		loss -= float64(weight[y]) * lp[y]
		wsum += float64(weight[y])
	}
	return loss / wsum
}

// Prototypes returns the mean embedding of each class (classes×d, row k for
// class k) among the rows of emb (n×d) labelled by labels, and each class's
// count; a class without examples has a zero row. A label outside
// [0, classes) is an error.
func Prototypes(emb []float32, d int, labels []int, classes int) (protos []float32, counts []int, err error) {
	if d <= 0 || len(emb) != len(labels)*d {
		return nil, nil, fmt.Errorf("prototypes: %w: %d values for %d labels of %d", ErrShape, len(emb), len(labels), d)
	}
	protos = make([]float32, classes*d)
	counts = make([]int, classes)
	sum := make([]float64, classes*d)
	for i, y := range labels {
		if y < 0 || y >= classes {
			return nil, nil, fmt.Errorf("prototypes: label %d of row %d outside the %d classes", y, i, classes)
		}
		counts[y]++
		for j, v := range emb[i*d : (i+1)*d] {
			sum[y*d+j] += float64(v)
		}
	}
	for k, n := range counts {
		for j := range d {
			if n > 0 {
				protos[k*d+j] = float32(sum[k*d+j] / float64(n))
			}
		}
	}
	return protos, counts, nil
}

// AddClass appends a class whose head row is initialised from its prototype
// mu (the mean embedding of its examples) as w = 2·mu, b = −|mu|²: with
// those, the logit is −|z − mu|² + |z|², the prototypical network's
// squared-distance score up to a term common to all such classes, so the
// class works before any fine-tuning. It returns the new class's index.
func (m *Model) AddClass(name string, mu []float32, threshold float32) (int, error) {
	if err := checkClasses(append(slices.Clone(m.classes), name)); err != nil {
		return 0, fmt.Errorf("add class: %w", err)
	}
	if !finite32(threshold) {
		return 0, fmt.Errorf("add class %q: threshold: %w", name, ErrNonFinite)
	}
	d := m.EmbeddingDim()
	w, b, err := protoRow(mu, d)
	if err != nil {
		return 0, fmt.Errorf("add class %q: %w", name, err)
	}
	m.classes = append(m.classes, name)
	m.Thresholds = append(m.Thresholds, threshold)
	m.P.ClsW = append(m.P.ClsW, w...)
	m.P.ClsB = append(m.P.ClsB, b)
	m.WeightsChanged()
	return len(m.classes) - 1, nil
}

// SetClassFromPrototype re-initialises class k's head row from a prototype,
// as AddClass does for a new class.
func (m *Model) SetClassFromPrototype(k int, mu []float32) error {
	if k < 0 || k >= m.NumClasses() {
		return fmt.Errorf("set class from prototype: class %d of %d", k, m.NumClasses())
	}
	d := m.EmbeddingDim()
	w, b, err := protoRow(mu, d)
	if err != nil {
		return fmt.Errorf("set class %q from prototype: %w", m.classes[k], err)
	}
	copy(m.P.ClsW[k*d:(k+1)*d], w)
	m.P.ClsB[k] = b
	m.WeightsChanged()
	return nil
}

func protoRow(mu []float32, d int) (w []float32, b float32, err error) {
	if len(mu) != d {
		return nil, 0, fmt.Errorf("prototype: %w: %d values, want %d", ErrShape, len(mu), d)
	}
	w = make([]float32, d)
	var sq float64
	for j, v := range mu {
		if !finite32(v) {
			return nil, 0, fmt.Errorf("prototype: %w", ErrNonFinite)
		}
		w[j] = 2 * v
		sq += float64(v) * float64(v)
	}
	return w, float32(-sq), nil
}

// Explain attributes the classifier's log-odds of class k for one
// embedding z (length H+F), log p_k − log(1 − p_k), to its inputs by
// gradient × input: contribution_j = z_j · ∂logodds_k/∂z_j. It writes the F
// feature contributions (the x̂ part of z, in feature-spec order) into dst,
// reusing its capacity, and returns them with the summed contribution of
// the hidden state, which summarises the host's history.
//
// The log-odds, not log p_k: its gradient, W_k minus the other classes'
// rows weighed by their share of the rest, does not vanish as p_k nears 1,
// so a confident alert, the kind analysts see most, is still explained (with
// log p_k every contribution of a p = 1.00 alert printed as 0.00).
func (m *Model) Explain(dst, z []float32, k int) (features []float32, history float32) {
	d, c, h := m.EmbeddingDim(), m.NumClasses(), m.hidden
	if len(z) != d || k < 0 || k >= c {
		panic(fmt.Sprintf("model: Explain: embedding of %d values (want %d), class %d of %d", len(z), d, k, c))
	}
	dst = grow(dst, m.features)
	if c == 1 {
		clear(dst)
		return dst, 0
	}
	// The other classes' softmax among themselves, from the logits in
	// float64: from the probabilities it would be 0/0 at p_k = 1.
	lg := make([]float64, c)
	top := math.Inf(-1)
	for cl := range c {
		l := float64(m.P.ClsB[cl])
		for j, v := range z {
			l += float64(m.P.ClsW[cl*d+j]) * float64(v)
		}
		lg[cl] = l
		if cl != k {
			top = max(top, l)
		}
	}
	var sum float64
	for cl := range c {
		if cl != k {
			lg[cl] = math.Exp(lg[cl] - top)
			sum += lg[cl]
		}
	}
	for j := range d {
		// ∂logodds_k/∂z = W_k − Σ_{c≠k} q_c W_c, q the others' softmax
		gj := float64(m.P.ClsW[k*d+j])
		for cl := range c {
			if cl != k {
				gj -= lg[cl] / sum * float64(m.P.ClsW[cl*d+j])
			}
		}
		contrib := float32(gj * float64(z[j]))
		if j < h {
			history += contrib
		} else {
			dst[j-h] = contrib
		}
	}
	return dst, history
}
