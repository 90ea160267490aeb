package scorer

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/apache/arrow/go/v15/arrow/memory"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/segmentio/kafka-go"

	"github.com/metaids/metaids/features"
	"github.com/metaids/metaids/integration"
	"github.com/metaids/metaids/model"
	"github.com/metaids/metaids/schemas"
	"github.com/metaids/metaids/stream"
)

// TestBadBatches checks that undecodable messages are counted and skipped
// without stopping the batch they came in: the good message beside them is
// scored in full.
func TestBadBatches(t *testing.T) {
	m := newTestModel(t, 1, 8, "benign", "scan")
	rng := rand.New(rand.NewPCG(1, 0))
	var flows []schemas.Flow
	for i := range 50 {
		flows = append(flows, flowOf("10.4.4.4", t0+int64(i)*int64(time.Second), int64(i), false, rng))
	}
	good := encodeFlows(t, flows)
	for _, tc := range []struct {
		name   string
		value  []byte
		reason string
	}{
		{"garbage", []byte("definitely not arrow"), badCorrupt},
		{"truncated", good[:len(good)/2], badCorrupt},
		{"tombstone", nil, badCorrupt},
		{"another feature spec", otherSpec(t, good), badSpec},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _, _ := newCore(t, testSettings(), m, nil)
			out := score(t, s, 0, tc.value, good)
			if got := len(scores(t, s, out)); got != len(flows) {
				t.Errorf("%d scores, want %d from the good message", got, len(flows))
			}
			ok := testutil.ToFloat64(s.met.records.WithLabelValues(outcomeOK))
			bad := testutil.ToFloat64(s.met.records.WithLabelValues(outcomeBad))
			if ok != 1 || bad != 1 {
				t.Errorf("records ok %v, bad %v, want 1 and 1", ok, bad)
			}
			if got := testutil.ToFloat64(s.met.badBatches.WithLabelValues(tc.reason)); got != 1 {
				t.Errorf("bad batches (%s) = %v, want 1", tc.reason, got)
			}
			if got := testutil.ToFloat64(s.met.flows); got != float64(len(flows)) {
				t.Errorf("flows scored = %v, want %d", got, len(flows))
			}
		})
	}
}

// otherSpec returns a features message claiming another spec hash, as one
// from an ingest of another release would.
func otherSpec(t *testing.T, b []byte) []byte {
	t.Helper()
	hash := []byte(features.Default().Hash())
	if bytes.Count(b, hash) != 1 {
		t.Fatalf("spec hash %s appears %d times in the message", hash, bytes.Count(b, hash))
	}
	return bytes.Replace(b, hash, []byte("0123456789abcdef"), 1)
}

// TestScoresSplit checks that a message's scores are split across records
// when they would outgrow the producer's request limit, and that none is
// lost or repeated.
func TestScoresSplit(t *testing.T) {
	m := newTestModel(t, 1, 64, "benign", "scan")
	s, _, _ := newCore(t, testSettings(), m, nil)
	s.scoresBudget = 64 << 10 // about 150 rows at H=64
	rng := rand.New(rand.NewPCG(2, 0))
	var flows []schemas.Flow
	for i := range 1000 {
		flows = append(flows, flowOf("10.5.5."+string(rune('0'+i%10)), t0+int64(i)*int64(time.Millisecond), int64(i), false, rng))
	}
	out := score(t, s, 0, encodeFlows(t, flows))
	var records int
	for _, msg := range out {
		if msg.Topic == s.scoresTopic {
			records++
			if len(msg.Value) > 80<<10 {
				t.Errorf("scores record of %d bytes, want at most about the 64 KiB budget", len(msg.Value))
			}
		}
	}
	got := scores(t, s, out)
	if records < 5 || len(got) != len(flows) {
		t.Fatalf("%d scores in %d records, want %d in several", len(got), records, len(flows))
	}
	for i, sc := range got {
		if sc.FlowID != flows[i].ID() {
			t.Fatalf("score %d is flow %x, want %x", i, sc.FlowID, flows[i].ID())
		}
	}
}

