package model

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// tape is the forward pass over windows of flows, kept for backpropagation
// through time. Buffers are time-major ([t][s][…]): the rows of one step are
// contiguous for the recurrence, and all n·S rows of the window form one
// matrix, so every product that does not wait on the recurrence (input
// projections, predictions, logits, weight gradients) is one large GEMM per
// window rather than a small one per step.
type tape[T float] struct {
	f, h, c, k int
	maxS, n    int // sequences allocated for, steps per window
	s          int // sequences in the current forward pass

	p           gparams[T]
	mean, inv   []T
	x           []T // raw inputs, kept to know which were missing
	xn          []T // n×S×F normalised inputs
	hs, cs      []T // (n+1)×S×H states; block 0 is the initial state
	act         []T // n×S×4H activated gates i, f, g, o
	tc          []T // n×S×H tanh(c_t)
	pred        []T // n×S×F prediction of x̂_t from h_{t−1}
	z, zd       []T // n×S×K embeddings, and after dropout
	mask        []T // n×S×K dropout multipliers; nil without dropout
	logits      []T // n×S×C
	dpred, dlog []T // gradients handed in: n×S×F, n×S×C
	demb, dxn   []T // n×S×K, n×S×F (direct dL/dx̂, e.g. from the target side of the MSE)
	dropout     T

	// Backward scratch.
	dz, dzd []T // n×S×K: dL/dz, and the classifier's share before the mask
	dg      []T // n×S×4H: dL/d(gate pre-activations)
	dhp     []T // n×S×H: dL/dh_{t−1} through pred_t
	dxa     []T // n×S×F: dL/dx̂
	dh, dc  []T // S×H: dL/dh_t and dL/dc_t arriving from step t+1

	// mm runs the float32 products on the step's assembly kernels; nil for
	// float64 (the gradient checks) or where there are none, which use
	// gonum. rec holds W_hh packed for it (ᵀ for forward, as is for
	// backward): the only weights multiplied once per step.
	mm  *mm32
	rec []float32
}

func newTape[T float](f, h, c, maxS, n int) *tape[T] {
	if maxS < 1 || n < 1 {
		panic(fmt.Sprintf("model: NewTape: %d sequences of %d steps", maxS, n))
	}
	k := h + f
	rows := n * maxS
	mk := func(m int) []T { return make([]T, m) }
	tp := &tape[T]{
		f: f, h: h, c: c, k: k, maxS: maxS, n: n,
		x: mk(rows * f), xn: mk(rows * f),
		hs: mk((n + 1) * maxS * h), cs: mk((n + 1) * maxS * h),
		act: mk(rows * 4 * h), tc: mk(rows * h),
		pred: mk(rows * f), z: mk(rows * k), zd: mk(rows * k),
		logits: mk(rows * c),
		dpred:  mk(rows * f), dlog: mk(rows * c), demb: mk(rows * k), dxn: mk(rows * f),
		dz: mk(rows * k), dg: mk(rows * 4 * h), dhp: mk(rows * h), dxa: mk(rows * f),
		dh: mk(maxS * h), dc: mk(maxS * h),
	}
	var zero T
	if _, ok := any(zero).(float32); ok {
		tp.mm = newMM32()
	}
	return tp
}

// at returns the offset of sequence s, step t in a time-major buffer of
// width w.
func (tp *tape[T]) at(s, t, w int) int { return (t*tp.s + s) * w }

// gemm is C = op(A)·op(B) + beta·C, on the fast kernels when there are.
func (tp *tape[T]) gemm(tA, tB bool, m, n, k int, a []T, lda int, b []T, ldb int, beta T, c []T, ldc int) {
	if tp.mm != nil {
		tp.mm.gemm(tA, tB, m, n, k, any(a).([]float32), lda, any(b).([]float32), ldb, float32(beta), any(c).([]float32), ldc)
		return
	}
	gemm(tA, tB, m, n, k, 1, a, lda, b, ldb, beta, c, ldc)
}

