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
	"github.com/segmentio/kafka-go"

	"github.com/metaids/metaids/features"
	"github.com/metaids/metaids/model"
	"github.com/metaids/metaids/schemas"
	"github.com/metaids/metaids/stream"
)

func TestCheckpointRecord(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 0))
	const hid = 16
	ck := checkpoint{modelVersion: 7, offset: 1 << 40, lastNs: t0, touched: t0 + 5, flows: math.MaxUint32}
	for i := range ck.encoder {
		ck.encoder[i] = byte(i * 17)
	}
	for range hid {
		ck.h = append(ck.h, float32(rng.NormFloat64()))
		ck.c = append(ck.c, float32(rng.NormFloat64()*3))
	}
	ck.h[0] = float32(math.Copysign(0, -1)) // −0 keeps its sign bit
	ck.c[1] = math.SmallestNonzeroFloat32
	for i := range 3 {
		ck.peers.See(rng.Uint64(), t0-int64(i))
	}
	b := appendCheckpoint(nil, &ck)
	if len(b) != checkpointSize(hid, 3) || len(b) != 55+8*hid+1+3*16 {
		t.Fatalf("record of %d bytes, want %d", len(b), 55+8*hid+1+3*16)
	}
	var got checkpoint
	if err := decodeCheckpoint(b, &got); err != nil {
		t.Fatalf("decodeCheckpoint: %v", err)
	}
	if got.encoder != ck.encoder || got.modelVersion != ck.modelVersion || got.offset != ck.offset ||
		got.lastNs != ck.lastNs || got.touched != ck.touched || got.flows != ck.flows {
		t.Errorf("decoded header %+v, want %+v", got, ck)
	}
	if !sameBits(got.h, ck.h) || !sameBits(got.c, ck.c) {
		t.Errorf("decoded h, c = %v, %v; want %v, %v", got.h, got.c, ck.h, ck.c)
	}
	if got.peers != ck.peers {
		t.Errorf("decoded peers %+v, want %+v", got.peers, ck.peers)
	}
	if off, err := checkpointOffset(b); err != nil || off != ck.offset {
		t.Errorf("checkpointOffset = %d, %v; want %d", off, err, ck.offset)
	}

	ck.hasCampaign, ck.campaign = true, [2]int64{t0 - 7, t0 + 9}
	bc := appendCheckpoint(nil, &ck)
	if len(bc) != len(b)+ckptCampaignSize {
		t.Fatalf("record with a campaign run of %d bytes, want %d", len(bc), len(b)+ckptCampaignSize)
	}
	var gc checkpoint
	if err := decodeCheckpoint(bc, &gc); err != nil || !gc.hasCampaign || gc.campaign != ck.campaign || gc.peers != ck.peers {
		t.Errorf("decoded campaign run %v (%v), peers %+v, err %v; want %v", gc.campaign, gc.hasCampaign, gc.peers, err, ck.campaign)
	}
	if err := decodeCheckpoint(bc[:len(bc)-1], &gc); err == nil {
		t.Errorf("a record cut inside its campaign run decoded")
	}

	nan := bytes.Clone(b)
	copy(nan[ckptHeaderSize+4*3:], []byte{0, 0, 0xc0, 0x7f})
	v1 := bytes.Clone(b)
	v1[0] = 1
	tooMany := bytes.Clone(b)
	tooMany[checkpointSize(hid, 0)-1] = features.PeerSlots + 1
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"header only", b[:ckptHeaderSize]},
		{"truncated", b[:len(b)-1]},
		{"trailing byte", append(bytes.Clone(b), 0)},
		{"other version", v1},
		{"peer count past the record", tooMany},
		{"more peers than slots", append(tooMany, make([]byte, 16*(features.PeerSlots-2))...)},
		{"NaN state", nan},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := decodeCheckpoint(tc.b, &got); err == nil {
				t.Errorf("decodeCheckpoint(%d bytes) = nil, want an error", len(tc.b))
			}
		})
	}
}

func sameBits(a, b []float32) bool {
	return slices.EqualFunc(a, b, func(x, y float32) bool { return math.Float32bits(x) == math.Float32bits(y) })
}