// TestStageOverBroker is the processing test over the embedded broker:
// synthetic traffic with a port scan, batched as ingest batches it, a model
// whose head knows the scan's prototype, and a scorer that first cannot
// write its scores (so it must fail without committing) and then runs
// again to completion. Every flow is scored, the scan host gets exactly one
// alert (after dedupe by its deterministic id) whose count covers its
// detected flows, and offsets are committed only once outputs are acked.
func TestStageOverBroker(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: starts a broker and the stage")
	}
	const parts = 4
	const attacker = "10.0.0.9"
	e, kc := startBroker(t, parts)
	key := newKeyPair(t, 1)
	gen := integration.NewTraffic(integration.Seed(7), integration.Hosts(40), integration.Rate(1), integration.WithScan(attacker))
	events := gen.Events(6000)
	m := protoModel(t, events, integration.FamilyPortScan)
	flows := make([]schemas.Flow, len(events))
	ids := map[uint64]bool{}
	for i, ev := range events {
		flows[i] = ev.Flow
		ids[ev.Flow.ID()] = true
	}
	// What the scorer should find, computed offline: the attacker's flows
	// the head puts above the class threshold.
	var wantCount int64
	for i, sc := range calibrate(t, m, [][]byte{encodeFlows(t, flows)}) {
		if sc.Host != features.Host(&flows[i]) {
			t.Fatalf("calibration row %d is host %s, want %s", i, sc.Host, features.Host(&flows[i]))
		}
		if sc.Host == attacker && sc.Probs[1] >= m.Thresholds[1] {
			wantCount++
		}
	}
	if wantCount < 100 {
		t.Fatalf("the model detects %d of the scan's flows offline, want at least 100", wantCount)
	}

	p := newProducer(t, kc)
	publishModel(t, p, kc, signed(t, m, schemas.UpdateFull, key))
	nMsgs := produceFlows(t, p, kc, parts, flows)
	cfg := stageConfig(t, kc, key)
	featuresTopic := kc.Topic("features")

	// Phase 1: the broker refuses the scores. The stage must fail, and
	// commit nothing.
	failed, heal := failProduceTo(e, kc.Topic("scores"))
	r1 := startStage(t, cfg)
	select {
	case err := <-r1.done:
		r1.done <- err
		if err == nil {
			t.Fatal("Run = nil while scores could not be written, want an error")
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the stage kept running while its scores were refused")
	}
	if failed.Load() == 0 {
		t.Fatal("no produce to scores was refused")
	}
	for part, off := range committed(t, kc, cfg.Scorer.Group, featuresTopic, parts) {
		if off >= 0 {
			t.Errorf("partition %d committed at offset %d although its scores were refused", part, off)
		}
	}

	// Phase 2: a fresh replica, the broker healed.
	heal()
	r2 := startStage(t, cfg)
	eventually(t, 60*time.Second, func() error {
		if got := counter(t, r2.reg, "metaids_scorer_flows_total", nil); got != float64(len(flows)) {
			return fmt.Errorf("flows scored = %v, want %d", got, len(flows))
		}
		var sum int64
		for _, off := range committed(t, kc, cfg.Scorer.Group, featuresTopic, parts) {
			sum += max(off, 0)
		}
		if sum != int64(nMsgs) {
			return fmt.Errorf("committed offsets sum to %d, want %d", sum, nMsgs)
		}
		return nil
	})
	if !r2.s.Ready() {
		t.Error("Ready() = false while consuming with a model, want true")
	}
	// The republish interval is 50 ms: let the alert's final count go out.
	eventually(t, 10*time.Second, func() error {
		a, n := attackerAlert(t, r2.s, readTopic(t, kc, kc.Topic("alerts")), attacker)
		if n != 1 {
			return fmt.Errorf("%d distinct alert ids for %s, want 1", n, attacker)
		}
		if a.Count != wantCount {
			return fmt.Errorf("alert for %s covers %d flows, want %d", attacker, a.Count, wantCount)
		}
		return nil
	})
	if err := r2.stop(t); err != nil {
		t.Fatalf("Run = %v after cancellation, want nil", err)
	}
	if got, want := counter(t, r2.reg, "metaids_scorer_records_total", map[string]string{"outcome": "ok"}), float64(nMsgs); got != want {
		t.Errorf("records ok = %v, want %v (in = ok + bad, no bad)", got, want)
	}

	// Every flow has a score with the model's version.
	scored := map[uint64]bool{}
	for _, msg := range readTopic(t, kc, kc.Topic("scores")) {
		v, err := features.DecodeScores(msg.Value, memory.DefaultAllocator)
		if err != nil {
			t.Fatalf("DecodeScores: %v", err)
		}
		for i := range v.Len() {
			if v.ModelVersion(i) != m.Version {
				t.Errorf("score of flow %x by model %d, want %d", v.FlowID(i), v.ModelVersion(i), m.Version)
			}
			scored[v.FlowID(i)] = true
		}
		v.Release()
	}
	if len(scored) != len(ids) {
		t.Errorf("%d distinct flows scored, want %d", len(scored), len(ids))
	}
}

