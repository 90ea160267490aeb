package model

import (
	"math"
	"math/rand/v2"
	"testing"
)

// beaconData draws sequences of steps flows of 4 features: the gap since the
// host's previous flow, its size, and two noise features. A beacon host
// calls home at a fixed period with a fixed size (each drawn per host from
// the same distribution as benign values, with 1% jitter); a benign host's
// gaps and sizes vary. No single flow tells them apart: the model has to
// notice the regularity over time. Labels are −1 for a host's first
// warm flows.
func beaconData(rng *rand.Rand, seqs, steps, warm int) (x []float32, labels []int) {
	const f = 4
	x = make([]float32, seqs*steps*f)
	labels = make([]int, seqs*steps)
	for s := range seqs {
		beacon := rng.IntN(2)
		period, size := rng.ExpFloat64(), 3+rng.NormFloat64()
		for t := range steps {
			row := x[(s*steps+t)*f : (s*steps+t+1)*f]
			if beacon == 1 {
				row[0] = float32(period * (1 + 0.01*rng.NormFloat64()))
				row[1] = float32(size + 0.01*rng.NormFloat64())
			} else {
				row[0] = float32(rng.ExpFloat64())
				row[1] = float32(3 + rng.NormFloat64())
			}
			row[2], row[3] = float32(rng.NormFloat64()), float32(rng.NormFloat64())
			labels[s*steps+t] = beacon
			if t < warm {
				labels[s*steps+t] = -1
			}
		}
	}
	return x, labels
}

// TestLearnsBeacon trains the whole model with the building blocks the
// trainer uses (Tape, multi-task loss, dropout, clipping, AdamW, early
// stopping) and checks the streaming Step then tells beacons from benign
// hosts.
func TestLearnsBeacon(t *testing.T) {
	const seqs, steps, warm = 64, 12, 4
	rng := rand.New(rand.NewPCG(21, 0))
	cfg := DefaultConfig()
	cfg.Features, cfg.Hidden, cfg.Classes = 4, 16, []string{"benign", "beacon"}
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
	valX, valY := beaconData(rng, 256, steps, warm)
	stop := EarlyStopping{Patience: 5, HigherIsBetter: true}
	for epoch := range 40 {
		for range 20 {
			x, y := beaconData(rng, seqs, steps, warm)
			tp.Forward(m, x, seqs, ForwardOptions{Dropout: 0.1, Rng: rng})
			tp.PredictLoss(0.1, 1)
			tp.ClassLoss(y, 1)
			g.Zero()
			tp.Backward(g, nil)
			ClipGradNorm(g, 1)
			opt.Step(m, g)
		}
		acc := streamAccuracy(m, valX, valY, 256, steps)
		if _, done := stop.Observe(acc, m); done || acc == 1 {
			t.Logf("stopped after epoch %d, validation accuracy %.4f", epoch, acc)
			break
		}
	}
	best, _ := stop.Best()
	testX, testY := beaconData(rand.New(rand.NewPCG(22, 0)), 1000, steps, warm)
	if acc := streamAccuracy(best, testX, testY, 1000, steps); acc <= 0.99 {
		t.Errorf("beacon accuracy %.4f, want > 0.99", acc)
	}
}

// streamAccuracy feeds the sequences flow by flow through Step, as the
// scorer would, and returns the arg-max accuracy over labelled flows.
func streamAccuracy(m *Model, x []float32, labels []int, seqs, steps int) float64 {
	f, h := m.Features(), m.Hidden()
	ws := NewWorkspace(m, seqs)
	hs, cs := make([]float32, seqs*h), make([]float32, seqs*h)
	xt := make([]float32, seqs*f)
	var out StepOut
	correct, n := 0, 0
	for t := range steps {
		for s := range seqs {
			copy(xt[s*f:(s+1)*f], x[(s*steps+t)*f:(s*steps+t+1)*f])
		}
		m.Step(ws, hs, cs, xt, &out)
		for s := range seqs {
			y := labels[s*steps+t]
			if y < 0 {
				continue
			}
			p := out.ProbsOf(s)
			arg := 0
			for k := range p {
				if p[k] > p[arg] {
					arg = k
				}
			}
			if arg == y {
				correct++
			}
			n++
		}
	}
	return float64(correct) / float64(n)
}

// TestFineTuneHeadNewClass: a class added from its prototype is recognised
// at once, and fine-tuning with replayed exemplars keeps the old ones.
func TestFineTuneHeadNewClass(t *testing.T) {
	rng := rand.New(rand.NewPCG(23, 0))
	m := newTestModel(t, 4, 6, []string{"benign", "scan"})
	d := m.EmbeddingDim()
	centres := [][]float32{randSlice(rng, d, 2), randSlice(rng, d, 2), randSlice(rng, d, 2)}
	draw := func(k, n int) ([]float32, []int) {
		emb, y := make([]float32, 0, n*d), make([]int, n)
		for i := range n {
			for j := range d {
				emb = append(emb, centres[k][j]+float32(0.3*rng.NormFloat64()))
			}
			y[i] = k
		}
		return emb, y
	}
	// Known classes first: fit the head on them.
	var emb []float32
	var y []int
	for k := range 2 {
		e, l := draw(k, 100)
		emb, y = append(emb, e...), append(y, l...)
	}
	if _, err := m.FineTuneHead(emb, y, DefaultFineTune(), rng); err != nil {
		t.Fatal(err)
	}
	// A new family with five examples.
	shots, shotY := draw(2, 5)
	for i := range shotY {
		shotY[i] = 0 // the prototype is computed with class index 0 of a 1-class set
	}
	proto, _, err := Prototypes(shots, d, shotY, 1)
	if err != nil {
		t.Fatal(err)
	}
	k, err := m.AddClass("exfil", proto, 0.5)
	if err != nil || k != 2 {
		t.Fatalf("AddClass = %d, %v, want 2, nil", k, err)
	}
	testE, testY := draw(2, 50)
	if acc := headAccuracy(m, testE, testY); acc < 0.95 {
		t.Errorf("new class from prototype alone: accuracy %.2f, want >= 0.95", acc)
	}
	for i := range shotY {
		shotY[i] = 2
	}
	emb, y = append(emb, shots...), append(y, shotY...)
	loss, err := m.FineTuneHead(emb, y, DefaultFineTune(), rng)
	if err != nil || math.IsNaN(loss) {
		t.Fatalf("FineTuneHead = %g, %v", loss, err)
	}
	for c := range 3 {
		e, l := draw(c, 50)
		if acc := headAccuracy(m, e, l); acc < 0.95 {
			t.Errorf("after fine-tuning, class %d accuracy %.2f, want >= 0.95", c, acc)
		}
	}
}

func headAccuracy(m *Model, emb []float32, y []int) float64 {
	p := m.HeadProbs(nil, emb)
	c := m.NumClasses()
	correct := 0
	for i, want := range y {
		arg := 0
		for k := range c {
			if p[i*c+k] > p[i*c+arg] {
				arg = k
			}
		}
		if arg == want {
			correct++
		}
	}
	return float64(correct) / float64(len(y))
}
