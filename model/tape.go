package model

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// tape is the forward pass over windows of flows, kept for backpropagation
// through time. Buffers are time-major ([t][s][…]) so each time step is one
// matrix product over all sequences.
type tape[T float] struct {
	f, h, c, k int
	maxS, n    int // sequences allocated for, steps per window
	s          int // sequences in the current forward pass

	p           gparams[T]
	mean, inv   []T
	x           []T // raw inputs, kept to know which were missing
	xn          []T // n×S×F normalised inputs
	hs, cs      []T // (n+1)×S×H states; index 0 is the initial state
	act         []T // n×S×4H activated gates i, f, g, o
	tc          []T // n×S×H tanh(c_t)
	pred        []T // n×S×F prediction of x̂_t from h_{t−1}
	z, zd       []T // n×S×K embeddings, and after dropout
	mask        []T // n×S×K dropout multipliers; nil without dropout
	logits      []T // n×S×C
	dpred, dlog []T // gradients handed in: n×S×F, n×S×C
	demb, dxn   []T // n×S×K, n×S×F (direct dL/dx̂, e.g. from the target side of the MSE)
	dh, dc, dg  []T // backward scratch: S×H, S×H, S×4H
	dz, dzd     []T // S×K, S×K
	dx1         []T // S×F
	dropout     T
}

func newTape[T float](f, h, c, maxS, n int) *tape[T] {
	if maxS < 1 || n < 1 {
		panic(fmt.Sprintf("model: NewTape: %d sequences of %d steps", maxS, n))
	}
	k := h + f
	mk := func(m int) []T { return make([]T, m) }
	return &tape[T]{
		f: f, h: h, c: c, k: k, maxS: maxS, n: n,
		x: mk(n * maxS * f), xn: mk(n * maxS * f),
		hs: mk((n + 1) * maxS * h), cs: mk((n + 1) * maxS * h),
		act: mk(n * maxS * 4 * h), tc: mk(n * maxS * h),
		pred: mk(n * maxS * f), z: mk(n * maxS * k), zd: mk(n * maxS * k),
		logits: mk(n * maxS * c),
		dpred:  mk(n * maxS * f), dlog: mk(n * maxS * c), demb: mk(n * maxS * k), dxn: mk(n * maxS * f),
		dh: mk(maxS * h), dc: mk(maxS * h), dg: mk(maxS * 4 * h), dz: mk(maxS * k), dzd: mk(maxS * k), dx1: mk(maxS * f),
	}
}