// checkpointSettings are test settings with checkpoints every minute.
func checkpointSettings() Settings {
	set := testSettings()
	set.State.CheckpointInterval = time.Minute
	return set
}

// checkpointNow runs a checkpoint round on every partition of s, due or
// not, and returns its records as a consumer of scorer.state reads them.
func checkpointNow(t testing.TB, s *Stage) []kafka.Message {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.em.reset()
	s.checkpointDue(&s.em, s.now(), true)
	return stateRecords(t, s, s.em.msgs)
}

// stateRecords returns the scorer.state records among msgs, with their
// offsets on the topic (in order) as a reader would see them.
func stateRecords(t testing.TB, s *Stage, msgs []kafka.Message) []kafka.Message {
	t.Helper()
	var out []kafka.Message
	for _, m := range msgs {
		if m.Topic != s.stateTopic {
			continue
		}
		out = append(out, kafka.Message{Partition: m.Partition, Key: m.Key, Value: m.Value, Offset: int64(len(out))})
	}
	return out
}

// restoreCore restores partition part of s from recs as a takeover does,
// without the replay, and returns the hosts restored.
func restoreCore(t testing.TB, s *Stage, part int, recs []kafka.Message) int {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	sv := s.current.Load()
	s.adopt(sv)
	p := s.partition(sv, part)
	n, _ := s.applyCheckpoints(p, recs)
	return n
}

// TestRestoreBitIdentical checkpoints a core's hosts and restores them in
// another: every state, counter and time comes back bit for bit, and the
// two then score the same flows identically.
func TestRestoreBitIdentical(t *testing.T) {
	msgs := benchMessages(t, 6, 256, 64)
	m := newTestModel(t, 1, 16, "benign", "scan")
	m.AnomalyThreshold = 0.5
	a, _, _ := newCore(t, checkpointSettings(), m, nil)
	score(t, a, 0, msgs[:3]...)
	recs := checkpointNow(t, a)
	if len(recs) != 64 {
		t.Fatalf("checkpoint of %d records, want one per host (64)", len(recs))
	}
	for _, r := range recs {
		if r.Partition != 0 || len(r.Value) < checkpointSize(16, 0) {
			t.Fatalf("record for %s: partition %d, %d bytes; want 0, at least %d", r.Key, r.Partition, len(r.Value), checkpointSize(16, 0))
		}
	}

	b, reg, _ := newCore(t, checkpointSettings(), m, nil)
	if n := restoreCore(t, b, 0, recs); n != 64 {
		t.Fatalf("restored %d hosts, want 64", n)
	}
	if got := counter(t, reg, "metaids_scorer_state_restored_hosts_total", map[string]string{"result": restoredOK}); got != 64 {
		t.Errorf("restored hosts counter = %v, want 64", got)
	}
	sa, sb := a.parts[0].st, b.parts[0].st
	if sa.watermark != sb.watermark || sa.live != sb.live {
		t.Errorf("restored watermark, hosts = %d, %d; want %d, %d", sb.watermark, sb.live, sa.watermark, sa.live)
	}
	for host, slot := range sa.index {
		ha, ca, _ := hostState(a, 0, host)
		hb, cb, ok := hostState(b, 0, host)
		if !ok {
			t.Fatalf("host %s not restored", host)
		}
		if !sameBits(hb, ha) || !sameBits(cb, ca) {
			t.Errorf("host %s: restored h, c differ from the checkpointed ones", host)
		}
		ma, mb := sa.meta[slot], sb.meta[sb.index[host]]
		if mb.peers != ma.peers || ma.peers.N == 0 {
			t.Errorf("host %s: restored peers %+v, want %+v (not empty)", host, mb.peers, ma.peers)
		}
		if mb.lastNs != ma.lastNs || mb.touched != ma.touched || mb.flows != ma.flows {
			t.Errorf("host %s: restored lastNs, touched, flows = %d, %d, %d; want %d, %d, %d",
				host, mb.lastNs, mb.touched, mb.flows, ma.lastNs, ma.touched, ma.flows)
		}
	}
	// The LRU order comes back too, as far as times tell it apart.
	var ta, tb []int64
	for s := sa.tail; s != nilSlot; s = sa.meta[s].prev {
		ta = append(ta, sa.meta[s].touched)
	}
	for s := sb.tail; s != nilSlot; s = sb.meta[s].prev {
		tb = append(tb, sb.meta[s].touched)
	}
	if !slices.Equal(ta, tb) {
		t.Errorf("restored LRU times %v, want %v", tb, ta)
	}

	for i, msg := range msgs[3:] {
		want := scores(t, a, score(t, a, 0, msg))
		got := scores(t, b, score(t, b, 0, msg))
		for r := range want {
			g, w := got[r], want[r]
			if g.FlowID != w.FlowID || math.Float32bits(g.Anomaly) != math.Float32bits(w.Anomaly) ||
				!sameBits(g.Probs, w.Probs) || !sameBits(g.Embedding, w.Embedding) {
				t.Fatalf("message %d row %d after the restore: scores differ from the original's", i, r)
			}
		}
	}
}

