package scorer

import (
	"bytes"
	"encoding/json"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/metaids/metaids/features"
	"github.com/metaids/metaids/schemas"
)

// storm returns n scan flows of host, one every gap, interleaved with
// benign flows of other hosts, split into messages of per flows.
func storm(t testing.TB, host string, n int, gap time.Duration, per int, seed uint64) (msgs [][]byte, flows []schemas.Flow) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 0))
	start := t0
	for i := range n {
		start += int64(gap)
		flows = append(flows, flowOf(host, start, int64(2*i), true, rng))
		benign := []string{"10.0.0.1", "10.0.0.2", "10.0.0.3"}[i%3]
		flows = append(flows, flowOf(benign, start+1, int64(2*i+1), false, rng))
	}
	for i := 0; i < len(flows); i += per {
		msgs = append(msgs, encodeFlows(t, flows[i:min(i+per, len(flows))]))
	}
	return msgs, flows
}

// TestAlertStorm checks aggregation: a flood of scan flows from one host is
// one alert that keeps its id and grows its count, re-published at most
// once per republish interval, not one alert per flow.
func TestAlertStorm(t *testing.T) {
	n := 100_000 // a flood of scan flows in 100 s, the scale of the requirement
	if testing.Short() {
		n = 1000
	}
	m := detectorModel(t, 1, 8)
	set := testSettings()
	set.Alerts.Republish = 10 * time.Second
	s, _, clk := newCore(t, set, m, nil)
	msgs, flows := storm(t, "10.6.6.6", n, time.Millisecond, 4096, 1)

	var out []schemas.Alert
	for _, msg := range msgs {
		out = append(out, alerts(t, s, score(t, s, 0, msg))...)
	}
	if len(out) != 1 {
		t.Fatalf("%d alerts published during the storm, want 1 (the opening)", len(out))
	}
	opened := out[0]
	if opened.Host != "10.6.6.6" || opened.Class != "scan" || opened.Count != 1 {
		t.Errorf("opening alert = host %s class %s count %d, want 10.6.6.6 scan 1", opened.Host, opened.Class, opened.Count)
	}
	if want := schemas.FormatID(flows[0].ID()); opened.FlowID != want {
		t.Errorf("opening alert's flow = %s, want the storm's first flow %s", opened.FlowID, want)
	}
	if opened.ModelVersion != 1 || opened.Probability < 0.9 || opened.Severity != schemas.SeverityHigh {
		t.Errorf("opening alert: version %d probability %v severity %s, want 1, ≥ 0.9, high", opened.ModelVersion, opened.Probability, opened.Severity)
	}

	// Nothing more until the republish interval has passed.
	if got := alerts(t, s, flushCore(t, s)); len(got) != 0 {
		t.Fatalf("flush before the interval published %d alerts, want 0", len(got))
	}
	clk.advance(10 * time.Second)
	upd := alerts(t, s, flushCore(t, s))
	if len(upd) != 1 {
		t.Fatalf("flush after the interval published %d alerts, want 1", len(upd))
	}
	if upd[0].AlertID != opened.AlertID || upd[0].Count != int64(n) {
		t.Errorf("update: id %s count %d, want id %s count %d", upd[0].AlertID, upd[0].Count, opened.AlertID, n)
	}
	first, last := int64(math.MaxInt64), int64(0)
	for i := 0; i < len(flows); i += 2 { // the scan flows; ends overlap their starts' order
		first, last = min(first, flows[i].EndNs), max(last, flows[i].EndNs)
	}
	if upd[0].FirstNs != first || upd[0].LastNs != last {
		t.Errorf("update spans %d..%d, want %d..%d", upd[0].FirstNs, upd[0].LastNs, first, last)
	}
	if got := alerts(t, s, flushCore(t, s)); len(got) != 0 {
		t.Errorf("a second flush published %d alerts with nothing new, want 0", len(got))
	}
	if got := testutil.ToFloat64(s.met.alertFlows.WithLabelValues(kindClass)); got != float64(n) {
		t.Errorf("alert flows = %v, want %d", got, n)
	}
	if o, u := testutil.ToFloat64(s.met.alerts.WithLabelValues(eventOpened)), testutil.ToFloat64(s.met.alerts.WithLabelValues(eventUpdated)); o != 1 || u != 1 {
		t.Errorf("alerts opened %v, updated %v, want 1 and 1", o, u)
	}
}