// packRecurrent prepares W_hh for recurrent: transposed for the forward
// pass (h_{t−1}·W_hhᵀ), as is for the backward pass (dg·W_hh).
func (tp *tape[T]) packRecurrent(forward bool) {
	if tp.mm == nil {
		return
	}
	w := any(tp.p.whh).([]float32)
	h := tp.h
	if forward {
		tp.rec = tp.mm.pack(tp.rec, true, h, 4*h, w, h)
	} else {
		tp.rec = tp.mm.pack(tp.rec, false, 4*h, h, w, h)
	}
}

// recurrent adds a·W_hhᵀ (forward: a is S×H, c S×4H) or a·W_hh (backward: a
// is S×4H, c S×H) to c.
func (tp *tape[T]) recurrent(forward bool, a, c []T) {
	s, h := tp.s, tp.h
	if forward {
		if tp.mm != nil {
			tp.mm.gemmPacked(false, s, 4*h, h, any(a).([]float32), h, tp.rec, 1, any(c).([]float32), 4*h)
			return
		}
		gemm(false, true, s, 4*h, h, 1, a, h, tp.p.whh, h, 1, c, 4*h)
		return
	}
	if tp.mm != nil {
		tp.mm.gemmPacked(false, s, h, 4*h, any(a).([]float32), 4*h, tp.rec, 1, any(c).([]float32), h)
		return
	}
	gemm(false, false, s, h, 4*h, 1, a, 4*h, tp.p.whh, h, 1, c, h)
}

// forward runs s sequences of raw inputs x ([s][t][f]) from states h0, c0
// (S×H, nil for zeros). With dropout > 0 each embedding element is zeroed
// with that probability before the classifier (and the rest scaled by
// 1/(1−dropout)), as torch.nn.Dropout does in training mode.
func (tp *tape[T]) forward(p gparams[T], mean, inv []T, x []T, s int, h0, c0 []T, dropout T, rng *rand.Rand) {
	f, h, c, k, n := tp.f, tp.h, tp.c, tp.k, tp.n
	if s < 1 || s > tp.maxS || len(x) != s*n*f {
		panic(fmt.Sprintf("model: Tape.Forward: %d values for %d sequences of %d steps of %d features (tape holds %d sequences)", len(x), s, n, f, tp.maxS))
	}
	if (h0 != nil && len(h0) != s*h) || (c0 != nil && len(c0) != s*h) {
		panic(fmt.Sprintf("model: Tape.Forward: initial states of %d and %d values, want %d", len(h0), len(c0), s*h))
	}
	if dropout > 0 && rng == nil {
		panic("model: Tape.Forward: dropout needs a random source")
	}
	tp.s, tp.p, tp.mean, tp.inv, tp.dropout = s, p, mean, inv, dropout
	rows := n * s
	tp.x = tp.x[:rows*f]
	copy(tp.x, x)
	copy0(tp.hs[:s*h], h0)
	copy0(tp.cs[:s*h], c0)
	if dropout > 0 && tp.mask == nil {
		tp.mask = make([]T, len(tp.z))
	}

	xn := tp.xn[:rows*f]
	for t := range n {
		for i := range s {
			row := x[(i*n+t)*f : (i*n+t+1)*f]
			dst := xn[tp.at(i, t, f):]
			for j, v := range row {
				if v-v != 0 { // missing, as in the step
					dst[j] = 0
				} else {
					dst[j] = (v - mean[j]) * inv[j]
				}
			}
		}
	}
	// Biases and input projections of every step at once; only the
	// recurrent term has to wait for h_{t−1}.
	act := tp.act[:rows*4*h]
	for r := range rows {
		a := act[r*4*h : (r+1)*4*h]
		for j := range a {
			a[j] = p.bih[j] + p.bhh[j]
		}
	}
	tp.gemm(false, true, rows, 4*h, f, xn, f, p.wih, f, 1, act, 4*h)
	tp.packRecurrent(true)
	for t := range n {
		hp := tp.hs[t*s*h : (t+1)*s*h]
		cp := tp.cs[t*s*h : (t+1)*s*h]
		hn := tp.hs[(t+1)*s*h : (t+2)*s*h]
		cn := tp.cs[(t+1)*s*h : (t+2)*s*h]
		at := act[t*s*4*h : (t+1)*s*4*h]
		tp.recurrent(true, hp, at)
		tc := tp.tc[t*s*h : (t+1)*s*h]
		if tp.mm != nil {
			activate32(tp.mm.kern, s, h, any(at).([]float32), any(cp).([]float32),
				any(cn).([]float32), any(tc).([]float32), any(hn).([]float32))
			continue
		}
		for i := range s {
			a := at[i*4*h : (i+1)*4*h]
			for j := range h {
				ig, fg := sigmoid(a[j]), sigmoid(a[h+j])
				gg, og := tanh(a[2*h+j]), sigmoid(a[3*h+j])
				a[j], a[h+j], a[2*h+j], a[3*h+j] = ig, fg, gg, og
				cv := fg*cp[i*h+j] + ig*gg
				cn[i*h+j] = cv
				tc[i*h+j] = tanh(cv)
				hn[i*h+j] = og * tc[i*h+j]
			}
		}
	}
	// Every step's prediction (from h_{t−1}: the first n blocks of hs) and
	// logits at once.
	pred := tp.pred[:rows*f]
	for r := range rows {
		copy(pred[r*f:(r+1)*f], p.pb)
	}
	tp.gemm(false, true, rows, f, h, tp.hs[:rows*h], h, p.pw, h, 1, pred, f)
	z, zd := tp.z[:rows*k], tp.zd[:rows*k]
	for r := range rows {
		copy(z[r*k:r*k+h], tp.hs[(s+r)*h:(s+r+1)*h])
		copy(z[r*k+h:(r+1)*k], xn[r*f:(r+1)*f])
	}
	copy(zd, z)
	if dropout > 0 {
		mask := tp.mask[:rows*k]
		keep := 1 / (1 - dropout)
		for j := range mask {
			if rng.Float64() < float64(dropout) {
				mask[j] = 0
			} else {
				mask[j] = keep
			}
			zd[j] *= mask[j]
		}
	}
	lg := tp.logits[:rows*c]
	for r := range rows {
		copy(lg[r*c:(r+1)*c], p.cb)
	}
	tp.gemm(false, true, rows, c, k, zd, k, p.cw, k, 1, lg, c)
	tp.zeroGrad()
}