// TestCheckpointRounds checks what a round writes and when: the first half
// an interval after the partition was taken, then every interval, each
// time the hosts changed since the last round, at the offset after the
// last message applied.
func TestCheckpointRounds(t *testing.T) {
	m := newTestModel(t, 1, 8, "benign", "scan")
	s, _, clk := newCore(t, checkpointSettings(), m, nil)
	rng := rand.New(rand.NewPCG(1, 0))
	msg := func(hosts ...string) []byte {
		var flows []schemas.Flow
		for i, h := range hosts {
			flows = append(flows, flowOf(h, t0+int64(i)*int64(time.Second), int64(i), false, rng))
		}
		return encodeFlows(t, flows)
	}
	round := func(offset int64, value []byte) []kafka.Message {
		t.Helper()
		s.mu.Lock()
		defer s.mu.Unlock()
		s.em.reset()
		batch := []kafka.Message{{Topic: s.featuresTopic, Partition: 2, Offset: offset, Key: []byte("k"), Value: value}}
		s.scoreBatch(batch, &s.em)
		s.checkpointDue(&s.em, s.now(), false)
		return stateRecords(t, s, s.em.msgs)
	}
	keysAt := func(recs []kafka.Message) (keys []string, offset int64) {
		offset = -1
		for _, r := range recs {
			keys = append(keys, string(r.Key))
			var ck checkpoint
			if err := decodeCheckpoint(r.Value, &ck); err != nil {
				t.Fatal(err)
			}
			if offset >= 0 && ck.offset != offset {
				t.Errorf("one round at offsets %d and %d", offset, ck.offset)
			}
			offset = ck.offset
		}
		slices.Sort(keys)
		return keys, offset
	}

	if recs := round(10, msg("10.0.0.1", "10.0.0.2")); len(recs) != 0 {
		t.Errorf("round on a partition just taken wrote %d records, want none", len(recs))
	}
	clk.advance(30 * time.Second) // the first round comes half an interval in
	keys, off := keysAt(round(11, msg("10.0.0.3")))
	if want := []string{"10.0.0.1", "10.0.0.2", "10.0.0.3"}; !slices.Equal(keys, want) || off != 12 {
		t.Errorf("first round: hosts %v at offset %d, want %v at 12", keys, off, want)
	}
	clk.advance(30 * time.Second)
	if recs := round(12, msg("10.0.0.1")); len(recs) != 0 {
		t.Errorf("round half an interval later wrote %d records, want none", len(recs))
	}
	clk.advance(30 * time.Second)
	keys, off = keysAt(round(13, msg("10.0.0.4")))
	if want := []string{"10.0.0.1", "10.0.0.4"}; !slices.Equal(keys, want) || off != 14 {
		t.Errorf("second round: hosts %v at offset %d, want only the changed %v at 14", keys, off, want)
	}
}