// TestAlertWindows checks that the aggregation window is event time: a
// storm longer than the window is several alerts whose counts add up.
func TestAlertWindows(t *testing.T) {
	const n = 300
	m := detectorModel(t, 1, 8)
	set := testSettings()
	set.Alerts.Window = time.Minute
	set.Alerts.Republish = 0 // publish every change
	s, _, _ := newCore(t, set, m, nil)
	msgs, _ := storm(t, "10.6.6.6", n, time.Second, 50, 2) // 5 minutes of scanning

	last := map[string]int64{} // alert id → latest count
	for _, msg := range msgs {
		for _, a := range alerts(t, s, score(t, s, 0, msg)) {
			if a.Count < last[a.AlertID] {
				t.Errorf("alert %s count went down from %d to %d", a.AlertID, last[a.AlertID], a.Count)
			}
			last[a.AlertID] = a.Count
		}
	}
	var total int64
	for _, c := range last {
		total += c
	}
	if len(last) != 5 || total != n {
		t.Errorf("%d alerts covering %d flows, want 5 one-minute alerts covering %d", len(last), total, n)
	}
}

// TestAlertIDsDeterministic checks that redelivering a message to a replica
// that has lost its state reproduces the alert ids.
func TestAlertIDsDeterministic(t *testing.T) {
	m := detectorModel(t, 1, 8)
	msgs, _ := storm(t, "10.6.6.6", 20, time.Second, 40, 3)
	var ids [2][]string
	for i := range ids {
		s, _, _ := newCore(t, testSettings(), m, nil)
		for _, a := range alerts(t, s, score(t, s, 0, msgs[0])) {
			ids[i] = append(ids[i], a.AlertID)
		}
	}
	if len(ids[0]) == 0 || !slices.Equal(ids[0], ids[1]) {
		t.Errorf("alert ids = %v, then %v on redelivery, want the same non-empty list", ids[0], ids[1])
	}
	if alertID(1, "scan") == alertID(1, "exfil") || alertID(1, "scan") == alertID(2, "scan") {
		t.Error("alert ids collide across classes or flows")
	}
}

func TestAlertOutputs(t *testing.T) {
	m := detectorModel(t, 1, 8)
	set := testSettings()
	set.Alerts.Outputs = map[string]string{"alerts": FormatAvro, "alerts.ecs": FormatECS, "alerts.ocsf": FormatOCSF}
	s, _, _ := newCore(t, set, m, nil)
	msgs, _ := storm(t, "10.6.6.6", 1, time.Second, 10, 4)
	out := byTopic(score(t, s, 0, msgs[0]))
	avro := alerts(t, s, out["alerts"])
	if len(avro) != 1 {
		t.Fatalf("%d Avro alerts, want 1", len(avro))
	}
	for _, topic := range []string{"alerts.ecs", "alerts.ocsf"} {
		if len(out[topic]) != 1 {
			t.Fatalf("%d records on %s, want 1", len(out[topic]), topic)
		}
		rec := out[topic][0]
		var doc map[string]any
		if err := json.Unmarshal(rec.Value, &doc); err != nil {
			t.Fatalf("%s record is not JSON: %v", topic, err)
		}
		if !bytes.Contains(rec.Value, []byte(avro[0].AlertID)) || string(rec.Key) != "10.6.6.6" {
			t.Errorf("%s record (key %s) does not carry alert id %s: %s", topic, rec.Key, avro[0].AlertID, rec.Value)
		}
	}
}

