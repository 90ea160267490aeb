package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestStepMatchesTape: streaming a window through Step gives what the
// training tape computes for it, for every kernel, so what is trained is
// what is scored.
func TestStepMatchesTape(t *testing.T) {
	for _, kern := range testKernels() {
		for _, shape := range []struct{ f, h, c int }{{32, 64, 8}, {5, 12, 3}} {
			t.Run(fmt.Sprintf("%s/F=%d,H=%d,C=%d", kern.name, shape.f, shape.h, shape.c), func(t *testing.T) {
				classes := make([]string, shape.c)
				for i := range classes {
					classes[i] = fmt.Sprint("c", i)
				}
				m := newTestModel(t, shape.f, shape.h, classes)
				rng := rand.New(rand.NewPCG(31, 0))
				const seqs, steps = 30, 4
				x := randSlice(rng, seqs*steps*shape.f, 1.5)
				tp := NewTape(m, seqs, steps)
				tp.Forward(m, x, seqs, ForwardOptions{})

				ws := newWorkspace(m, seqs, kern)
				h, c := make([]float32, seqs*shape.h), make([]float32, seqs*shape.h)
				xt := make([]float32, seqs*shape.f)
				out := StepOut{WantErrors: true}
				for st := range steps {
					for s := range seqs {
						copy(xt[s*shape.f:], x[(s*steps+st)*shape.f:(s*steps+st+1)*shape.f])
					}
					m.Step(ws, h, c, xt, &out)
					for s := range seqs {
						var anomaly float64
						pred, xn := tp.Pred(s, st), tp.Normalized(s, st)
						for j := range pred {
							d := float64(pred[j] - xn[j])
							anomaly += d * d
						}
						anomaly /= float64(shape.f)
						var sum float64
						for _, e := range out.Errors[s*shape.f : (s+1)*shape.f] {
							sum += float64(e)
						}
						if d := math.Abs(sum/float64(shape.f) - float64(out.Anomaly[s])); d > 1e-5*max(1, sum) {
							t.Fatalf("step %d host %d: mean of Errors %g, Anomaly %g", st, s, sum/float64(shape.f), out.Anomaly[s])
						}
						probs := make([]float32, shape.c)
						softmax(probs, tp.Logits(s, st))
						if err := near(out.EmbOf(s), tp.Emb(s, st), 2e-5); err != nil {
							t.Fatalf("step %d host %d: emb%v", st, s, err)
						}
						if err := near(out.ProbsOf(s), probs, 2e-5); err != nil {
							t.Fatalf("step %d host %d: probs%v", st, s, err)
						}
						if err := near(out.Anomaly[s:s+1], []float32{float32(anomaly)}, 2e-5); err != nil {
							t.Fatalf("step %d host %d: anomaly%v", st, s, err)
						}
					}
				}
			})
		}
	}
}

func TestStepZeroAllocs(t *testing.T) {
	for _, kern := range testKernels() {
		st := newBenchState(t, 100, 1, kern)
		st.step()
		if n := testing.AllocsPerRun(20, st.step); n != 0 {
			t.Errorf("%s: Step allocates %v times per run, want 0", kern.name, n)
		}
	}
}

func TestStepNonFiniteInput(t *testing.T) {
	m := newTestModel(t, 4, 8, []string{"benign", "x"})
	ws := NewWorkspace(m, 2)
	h, c := make([]float32, 16), make([]float32, 16)
	x := []float32{1, float32(math.NaN()), 2, float32(math.Inf(-1)), 0, 1, 2, 3}
	var out StepOut
	m.Step(ws, h, c, x, &out)
	if out.Invalid != 2 {
		t.Errorf("Invalid = %d, want 2", out.Invalid)
	}
	for i, v := range append(append(append([]float32{}, h...), out.Probs...), out.Anomaly...) {
		if !finite32(v) {
			t.Fatalf("output %d = %g, want finite", i, v)
		}
	}
}

