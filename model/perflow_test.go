package model

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/metaids/metaids/schemas"
)

// perFlowOf returns a copy of m with the state reset before every step.
func perFlowOf(m *Model) *Model {
	p := m.Clone()
	p.perFlow = true
	return p
}

// TestPerFlowStepIgnoresState: a per-flow model scores a flow from any
// state exactly as the same weights score it from a zero state, bit for
// bit, and Step and Tape agree on it as they do for the LSTM.
func TestPerFlowStepIgnoresState(t *testing.T) {
	for _, kern := range testKernels() {
		t.Run(kern.name, func(t *testing.T) {
			const f, h, seqs, steps = 5, 12, 30, 4
			lstm := newTestModel(t, f, h, []string{"c0", "c1", "c2"})
			pf := perFlowOf(lstm)
			rng := rand.New(rand.NewPCG(41, 0))
			x := randSlice(rng, seqs*steps*f, 1.5)

			tp := NewTape(pf, seqs, steps)
			tp.Forward(pf, x, seqs, ForwardOptions{H0: randSlice(rng, seqs*h, 1), C0: randSlice(rng, seqs*h, 1)})

			ws, wsRef := newWorkspace(pf, seqs, kern), newWorkspace(lstm, seqs, kern)
			hs, cs := randSlice(rng, seqs*h, 1), randSlice(rng, seqs*h, 1)
			xt := make([]float32, seqs*f)
			var out, ref StepOut
			for st := range steps {
				for s := range seqs {
					copy(xt[s*f:], x[(s*steps+st)*f:(s*steps+st+1)*f])
				}
				pf.Step(ws, hs, cs, xt, &out)
				lstm.Step(wsRef, make([]float32, seqs*h), make([]float32, seqs*h), xt, &ref)
				sameBits(t, fmt.Sprint("step ", st, " probs"), out.Probs, ref.Probs)
				sameBits(t, fmt.Sprint("step ", st, " anomaly"), out.Anomaly, ref.Anomaly)
				sameBits(t, fmt.Sprint("step ", st, " emb"), out.Emb, ref.Emb)
				for s := range seqs {
					probs := make([]float32, 3)
					softmax(probs, tp.Logits(s, st))
					if err := near(out.ProbsOf(s), probs, 2e-5); err != nil {
						t.Fatalf("step %d host %d: Step probs vs Tape%v", st, s, err)
					}
					if err := near(out.EmbOf(s), tp.Emb(s, st), 2e-5); err != nil {
						t.Fatalf("step %d host %d: Step emb vs Tape%v", st, s, err)
					}
				}
			}
			hf, cf := tp.Final(seqs - 1)
			if err := near(hf, hs[(seqs-1)*h:], 2e-5); err != nil {
				t.Fatalf("Final h vs the last step's%v", err)
			}
			if err := near(cf, cs[(seqs-1)*h:], 2e-5); err != nil {
				t.Fatalf("Final c vs the last step's%v", err)
			}
		})
	}
}

// TestPerFlowTapeGradients: training a per-flow model on S windows of T
// flows gives the gradients the LSTM's tape gives for S·T windows of one
// flow each, bit for bit: the same objectives, with nothing carried between
// flows.
func TestPerFlowTapeGradients(t *testing.T) {
	const f, h, seqs, steps = 6, 10, 7, 5
	lstm := newTestModel(t, f, h, []string{"benign", "a", "b"})
	pf := perFlowOf(lstm)
	rng := rand.New(rand.NewPCG(43, 0))
	x := randSlice(rng, seqs*steps*f, 1.2)
	labels := make([]int, seqs*steps)
	mask := make([]bool, seqs*steps)
	for i := range labels {
		labels[i] = rng.IntN(4) - 1
		mask[i] = rng.IntN(2) == 0
	}

	run := func(m *Model, s, n int) (*Params, []float32) {
		tp := NewTape(m, s, n)
		tp.Forward(m, x, s, ForwardOptions{Dropout: 0.2, Rng: rand.New(rand.NewPCG(44, 0))})
		tp.PredictLossMask(0.7, mask)
		tp.ClassLoss(labels, 1)
		g := m.NewGrads()
		dx := make([]float32, len(x))
		tp.Backward(g, dx)
		return g, dx
	}
	gotG, gotDx := run(pf, seqs, steps)
	wantG, wantDx := run(lstm, seqs*steps, 1)
	got, want := gotG.tensors(f, h, 3), wantG.tensors(f, h, 3)
	for i := range got {
		sameBits(t, got[i].Name, got[i].Data, want[i].Data)
	}
	sameBits(t, "dL/dx", gotDx, wantDx)
	var norm float64
	for _, v := range gotG.WeightIH {
		norm += float64(v * v)
	}
	if norm == 0 {
		t.Fatal("the input weights got no gradient: the comparison is vacuous")
	}
}

