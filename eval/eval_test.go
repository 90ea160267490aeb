package eval

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/metaids/metaids/dataset"
	"github.com/metaids/metaids/features"
	"github.com/metaids/metaids/model"
	"github.com/metaids/metaids/scorer"
	"github.com/metaids/metaids/train"
)

func TestEvalConfigValidate(t *testing.T) {
	ok := func(c *Config) {}
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want []string // substrings of the error; none means valid
	}{
		{"defaults with data and a family", ok, nil},
		{"no data", func(c *Config) { c.Data = nil }, []string{"-data:"}},
		{"no family: detection only", func(c *Config) { c.NewFamilies = nil }, nil},
		{"benign family", func(c *Config) { c.NewFamilies = []string{"BENIGN"} }, []string{"-new-family: \"BENIGN\" is benign"}},
		{"family twice", func(c *Config) { c.NewFamilies = []string{"a", "a"} }, []string{"given twice"}},
		{"unusable family", func(c *Config) { c.NewFamilies = []string{" - "} }, []string{"not a family name"}},
		{"model and train", func(c *Config) { c.Model, c.Train = "m", []string{"t"} }, []string{"-model: not with -train"}},
		{"format", func(c *Config) { c.Format = "goflow2" }, []string{"-format:"}},
		{"shots", func(c *Config) { c.Shots = 0 }, []string{"-shots:"}},
		{"rate", func(c *Config) { c.Live.Rate = -1 }, []string{"-live.rate:"}},
		{"partitions", func(c *Config) { c.Live.Partitions = 0 }, []string{"-live.partitions:"}},
		{"timeout", func(c *Config) { c.Live.Timeout = time.Millisecond }, []string{"-live.timeout:"}},
		{"ttl", func(c *Config) { c.Scorer.TTL = 0 }, []string{"-scorer.ttl:"}},
		{"adapter", func(c *Config) { c.Adapter.Gate.Holdout = 2 }, []string{"-adapter.gate.holdout:"}},
		{"holdout flag", func(c *Config) { c.Dataset.Holdout = []string{"x"} }, []string{"-dataset.holdout-family:"}},
		{"trainer", func(c *Config) { c.Trainer.Hidden = 0 }, []string{"hidden"}},
		{"baseline", func(c *Config) { c.Baseline = "per-host" }, []string{"-baseline: want per-flow"}},
		{"baseline and file", func(c *Config) { c.Baseline, c.BaselineModel = "per-flow", "b" }, []string{"-baseline: not with -baseline-model"}},
		{"baseline and model", func(c *Config) { c.Baseline, c.Model = "per-flow", "m" }, []string{"give -baseline-model"}},
		{"baseline file and model", func(c *Config) { c.BaselineModel, c.Model = "b", "m" }, nil},
		{"fixed fpr", func(c *Config) { c.FixedFPR = 0 }, []string{"-fixed-fpr:"}},
		{"every problem at once", func(c *Config) { c.Data, c.Shots, c.Live.Partitions = nil, 0, 0 },
			[]string{"-data:", "-shots:", "-live.partitions:"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			c.Data, c.NewFamilies = []string{"x.csv"}, []string{"DoS Slowloris"}
			tc.edit(&c)
			err := c.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want errors containing %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %v, want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestEvalVerdictOf(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"DoS Slowloris", "DoS_Slowloris"},
		{"Web Attack - Brute Force", "Web_Attack_-_Brute_Force"},
		{"External-Attack-to-Device", "External-Attack-to-Device"},
		{"dns_tunnel", "dns_tunnel"},
		{"  spaced  ", "spaced"},
		{"Web Attack – XSS", "Web_Attack_XSS"}, // an en dash is not allowed
		{"!!!", ""},
		{strings.Repeat("a", 70), strings.Repeat("a", 64)},
	} {
		if got := verdictOf(tc.in); got != tc.want {
			t.Errorf("verdictOf(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestEvalHostBook(t *testing.T) {
	const s = int64(time.Second)
	b := newHostBook(time.Hour, 1)
	type flow struct {
		host       string
		start, end int64
	}
	for _, tc := range []struct {
		name       string
		f          flow
		wantBefore uint32
		wantDT     float32
	}{
		{"first flow of a", flow{"a", 10 * s, 11 * s}, 0, 0},
		{"second flow of a, start to start", flow{"a", 20 * s, 21 * s}, 1, features.DeltaTBetween(10*s, 20*s)},
		{"first flow of b", flow{"b", 30 * s, 3700 * s}, 0, 0},
		// The watermark is now 3700 s; a was last seen at 21 s, idle for
		// longer than the hour: its state starts afresh.
		{"a after its TTL", flow{"a", 3710 * s, 3711 * s}, 0, 0},
		{"a again", flow{"a", 3712 * s, 3713 * s}, 1, features.DeltaTBetween(3710*s, 3712*s)},
		// b was touched at watermark 3700 s: not idle long enough.
		{"b within its TTL", flow{"b", 3800 * s, 3801 * s}, 1, features.DeltaTBetween(30*s, 3800*s)},
		{"starts running backwards", flow{"b", 3000 * s, 3802 * s}, 2, 0},
	} {
		_, before, dt, fresh := b.see(tc.f.host, tc.f.start, tc.f.end)
		if before != tc.wantBefore || dt != tc.wantDT || fresh != (tc.wantBefore == 0) {
			t.Errorf("%s: see = before %d, dt %g, fresh %v; want %d, %g, %v", tc.name, before, dt, fresh, tc.wantBefore, tc.wantDT, tc.wantBefore == 0)
		}
	}
}

func TestEvalHostBookPartitionsAgeApart(t *testing.T) {
	// Two hosts on different partitions: one partition's watermark does
	// not age the other's hosts, as each scorer store has its own.
	const h = int64(time.Hour)
	b := newHostBook(time.Hour, 8)
	a, c := "10.0.0.1", ""
	for i := 2; c == ""; i++ {
		if cand := "10.0.0." + string(rune('0'+i%10)); features.Partition(cand, 8) != features.Partition(a, 8) {
			c = cand
		}
	}
	b.see(a, 0, 1)
	b.see(c, 0, 10*h)
	if _, before, _, _ := b.see(a, 2, 3); before != 1 {
		t.Errorf("host on another partition aged out: before = %d, want 1", before)
	}
}

func TestEvalCurves(t *testing.T) {
	for _, tc := range []struct {
		name    string
		scores  []float32
		pos     []bool
		wantROC float64
	}{
		{"perfect", []float32{0.9, 0.8, 0.2, 0.1}, []bool{true, true, false, false}, 1},
		{"reversed", []float32{0.9, 0.8, 0.2, 0.1}, []bool{false, false, true, true}, 0},
		{"all tied", []float32{0.5, 0.5, 0.5, 0.5}, []bool{true, false, true, false}, 0.5},
		{"one swap", []float32{0.9, 0.8, 0.7, 0.1}, []bool{true, false, true, false}, 0.75},
	} {
		t.Run(tc.name, func(t *testing.T) {
			roc, pr := curves(tc.scores, tc.pos)
			if math.Abs(float64(roc.AUC)-tc.wantROC) > 1e-9 {
				t.Errorf("ROC AUC = %g, want %g", float64(roc.AUC), tc.wantROC)
			}
			if a := float64(pr.AUC); !(a >= 0 && a <= 1) {
				t.Errorf("PR AUC = %g, want within [0, 1]", a)
			}
		})
	}
	if roc, _ := curves([]float32{1, 2}, []bool{true, true}); roc.AUC == roc.AUC {
		t.Errorf("ROC AUC with no negatives = %g, want NaN", float64(roc.AUC))
	}
}

func TestEvalQuantiles(t *testing.T) {
	v := make([]float64, 100)
	for i := range v {
		v[i] = float64(100 - i) // 100 … 1
	}
	q := quantiles(v)
	if q.P50 != 50 || q.P99 != 99 || q.Max != 100 || q.N != 100 {
		t.Errorf("quantiles(1..100) = %+v, want p50 50, p99 99, max 100, n 100", q)
	}
	if q := quantiles(nil); q.P50 == q.P50 || q.N != 0 {
		t.Errorf("quantiles(nil) = %+v, want NaN and n 0", q)
	}
}

// TestDecide holds the harness's alert rule to the scorer's (see
// scorer/alert.go): the top attack class against its threshold, else the
// anomaly score after the warm-up, and uncalibrated thresholds never fire.
func TestEvalDecide(t *testing.T) {
	cfg := model.DefaultConfig()
	cfg.Features, cfg.Hidden = features.NumFeatures, 4
	cfg.Classes = []string{"benign", "scan", "dos"}
	m, err := model.New(cfg, rand.New(rand.NewPCG(1, 2)))
	if err != nil {
		t.Fatal(err)
	}
	m.Thresholds = []float32{0.5, 0.6, 0}
	m.AnomalyThreshold = 2
	o := &outcome{warmup: 4, nameIdx: map[string]int16{}}
	for _, tc := range []struct {
		name    string
		probs   []float32
		anomaly float32
		before  uint32
		want    string
	}{
		{"benign", []float32{0.9, 0.05, 0.05}, 0, 10, ""},
		{"class at threshold", []float32{0.4, 0.6, 0}, 0, 10, "scan"},
		{"class below threshold", []float32{0.45, 0.55, 0}, 0, 10, ""},
		{"uncalibrated class never fires", []float32{0, 0.1, 0.9}, 0, 10, ""},
		{"anomaly after warm-up", []float32{0.9, 0.1, 0}, 2, 4, scorer.ClassAnomaly},
		{"anomaly during warm-up", []float32{0.9, 0.1, 0}, 5, 3, ""},
		{"class wins over anomaly", []float32{0.1, 0.9, 0}, 5, 9, "scan"},
		{"top attack class only", []float32{0.2, 0.39, 0.41}, 0, 9, ""},
	} {
		got := ""
		if p := o.decide(m, tc.probs, tc.anomaly, tc.before); p != predNone {
			got = o.names[p]
		}
		if got != tc.want {
			t.Errorf("%s: decide = %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestOfflineMatchesTrainScore checks the offline scorer against the
// trainer's deployed-path inference (train.Score, model.Step over every
// host's stream): with every row evaluated and no host expiring, both
// must give the same outputs for every test flow.
func TestEvalOfflineMatchesTrainScore(t *testing.T) {
	skipUnderRace(t)
	if testing.Short() {
		t.Skip("trains a model")
	}
	path, data := testModel(t)
	cfg := testConfig(data)
	cfg.Model = path
	cfg.Scorer.TTL = 1e6 * time.Hour
	m2, es2, _, err := prepare(t.Context(), cfg, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	sc := train.Score(m2, es2.d)
	o, err := runOffline(t.Context(), cfg, m2, es2, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	// es2 evaluates every row, in the same time order as es.d.
	pos := map[int]int{}
	for j, i := range es2.rows {
		pos[i] = j
	}
	// An update changes the head alone, so the trained model's head on
	// the stored embeddings gives what it would have served.
	worst := 0.0
	var probs []float32
	for k, i := range sc.Idx {
		j, ok := pos[i]
		if !ok {
			t.Fatalf("record %d scored by train.Score is not evaluated", i)
		}
		probs = m2.HeadProbs(probs[:0], o.embOf(j))
		worst = max(worst, math.Abs(float64(o.rows[j].anomaly-sc.Anomaly[k])),
			math.Abs(float64(probs[0]-sc.Probs[k*sc.C])))
	}
	if worst > 1e-4 {
		t.Errorf("largest difference from train.Score = %g, want ≤ 1e-4", worst)
	}
	t.Logf("%d flows compared, largest difference %g", len(sc.Idx), worst)
}

func TestEvalOfflineSynthetic(t *testing.T) {
	skipUnderRace(t)
	if testing.Short() {
		t.Skip("trains a model")
	}
	cfg := testConfig(syntheticLog(t, t.TempDir(), 1, 20, 31*time.Minute))
	rep, err := Run(t.Context(), cfg, testLog(t))
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if rep.Mode != ModeOffline {
		t.Errorf("Mode = %q, want %q", rep.Mode, ModeOffline)
	}
	if rep.Flows != rep.Data.Evaluated || rep.Flows == 0 {
		t.Errorf("Flows = %d, want every evaluated row (%d)", rep.Flows, rep.Data.Evaluated)
	}
	if n := supportSum(rep); n != rep.Flows {
		t.Errorf("per-class support sums to %d, want %d", n, rep.Flows)
	}
	if len(rep.Adaptations) != 1 || !rep.Adaptations[0].Accepted {
		t.Fatalf("adaptations = %+v, want one accepted", rep.Adaptations)
	}
	if rep.ModelVersionStart != 1 || rep.ModelVersionEnd != 2 {
		t.Errorf("versions = %d -> %d, want 1 -> 2", rep.ModelVersionStart, rep.ModelVersionEnd)
	}
	fr := rep.NewFamilies[testFamily]
	if fr == nil {
		t.Fatalf("NewFamilies = %v, want %s", rep.NewFamilies, testFamily)
	}
	if fr.Shots != 10 || fr.NBefore != 10 || fr.NAfter != fr.Flows-10 || fr.NBetween != 0 {
		t.Errorf("%s: shots %d, before %d, after %d, between %d; want 10, 10, %d, 0 (offline, the update serves from the next flow)",
			testFamily, fr.Shots, fr.NBefore, fr.NAfter, fr.NBetween, fr.Flows-10)
	}
	if fr.LabelledAt != 9 || fr.LiveAt != 10 || len(fr.Timeline) != fr.Flows {
		t.Errorf("%s: labelled at %d, live at %d, timeline of %d; want 9, 10, %d", testFamily, fr.LabelledAt, fr.LiveAt, len(fr.Timeline), fr.Flows)
	}
	for _, c := range []struct {
		name string
		got  Metric
		lo   float64
	}{
		{"recall_after", fr.RecallAfter, 0.9},
		{"family_recall_after", fr.FamilyRecallAfter, 0.9},
		{"precision_after", fr.PrecisionAfter, 0.9},
		{"binary.f1", rep.Binary.F1, 0.9},
		{"binary.roc_auc", rep.Binary.ROCAUC, 0.9},
	} {
		if !(float64(c.got) >= c.lo) {
			t.Errorf("%s = %.3f, want ≥ %.2f", c.name, float64(c.got), c.lo)
		}
	}
	// The family is new: the starting model does not name it, and the
	// update is what names it.
	if fr.RecallAfterWithoutUpdate >= fr.RecallAfter {
		t.Errorf("recall without the update %.3f ≥ with it %.3f: the labels bought nothing", float64(fr.RecallAfterWithoutUpdate), float64(fr.RecallAfter))
	}
	if d := float64(rep.BenignFPRAfter - rep.BenignFPRBefore); d > 0.02 {
		t.Errorf("benign FPR rose by %.3f after the update, want ≤ 0.02", d)
	}
	if d := float64(rep.KnownRecallBefore - rep.KnownRecallAfter); d > 0.02 {
		t.Errorf("known recall fell by %.3f after the update, want ≤ 0.02", d)
	}
	if rep.AdaptationLatencyMs.N != 1 || rep.ThroughputFlowsPerS <= 0 || rep.AlertLatencyMs.N == 0 {
		t.Errorf("latencies %+v, %+v, throughput %g: want one adaptation, some alerts, a rate",
			rep.AdaptationLatencyMs, rep.AlertLatencyMs, rep.ThroughputFlowsPerS)
	}

}

// TestEvalOfflineRepeats checks that everything but the timings repeats
// exactly: the fit is seeded.
func TestEvalOfflineRepeats(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a model")
	}
	path, data := testModel(t)
	cfg := testConfig(data)
	cfg.Model = path
	var reps []string
	for range 2 {
		rep, err := Run(t.Context(), cfg, testLog(t))
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		if len(rep.Adaptations) == 0 {
			t.Fatalf("no adaptation: the comparison would not cover the fit")
		}
		reps = append(reps, untimed(t, rep))
	}
	if reps[0] != reps[1] {
		t.Errorf("two runs differ:\n%s\n%s", reps[0], reps[1])
	}
}

// untimed returns rep as JSON without the numbers that measure time.
func untimed(t *testing.T, rep *Report) string {
	t.Helper()
	r := *rep
	r.AdaptationLatencyMs, r.AlertLatencyMs, r.ThroughputFlowsPerS, r.Training = Quantiles{}, Quantiles{}, 0, nil
	var ads []Adaptation
	for _, a := range r.Adaptations {
		c := *a
		c.LatencyMs, c.ServingMs = 0, 0
		ads = append(ads, c)
	}
	r.Adaptations = nil
	b, err := json.Marshal(struct {
		R   Report
		Ads []Adaptation
	}{r, ads})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestEvalLoadChecksFormat(t *testing.T) {
	recs, err := dataset.Synthetic(dataset.SyntheticConfig{Seed: 1, Hosts: 2, Duration: time.Minute, Waves: 1})
	if err != nil {
		t.Fatal(err)
	}
	path := writeZeekLog(t, t.TempDir(), "x.log.gz", recs)
	if _, _, _, err := load([]string{path}, FormatZeek, dataset.DefaultConfig()); err != nil {
		t.Errorf("load(zeek log, zeek) = %v, want nil", err)
	}
	if _, _, _, err := load([]string{path}, FormatCIC, dataset.DefaultConfig()); err == nil || !strings.Contains(err.Error(), "zeek, not cic") {
		t.Errorf("load(zeek log, cic) = %v, want a format error", err)
	}
}

// TestEvalDetectionOnly checks a run without -new-family: no labels, no
// update, and every flow still counted, a family the model does not know
// included.
func TestEvalDetectionOnly(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a model")
	}
	path, data := testModel(t)
	cfg := testConfig(data)
	cfg.Model = path
	cfg.NewFamilies = nil
	rep, err := Run(t.Context(), cfg, testLog(t))
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if len(rep.Adaptations) != 0 || len(rep.NewFamilies) != 0 || rep.ModelVersionEnd != rep.ModelVersionStart {
		t.Errorf("adaptations %d, new families %v, versions %d -> %d: want none and no update",
			len(rep.Adaptations), rep.NewFamilies, rep.ModelVersionStart, rep.ModelVersionEnd)
	}
	if n := supportSum(rep); n != rep.Flows || rep.Flows == 0 {
		t.Errorf("per-class support sums to %d, want every flow (%d)", n, rep.Flows)
	}
	if !slices.ContainsFunc(rep.Notes, func(s string) bool { return strings.Contains(s, testFamily) }) {
		t.Errorf("notes %q: want one saying %s counts in binary only", rep.Notes, testFamily)
	}
	if !(rep.Binary.F1 > 0.5) {
		t.Errorf("binary.f1 = %.3f, want the known families detected", float64(rep.Binary.F1))
	}
}

// supportSum returns the flows the per-class table counts, which must be
// every evaluated flow.
func supportSum(rep *Report) int {
	n := 0
	for _, c := range rep.PerClass {
		n += c.Support
	}
	return n
}
