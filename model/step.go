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

	f, h, c int
	k       int // H+F: [h, x̂] inputs and embeddings
	// Widths padded to the kernel's panel width: the 4H gate columns, the F
	// prediction columns (beside the gates in g, row stride ldg) and C.
	gpad, fpad, ldg, cpad int
	chunk                 int // hosts per chunk, a multiple of the kernel's tile rows

	wg, bg  []float32 // gates: packed (H+F)×gpad and bias
	wp, bp  []float32 // predictor: packed H×fpad and bias
	wc, bc  []float32 // classifier: packed (H+F)×cpad and bias
	a, g, l []float32 // per chunk: inputs/embeddings, gates+predictions, logits
	scratch []float32 // for packing
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
	ws.gpad = roundUp(4*h, kern.nr)
	ws.fpad = roundUp(f, kern.nr)
	ws.ldg = ws.gpad + ws.fpad
	ws.cpad = roundUp(c, kern.nr)
	ws.chunk = min(roundUp(ws.maxB, kern.mr), chunkTiles*max(kern.mr, 8))
	ws.chunk = roundUp(ws.chunk, kern.mr)
	k := ws.k

	// The gate product's right-hand side is [W_hhᵀ; W_ihᵀ], so one product
	// of the inputs [h_{t−1}, x̂_t] yields all four gate blocks. The
	// predictor reads only h_{t−1}, the first H columns of the same inputs.
	ws.scratch = grow(ws.scratch, k*max(ws.gpad, ws.fpad, ws.cpad))
	w := ws.scratch[:k*ws.gpad]
	clear(w)
	for j := range 4 * h {
		for l := range h {
			w[l*ws.gpad+j] = m.P.WeightHH[j*h+l]
		}
		for l := range f {
			w[(h+l)*ws.gpad+j] = m.P.WeightIH[j*f+l]
		}
	}
	ws.wg = grow(ws.wg, k*ws.gpad)
	kern.pack(ws.wg, w, k, ws.gpad)
	ws.bg = grow(ws.bg, ws.gpad)
	clear(ws.bg)
	for j := range 4 * h {
		ws.bg[j] = m.P.BiasIH[j] + m.P.BiasHH[j]
	}

	w = ws.scratch[:h*ws.fpad]
	clear(w)
	for p := range f {
		for l := range h {
			w[l*ws.fpad+p] = m.P.PredW[p*h+l]
		}
	}
	ws.wp = grow(ws.wp, h*ws.fpad)
	kern.pack(ws.wp, w, h, ws.fpad)
	ws.bp = grow(ws.bp, ws.fpad)
	clear(ws.bp)
	copy(ws.bp, m.P.PredB)

	w = ws.scratch[:k*ws.cpad]
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
	ws.g = grow(ws.g, ws.chunk*ws.ldg)
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
	// Errors holds, when WantErrors is set, the per-feature squared
	// prediction errors (B×F) whose mean is Anomaly: what explains an
	// anomaly alert. Left untouched otherwise, to save the writes.
	Errors     []float32
	WantErrors bool
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
// A per-flow model (Model.PerFlow) zeroes h and c first, so what the hosts
// did before does not count; h and c still receive the new states.
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
	k, ldg, cpad, nc := ws.k, ws.ldg, ws.cpad, ws.c
	out.B, out.C, out.D, out.Invalid = b, nc, k, 0
	out.Probs = grow(out.Probs, b*nc)
	out.Anomaly = grow(out.Anomaly, b)
	out.Emb = grow(out.Emb, b*k)
	if out.WantErrors {
		out.Errors = grow(out.Errors, b*f)
	}
	invF := 1 / float32(f)

	for r0 := 0; r0 < b; r0 += ws.chunk {
		rows := min(ws.chunk, b-r0)
		tiles := roundUp(rows, kern.mr)
		hs, cs := h[r0*hid:(r0+rows)*hid], c[r0*hid:(r0+rows)*hid]
		if m.perFlow {
			clear(hs)
			clear(cs)
		}
		for i := range rows {
			copy(ws.a[i*k:i*k+hid], hs[i*hid:(i+1)*hid])
		}
		out.Invalid += kern.norm(rows, f, x[r0*f:(r0+rows)*f], m.mean, m.invStd, ws.a[hid:], k)
		// Rows past the last host of a short chunk hold the previous chunk's
		// (finite) inputs: the kernel computes whole tiles, and their
		// results are never read.
		kern.gemm(tiles, ws.gpad, k, ws.a, k, ws.wg, ws.bg, ws.g, ldg)
		kern.gemm(tiles, ws.fpad, hid, ws.a, k, ws.wp, ws.bp, ws.g[ws.gpad:], ldg)
		anomaly := out.Anomaly[r0 : r0+rows]
		kern.sqerr(rows, f, ws.g[ws.gpad:], ldg, ws.a[hid:], k, anomaly)
		for i := range anomaly {
			anomaly[i] *= invF
		}
		if out.WantErrors {
			for i := range rows {
				pred := ws.g[i*ldg+ws.gpad : i*ldg+ws.gpad+f]
				xn := ws.a[i*k+hid : (i+1)*k]
				e := out.Errors[(r0+i)*f : (r0+i+1)*f]
				for j, p := range pred {
					d := p - xn[j]
					e[j] = d * d
				}
			}
		}
		// The gate math overwrites h_{t−1} in the inputs with h_t, turning
		// each row into the embedding [h_t, x̂_t] the classifier reads.
		kern.lstm(rows, hid, ws.g, ldg, cs, hs, ws.a, k)
		kern.gemm(tiles, cpad, k, ws.a, k, ws.wc, ws.bc, ws.l, cpad)
		copy(out.Emb[r0*k:(r0+rows)*k], ws.a[:rows*k])
		// Softmax, with the exponentials of the whole chunk in one vector
		// call: shift each row by its max, exponentiate, normalise.
		for i := range rows {
			lg := ws.l[i*cpad : (i+1)*cpad]
			mx := lg[0]
			for _, v := range lg[1:nc] {
				mx = max(mx, v)
			}
			for j := range lg {
				lg[j] -= mx
			}
		}
		kern.exp(ws.l[:rows*cpad])
		for i := range rows {
			e := ws.l[i*cpad : i*cpad+nc]
			var sum float32
			for _, v := range e {
				sum += v
			}
			inv := 1 / sum
			p := out.Probs[(r0+i)*nc : (r0+i+1)*nc]
			for j, v := range e {
				p[j] = v * inv
			}
		}
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