func copy0[T float](dst, src []T) {
	if src == nil {
		clear(dst)
		return
	}
	copy(dst, src)
}

// zeroGrad clears the gradients handed to backward.
func (tp *tape[T]) zeroGrad() {
	m := tp.s * tp.n
	clear(tp.dpred[:m*tp.f])
	clear(tp.dlog[:m*tp.c])
	clear(tp.demb[:m*tp.k])
	clear(tp.dxn[:m*tp.f])
}

// predictLoss is the next-flow loss: the mean, over the flows (s, t) for
// which use(s, t) holds and their observed (finite) raw features, of
// (pred − x̂)². It adds weight·dL/dpred and weight·dL/dx̂ to the gradients and
// returns L (0 if nothing was selected).
func (tp *tape[T]) predictLoss(weight T, use func(s, t int) bool) float64 {
	f, s, n := tp.f, tp.s, tp.n
	cnt := 0
	for i := range s {
		for t := range n {
			if !use(i, t) {
				continue
			}
			for _, v := range tp.x[(i*n+t)*f : (i*n+t+1)*f] {
				if v-v == 0 {
					cnt++
				}
			}
		}
	}
	if cnt == 0 {
		return 0
	}
	var loss float64
	for i := range s {
		for t := range n {
			if !use(i, t) {
				continue
			}
			o := tp.at(i, t, f)
			pred, xn := tp.pred[o:o+f], tp.xn[o:o+f]
			dp, dx := tp.dpred[o:o+f], tp.dxn[o:o+f]
			raw := tp.x[(i*n+t)*f : (i*n+t+1)*f]
			for j := range pred {
				if raw[j]-raw[j] != 0 {
					continue // not observed: nothing to predict
				}
				d := pred[j] - xn[j]
				loss += float64(d * d)
				g := weight * 2 * d / T(cnt)
				dp[j] += g
				dx[j] -= g
			}
		}
	}
	return loss / float64(cnt)
}

