package model

import (
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/diff/fd"
)

// gradProblem is a small float64 model and window with every loss switched
// on, for finite-difference checks of the tape's backward pass.
type gradProblem struct {
	f, h, c, s, n int
	p             gparams[float64]
	mean, inv     []float64
	x             []float64
	h0, c0        []float64
	labels        []int
	rEmb          []float64 // a random linear functional of the embeddings
	dropout       float64
}

func newGradProblem(seed uint64, dropout float64) *gradProblem {
	rng := rand.New(rand.NewPCG(seed, 0))
	g := &gradProblem{f: 3, h: 4, c: 3, s: 3, n: 4, dropout: dropout}
	f, h, c, s, n := g.f, g.h, g.c, g.s, g.n
	k := h + f
	rnd := func(m int, scale float64) []float64 {
		v := make([]float64, m)
		for i := range v {
			v[i] = scale * rng.NormFloat64()
		}
		return v
	}
	g.p = gparams[float64]{
		wih: rnd(4*h*f, 0.5), whh: rnd(4*h*h, 0.5), bih: rnd(4*h, 0.5), bhh: rnd(4*h, 0.5),
		pw: rnd(f*h, 0.5), pb: rnd(f, 0.5), cw: rnd(c*k, 0.5), cb: rnd(c, 0.5),
	}
	g.mean = rnd(f, 1)
	g.inv = make([]float64, f)
	for j := range g.inv {
		g.inv[j] = 0.5 + rng.Float64()
	}
	g.x = rnd(s*n*f, 1.5)
	g.h0 = rnd(s*h, 0.5)
	g.c0 = rnd(s*h, 0.5)
	g.labels = make([]int, s*n)
	for i := range g.labels {
		g.labels[i] = rng.IntN(c+1) - 1 // some unlabelled
	}
	g.rEmb = rnd(s*n*k, 1)
	return g
}

// loss runs the forward pass and returns the combined loss, leaving the
// output gradients in the tape.
func (g *gradProblem) loss(tp *tape[float64]) float64 {
	tp.forward(g.p, g.mean, g.inv, g.x, g.s, g.h0, g.c0, g.dropout, rand.New(rand.NewPCG(99, 0)))
	l := 0.7 * tp.predictLoss(0.7, func(s, t int) bool { return t >= 1 && (s+t)%4 != 0 })
	cl, _, _ := tp.classLoss(g.labels, 1.3)
	l += 1.3 * cl
	for i, r := range g.rEmb {
		// The tape's embeddings are time-major, and rEmb is indexed the
		// same way; the gradient slot lines up with it.
		l += r * tp.z[i]
		tp.demb[i] += r
	}
	return l
}

func TestTapeGradients(t *testing.T) {
	for _, tc := range []struct {
		name    string
		dropout float64
		missing bool
	}{
		{"no-dropout", 0, false},
		{"dropout", 0.3, false},
		{"missing-inputs", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newGradProblem(1, tc.dropout)
			if tc.missing {
				g.x[4] = math.NaN()
				g.x[g.f*g.n+g.f+1] = math.Inf(-1)
			}
			tp := newTape[float64](g.f, g.h, g.c, g.s, g.n)
			g.loss(tp)
			grad := gparams[float64]{
				wih: make([]float64, len(g.p.wih)), whh: make([]float64, len(g.p.whh)),
				bih: make([]float64, len(g.p.bih)), bhh: make([]float64, len(g.p.bhh)),
				pw: make([]float64, len(g.p.pw)), pb: make([]float64, len(g.p.pb)),
				cw: make([]float64, len(g.p.cw)), cb: make([]float64, len(g.p.cb)),
			}
			dx := make([]float64, len(g.x))
			tp.backward(grad, dx)

			names := []string{TensorWeightIH, TensorWeightHH, TensorBiasIH, TensorBiasHH, TensorPredW, TensorPredB, TensorClsW, TensorClsB}
			ps, gs := g.p.slots(), grad.slots()
			for i, name := range names {
				param := *ps[i]
				orig := append([]float64(nil), param...)
				num := fd.Gradient(nil, func(v []float64) float64 {
					copy(param, v)
					return g.loss(tp)
				}, orig, &fd.Settings{Formula: fd.Central, Step: 1e-6})
				copy(param, orig)
				checkGrad(t, name, *gs[i], num, 1e-6)
			}
			num := fd.Gradient(nil, func(v []float64) float64 {
				copy(g.x, v)
				return g.loss(tp)
			}, append([]float64(nil), g.x...), &fd.Settings{Formula: fd.Central, Step: 1e-6})
			for i, v := range g.x {
				if math.IsNaN(v) || math.IsInf(v, 0) {
					// No derivative exists at a missing input; the tape says 0.
					if dx[i] != 0 {
						t.Errorf("dx[%d] at a missing input = %g, want 0", i, dx[i])
					}
					num[i] = 0
				}
			}
			checkGrad(t, "input", dx, num, 1e-6)
		})
	}
}

// checkGrad compares an analytic gradient with a numerical one, relative to
// the largest element, so a wrong or missing term fails but rounding does not.
func checkGrad(t *testing.T, name string, got, want []float64, tol float64) {
	t.Helper()
	scale := 1e-3
	for _, w := range want {
		scale = max(scale, math.Abs(w))
	}
	for i := range got {
		if d := math.Abs(got[i] - want[i]); !(d <= tol*scale) {
			t.Errorf("%s[%d]: analytic %g, numerical %g (scale %g)", name, i, got[i], want[i], scale)
			return
		}
	}
}

