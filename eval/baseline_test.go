package eval

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/metaids/metaids/dataset"
	"github.com/metaids/metaids/integration"
)

// TestEvalBaselineSideBySide evaluates the model and the per-flow baseline
// on the same rows and checks the comparison adds up: each model's own
// numbers, and the flows one catches and the other misses, which must
// account exactly for the difference in true positives.
func TestEvalBaselineSideBySide(t *testing.T) {
	skipUnderRace(t)
	if testing.Short() {
		t.Skip("trains two models")
	}
	cfg := testConfig(syntheticLog(t, t.TempDir(), 1, 20, 31*time.Minute))
	cfg.Baseline = "per-flow"
	rep, err := Run(t.Context(), cfg, testLog(t))
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	br := rep.Baseline
	if br == nil || !br.PerFlow || br.Kind != "per-flow" {
		t.Fatalf("Baseline = %+v, want a per-flow one", br)
	}
	for name, h := range map[string]Headline{"model": rep.Headline, "baseline": br.Headline} {
		at, an := h.RecallAtFPR, h.AnomalyRecallAtFPR
		if at.TargetFPR != 0.01 || at.BenignValFlows == 0 || !(at.Threshold >= 0 && at.Threshold <= 1) || at.Recall != at.Recall || at.Attacks == 0 {
			t.Errorf("%s: recall at fixed FPR = %+v, want a threshold from benign validation flows and a recall", name, at)
		}
		if an.BenignValFlows != at.BenignValFlows || !(an.Threshold > 0) || an.Recall != an.Recall || an.Attacks != at.Attacks {
			t.Errorf("%s: anomaly recall at fixed FPR = %+v, want a positive threshold from the same flows and a recall", name, an)
		}
		if h.FewShotK != 10 || h.FewShotRecall != h.FewShotRecall || h.BinaryF1 != h.BinaryF1 {
			t.Errorf("%s: headline = %+v, want K = 10 and defined F1 and few-shot recall", name, h)
		}
	}
	if rep.Headline.BinaryF1 != rep.Binary.F1 || br.Headline.BinaryF1 != br.Binary.F1 {
		t.Errorf("headline F1s %v, %v differ from the binary F1s %v, %v", rep.Headline.BinaryF1, br.Headline.BinaryF1, rep.Binary.F1, br.Binary.F1)
	}
	// Both scored every row, so TP_model − TP_baseline is exactly what
	// the model alone caught minus what the baseline alone caught, and
	// the same for the false positives.
	if got, want := br.ModelOnly.Attacks-br.BaselineOnly.Attacks, rep.Binary.TP-br.Binary.TP; got != want {
		t.Errorf("model-only − baseline-only attack flows = %d, want TP difference %d", got, want)
	}
	if got, want := br.ModelOnly.Benign-br.BaselineOnly.Benign, rep.Binary.FP-br.Binary.FP; got != want {
		t.Errorf("model-only − baseline-only benign flows = %d, want FP difference %d", got, want)
	}
	for _, d := range []Difference{br.ModelOnly, br.BaselineOnly, br.ModelOnlyAtFPR, br.BaselineOnlyAtFPR} {
		if (d.Attacks == 0) != (d.AttackHosts == 0) || d.AttackHosts > d.Attacks || len(d.TopAttackHosts) > min(5, d.AttackHosts) {
			t.Errorf("difference %+v: hosts and flows disagree", d)
		}
	}
	var tbl strings.Builder
	if err := WriteTable(&tbl, rep); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", tbl.String())
}

