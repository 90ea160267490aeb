package train

import (
	"testing"

	"github.com/metaids/metaids/integration"
)

// TestTrainPerFlow trains the per-flow baseline with the LSTM's settings:
// the model is per-flow, pretraining is skipped, thresholds and exemplars
// are set, and the per-flow classifier still separates the synthetic
// families whose single flows differ from benign ones.
func TestTrainPerFlow(t *testing.T) {
	d := synthData(t, integration.FamilyDNSTunnel)
	cfg := quickConfig()
	cfg.PerFlow = true
	res, rep, err := Run(t.Context(), d, cfg, DefaultOptions(), nil)
	if err != nil {
		t.Fatal(err)
	}
	m := res.Model
	if !m.PerFlow() {
		t.Fatal("model.PerFlow() = false, want true")
	}
	for _, e := range res.History {
		if e.Phase != PhaseTrain {
			t.Errorf("epoch %d ran phase %q, want only %q: the per-flow predictor has nothing to pretrain", e.Epoch, e.Phase, PhaseTrain)
		}
	}
	if !(m.AnomalyThreshold > 0) || len(m.Exemplars) == 0 {
		t.Errorf("anomaly threshold %v, %d exemplars; want positive, some", m.AnomalyThreshold, len(m.Exemplars))
	}
	t.Logf("per-flow test split: %+v", rep.Test.Classifier)
	if ev := rep.Test; ev.Classifier.F1 < 0.8 {
		t.Errorf("per-flow classifier on synthetic test flows: F1 %.3f, want ≥ 0.8", ev.Classifier.F1)
	}
}