// TestPerFlowCannotLearnBeacon is TestLearnsBeacon's control: with its
// state reset before every flow, the same model trained the same way stays
// near chance on beacons, whose single flows are drawn like benign ones.
func TestPerFlowCannotLearnBeacon(t *testing.T) {
	const seqs, steps, warm = 64, 12, 4
	rng := rand.New(rand.NewPCG(21, 0))
	cfg := DefaultConfig()
	cfg.Features, cfg.Hidden, cfg.Classes = 4, 16, []string{"benign", "beacon"}
	cfg.PerFlow = true
	m, err := New(cfg, rng)
	if err != nil {
		t.Fatal(err)
	}
	trainX, _ := beaconData(rng, 512, steps, warm)
	if err := m.SetNorm(FitNorm(trainX, 4, 1e-3)); err != nil {
		t.Fatal(err)
	}
	adamCfg := DefaultAdamW()
	adamCfg.LR = 1e-2
	opt, err := NewAdamW(adamCfg)
	if err != nil {
		t.Fatal(err)
	}
	tp := NewTape(m, seqs, steps)
	g := m.NewGrads()
	for range 200 {
		x, y := beaconData(rng, seqs, steps, warm)
		tp.Forward(m, x, seqs, ForwardOptions{Dropout: 0.1, Rng: rng})
		tp.PredictLoss(0.1, 1)
		tp.ClassLoss(y, 1)
		g.Zero()
		tp.Backward(g, nil)
		ClipGradNorm(g, 1)
		opt.Step(m, g)
	}
	testX, testY := beaconData(rand.New(rand.NewPCG(22, 0)), 1000, steps, warm)
	// 8000 labelled flows: chance is 0.5 ± 0.006 (one standard error).
	acc := streamAccuracy(m, testX, testY, 1000, steps)
	t.Logf("per-flow beacon accuracy %.4f", acc)
	if acc > 0.6 {
		t.Errorf("per-flow beacon accuracy %.4f, want ≤ 0.6: the per-flow model sees history", acc)
	}
}

// TestPerFlowUpdate: the per-flow mode survives a full update, the model
// file and Clone; a head update leaves the base model's mode alone; an LSTM
// carries no marker; a malformed marker is refused.
func TestPerFlowUpdate(t *testing.T) {
	lstm := newTrainedLike(t)
	pf := perFlowOf(lstm)

	u, err := pf.Update(schemas.UpdateFull)
	if err != nil {
		t.Fatal(err)
	}
	back, err := FromUpdate(u, "spec-v1")
	if err != nil {
		t.Fatal(err)
	}
	if !back.PerFlow() {
		t.Fatal("FromUpdate(per-flow update).PerFlow() = false, want true")
	}
	sameBits(t, "step outputs after FromUpdate", stepOutputs(back), stepOutputs(pf))

	path := filepath.Join(t.TempDir(), "baseline.model")
	if err := pf.Save(path); err != nil {
		t.Fatal(err)
	}
	loaded, err := Load(path, "spec-v1")
	if err != nil {
		t.Fatal(err)
	}
	if !loaded.PerFlow() || !loaded.Clone().PerFlow() {
		t.Fatal("per-flow mode lost through Save/Load or Clone")
	}

	hu, err := lstm.Update(schemas.UpdateHead)
	if err != nil {
		t.Fatal(err)
	}
	applied, err := pf.ApplyHead(hu)
	if err != nil {
		t.Fatal(err)
	}
	if !applied.PerFlow() {
		t.Fatal("ApplyHead on a per-flow model lost its mode")
	}
	if hu, _ := pf.Update(schemas.UpdateHead); len(hu.Tensors) != 2 {
		t.Fatalf("per-flow head update carries %d tensors, want the 2 classifier tensors", len(hu.Tensors))
	}

	lu, err := lstm.Update(schemas.UpdateFull)
	if err != nil {
		t.Fatal(err)
	}
	if len(lu.Tensors) != len(u.Tensors)-1 {
		t.Fatalf("LSTM update carries %d tensors, per-flow %d: want exactly the marker more", len(lu.Tensors), len(u.Tensors))
	}
	if m, err := FromUpdate(lu, "spec-v1"); err != nil || m.PerFlow() {
		t.Fatalf("FromUpdate(LSTM update) = PerFlow %v, %v; want false, nil", m != nil && m.PerFlow(), err)
	}

	for _, tc := range []struct {
		name string
		edit func(*schemas.ModelUpdate)
	}{
		{"value", func(u *schemas.ModelUpdate) { u.Tensors[len(u.Tensors)-1].Data[0] = 0 }},
		{"shape", func(u *schemas.ModelUpdate) {
			u.Tensors[len(u.Tensors)-1] = schemas.Tensor{Name: TensorPerFlow, Rows: 2, Cols: 1, Data: []float32{1, 1}}
		}},
		{"twice", func(u *schemas.ModelUpdate) { u.Tensors = append(u.Tensors, u.Tensors[len(u.Tensors)-1]) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad, _ := pf.Update(schemas.UpdateFull)
			tc.edit(bad)
			if _, err := FromUpdate(bad, ""); !errors.Is(err, ErrInvalid) {
				t.Fatalf("FromUpdate(marker %s) = %v, want ErrInvalid", tc.name, err)
			}
		})
	}
}
