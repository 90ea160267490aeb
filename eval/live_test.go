package eval

import (
	"math"
	"testing"
)

// TestEvalLiveMatchesOffline runs one evaluation both ways, the stages over
// the embedded broker and the in-process scorer, and holds their numbers
// within 1% of each other. The live replay is paced so that few flows fall
// between the labels and the update going live: those the old model
// scores live, the update offline.
func TestEvalLiveMatchesOffline(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a model and runs every stage over an embedded broker")
	}
	path, data := testModel(t)
	cfg := testConfig(data)
	cfg.Model = path
	cfg.Live.Rate = 2000
	off, err := Run(t.Context(), cfg, testLog(t))
	if err != nil {
		t.Fatalf("offline Run: %v", err)
	}
	cfg.Offline = false
	live, err := Run(t.Context(), cfg, testLog(t))
	if err != nil {
		t.Fatalf("live Run: %v", err)
	}
	if live.Mode != ModeLive || live.Live == nil {
		t.Fatalf("live report mode %q, summary %v", live.Mode, live.Live)
	}
	t.Logf("live: %d flows, %+v", live.Flows, *live.Live)
	if live.Flows != off.Flows {
		t.Errorf("flows: live %d, offline %d", live.Flows, off.Flows)
	}
	if live.ModelVersionEnd != off.ModelVersionEnd {
		t.Errorf("final model version: live %d, offline %d", live.ModelVersionEnd, off.ModelVersionEnd)
	}
	if len(live.Adaptations) != len(off.Adaptations) {
		t.Fatalf("adaptations: live %d, offline %d", len(live.Adaptations), len(off.Adaptations))
	}
	for i, la := range live.Adaptations {
		oa := off.Adaptations[i]
		if la.Accepted != oa.Accepted || la.Version != oa.Version {
			t.Errorf("adaptation %d: live accepted %v v%d, offline %v v%d", i, la.Accepted, la.Version, oa.Accepted, oa.Version)
		}
		// The same labels on the same embeddings with the same seed: the
		// very same fit.
		for k, v := range oa.Gate {
			if lv, ok := la.Gate[k]; !ok || math.Abs(lv-v) > 1e-6 {
				t.Errorf("adaptation %d: gate %s live %v, offline %v", i, k, la.Gate[k], v)
			}
		}
	}
	near := func(name string, a, b Metric) {
		t.Helper()
		if math.Abs(float64(a-b)) > 0.01 || (a != a) != (b != b) {
			t.Errorf("%s: live %.4f, offline %.4f, want within 0.01", name, float64(a), float64(b))
		}
	}
	near("binary.precision", live.Binary.Precision, off.Binary.Precision)
	near("binary.recall", live.Binary.Recall, off.Binary.Recall)
	near("binary.f1", live.Binary.F1, off.Binary.F1)
	near("binary.accuracy", live.Binary.Accuracy, off.Binary.Accuracy)
	near("binary.fpr", live.Binary.FPR, off.Binary.FPR)
	near("binary.roc_auc", live.Binary.ROCAUC, off.Binary.ROCAUC)
	near("benign_fpr_before", live.BenignFPRBefore, off.BenignFPRBefore)
	near("benign_fpr_after", live.BenignFPRAfter, off.BenignFPRAfter)
	near("known_recall_before", live.KnownRecallBefore, off.KnownRecallBefore)
	near("known_recall_after", live.KnownRecallAfter, off.KnownRecallAfter)
	for name, of := range off.NewFamilies {
		lf := live.NewFamilies[name]
		if lf == nil {
			t.Errorf("new family %s missing live", name)
			continue
		}
		near(name+".recall_before", lf.RecallBefore, of.RecallBefore)
		near(name+".recall_after", lf.RecallAfter, of.RecallAfter)
		near(name+".family_recall_after", lf.FamilyRecallAfter, of.FamilyRecallAfter)
		near(name+".precision_after", lf.PrecisionAfter, of.PrecisionAfter)
		t.Logf("%s: live before %d between %d after %d; offline %d %d %d", name, lf.NBefore, lf.NBetween, lf.NAfter, of.NBefore, of.NBetween, of.NAfter)
	}
	for name, oc := range off.PerClass {
		lc := live.PerClass[name]
		if lc.Support != oc.Support {
			t.Errorf("%s support: live %d, offline %d", name, lc.Support, oc.Support)
		}
		if oc.Support >= 100 {
			near(name+".recall", lc.Recall, oc.Recall)
		}
	}
	if live.AdaptationLatencyMs.N != 1 || live.AlertLatencyMs.N == 0 || live.ThroughputFlowsPerS <= 0 {
		t.Errorf("live latencies %+v, %+v, throughput %g: want one adaptation, alerts and a rate",
			live.AdaptationLatencyMs, live.AlertLatencyMs, live.ThroughputFlowsPerS)
	}
	t.Logf("adaptation latency %+v ms, alert latency %+v ms, %0.f flows/s", live.AdaptationLatencyMs, live.AlertLatencyMs, live.ThroughputFlowsPerS)
}