// attackerAlert returns the latest (highest count) portscan alert for host
// and how many distinct alert ids the host has.
func attackerAlert(t testing.TB, s *Stage, msgs []kafka.Message, host string) (schemas.Alert, int) {
	t.Helper()
	var best schemas.Alert
	seen := map[string]bool{}
	for _, msg := range msgs {
		a, err := s.codecs.DecodeAlert(msg.Value)
		if err != nil {
			t.Fatalf("DecodeAlert: %v", err)
		}
		if a.Host != host || a.Class != integration.FamilyPortScan {
			continue
		}
		seen[a.AlertID] = true
		if a.Count > best.Count {
			best = a
		}
	}
	return best, len(seen)
}

// TestModelUpdatesOverBroker is the hot-swap acceptance test: an unsigned
// update, one signed by an unknown key, one with NaN weights and one with a
// wrong shape are each rejected with their reason while scoring goes on with
// the old model; a valid one is serving within a second.
func TestModelUpdatesOverBroker(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: starts a broker and the stage")
	}
	const parts = 2
	_, kc := startBroker(t, parts)
	key, stranger := newKeyPair(t, 1), newKeyPair(t, 2)
	m1 := detectorModel(t, 1, 8)
	p := newProducer(t, kc)
	publishModel(t, p, kc, signed(t, m1, schemas.UpdateFull, key))
	r := startStage(t, stageConfig(t, kc, key))
	eventually(t, 20*time.Second, func() error {
		if !r.s.Ready() {
			return fmt.Errorf("not ready")
		}
		return nil
	})

	rng := rand.New(rand.NewPCG(4, 0))
	sent := 0
	send := func(n int) {
		var flows []schemas.Flow
		for i := range n {
			flows = append(flows, flowOf("10.8.8."+fmt.Sprint(i%5), t0+int64(sent+i)*int64(time.Second), int64(sent+i), i%3 == 0, rng))
		}
		produceFlows(t, p, kc, parts, flows)
		sent += n
		// Scores are produced after the flows are counted: wait for them
		// on the topic.
		eventually(t, 20*time.Second, func() error {
			return countErr("scores on the topic", float64(len(scoresOf(t, r.s, readTopic(t, kc, kc.Topic("scores"))))), float64(sent))
		})
	}
	send(50)

	version := func(v int64, edit func(m *model.Model)) *model.Model {
		m := m1.Clone()
		m.Version = v
		if edit != nil {
			edit(m)
		}
		return m
	}
	unsigned, _ := version(2, nil).Update(schemas.UpdateFull)
	wrongShape, _ := version(5, nil).Update(schemas.UpdateHead)
	for i := range wrongShape.Tensors {
		if wrongShape.Tensors[i].Name == model.TensorClsB {
			wrongShape.Tensors[i].Rows++
			wrongShape.Tensors[i].Data = append(wrongShape.Tensors[i].Data, 0)
		}
	}
	if err := schemas.SignModelUpdate(wrongShape, key.id, key.priv); err != nil {
		t.Fatal(err)
	}
	for _, u := range []*schemas.ModelUpdate{
		unsigned,
		signed(t, version(3, nil), schemas.UpdateFull, stranger),
		signed(t, version(4, func(m *model.Model) { m.P.WeightIH[7] = float32(math.NaN()) }), schemas.UpdateFull, key),
		wrongShape,
	} {
		publishModel(t, p, kc, u)
	}
	eventually(t, 10*time.Second, func() error {
		for _, reason := range []string{reasonUnsigned, reasonUnknownKey, reasonNonFinite, reasonShape} {
			got := counter(t, r.reg, "metaids_scorer_model_updates_total", map[string]string{"result": reason})
			if got != 1 {
				return fmt.Errorf("updates rejected as %s = %v, want 1", reason, got)
			}
		}
		return nil
	})
	send(50)
	if v := r.s.ModelVersion(); v != 1 {
		t.Fatalf("ModelVersion() = %d after four bad updates, want 1", v)
	}
	for _, sc := range scoresOf(t, r.s, readTopic(t, kc, kc.Topic("scores"))) {
		if sc.ModelVersion != 1 {
			t.Fatalf("flow %x scored by model %d, want 1: no bad update may serve", sc.FlowID, sc.ModelVersion)
		}
	}

	// A valid head-only update goes live. How fast is logged, not
	// asserted: a clock on a shared, loaded machine (or under -race) is no
	// test; BenchmarkPipeline and eval's adaptation latency measure it.
	good := signed(t, version(6, func(m *model.Model) { m.P.ClsB[1] += 1 }), schemas.UpdateHead, key)
	start := time.Now()
	publishModel(t, p, kc, good)
	eventually(t, 5*time.Second, func() error { return countErr("ModelVersion()", float64(r.s.ModelVersion()), 6) })
	t.Logf("the valid update went live %v after it was published", time.Since(start))
	send(10)
	latest := scoresOf(t, r.s, readTopic(t, kc, kc.Topic("scores")))
	var v6 int
	for _, sc := range latest {
		if sc.ModelVersion == 6 {
			v6++
		}
	}
	if v6 != 10 {
		t.Errorf("%d flows scored by model 6, want the last 10", v6)
	}
	if got := counter(t, r.reg, "metaids_scorer_states_reset_total", nil); got != 0 {
		t.Errorf("host states reset %v times by a head update, want 0", got)
	}
	if err := r.stop(t); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
}