// TestWorkspaceFollowsWeights: after the weights change (an optimizer step,
// a new class), a workspace in use computes with the new weights.
func TestWorkspaceFollowsWeights(t *testing.T) {
	m := newTestModel(t, 4, 8, []string{"benign", "x"})
	rng := rand.New(rand.NewPCG(32, 0))
	x := randSlice(rng, 3*4, 1)
	run := func(ws *Workspace) []float32 {
		h, c := make([]float32, 24), make([]float32, 24)
		var out StepOut
		m.Step(ws, h, c, x, &out)
		return append(append([]float32{}, out.Probs...), h...)
	}
	ws := NewWorkspace(m, 3)
	before := run(ws)
	opt, _ := NewAdamW(DefaultAdamW())
	g := m.NewGrads()
	for _, s := range g.slots() {
		for i := range *s {
			(*s)[i] = 1
		}
	}
	opt.Step(m, g)
	if _, err := m.AddClass("y", randSlice(rng, m.EmbeddingDim(), 1), 0.5); err != nil {
		t.Fatal(err)
	}
	got, want := run(ws), run(NewWorkspace(m, 3))
	sameBits(t, "stale workspace", got, want)
	if len(got) == len(before) {
		t.Errorf("output did not grow with the new class")
	}
}

func TestStepShapePanics(t *testing.T) {
	m := newTestModel(t, 4, 8, []string{"benign"})
	ws := NewWorkspace(m, 2)
	tests := []struct {
		name    string
		h, c, x []float32
	}{
		{"x not rows", make([]float32, 16), make([]float32, 16), make([]float32, 7)},
		{"h short", make([]float32, 8), make([]float32, 16), make([]float32, 8)},
		{"batch too big", make([]float32, 24), make([]float32, 24), make([]float32, 12)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("Step did not panic")
				}
			}()
			m.Step(ws, tc.h, tc.c, tc.x, &StepOut{})
		})
	}
}

func TestExplain(t *testing.T) {
	m := newTestModel(t, 4, 6, []string{"benign", "a", "b"})
	rng := rand.New(rand.NewPCG(33, 0))
	z := randSlice(rng, m.EmbeddingDim(), 1)
	const k = 1
	feat, hist := m.Explain(nil, z, k)
	// Gradient × input against a central difference of the log-odds of
	// class k in float64.
	d, c := m.EmbeddingDim(), m.NumClasses()
	logp := func(z []float64) float64 {
		lg := make([]float64, c)
		for cl := range c {
			lg[cl] = float64(m.P.ClsB[cl])
			for j := range d {
				lg[cl] += float64(m.P.ClsW[cl*d+j]) * z[j]
			}
		}
		lp := make([]float64, c)
		logSoftmax(lp, lg)
		return lp[k] - math.Log(-math.Expm1(lp[k]))
	}
	z64 := make([]float64, d)
	for j, v := range z {
		z64[j] = float64(v)
	}
	var wantHist float64
	for j := range d {
		zp, zm := append([]float64{}, z64...), append([]float64{}, z64...)
		zp[j] += 1e-5
		zm[j] -= 1e-5
		contrib := z64[j] * (logp(zp) - logp(zm)) / 2e-5
		if j < m.Hidden() {
			wantHist += contrib
			continue
		}
		if got := float64(feat[j-m.Hidden()]); math.Abs(got-contrib) > 1e-4*max(1, math.Abs(contrib)) {
			t.Errorf("feature %d contribution %g, want %g", j-m.Hidden(), got, contrib)
		}
	}
	if math.Abs(float64(hist)-wantHist) > 1e-4*max(1, math.Abs(wantHist)) {
		t.Errorf("history contribution %g, want %g", hist, wantHist)
	}

	// A certain alert is still explained: at p_k = 1 in float32 the
	// contributions are what they were, not zero.
	m.P.ClsB[k] += 200
	m.WeightsChanged()
	if p := m.HeadProbs(nil, z)[k]; p != 1 {
		t.Fatalf("p_k = %v after raising its bias, want 1", p)
	}
	sure, _ := m.Explain(nil, z, k)
	if !slices.Equal(sure, feat) {
		t.Errorf("contributions at p_k = 1: %v, want those of the log-odds, %v", sure, feat)
	}
}
