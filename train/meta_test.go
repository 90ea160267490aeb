package train

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/metaids/metaids/model"
)

// TestAddClassLossGradient checks addClassLoss's gradients with respect to
// the embeddings (support rows through the prototype, query rows directly)
// and the trained head rows against central differences.
func TestAddClassLossGradient(t *testing.T) {
	d := synthData(t)
	cfg := quickConfig()
	cfg.Meta.Shots, cfg.Meta.Queries, cfg.Meta.Ways = 3, 2, 3
	tr, err := newTrainer(d, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	E := tr.sampleEpisode(0)
	if E == 0 {
		t.Fatal("no episode")
	}
	tr.tape.Forward(tr.m, tr.x[:E*tr.t*tr.f], E, model.ForwardOptions{})
	ep := &tr.episode
	D := tr.m.EmbeddingDim()
	ep.emb = make([]float32, len(ep.labels)*D)
	for i := range ep.labels {
		copy(ep.emb[i*D:(i+1)*D], tr.tape.Emb(ep.slot[i], ep.pos[i]))
	}
	// The loss draws its new class at random: replay the same draw.
	eval := func() float64 {
		tr.rng = rand.New(rand.NewPCG(9, 9))
		tr.tape.ZeroGrad()
		tr.g.Zero()
		return tr.addClassLoss(1)
	}
	eval()
	demb := make([][]float32, len(ep.labels))
	for i := range ep.labels {
		demb[i] = append([]float32(nil), tr.tape.DEmb(ep.slot[i], ep.pos[i])...)
	}
	gW := append([]float32(nil), tr.g.ClsW...)
	gB := append([]float32(nil), tr.g.ClsB...)
	const h = 1e-2
	var largest float64
	check := func(name string, v *float32, analytic float32) {
		t.Helper()
		largest = max(largest, math.Abs(float64(analytic)))
		old := *v
		*v = old + h
		lp := eval()
		*v = old - h
		lm := eval()
		*v = old
		num := (lp - lm) / (2 * h)
		if math.Abs(num-float64(analytic)) > 2e-3+2e-2*math.Abs(num) {
			t.Errorf("%s: analytic %.6f, numeric %.6f", name, analytic, num)
		}
	}
	for i := range ep.labels {
		for _, j := range []int{0, 5, D - 1} {
			check("emb", &ep.emb[i*D+j], demb[i][j])
		}
	}
	for c := range tr.nCls {
		check("ClsB", &tr.m.P.ClsB[c], gB[c])
		check("ClsW", &tr.m.P.ClsW[c*D+3], gW[c*D+3])
	}
	if largest < 1e-3 {
		t.Errorf("largest gradient checked is %g: the check proves nothing", largest)
	}
}

// TestStateReplay checks that windows starting their host's stream start
// from zeros and, once states are saved, mid-stream windows start from
// saved ones.
func TestStateReplay(t *testing.T) {
	d := synthData(t)
	cfg := quickConfig()
	cfg.StateReplay = 1
	tr, err := newTrainer(d, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	w := cfg.Weights
	tr.trainStep(w) // fills the pool
	if len(tr.pool) == 0 {
		t.Fatal("no state saved after a step")
	}
	tr.trainStep(w)
	H := cfg.Hidden
	var fresh, replayed int
	for s := range cfg.Batch {
		nonzero := false
		for _, v := range tr.h0[s*H : (s+1)*H] {
			nonzero = nonzero || v != 0
		}
		if tr.fresh[s] {
			fresh++
			if nonzero {
				t.Errorf("window %d starts its stream but not from zeros", s)
			}
		} else if nonzero {
			replayed++
		}
	}
	if replayed == 0 {
		t.Errorf("no mid-stream window of %d started from a saved state (%d start their streams)", cfg.Batch, fresh)
	}
}