// TestEvalThresholdsIgnoreEvalLabels: every threshold a reported number
// uses is fixed before the evaluated rows are scored, so corrupting the
// evaluated rows' labels (swapping benign and the known families, leaving
// the new family the analyst labels alone) leaves the thresholds and every
// score bit for bit the same, while the metrics change.
func TestEvalThresholdsIgnoreEvalLabels(t *testing.T) {
	skipUnderRace(t)
	if testing.Short() {
		t.Skip("trains four models")
	}
	dir := t.TempDir()
	trainRecs, err := dataset.Synthetic(dataset.SyntheticConfig{Seed: 3, Hosts: 12, Duration: 20 * time.Minute, Waves: 2})
	if err != nil {
		t.Fatal(err)
	}
	trainLog := writeZeekLog(t, t.TempDir(), "train.conn.log.labeled.gz", trainRecs)
	evalRecs, err := dataset.Synthetic(dataset.SyntheticConfig{Seed: 4, Hosts: 12, Duration: 20 * time.Minute, Waves: 2})
	if err != nil {
		t.Fatal(err)
	}
	truthLog := writeZeekLog(t, dir, "truth.conn.log.labeled.gz", evalRecs)
	corrupt := make([]dataset.Record, len(evalRecs))
	copy(corrupt, evalRecs)
	swapped := 0
	for i := range corrupt {
		switch corrupt[i].Label {
		case testFamily:
		case dataset.Benign:
			corrupt[i].Label = integration.FamilyPortScan
			swapped++
		default:
			corrupt[i].Label = dataset.Benign
			swapped++
		}
	}
	corruptLog := writeZeekLog(t, t.TempDir(), "truth.conn.log.labeled.gz", corrupt)

	type run struct {
		rep            *Report
		o, ob          *outcome
		op, opB        opPoint
		thresholds     []float32
		thresholdsB    []float32
		anomaly, anomB float32
	}
	evaluate := func(data string) run {
		cfg := testConfig(data)
		cfg.Train = []string{trainLog}
		cfg.Baseline = "per-flow"
		m, es, ts, err := prepare(t.Context(), cfg, testLog(t))
		if err != nil {
			t.Fatal(err)
		}
		// -train files are training data whole: no row of them is kept
		// back as a test set that nothing would score.
		known := 0
		for i, sp := range es.fit.Split {
			switch sp {
			case dataset.Test:
				t.Fatalf("-train row %d (%s) is in the test split; want every row trained or validated on", i, es.fit.Records[i].Label)
			case dataset.Train, dataset.Val:
				known++
			}
		}
		if ts.Flows != known || known == 0 {
			t.Errorf("trained on %d flows, want all %d rows of -train not of a new family", ts.Flows, known)
		}
		base, _, err := prepareBaseline(t.Context(), cfg, es, testLog(t))
		if err != nil {
			t.Fatal(err)
		}
		var r run
		r.op, r.opB = operatingPoint(m, es, cfg.FixedFPR), operatingPoint(base, es, cfg.FixedFPR)
		r.thresholds, r.anomaly = append([]float32(nil), m.Thresholds...), m.AnomalyThreshold
		r.thresholdsB, r.anomB = append([]float32(nil), base.Thresholds...), base.AnomalyThreshold
		if r.o, err = runMode(t.Context(), cfg, m, es, testLog(t)); err != nil {
			t.Fatal(err)
		}
		if r.ob, err = runMode(t.Context(), cfg, base, es, testLog(t)); err != nil {
			t.Fatal(err)
		}
		r.rep = r.o.report(cfg)
		return r
	}
	a, b := evaluate(truthLog), evaluate(corruptLog)

	bits := func(what string, x, y []float32) {
		t.Helper()
		if len(x) != len(y) {
			t.Fatalf("%s: %d values, then %d", what, len(x), len(y))
		}
		for i := range x {
			if math.Float32bits(x[i]) != math.Float32bits(y[i]) {
				t.Fatalf("%s[%d] = %v with true labels, %v with corrupted ones", what, i, x[i], y[i])
			}
		}
	}
	bits("fixed-FPR and anomaly thresholds", []float32{a.op.attack, a.op.anomaly, a.opB.attack, a.opB.anomaly, a.anomaly, a.anomB},
		[]float32{b.op.attack, b.op.anomaly, b.opB.attack, b.opB.anomaly, b.anomaly, b.anomB})
	bits("class thresholds", a.thresholds, b.thresholds)
	bits("baseline class thresholds", a.thresholdsB, b.thresholdsB)
	for _, p := range []struct {
		name string
		x, y *outcome
	}{{"model", a.o, b.o}, {"baseline", a.ob, b.ob}} {
		if len(p.x.rows) != len(p.y.rows) {
			t.Fatalf("%s: %d rows scored, then %d", p.name, len(p.x.rows), len(p.y.rows))
		}
		name := func(o *outcome, k int16) string {
			if k == predNone {
				return ""
			}
			return o.names[k]
		}
		for j := range p.x.rows {
			rx, ry := p.x.rows[j], p.y.rows[j]
			if math.Float32bits(rx.attack) != math.Float32bits(ry.attack) || math.Float32bits(rx.anomaly) != math.Float32bits(ry.anomaly) ||
				rx.version != ry.version || name(p.x, rx.pred) != name(p.y, ry.pred) {
				t.Fatalf("%s row %d: scored %+v with true labels, %+v with corrupted ones", p.name, j, rx, ry)
			}
		}
		bits(p.name+" embeddings", p.x.emb, p.y.emb)
		bits(p.name+" fixed-FPR scores", p.x.startScores(), p.y.startScores())
	}
	if swapped == 0 || a.rep.Binary.F1 == b.rep.Binary.F1 || a.rep.Binary.TP == b.rep.Binary.TP {
		t.Errorf("binary %+v with true labels, %+v with %d corrupted: the metrics should move", a.rep.Binary, b.rep.Binary, swapped)
	}
}