// scoresOf decodes every scores record in msgs.
func scoresOf(t testing.TB, s *Stage, msgs []kafka.Message) []features.Score {
	t.Helper()
	for i := range msgs {
		msgs[i].Topic = s.scoresTopic
	}
	return scores(t, s, msgs)
}

// TestRebalance starts a second replica mid-stream: every flow is still
// scored, each replica keeps state only for the partitions it holds, and
// the first one drops the hosts of the partitions it gave up.
func TestRebalance(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: starts a broker and two stages")
	}
	const parts = 4
	_, kc := startBroker(t, parts)
	key := newKeyPair(t, 1)
	p := newProducer(t, kc)
	publishModel(t, p, kc, signed(t, newTestModel(t, 1, 8, "benign", "scan"), schemas.UpdateFull, key))
	cfg := stageConfig(t, kc, key)
	rng := rand.New(rand.NewPCG(5, 0))
	var all []schemas.Flow
	batch := func(from, n int) []schemas.Flow {
		var flows []schemas.Flow
		for i := range n {
			host := fmt.Sprintf("10.9.%d.%d", i%7, i%31)
			flows = append(flows, flowOf(host, t0+int64(from+i)*int64(time.Millisecond), int64(from+i), false, rng))
		}
		all = append(all, flows...)
		return flows
	}
	waitScored := func(n int) {
		t.Helper()
		eventually(t, 30*time.Second, func() error {
			return countErr("distinct flows scored", float64(len(distinctFlows(t, kc))), float64(n))
		})
	}

	r1 := startStage(t, cfg)
	msgs := produceFlows(t, p, kc, parts, batch(0, 400))
	waitScored(400)
	r2 := startStage(t, cfg)
	eventually(t, 30*time.Second, func() error {
		a1, a2 := r1.s.in.Assignment()[kc.Topic("features")], r2.s.in.Assignment()[kc.Topic("features")]
		if len(a1)+len(a2) != parts || len(a1) == 0 || len(a2) == 0 {
			return fmt.Errorf("assignments %v and %v, want the %d partitions split", a1, a2, parts)
		}
		return nil
	})
	msgs += produceFlows(t, p, kc, parts, batch(400, 400))
	waitScored(800)
	eventually(t, 30*time.Second, func() error {
		var sum int64
		for _, off := range committed(t, kc, cfg.Scorer.Group, kc.Topic("features"), parts) {
			sum += max(off, 0)
		}
		return countErr("committed offsets", float64(sum), float64(msgs))
	})
	for i, r := range []*runningStage{r1, r2} {
		held := r.s.in.Assignment()[kc.Topic("features")]
		r.s.mu.Lock()
		for id := range r.s.parts {
			if !slices.Contains(held, id) {
				t.Errorf("replica %d holds state for partition %d, assigned %v", i+1, id, held)
			}
		}
		r.s.mu.Unlock()
	}
	if got := counter(t, r1.reg, "metaids_scorer_hosts_evicted_total", map[string]string{"reason": evictRevoked}); got == 0 {
		t.Error("the first replica dropped no hosts of the partitions it gave up")
	}
	for _, r := range []*runningStage{r2, r1} {
		if err := r.stop(t); err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
	}
	if got := len(distinctFlows(t, kc)); got != len(all) {
		t.Errorf("%d distinct flows scored, want %d", got, len(all))
	}
}

// distinctFlows returns the flow ids on the scores topic.
func distinctFlows(t testing.TB, kc stream.Config) map[uint64]bool {
	t.Helper()
	out := map[uint64]bool{}
	for _, msg := range readTopic(t, kc, kc.Topic("scores")) {
		v, err := features.DecodeScores(msg.Value, memory.DefaultAllocator)
		if err != nil {
			t.Fatalf("DecodeScores: %v", err)
		}
		for i := range v.Len() {
			out[v.FlowID(i)] = true
		}
		v.Release()
	}
	return out
}