// TestCheckpointTombstones checks that a checkpointed host that expires is
// deleted from the topic at the next round, unless it has come back.
func TestCheckpointTombstones(t *testing.T) {
	m := newTestModel(t, 1, 8, "benign", "scan")
	set := checkpointSettings()
	set.State.TTL = time.Minute
	s, _, _ := newCore(t, set, m, nil)
	rng := rand.New(rand.NewPCG(1, 0))
	at := func(sec int64, hosts ...string) []byte {
		var flows []schemas.Flow
		for i, h := range hosts {
			flows = append(flows, flowOf(h, t0+sec*int64(time.Second)+int64(i), int64(i), false, rng))
		}
		return encodeFlows(t, flows)
	}
	score(t, s, 0, at(0, "10.0.0.1", "10.0.0.2", "10.0.0.3"))
	recs := checkpointNow(t, s)
	// Two minutes on, the three have expired; 1 comes back before the round.
	score(t, s, 0, at(120, "10.0.0.4"))
	if _, _, ok := hostState(s, 0, "10.0.0.1"); ok {
		t.Fatal("10.0.0.1 did not expire")
	}
	score(t, s, 0, at(150, "10.0.0.1"))
	second := checkpointNow(t, s)
	var tombs, states []string
	for _, r := range second {
		if r.Value == nil {
			tombs = append(tombs, string(r.Key))
		} else {
			states = append(states, string(r.Key))
		}
	}
	slices.Sort(tombs)
	slices.Sort(states)
	if want := []string{"10.0.0.2", "10.0.0.3"}; !slices.Equal(tombs, want) {
		t.Errorf("tombstones for %v, want %v", tombs, want)
	}
	if want := []string{"10.0.0.1", "10.0.0.4"}; !slices.Equal(states, want) {
		t.Errorf("states for %v, want %v", states, want)
	}
	all := append(recs, second...)
	for i := range all {
		all[i].Offset = int64(i)
	}
	r, _, _ := newCore(t, set, m, nil)
	restoreCore(t, r, 0, all)
	for host, want := range map[string]bool{"10.0.0.1": true, "10.0.0.2": false, "10.0.0.3": false, "10.0.0.4": true} {
		if _, _, ok := hostState(r, 0, host); ok != want {
			t.Errorf("host %s restored = %v, want %v", host, ok, want)
		}
	}
}

// TestRestoreOtherEncoder checks that states are restored only under the
// encoder that wrote them: a head-only change keeps them, other LSTM
// weights or another normalisation do not.
func TestRestoreOtherEncoder(t *testing.T) {
	msgs := benchMessages(t, 2, 128, 20)
	m := newTestModel(t, 1, 16, "benign", "scan")
	a, _, _ := newCore(t, checkpointSettings(), m, nil)
	score(t, a, 0, msgs...)
	recs := checkpointNow(t, a)

	head := m.Clone()
	head.Version = 2
	head.P.ClsW[3] += 1
	head.P.PredB[0] += 1
	head.WeightsChanged()
	norm := m.Clone()
	mean, std := norm.Norm()
	mean = slices.Clone(mean)
	mean[0] += 0.5
	if err := norm.SetNorm(mean, slices.Clone(std)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		m    *model.Model
		want bool
	}{
		{"same model", m, true},
		{"head-only change", head, true},
		{"other LSTM weights", newTestModel(t, 2, 16, "benign", "scan"), false},
		{"other normalisation", norm, false},
		{"other hidden size", newTestModel(t, 1, 8, "benign", "scan"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, reg, _ := newCore(t, checkpointSettings(), tc.m, nil)
			n := restoreCore(t, s, 0, recs)
			other := counter(t, reg, "metaids_scorer_state_restored_hosts_total", map[string]string{"result": restoredOtherModel})
			if tc.want && (n != 20 || other != 0) {
				t.Errorf("restored %d, ignored %v as another encoder's; want 20 and 0", n, other)
			}
			if !tc.want && (n != 0 || other != 20) {
				t.Errorf("restored %d, ignored %v as another encoder's; want 0 and 20", n, other)
			}
			if _, _, ok := hostState(s, 0, "10.0.0.0"); ok != tc.want {
				t.Errorf("host 10.0.0.0 held = %v, want %v", ok, tc.want)
			}
		})
	}
}