func TestPrototypicalLossGradient(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 0))
	const n, d = 9, 4
	emb := make([]float64, n*d)
	for i := range emb {
		emb[i] = rng.NormFloat64()
	}
	labels := []int{0, 0, 1, 1, 2, 0, 1, 2, 2}
	support := []bool{true, true, true, true, true, false, false, false, true}
	grad := make([]float64, n*d)
	if _, _, err := protoLoss(grad, emb, d, labels, support); err != nil {
		t.Fatal(err)
	}
	scratch := make([]float64, n*d)
	num := fd.Gradient(nil, func(v []float64) float64 {
		l, _, err := protoLoss(scratch, v, d, labels, support)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}, emb, &fd.Settings{Formula: fd.Central, Step: 1e-6})
	checkGrad(t, "prototypical", grad, num, 1e-6)
}

// TestHeadGradient checks the head-only gradient the adapter fine-tunes with.
func TestHeadGradient(t *testing.T) {
	m := newTestModel(t, 4, 3, []string{"benign", "a", "b"})
	rng := rand.New(rand.NewPCG(6, 0))
	const n = 7
	d := m.EmbeddingDim()
	emb := make([]float32, n*d)
	for i := range emb {
		emb[i] = float32(rng.NormFloat64())
	}
	labels := []int{0, 1, 2, 2, 1, 0, 2}
	weight := []float32{0.5, 1, 2}
	g := m.NewHeadGrads()
	m.headGrad(g, emb, labels, weight)
	for _, tc := range []struct {
		name  string
		param []float32
		grad  []float32
	}{{TensorClsW, m.P.ClsW, g.ClsW}, {TensorClsB, m.P.ClsB, g.ClsB}} {
		orig := append([]float32(nil), tc.param...)
		x := make([]float64, len(orig))
		for i, v := range orig {
			x[i] = float64(v)
		}
		num := fd.Gradient(nil, func(v []float64) float64 {
			for i := range v {
				tc.param[i] = float32(v[i])
			}
			return m.headLoss(emb, labels, weight)
		}, x, &fd.Settings{Formula: fd.Central, Step: 1e-2})
		copy(tc.param, orig)
		got := make([]float64, len(tc.grad))
		for i, v := range tc.grad {
			got[i] = float64(v)
		}
		// float32 forward passes: a coarser step and tolerance.
		checkGrad(t, tc.name, got, num, 2e-3)
	}
}

func newTestModel(t testing.TB, f, h int, classes []string) *Model {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Features, cfg.Hidden, cfg.Classes = f, h, classes
	m, err := New(cfg, rand.New(rand.NewPCG(7, 0)))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestTapeFloat32MatchesFloat64: the float32 tape (the fast kernels and
// vectorised activations) computes the gradients the float64 one, checked
// against finite differences above, does.
func TestTapeFloat32MatchesFloat64(t *testing.T) {
	g := newGradProblem(3, 0.25)
	g.x[7] = math.NaN()
	tp64 := newTape[float64](g.f, g.h, g.c, g.s, g.n)
	g.loss(tp64)
	want := gparams[float64]{
		wih: make([]float64, len(g.p.wih)), whh: make([]float64, len(g.p.whh)),
		bih: make([]float64, len(g.p.bih)), bhh: make([]float64, len(g.p.bhh)),
		pw: make([]float64, len(g.p.pw)), pb: make([]float64, len(g.p.pb)),
		cw: make([]float64, len(g.p.cw)), cb: make([]float64, len(g.p.cb)),
	}
	wantDX := make([]float64, len(g.x))
	tp64.backward(want, wantDX)

	f32 := func(v []float64) []float32 {
		out := make([]float32, len(v))
		for i, x := range v {
			out[i] = float32(x)
		}
		return out
	}
	var p32 gparams[float32]
	for i, s := range p32.slots() {
		*s = f32(*g.p.slots()[i])
	}
	tp := newTape[float32](g.f, g.h, g.c, g.s, g.n)
	tp.forward(p32, f32(g.mean), f32(g.inv), f32(g.x), g.s, f32(g.h0), f32(g.c0), 0.25, rand.New(rand.NewPCG(99, 0)))
	tp.predictLoss(0.7, func(s, t int) bool { return t >= 1 && (s+t)%4 != 0 })
	tp.classLoss(g.labels, 1.3)
	for i, r := range g.rEmb {
		tp.demb[i] += float32(r)
	}
	var got gparams[float32]
	for i, s := range got.slots() {
		*s = make([]float32, len(*want.slots()[i]))
	}
	dx := make([]float32, len(g.x))
	tp.backward(got, dx)
	names := []string{TensorWeightIH, TensorWeightHH, TensorBiasIH, TensorBiasHH, TensorPredW, TensorPredB, TensorClsW, TensorClsB}
	for i, name := range names {
		gs := make([]float64, len(*got.slots()[i]))
		for j, v := range *got.slots()[i] {
			gs[j] = float64(v)
		}
		checkGrad(t, name, gs, *want.slots()[i], 1e-5)
	}
	d := make([]float64, len(dx))
	for j, v := range dx {
		d[j] = float64(v)
	}
	checkGrad(t, "input", d, wantDX, 1e-5)
}