// TestClassExplanation checks that a class alert names the features the
// detector head weighs, via model.Explain.
func TestClassExplanation(t *testing.T) {
	m := detectorModel(t, 1, 8)
	s, _, _ := newCore(t, testSettings(), m, nil)
	msgs, _ := storm(t, "10.6.6.6", 1, time.Second, 10, 5)
	got := alerts(t, s, score(t, s, 0, msgs[0]))
	if len(got) != 1 {
		t.Fatalf("%d alerts, want 1", len(got))
	}
	var names []string
	for _, c := range got[0].Explanation {
		names = append(names, c.Feature)
		if c.Value <= 0 {
			t.Errorf("contribution of %s = %v, want positive (it raised the scan score)", c.Feature, c.Value)
		}
	}
	slices.Sort(names)
	if want := []string{"no_response", "tcp_syn"}; !slices.Equal(names, want) {
		t.Errorf("explanation names %v, want %v", names, want)
	}
}

// TestAnomalyAlerts checks anomaly-only alerts: they wait for the host's
// warm-up, and their explanation is each feature's share of the score, so
// with every feature listed the shares add up to it.
func TestAnomalyAlerts(t *testing.T) {
	m := newTestModel(t, 7, 8, "benign", "scan")
	m.Thresholds = []float32{0, 0} // no calibrated class: anomaly alerts only
	m.AnomalyThreshold = 1e-6      // every flow after the warm-up
	set := testSettings()
	set.Alerts.AnomalyWarmup = 3
	set.Alerts.Explain = features.NumFeatures
	s, _, _ := newCore(t, set, m, nil)
	rng := rand.New(rand.NewPCG(6, 0))
	var flows []schemas.Flow
	for i := range 5 {
		flows = append(flows, flowOf("10.2.2.2", t0+int64(i)*int64(time.Second), int64(i), false, rng))
	}
	out := score(t, s, 0, encodeFlows(t, flows))
	got := alerts(t, s, out)
	if len(got) != 1 {
		t.Fatalf("%d alerts, want 1", len(got))
	}
	a := got[0]
	if a.Class != ClassAnomaly || a.FlowID != schemas.FormatID(flows[3].ID()) {
		t.Errorf("alert class %s opened by flow %s, want %s opened by the 4th flow %s", a.Class, a.FlowID, ClassAnomaly, schemas.FormatID(flows[3].ID()))
	}
	var sum float64
	for _, c := range a.Explanation {
		sum += float64(c.Value)
		if c.Value < 0 {
			t.Errorf("share of %s = %v, want ≥ 0", c.Feature, c.Value)
		}
	}
	if math.Abs(sum-float64(a.AnomalyScore)) > 1e-4*float64(a.AnomalyScore) {
		t.Errorf("shares add up to %v, want the anomaly score %v", sum, a.AnomalyScore)
	}
	if sc := scores(t, s, out); sc[3].Anomaly != a.AnomalyScore {
		t.Errorf("alert anomaly %v, want the flow's score %v", a.AnomalyScore, sc[3].Anomaly)
	}
}

func TestTopContributions(t *testing.T) {
	names := []string{"a", "b", "c", "d", "e"}
	for _, tc := range []struct {
		name string
		v    []float32
		n    int
		want []string
	}{
		{"by magnitude", []float32{0.1, -3, 2, 0, float32(math.NaN())}, 2, []string{"b", "c"}},
		{"zeros and NaN left out", []float32{0, 0, 1, 0, float32(math.NaN())}, 5, []string{"c"}},
		{"all", []float32{1, 2, 3, 4, 5}, 5, []string{"e", "d", "c", "b", "a"}},
		{"none", []float32{1, 2, 3, 4, 5}, 0, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, c := range topContributions(tc.v, names, tc.n) {
				got = append(got, c.Feature)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("topContributions(%v, %d) = %v, want %v", tc.v, tc.n, got, tc.want)
			}
		})
	}
}