// TestCheckpointAfterEncoderChange checks that a new encoder's reset
// deletes the old states' checkpoints at the next round.
func TestCheckpointAfterEncoderChange(t *testing.T) {
	msgs := benchMessages(t, 1, 64, 10)
	m := newTestModel(t, 1, 8, "benign", "scan")
	s, _, _ := newCore(t, checkpointSettings(), m, nil)
	score(t, s, 0, msgs[0])
	if n := len(checkpointNow(t, s)); n != 10 {
		t.Fatalf("first round wrote %d records, want 10", n)
	}
	s.serve(&served{m: newTestModel(t, 2, 8, "benign", "scan"), encoder: 2}, "test")
	s.mu.Lock()
	s.adopt(s.current.Load())
	s.mu.Unlock()
	recs := checkpointNow(t, s)
	if len(recs) != 10 {
		t.Fatalf("round after the reset wrote %d records, want 10 tombstones", len(recs))
	}
	for _, r := range recs {
		if r.Value != nil {
			t.Errorf("record for %s after the reset is a state, want a tombstone", r.Key)
		}
	}
}

// TestWarmRestart runs a replica over the broker, stops it and starts
// another: with checkpoints, the second scores its first flows as if
// nothing had happened, both when the first left a checkpoint at its last
// offset and when flows were scored after the last checkpoint (which the
// second replays); without, it does not.
func TestWarmRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: starts a broker and several stages")
	}
	const parts = 4
	rng := rand.New(rand.NewPCG(21, 0))
	var hosts []string
	for i := range 12 {
		hosts = append(hosts, fmt.Sprintf("10.7.%d.%d", i, 10+i))
	}
	var flows []schemas.Flow
	for i := range 900 {
		flows = append(flows, flowOf(hosts[rng.IntN(len(hosts))], t0+int64(i)*int64(300*time.Millisecond), int64(i), rng.IntN(9) == 0, rng))
	}
	phase := [][]schemas.Flow{flows[:400], flows[400:600], flows[600:]}
	m := newTestModel(t, 3, 16, "benign", "scan")
	m.AnomalyThreshold = 0 // scores only

	// The reference: one replica scoring everything.
	ref, _, _ := newCore(t, testSettings(), m, nil)
	want := map[uint64]features.Score{}
	for a := 0; a < len(flows); a += 100 {
		for _, sc := range scores(t, ref, score(t, ref, 0, encodeFlows(t, flows[a:a+100]))) {
			want[sc.FlowID] = sc
		}
	}

	for _, tc := range []struct {
		name string
		// interval of the replica scoring each phase; 0 is off
		intervals [3]time.Duration
		restore   bool // the last replica restores every host
		replayed  int  // flows it replays
	}{
		{"checkpoint at stop", [3]time.Duration{10 * time.Second, 10 * time.Second, 10 * time.Second}, true, 0},
		{"replay since the checkpoint", [3]time.Duration{10 * time.Second, 0, 10 * time.Second}, true, len(phase[1])},
		{"no checkpoints", [3]time.Duration{0, 0, 0}, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, kc := startBroker(t, parts)
			key := newKeyPair(t, 1)
			p := newProducer(t, kc)
			publishModel(t, p, kc, signed(t, m, schemas.UpdateFull, key))
			scored := 0
			var last *runningStage
			for i, fl := range phase {
				cfg := stageConfig(t, kc, key)
				cfg.Scorer.State.CheckpointInterval = tc.intervals[i]
				r := startStage(t, cfg)
				produceFlows(t, p, kc, parts, fl)
				scored += len(fl)
				eventually(t, 30*time.Second, func() error {
					return countErr("distinct flows scored", float64(len(distinctFlows(t, kc))), float64(scored))
				})
				if err := r.stop(t); err != nil {
					t.Fatalf("replica %d: Run = %v", i+1, err)
				}
				last = r
			}
			if got := counter(t, last.reg, "metaids_scorer_state_replayed_flows_total", nil); int(got) != tc.replayed {
				t.Errorf("replayed %v flows, want %d", got, tc.replayed)
			}
			restored := counter(t, last.reg, "metaids_scorer_state_restored_hosts_total", map[string]string{"result": restoredOK})
			if tc.restore && int(restored) != len(hosts) {
				t.Errorf("restored %v hosts, want %d", restored, len(hosts))
			}

			third := map[uint64]bool{}
			for _, f := range phase[2] {
				third[schemas.FlowID(f.Source)] = true
			}
			matched, compared := 0, 0
			for _, sc := range kafkaScores(t, kc) {
				if !third[sc.FlowID] {
					continue
				}
				compared++
				w := want[sc.FlowID]
				if closeTo(sc.Probs, w.Probs, 1e-5) && closeTo(sc.Embedding, w.Embedding, 1e-5) && closeTo([]float32{sc.Anomaly}, []float32{w.Anomaly}, 1e-5) {
					matched++
				}
			}
			if compared != len(phase[2]) {
				t.Fatalf("found %d scores of the last phase, want %d", compared, len(phase[2]))
			}
			if tc.restore && matched != compared {
				t.Errorf("%d of %d flows after the restart scored as without it, want all", matched, compared)
			}
			if !tc.restore && matched == compared {
				t.Errorf("every flow after a cold restart scored as without it: the test cannot tell restores apart")
			}
			t.Logf("%d of %d flows after the restart scored as without it", matched, compared)
		})
	}
}

