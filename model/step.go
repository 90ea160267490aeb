package model

import (
	"fmt"
)

// chunkTiles is how many GEMM tiles of hosts a step processes at a time:
// small enough that a chunk's gates stay in L1/L2 between the matrix product
// and the gate math, large enough to amortise the calls.
const chunkTiles = 4

// Workspace holds everything a Step needs besides the model and the hosts'
// state: the weights packed for the kernel in use and the per-chunk buffers.
// It is sized for at most MaxBatch hosts per step. A Workspace is not safe
// for concurrent use; give each goroutine its own.
//
// When Step is handed a different model, or the same model after its weights
// changed, the workspace repacks (and, if the shape grew, reallocates) once;
// steady-state steps allocate nothing.
type Workspace struct {
	maxB int
	kern *kernel

	model *Model
	gen   uint64

	f, h, c    int
	k          int // H+F: [h, x̂] inputs and embeddings
	n, npad    int // 4H+F gate and prediction columns, padded to the panel width
	cpad       int // C padded to the panel width
	chunk      int // hosts per chunk, a multiple of the kernel's tile rows
	wg, bg     []float32
	wc, bc     []float32
	a, g, l    []float32
	unpackedWg []float32 // scratch for packing
}

// NewWorkspace returns a workspace for steps of up to maxBatch hosts through m,
// using the fastest kernel this CPU supports.
func NewWorkspace(m *Model, maxBatch int) *Workspace {
	return newWorkspace(m, maxBatch, bestKernel())
}

func newWorkspace(m *Model, maxBatch int, k *kernel) *Workspace {
	if maxBatch < 1 {
		panic(fmt.Sprintf("model: NewWorkspace: maxBatch %d < 1", maxBatch))
	}
	ws := &Workspace{maxB: maxBatch, kern: k}
	ws.prepare(m)
	return ws
}

// MaxBatch returns the largest number of hosts a Step through ws may advance.
func (ws *Workspace) MaxBatch() int { return ws.maxB }

// Kernel names the implementation in use: "go", "avx2" or "avx512".
func (ws *Workspace) Kernel() string { return ws.kern.name }

// prepare packs m's weights for the kernel, if m or its weights changed.
func (ws *Workspace) prepare(m *Model) {
	gen := m.gen.Load()
	if ws.model == m && ws.gen == gen {
		return
	}
	f, h, c := m.features, m.hidden, len(m.classes)
	kern := ws.kern
	ws.f, ws.h, ws.c, ws.k = f, h, c, h+f
	ws.n = 4*h + f
	ws.npad = roundUp(ws.n, kern.nr)
	ws.cpad = roundUp(c, kern.nr)
	ws.chunk = min(roundUp(ws.maxB, kern.mr), chunkTiles*max(kern.mr, 8))
	ws.chunk = roundUp(ws.chunk, kern.mr)
	k := ws.k

	// The gate GEMM's right-hand side is [W_hhᵀ; W_ihᵀ] beside [W_predᵀ; 0],
	// so one product of the inputs [h_{t−1}, x̂_t] yields the four gate blocks
	// and the prediction of x̂_t from h_{t−1}.
	ws.unpackedWg = grow(ws.unpackedWg, k*ws.npad)
	w := ws.unpackedWg
	clear(w)
	for j := range 4 * h {
		for l := range h {
			w[l*ws.npad+j] = m.P.WeightHH[j*h+l]
		}
		for l := range f {
			w[(h+l)*ws.npad+j] = m.P.WeightIH[j*f+l]
		}
	}
	for p := range f {
		for l := range h {
			w[l*ws.npad+4*h+p] = m.P.PredW[p*h+l]
		}
	}
	ws.wg = grow(ws.wg, k*ws.npad)
	kern.pack(ws.wg, w, k, ws.npad)
	ws.bg = grow(ws.bg, ws.npad)
	clear(ws.bg)
	for j := range 4 * h {
		ws.bg[j] = m.P.BiasIH[j] + m.P.BiasHH[j]
	}
	copy(ws.bg[4*h:], m.P.PredB)

	w = w[:k*ws.cpad]
	clear(w)
	for cl := range c {
		for l := range k {
			w[l*ws.cpad+cl] = m.P.ClsW[cl*k+l]
		}
	}
	ws.wc = grow(ws.wc, k*ws.cpad)
	kern.pack(ws.wc, w, k, ws.cpad)
	ws.bc = grow(ws.bc, ws.cpad)
	clear(ws.bc)
	copy(ws.bc, m.P.ClsB)

	ws.a = grow(ws.a, ws.chunk*k)
	ws.g = grow(ws.g, ws.chunk*ws.npad)
	ws.l = grow(ws.l, ws.chunk*ws.cpad)
	ws.model, ws.gen = m, gen
}