// TestActions checks the dynamic defence: no recommendation for a stray
// alert, one once a host's alerts persist past the hysteresis, and its
// withdrawal, under the same id, once the host has been calm.
func TestActions(t *testing.T) {
	m := detectorModel(t, 1, 8)
	set := testSettings()
	set.Actions.Hysteresis = 30 * time.Second
	set.Actions.Calm = time.Minute
	set.Actions.Duration = 10 * time.Minute
	s, _, _ := newCore(t, set, m, nil)
	rng := rand.New(rand.NewPCG(8, 0))

	var flows []schemas.Flow
	// A stray scan flow from one host, then 100 s of scanning from another,
	// then 3 minutes of benign traffic only.
	flows = append(flows, flowOf("10.7.7.7", t0, 0, true, rng))
	for i := range 100 {
		flows = append(flows, flowOf("10.6.6.6", t0+int64(i)*int64(time.Second), int64(1+i), true, rng))
	}
	for i := range 180 {
		flows = append(flows, flowOf("10.0.0.1", t0+int64(100+i)*int64(time.Second), int64(200+i), false, rng))
	}
	var got []schemas.Action
	var alertIDs []string
	for i := 0; i < len(flows); i += 20 {
		out := score(t, s, 0, encodeFlows(t, flows[i:min(i+20, len(flows))]))
		got = append(got, actions(t, s, out)...)
		for _, a := range alerts(t, s, out) {
			alertIDs = append(alertIDs, a.AlertID)
		}
	}
	if len(got) != 2 {
		t.Fatalf("actions = %+v, want an issue and a withdrawal", got)
	}
	issued, withdrawn := got[0], got[1]
	if issued.Host != "10.6.6.6" || issued.Withdrawn || issued.Kind != schemas.ActionBlock {
		t.Errorf("issued = %+v, want a block of 10.6.6.6", issued)
	}
	since, want := flows[1].EndNs, int64(0)
	for _, f := range flows[1:101] {
		since = min(since, f.EndNs)
		if f.EndNs-since >= int64(30*time.Second) {
			want = f.EndNs
			break
		}
	}
	if issued.TimeNs != want {
		t.Errorf("issued at %d, want %d: the first flow 30 s into the storm", issued.TimeNs, want)
	}
	if issued.DurationSec != 600 || issued.ModelVersion != 1 || len(issued.AlertIDs) != 1 || !slices.Contains(alertIDs, issued.AlertIDs[0]) {
		t.Errorf("issued = %+v, want 600 s, model 1, the storm's alert among %v", issued, alertIDs)
	}
	if withdrawn.ActionID != issued.ActionID || !withdrawn.Withdrawn || withdrawn.Host != issued.Host {
		t.Errorf("withdrawn = %+v, want a withdrawal of %s", withdrawn, issued.ActionID)
	}
	if calmFor := time.Duration(withdrawn.TimeNs - flows[100].EndNs); calmFor < time.Minute {
		t.Errorf("withdrawn %v after the last alert, want at least the calm period", calmFor)
	}
}

// TestCampaignNamesAlerts checks that a host's campaign names its alerts
// while it keeps attacking, and that the head names them again after a
// pause longer than the campaign's, and on other hosts throughout.
func TestCampaignNamesAlerts(t *testing.T) {
	m := campaignModel(t)
	set := testSettings()
	set.Alerts.Republish = 0 // publish every change
	s, _, _ := newCore(t, set, m, nil)
	rng := rand.New(rand.NewPCG(3, 0))
	var flows []schemas.Flow
	at := func(host string, sec int) {
		flows = append(flows, flowOf(host, t0+int64(sec)*1e9, int64(len(flows)), true, rng))
	}
	for i := range 30 { // two scanners for a minute, one of them labelled
		at("10.6.6.6", 2*i)
		at("10.7.7.7", 2*i)
	}
	for i := range 10 { // the labelled one again, after two minutes' pause
		at("10.6.6.6", 180+i)
	}
	counts := map[alertKey]int64{}
	for _, a := range alerts(t, s, score(t, s, 0, encodeFlows(t, flows))) {
		counts[alertKey{a.Host, a.Class}] = max(counts[alertKey{a.Host, a.Class}], a.Count)
	}
	want := map[alertKey]int64{{"10.6.6.6", "slow_scan"}: 30, {"10.6.6.6", "scan"}: 10, {"10.7.7.7", "scan"}: 30}
	if !maps.Equal(counts, want) {
		t.Errorf("alerted flows by host and class %v, want %v", counts, want)
	}
}