// TestCheckpointOnRevoke starts a second replica mid-stream, with an
// interval so long that no periodic round runs: the first replica's
// revocation round is the only checkpoint, and with it the second restores
// every host of the partitions it takes, as of the offset it starts at
// (nothing to replay), and scores their next flows as if they had not
// moved.
func TestCheckpointOnRevoke(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: starts a broker and two stages")
	}
	const parts = 4
	rng := rand.New(rand.NewPCG(23, 0))
	var hosts []string
	for i := range 12 {
		hosts = append(hosts, fmt.Sprintf("10.8.%d.%d", i, 20+i))
	}
	var flows []schemas.Flow
	for i := range 800 {
		flows = append(flows, flowOf(hosts[rng.IntN(len(hosts))], t0+int64(i)*int64(300*time.Millisecond), int64(i), rng.IntN(9) == 0, rng))
	}
	phase := [][]schemas.Flow{flows[:500], flows[500:]}
	m := newTestModel(t, 4, 16, "benign", "scan")
	m.AnomalyThreshold = 0 // scores only

	ref, _, _ := newCore(t, testSettings(), m, nil)
	want := map[uint64]features.Score{}
	for a := 0; a < len(flows); a += 100 {
		for _, sc := range scores(t, ref, score(t, ref, 0, encodeFlows(t, flows[a:a+100]))) {
			want[sc.FlowID] = sc
		}
	}

	_, kc := startBroker(t, parts)
	key := newKeyPair(t, 1)
	p := newProducer(t, kc)
	publishModel(t, p, kc, signed(t, m, schemas.UpdateFull, key))
	cfg := stageConfig(t, kc, key)
	cfg.Scorer.State.CheckpointInterval = time.Hour
	waitScored := func(n int) {
		t.Helper()
		eventually(t, 30*time.Second, func() error {
			return countErr("distinct flows scored", float64(len(distinctFlows(t, kc))), float64(n))
		})
	}

	r1 := startStage(t, cfg)
	produceFlows(t, p, kc, parts, phase[0])
	waitScored(len(phase[0]))
	if got := counter(t, r1.reg, "metaids_scorer_state_checkpoint_records_total", map[string]string{"kind": kindState}); got != 0 {
		t.Fatalf("%v hosts checkpointed before the rebalance, want none (a periodic round ran)", got)
	}
	r2 := startStage(t, cfg)
	topic := kc.Topic("features")
	var taken []int
	eventually(t, 30*time.Second, func() error {
		a1, a2 := r1.s.in.Assignment()[topic], r2.s.in.Assignment()[topic]
		if len(a1)+len(a2) != parts || len(a1) == 0 || len(a2) == 0 {
			return fmt.Errorf("assignments %v and %v, want the %d partitions split", a1, a2, parts)
		}
		taken = a2
		return nil
	})
	if got := counter(t, r1.reg, "metaids_scorer_state_checkpoint_records_total", map[string]string{"kind": kindState}); int(got) != len(hosts) {
		t.Errorf("first replica checkpointed %v hosts on revocation, want %d", got, len(hosts))
	}
	produceFlows(t, p, kc, parts, phase[1])
	waitScored(len(flows))

	moved := map[string]bool{}
	for _, f := range phase[0] {
		if h := f.SrcAddr.String(); slices.Contains(taken, features.Partition(h, parts)) {
			moved[h] = true
		}
	}
	if len(moved) == 0 {
		t.Fatalf("no host moved to the second replica (it took partitions %v)", taken)
	}
	if got := counter(t, r2.reg, "metaids_scorer_state_restored_hosts_total", map[string]string{"result": restoredOK}); int(got) != len(moved) {
		t.Errorf("second replica restored %v hosts, want the %d of its partitions", got, len(moved))
	}
	if got := counter(t, r2.reg, "metaids_scorer_state_replayed_flows_total", nil); got != 0 {
		t.Errorf("second replica replayed %v flows, want 0 (the checkpoint is as of its start)", got)
	}
	second := map[uint64]bool{}
	for _, f := range phase[1] {
		if moved[f.SrcAddr.String()] {
			second[schemas.FlowID(f.Source)] = true
		}
	}
	matched, compared := 0, 0
	for _, sc := range kafkaScores(t, kc) {
		if !second[sc.FlowID] {
			continue
		}
		compared++
		w := want[sc.FlowID]
		if closeTo(sc.Probs, w.Probs, 1e-5) && closeTo(sc.Embedding, w.Embedding, 1e-5) && closeTo([]float32{sc.Anomaly}, []float32{w.Anomaly}, 1e-5) {
			matched++
		}
	}
	if compared != len(second) || matched != compared {
		t.Errorf("%d of %d flows of the moved hosts after the rebalance scored as without it (%d found), want all", matched, len(second), compared)
	}
	for _, r := range []*runningStage{r2, r1} {
		if err := r.stop(t); err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
	}
}