// classLoss is the mean cross-entropy of the classifier over the labelled
// flows (labels[s·n+t] ≥ 0; −1 means unlabelled). It adds weight·dL/dlogits
// to the gradients and returns L with the count of correct and labelled
// flows.
func (tp *tape[T]) classLoss(labels []int, weight T) (loss float64, correct, cnt int) {
	c, s, n := tp.c, tp.s, tp.n
	if len(labels) != s*n {
		panic(fmt.Sprintf("model: ClassLoss: %d labels for %d sequences of %d steps", len(labels), s, n))
	}
	for _, y := range labels {
		if y >= c {
			panic(fmt.Sprintf("model: ClassLoss: label %d of %d classes", y, c))
		}
		if y >= 0 {
			cnt++
		}
	}
	if cnt == 0 {
		return 0, 0, 0
	}
	p := make([]float64, c)
	for i := range s {
		for t := range n {
			y := labels[i*n+t]
			if y < 0 {
				continue
			}
			off := tp.at(i, t, c)
			lg := tp.logits[off : off+c]
			lse, arg := logSoftmax(p, lg)
			if arg == y {
				correct++
			}
			loss -= p[y]
			dl := tp.dlog[off : off+c]
			for j := range dl {
				g := math.Exp(p[j])
				if j == y {
					g--
				}
				dl[j] += weight * T(g/float64(cnt))
			}
			_ = lse
		}
	}
	return loss / float64(cnt), correct, cnt
}

// logSoftmax writes log softmax(lg) into dst (float64) and returns the
// log-sum-exp and the arg max.
func logSoftmax[T float](dst []float64, lg []T) (lse float64, arg int) {
	mx := float64(lg[0])
	for j, v := range lg {
		if float64(v) > mx {
			mx, arg = float64(v), j
		}
	}
	var sum float64
	for _, v := range lg {
		sum += math.Exp(float64(v) - mx)
	}
	lse = mx + math.Log(sum)
	for j, v := range lg {
		dst[j] = float64(v) - lse
	}
	return lse, arg
}