// StepOut receives a Step's results for its B hosts. Step sizes the slices,
// reusing their capacity, so a StepOut reused across steps allocates only
// when B grows.
type StepOut struct {
	// Probs holds the class probabilities, B×C row-major.
	Probs []float32
	// Anomaly holds each host's anomaly score: the mean over features of the
	// squared error of the predictor (applied to h_{t−1}) against the
	// normalised new flow, so 1 means "as surprising as a typical flow is
	// far from the mean".
	Anomaly []float32
	// Emb holds the embeddings z = [h_t, x̂_t], B×(H+F) row-major.
	Emb []float32
	// Invalid counts the non-finite raw feature values this step treated as
	// missing (replaced by the feature's mean).
	Invalid int
	// B, C and D are the hosts, classes and embedding length of this step.
	B, C, D int
}

// ProbsOf returns host i's class probabilities.
func (o *StepOut) ProbsOf(i int) []float32 { return o.Probs[i*o.C : (i+1)*o.C] }

// EmbOf returns host i's embedding.
func (o *StepOut) EmbOf(i int) []float32 { return o.Emb[i*o.D : (i+1)*o.D] }

// Step advances B hosts by one flow each. h and c hold the hosts' LSTM states
// (B×H row-major; zeros for a host's first flow) and are updated in place; x
// holds the new flows' raw features (B×F). For each host it scores the flow
// by how badly the predictor, from h_{t−1}, anticipated it, advances (h, c)
// with it, and classifies the embedding z = [h_t, x̂_t]; see StepOut.
//
// Step panics if the lengths of h, c and x disagree with the model or B
// exceeds ws.MaxBatch(), as gonum does for mismatched shapes: that is a bug
// in the caller, not bad input.
func (m *Model) Step(ws *Workspace, h, c, x []float32, out *StepOut) {
	f, hid := m.features, m.hidden
	if len(x)%f != 0 {
		panic(fmt.Sprintf("model: Step: len(x) = %d is not a multiple of F = %d", len(x), f))
	}
	b := len(x) / f
	if len(h) != b*hid || len(c) != b*hid {
		panic(fmt.Sprintf("model: Step: len(h) = %d, len(c) = %d, want %d for %d hosts of H = %d", len(h), len(c), b*hid, b, hid))
	}
	if b > ws.maxB {
		panic(fmt.Sprintf("model: Step: %d hosts exceed the workspace's %d", b, ws.maxB))
	}
	ws.prepare(m)
	kern := ws.kern
	k, npad, cpad, nc := ws.k, ws.npad, ws.cpad, ws.c
	out.B, out.C, out.D, out.Invalid = b, nc, k, 0
	out.Probs = grow(out.Probs, b*nc)
	out.Anomaly = grow(out.Anomaly, b)
	out.Emb = grow(out.Emb, b*k)
	invF := 1 / float32(f)

	for r0 := 0; r0 < b; r0 += ws.chunk {
		rows := min(ws.chunk, b-r0)
		tiles := roundUp(rows, kern.mr)
		hs, cs := h[r0*hid:(r0+rows)*hid], c[r0*hid:(r0+rows)*hid]
		for i := range rows {
			a := ws.a[i*k : (i+1)*k]
			copy(a[:hid], hs[i*hid:(i+1)*hid])
			out.Invalid += m.normalize(a[hid:], x[(r0+i)*f:(r0+i+1)*f])
		}
		// Rows past the last host of a short chunk hold the previous chunk's
		// (finite) inputs: the kernel computes whole tiles, and their
		// results are never read.
		kern.gemm(tiles, npad, k, ws.a, k, ws.wg, ws.bg, ws.g, npad)
		for i := range rows {
			pred := ws.g[i*npad+4*hid : i*npad+4*hid+f]
			xn := ws.a[i*k+hid : (i+1)*k]
			var s float32
			for j, p := range pred {
				d := p - xn[j]
				s += d * d
			}
			out.Anomaly[r0+i] = s * invF
		}
		// The gate math overwrites h_{t−1} in the inputs with h_t, turning
		// each row into the embedding [h_t, x̂_t] the classifier reads.
		kern.lstm(rows, hid, ws.g, npad, cs, hs, ws.a, k)
		kern.gemm(tiles, cpad, k, ws.a, k, ws.wc, ws.bc, ws.l, cpad)
		copy(out.Emb[r0*k:(r0+rows)*k], ws.a[:rows*k])
		for i := range rows {
			softmax(out.Probs[(r0+i)*nc:(r0+i+1)*nc], ws.l[i*cpad:i*cpad+nc])
		}
	}
}

// softmax writes the softmax of logits into dst.
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

// grow returns s resized to n, reusing its capacity.
func grow(s []float32, n int) []float32 {
	if cap(s) >= n {
		return s[:n]
	}
	return make([]float32, n)
}

func roundUp(n, m int) int { return (n + m - 1) / m * m }
