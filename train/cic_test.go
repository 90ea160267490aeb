package train

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/metaids/metaids/dataset"
	"github.com/metaids/metaids/model"
)

// cicDir locates the shared CIC-IDS2017 sample relative to this package.
func cicDir(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("CIC acceptance: trains twice on 35,750 flows")
	}
	if raceEnabled {
		t.Skip("CIC acceptance: trains on one goroutine, nothing for the race detector to find; go test without -race runs it")
	}
	dir := filepath.Join("..", "..", "shared", "datasets", "cicids2017-improved-sampled")
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("CIC acceptance needs ../shared/datasets/cicids2017-improved-sampled (absent: %v)", err)
	}
	return dir
}

// TestCICAcceptance is issue 5's acceptance on the shared CIC-IDS2017
// sample with the time split: binary F1 of the classifier, few-shot
// adaptation to two families the run never saw, and the zero-label anomaly
// score of the pretrain-only model.
func TestCICAcceptance(t *testing.T) {
	dir := cicDir(t)
	dcfg := dataset.DefaultConfig()
	dcfg.Holdout = []string{"DoS Slowloris", "Web Attack - Brute Force"}
	recs, _, err := dataset.Load([]string{dir}, dcfg)
	if err != nil {
		t.Fatal(err)
	}
	d, err := dataset.Build(recs, dcfg)
	if err != nil {
		t.Fatal(err)
	}
	if d.DeltaT {
		t.Error("dt_prev is filled from gaps on per-class samples; want it off")
	}
	cfg := DefaultConfig()
	t0 := time.Now()
	res, rep, err := Run(t.Context(), d, cfg, Options{FewShotK: []int{10}, RobustFlows: 200, FineTune: model.DefaultFineTune()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("trained in %s (%d epochs), evaluated in %s", res.Duration.Round(time.Millisecond), len(res.History), (time.Since(t0) - res.Duration).Round(time.Millisecond))
	if res.Duration > 10*time.Minute {
		t.Errorf("training took %s, want under 10 minutes", res.Duration)
	}
	cl := rep.Test.Classifier
	t.Logf("binary: F1 %.4f precision %.4f recall %.4f FPR %.4f", cl.F1, cl.Precision, cl.Recall, cl.FPR)
	if cl.F1 < 0.95 {
		t.Errorf("binary F1 = %.4f, want ≥ 0.95", cl.F1)
	}
	for _, c := range rep.Test.PerClass {
		t.Logf("  %-26s n=%5d recall %.3f", c.Class, c.N, c.Recall)
	}
	for _, fam := range dcfg.Holdout {
		var got *FewShot
		for i := range rep.FewShot {
			if rep.FewShot[i].Family == fam && rep.FewShot[i].K == 10 {
				got = &rep.FewShot[i]
			}
		}
		if got == nil {
			t.Errorf("no K=10 few-shot result for %s", fam)
			continue
		}
		t.Logf("few-shot %s K=10: prototype head recall %.3f FPR %.4f; fine-tuned recall %.3f FPR %.4f",
			fam, got.ProtoRecall, got.ProtoFPR, got.Recall, got.FPR)
		if got.ProtoRecall < 0.85 || got.ProtoFPR > 0.02 {
			t.Errorf("few-shot %s K=10 with a prototype-initialised head: recall %.3f, FPR %.4f; want ≥ 0.85 and ≤ 0.02",
				fam, got.ProtoRecall, got.ProtoFPR)
		}
	}
	pcfg := cfg
	pcfg.Epochs = 0
	pre, err := Train(t.Context(), d, pcfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ev := Evaluate(pre.Model, d, Score(pre.Model, d))
	t.Logf("pretrain-only anomaly score: ROC AUC %.4f, trained in %s", ev.AnomalyROC.AUC, pre.Duration.Round(time.Millisecond))
	if ev.AnomalyROC.AUC < 0.85 {
		t.Errorf("pretrain-only anomaly ROC AUC = %.4f, want ≥ 0.85", ev.AnomalyROC.AUC)
	}
}