// backward propagates the gradients handed in (dpred, dlog, demb, dxn)
// through time, adding parameter gradients to g (nil tensors are skipped, so
// a frozen part costs nothing but its share of the chain) and writing
// dL/dx for the raw inputs into dx ([s][t][f]) unless dx is nil. Missing
// inputs get a zero gradient.
func (tp *tape[T]) backward(g gparams[T], dx []T) {
	f, h, c, k, s, n := tp.f, tp.h, tp.c, tp.k, tp.s, tp.n
	p := tp.p
	rows := n * s
	if dx != nil && len(dx) != rows*f {
		panic(fmt.Sprintf("model: Tape.Backward: len(dx) = %d, want %d", len(dx), rows*f))
	}
	// The heads, for every step at once.
	dz := tp.dz[:rows*k]
	copy(dz, tp.demb[:rows*k])
	dlog, zd := tp.dlog[:rows*c], tp.zd[:rows*k]
	if g.cw != nil {
		tp.gemm(true, false, c, k, rows, dlog, c, zd, k, 1, g.cw, k)
	}
	if g.cb != nil {
		colSum(g.cb, dlog, rows, c)
	}
	if tp.dropout > 0 {
		if tp.dzd == nil {
			tp.dzd = make([]T, len(tp.dz))
		}
		dzd, mask := tp.dzd[:rows*k], tp.mask[:rows*k]
		tp.gemm(false, false, rows, k, c, dlog, c, p.cw, k, 0, dzd, k)
		for j := range dz {
			dz[j] += dzd[j] * mask[j]
		}
	} else {
		tp.gemm(false, false, rows, k, c, dlog, c, p.cw, k, 1, dz, k)
	}
	dpred, hprev := tp.dpred[:rows*f], tp.hs[:rows*h]
	if g.pw != nil {
		tp.gemm(true, false, f, h, rows, dpred, f, hprev, h, 1, g.pw, h)
	}
	if g.pb != nil {
		colSum(g.pb, dpred, rows, f)
	}
	dhp := tp.dhp[:rows*h]
	tp.gemm(false, false, rows, h, f, dpred, f, p.pw, h, 0, dhp, h)

	// The recurrence, step by step.
	tp.packRecurrent(false)
	dhNext, dc := tp.dh[:s*h], tp.dc[:s*h]
	clear(dhNext)
	clear(dc)
	dg := tp.dg[:rows*4*h]
	for t := n - 1; t >= 0; t-- {
		act := tp.act[t*s*4*h : (t+1)*s*4*h]
		tc := tp.tc[t*s*h : (t+1)*s*h]
		cp := tp.cs[t*s*h : (t+1)*s*h]
		dgt := dg[t*s*4*h : (t+1)*s*4*h]
		dzt := dz[t*s*k : (t+1)*s*k]
		for i := range s {
			a := act[i*4*h : (i+1)*4*h]
			d := dgt[i*4*h : (i+1)*4*h]
			for j := range h {
				ig, fg, gg, og := a[j], a[h+j], a[2*h+j], a[3*h+j]
				th := tc[i*h+j]
				dhv := dzt[i*k+j] + dhNext[i*h+j]
				dcv := dc[i*h+j] + dhv*og*(1-th*th)
				d[j] = dcv * gg * ig * (1 - ig)
				d[h+j] = dcv * cp[i*h+j] * fg * (1 - fg)
				d[2*h+j] = dcv * ig * (1 - gg*gg)
				d[3*h+j] = dhv * th * og * (1 - og)
				dc[i*h+j] = dcv * fg
			}
		}
		// dL/dh_{t−1}: through the predictor of step t and the recurrence.
		copy(dhNext, dhp[t*s*h:(t+1)*s*h])
		tp.recurrent(false, dgt, dhNext)
	}

	// Gate weights, for every step at once.
	xn := tp.xn[:rows*f]
	if g.wih != nil {
		tp.gemm(true, false, 4*h, f, rows, dg, 4*h, xn, f, 1, g.wih, f)
	}
	if g.whh != nil {
		tp.gemm(true, false, 4*h, h, rows, dg, 4*h, hprev, h, 1, g.whh, h)
	}
	if g.bih != nil {
		colSum(g.bih, dg, rows, 4*h)
	}
	if g.bhh != nil {
		colSum(g.bhh, dg, rows, 4*h)
	}
	if dx == nil {
		return
	}
	// dL/dx̂: direct, through the embedding and through the gates.
	dxa := tp.dxa[:rows*f]
	copy(dxa, tp.dxn[:rows*f])
	for r := range rows {
		for j := range f {
			dxa[r*f+j] += dz[r*k+h+j]
		}
	}
	tp.gemm(false, false, rows, f, 4*h, dg, 4*h, p.wih, f, 1, dxa, f)
	for t := range n {
		for i := range s {
			o, r := (i*n+t)*f, (t*s+i)*f
			for j := range f {
				if tp.x[o+j]-tp.x[o+j] != 0 {
					dx[o+j] = 0
				} else {
					dx[o+j] = dxa[r+j] * tp.inv[j]
				}
			}
		}
	}
}

// activate32 is the gate math of a forward step at float32 with the
// exponentials vectorised: a (s×4H pre-activations) becomes the activated
// gates i, f, g, o; c_t goes to cn, tanh(c_t) to tc, h_t to hn. It computes
// what sigmoidf and tanhf do, a block at a time.
func activate32(kern *kernel, s, h int, a, cp, cn, tc, hn []float32) {
	for i := range s {
		r := a[i*4*h : (i+1)*4*h]
		for j := range r {
			if j >= 2*h && j < 3*h {
				r[j] *= 2 // tanh(x) = 1 − 2/(1+e^2x)
			} else {
				r[j] = -r[j] // σ(x) = 1/(1+e^−x)
			}
		}
	}
	kern.exp(a[:s*4*h])
	for i := range s {
		r := a[i*4*h : (i+1)*4*h]
		for j := range h {
			ig, fg := 1/(1+r[j]), 1/(1+r[h+j])
			gg, og := 1-2/(1+r[2*h+j]), 1/(1+r[3*h+j])
			r[j], r[h+j], r[2*h+j], r[3*h+j] = ig, fg, gg, og
			cv := fg*cp[i*h+j] + ig*gg
			cn[i*h+j] = cv
			tc[i*h+j] = 2 * cv
		}
	}
	kern.exp(tc[:s*h])
	for i := range s * h {
		th := 1 - 2/(1+tc[i])
		tc[i] = th
		hn[i] = a[(i/h)*4*h+3*h+i%h] * th
	}
}