// kafkaScores reads every score on the scores topic.
func kafkaScores(t testing.TB, kc stream.Config) []features.Score {
	t.Helper()
	var out []features.Score
	for _, msg := range readTopic(t, kc, kc.Topic("scores")) {
		v, err := features.DecodeScores(msg.Value, memory.DefaultAllocator)
		if err != nil {
			t.Fatalf("DecodeScores: %v", err)
		}
		for i := range v.Len() {
			out = append(out, features.Score{
				FlowID: v.FlowID(i), Anomaly: v.Anomaly(i),
				Probs:     slices.Clone(v.Probs(i)),
				Embedding: slices.Clone(v.Embedding(i)),
			})
		}
		v.Release()
	}
	return out
}

func closeTo(got, want []float32, tol float64) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if math.Abs(float64(got[i])-float64(want[i])) > tol*max(1, math.Abs(float64(want[i]))) {
			return false
		}
	}
	return true
}

// TestCheckpointUndo checks that a round whose records were not
// acknowledged is written again whole at the next one.
func TestCheckpointUndo(t *testing.T) {
	msgs := benchMessages(t, 2, 64, 10)
	m := newTestModel(t, 1, 8, "benign", "scan")
	set := checkpointSettings()
	set.State.TTL = time.Minute
	s, _, _ := newCore(t, set, m, nil)
	score(t, s, 0, msgs[0])
	checkpointNow(t, s)
	// Expire some hosts, so that the round holds tombstones too.
	rng := rand.New(rand.NewPCG(2, 0))
	late := flowOf("10.0.0.77", t0+int64(time.Hour), 0, false, rng)
	score(t, s, 0, encodeFlows(t, []schemas.Flow{late}))
	first := checkpointNow(t, s)
	s.mu.Lock()
	s.uncheckpoint(&s.em)
	s.mu.Unlock()
	again := checkpointNow(t, s)
	key := func(r kafka.Message) string { return fmt.Sprintf("%s %x", r.Key, r.Value) }
	a, b := make([]string, len(first)), make([]string, len(again))
	for i := range first {
		a[i] = key(first[i])
	}
	for i := range again {
		b[i] = key(again[i])
	}
	slices.Sort(a)
	slices.Sort(b)
	if len(first) != 11 || !slices.Equal(a, b) {
		t.Errorf("round after an undo wrote %d records, the undone one %d (want the same 11: 10 tombstones and a state)", len(again), len(first))
	}
	if n := len(checkpointNow(t, s)); n != 0 {
		t.Errorf("round after that wrote %d records, want none", n)
	}
}