// at returns the offset of sequence s, step t in a time-major buffer of
// width w.
func (tp *tape[T]) at(s, t, w int) int { return (t*tp.s + s) * w }

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
	tp.x = tp.x[:s*n*f]
	copy(tp.x, x)
	copy0(tp.hs[:s*h], h0)
	copy0(tp.cs[:s*h], c0)
	if dropout > 0 {
		if tp.mask == nil {
			tp.mask = make([]T, len(tp.z))
		}
	}
	for t := range n {
		xn := tp.xn[tp.at(0, t, f):tp.at(s, t, f)]
		for i := range s {
			row := x[(i*n+t)*f : (i*n+t+1)*f]
			for j, v := range row {
				if v-v != 0 { // missing, as in Model.normalize
					xn[i*f+j] = 0
				} else {
					xn[i*f+j] = (v - mean[j]) * inv[j]
				}
			}
		}
		hp := tp.hs[t*s*h : (t+1)*s*h]
		cp := tp.cs[t*s*h : (t+1)*s*h]
		hn := tp.hs[(t+1)*s*h : (t+2)*s*h]
		cn := tp.cs[(t+1)*s*h : (t+2)*s*h]
		act := tp.act[t*s*4*h : (t+1)*s*4*h]
		gemm(false, true, s, 4*h, f, 1, xn, f, p.wih, f, 0, act, 4*h)
		gemm(false, true, s, 4*h, h, 1, hp, h, p.whh, h, 1, act, 4*h)
		tc := tp.tc[t*s*h : (t+1)*s*h]
		for i := range s {
			a := act[i*4*h : (i+1)*4*h]
			for j := range a {
				a[j] += p.bih[j] + p.bhh[j]
			}
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
		pred := tp.pred[tp.at(0, t, f):tp.at(s, t, f)]
		for i := range s {
			copy(pred[i*f:(i+1)*f], p.pb)
		}
		gemm(false, true, s, f, h, 1, hp, h, p.pw, h, 1, pred, f)
		z := tp.z[tp.at(0, t, k):tp.at(s, t, k)]
		zd := tp.zd[tp.at(0, t, k):tp.at(s, t, k)]
		for i := range s {
			copy(z[i*k:i*k+h], hn[i*h:(i+1)*h])
			copy(z[i*k+h:(i+1)*k], xn[i*f:(i+1)*f])
		}
		copy(zd, z)
		if dropout > 0 {
			mask := tp.mask[tp.at(0, t, k):tp.at(s, t, k)]
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
		lg := tp.logits[tp.at(0, t, c):tp.at(s, t, c)]
		for i := range s {
			copy(lg[i*c:(i+1)*c], p.cb)
		}
		gemm(false, true, s, c, k, 1, zd, k, p.cw, k, 1, lg, c)
	}
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
	if dx != nil && len(dx) != s*n*f {
		panic(fmt.Sprintf("model: Tape.Backward: len(dx) = %d, want %d", len(dx), s*n*f))
	}
	dh, dc, dg, dz := tp.dh[:s*h], tp.dc[:s*h], tp.dg[:s*4*h], tp.dz[:s*k]
	dhNext := dh // dL/dh_t arriving from step t+1
	clear(dhNext)
	clear(dc)
	for t := n - 1; t >= 0; t-- {
		copy(dz, tp.demb[tp.at(0, t, k):tp.at(s, t, k)])
		dlog := tp.dlog[tp.at(0, t, c):tp.at(s, t, c)]
		zd := tp.zd[tp.at(0, t, k):tp.at(s, t, k)]
		if g.cw != nil {
			gemm(true, false, c, k, s, 1, dlog, c, zd, k, 1, g.cw, k)
		}
		if g.cb != nil {
			colSum(g.cb, dlog, s, c)
		}
		// dz += (dlog·W_cls) ⊙ mask; the mask is 1 without dropout.
		if tp.dropout > 0 {
			dzd := tp.dzd[:s*k]
			gemm(false, false, s, k, c, 1, dlog, c, p.cw, k, 0, dzd, k)
			mask := tp.mask[tp.at(0, t, k):tp.at(s, t, k)]
			for j := range dz {
				dz[j] += dzd[j] * mask[j]
			}
		} else {
			gemm(false, false, s, k, c, 1, dlog, c, p.cw, k, 1, dz, k)
		}
		act := tp.act[t*s*4*h : (t+1)*s*4*h]
		tc := tp.tc[t*s*h : (t+1)*s*h]
		cp := tp.cs[t*s*h : (t+1)*s*h]
		hp := tp.hs[t*s*h : (t+1)*s*h]
		for i := range s {
			a := act[i*4*h : (i+1)*4*h]
			d := dg[i*4*h : (i+1)*4*h]
			for j := range h {
				ig, fg, gg, og := a[j], a[h+j], a[2*h+j], a[3*h+j]
				th := tc[i*h+j]
				dhv := dz[i*k+j] + dhNext[i*h+j]
				dcv := dc[i*h+j] + dhv*og*(1-th*th)
				d[j] = dcv * gg * ig * (1 - ig)
				d[h+j] = dcv * cp[i*h+j] * fg * (1 - fg)
				d[2*h+j] = dcv * ig * (1 - gg*gg)
				d[3*h+j] = dhv * th * og * (1 - og)
				dc[i*h+j] = dcv * fg
			}
		}
		xn := tp.xn[tp.at(0, t, f):tp.at(s, t, f)]
		if g.wih != nil {
			gemm(true, false, 4*h, f, s, 1, dg, 4*h, xn, f, 1, g.wih, f)
		}
		if g.whh != nil {
			gemm(true, false, 4*h, h, s, 1, dg, 4*h, hp, h, 1, g.whh, h)
		}
		if g.bih != nil {
			colSum(g.bih, dg, s, 4*h)
		}
		if g.bhh != nil {
			colSum(g.bhh, dg, s, 4*h)
		}
		// dL/dh_{t−1}: through the recurrent weights and the predictor.
		gemm(false, false, s, h, 4*h, 1, dg, 4*h, p.whh, h, 0, dhNext, h)
		dpred := tp.dpred[tp.at(0, t, f):tp.at(s, t, f)]
		if g.pw != nil {
			gemm(true, false, f, h, s, 1, dpred, f, hp, h, 1, g.pw, h)
		}
		if g.pb != nil {
			colSum(g.pb, dpred, s, f)
		}
		gemm(false, false, s, h, f, 1, dpred, f, p.pw, h, 1, dhNext, h)
		if dx == nil {
			continue
		}
		// dL/dx̂_t: direct, through the embedding and through the gates.
		dxn := tp.dx1[:s*f]
		copy(dxn, tp.dxn[tp.at(0, t, f):tp.at(s, t, f)])
		for i := range s {
			for j := range f {
				dxn[i*f+j] += dz[i*k+h+j]
			}
		}
		gemm(false, false, s, f, 4*h, 1, dg, 4*h, p.wih, f, 1, dxn, f)
		for i := range s {
			for j := range f {
				o := (i*n + t) * f
				if tp.x[o+j]-tp.x[o+j] != 0 {
					dx[o+j] = 0
				} else {
					dx[o+j] = dxn[i*f+j] * tp.inv[j]
				}
			}
		}
	}
}