// TestNoStateTopic runs a stage on a broker without the scorer.state
// topic: it scores everything, counts every partition as not
// checkpointed, and stops cleanly.
func TestNoStateTopic(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: starts a broker and a stage")
	}
	const parts = 2
	_, kc := startBrokerWith(t, parts, stream.TopicNames{Features: "features", Scores: "scores", Alerts: "alerts", Actions: "actions", Models: "models"})
	key := newKeyPair(t, 1)
	p := newProducer(t, kc)
	publishModel(t, p, kc, signed(t, newTestModel(t, 1, 8, "benign", "scan"), schemas.UpdateFull, key))
	cfg := stageConfig(t, kc, key)
	cfg.Scorer.State.CheckpointInterval = minCheckpoint
	r := startStage(t, cfg)
	rng := rand.New(rand.NewPCG(4, 0))
	var flows []schemas.Flow
	for i := range 200 {
		flows = append(flows, flowOf(fmt.Sprintf("10.3.0.%d", i%40), t0+int64(i)*int64(time.Second), int64(i), false, rng))
	}
	produceFlows(t, p, kc, parts, flows)
	eventually(t, 30*time.Second, func() error {
		return countErr("distinct flows scored", float64(len(distinctFlows(t, kc))), float64(len(flows)))
	})
	time.Sleep(3 * minCheckpoint) // rounds would be due now: nothing to poll for when none may come
	if err := r.stop(t); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	if got := counter(t, r.reg, "metaids_scorer_state_restores_total", map[string]string{"result": restoreNoTopic}); got != parts {
		t.Errorf("partitions restored without a topic = %v, want %d", got, parts)
	}
	if got := counter(t, r.reg, "metaids_scorer_state_checkpoint_records_total", nil); got != 0 {
		t.Errorf("checkpoint records = %v, want none", got)
	}
}

// FuzzDecodeCheckpoint feeds decodeCheckpoint arbitrary scorer.state
// records: a record is bytes from a topic, so it must never panic, and one
// it accepts must encode back to the same bytes (nothing in it is ignored
// or changed on the way in).
func FuzzDecodeCheckpoint(f *testing.F) {
	rng := rand.New(rand.NewPCG(3, 0))
	ck := checkpoint{modelVersion: 2, offset: 99, lastNs: t0, touched: t0 + 1, flows: 7}
	for range 4 {
		ck.h = append(ck.h, float32(rng.NormFloat64()))
		ck.c = append(ck.c, float32(rng.NormFloat64()))
	}
	f.Add(appendCheckpoint(nil, &ck))
	for i := range 3 {
		ck.peers.See(rng.Uint64(), t0+int64(i))
	}
	f.Add(appendCheckpoint(nil, &ck))
	f.Add([]byte{ckptVersion, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		var got checkpoint
		if err := decodeCheckpoint(b, &got); err != nil {
			return
		}
		if again := appendCheckpoint(nil, &got); !bytes.Equal(again, b) {
			t.Fatalf("decoded and encoded again: %x, want %x", again, b)
		}
	})
}

// TestCampaignRunRestored checks that how far a host's campaign has run
// survives a takeover: the new owner names the host's next alert by the
// campaign although it comes more than the pause after the labels.
func TestCampaignRunRestored(t *testing.T) {
	m := campaignModel(t)
	set := checkpointSettings()
	set.Alerts.Republish = 0
	rng := rand.New(rand.NewPCG(4, 0))
	var first []schemas.Flow
	for i := range 60 { // two minutes of scanning: the campaign runs to ~118 s
		first = append(first, flowOf("10.6.6.6", t0+int64(2*i)*1e9, int64(i), true, rng))
	}
	later := encodeFlows(t, []schemas.Flow{flowOf("10.6.6.6", t0+150e9, 100, true, rng)})
	for _, restore := range []bool{true, false} {
		a, _, _ := newCore(t, set, m, nil)
		score(t, a, 0, encodeFlows(t, first))
		recs := checkpointNow(t, a)
		if !restore {
			recs = nil // a cold start: the campaign runs from its labels only
		}
		b, _, _ := newCore(t, set, m, nil)
		restoreCore(t, b, 0, recs)
		got := alerts(t, b, score(t, b, 0, later))
		want := map[bool]string{true: "slow_scan", false: "scan"}[restore]
		if len(got) != 1 || got[0].Class != want {
			t.Errorf("restored %v: alerts %+v, want one %s alert", restore, got, want)
		}
	}
}
