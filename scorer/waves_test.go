package scorer

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/apache/arrow/go/v15/arrow/memory"

	"github.com/metaids/metaids/features"
	"github.com/metaids/metaids/schemas"
)

func TestPlanWaves(t *testing.T) {
	for _, tc := range []struct {
		name       string
		hosts      []string
		wantWaves  int
		wantOrder  []int32
		wantStarts []int32
	}{
		{"one flow per host", []string{"10.0.0.1", "10.0.0.2", "10.0.0.3"}, 1, []int32{0, 1, 2}, []int32{0, 3}},
		{"one host", []string{"10.0.0.1", "10.0.0.1", "10.0.0.1"}, 3, []int32{0, 1, 2}, []int32{0, 1, 2, 3}},
		{
			"interleaved", []string{"10.0.0.1", "10.0.0.2", "10.0.0.1", "10.0.0.3", "10.0.0.1", "10.0.0.2"},
			3, []int32{0, 1, 3, 2, 5, 4}, []int32{0, 3, 5, 6},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, 0))
			flows := make([]schemas.Flow, len(tc.hosts))
			for i, h := range tc.hosts {
				flows[i] = flowOf(h, t0+int64(i)*int64(time.Second), int64(i), false, rng)
			}
			v, err := features.Decode(encodeFlows(t, flows), memory.DefaultAllocator)
			if err != nil {
				t.Fatal(err)
			}
			defer v.Release()
			sp := newStepper(16)
			st := newStore(4, 100, int64(time.Hour))
			waves := sp.plan(st, v)
			if waves != tc.wantWaves {
				t.Errorf("waves = %d, want %d", waves, tc.wantWaves)
			}
			if got := sp.order[:len(tc.hosts)]; !slices.Equal(got, tc.wantOrder) {
				t.Errorf("order = %v, want %v", got, tc.wantOrder)
			}
			if got := sp.starts[:waves+1]; !slices.Equal(got, tc.wantStarts) {
				t.Errorf("starts = %v, want %v", got, tc.wantStarts)
			}
			// Within a wave every host is at a different slot.
			for w := range waves {
				var slots []int32
				for _, r := range sp.order[sp.starts[w]:sp.starts[w+1]] {
					if slices.Contains(slots, sp.slot[r]) {
						t.Errorf("wave %d holds slot %d twice", w, sp.slot[r])
					}
					slots = append(slots, sp.slot[r])
				}
			}
		})
	}
}

// TestWavesMatchSequential is the acceptance check for batched inference: a
// message holding several flows of each host yields the same scores and
// the same final states as feeding the flows one message at a time.
func TestWavesMatchSequential(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 0))
	hosts := []string{"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "192.168.7.7"}
	var flows []schemas.Flow
	start := t0
	perHost := map[string]int{}
	for i := range 60 {
		// Skewed so that one host has many flows and some have few.
		h := hosts[min(rng.IntN(len(hosts)), rng.IntN(len(hosts)))]
		perHost[h]++
		start += rng.Int64N(3 * int64(time.Second))
		flows = append(flows, flowOf(h, start, int64(i), rng.IntN(3) == 0, rng))
	}
	m := newTestModel(t, 1, 16, "benign", "scan", "exfil")
	m.AnomalyThreshold = 0.5 // keeps previous states, exercising that path too

	seq, _, _ := newCore(t, testSettings(), m, nil)
	var want []features.Score
	for i := range flows {
		want = append(want, scores(t, seq, score(t, seq, 0, encodeFlows(t, flows[i:i+1])))...)
	}

	for _, tc := range []struct {
		name     string
		maxFlows int
	}{
		{"one step per wave", 4096},
		{"waves split into steps of 2", 2},
		{"one host per step", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set := testSettings()
			set.Batch.MaxFlows = tc.maxFlows
			batched, reg, _ := newCore(t, set, m, nil)
			got := scores(t, batched, score(t, batched, 0, encodeFlows(t, flows)))
			if len(got) != len(want) {
				t.Fatalf("batched scores %d rows, want %d", len(got), len(want))
			}
			if waves := histSum(t, reg, "metaids_scorer_batch_waves"); int(waves) != slices.Max(mapValues(perHost)) {
				t.Errorf("waves = %v, want %d (the most flows of one host)", waves, slices.Max(mapValues(perHost)))
			}
			exact := true
			for i := range want {
				g, w := got[i], want[i]
				if g.FlowID != w.FlowID || g.Host != w.Host || g.TimeNs != w.TimeNs {
					t.Fatalf("row %d is flow %x of %s, want %x of %s", i, g.FlowID, g.Host, w.FlowID, w.Host)
				}
				exact = exact && g.Anomaly == w.Anomaly && slices.Equal(g.Probs, w.Probs) && slices.Equal(g.Embedding, w.Embedding)
				checkClose(t, "anomaly", i, []float32{g.Anomaly}, []float32{w.Anomaly})
				checkClose(t, "probs", i, g.Probs, w.Probs)
				checkClose(t, "embedding", i, g.Embedding, w.Embedding)
			}
			for _, h := range hosts {
				gh, gc, gok := hostState(batched, 0, h)
				wh, wc, wok := hostState(seq, 0, h)
				if gok != wok {
					t.Fatalf("host %s held: batched %v, sequential %v", h, gok, wok)
				}
				exact = exact && slices.Equal(gh, wh) && slices.Equal(gc, wc)
				checkClose(t, "h of "+h, 0, gh, wh)
				checkClose(t, "c of "+h, 0, gc, wc)
			}
			t.Logf("bit-for-bit identical: %v", exact)
		})
	}
}

// checkClose fails if got and want differ by more than 1e-6 (relative to
// the magnitude, for values above 1).
func checkClose(t *testing.T, what string, row int, got, want []float32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s of row %d: %d values, want %d", what, row, len(got), len(want))
	}
	for j := range got {
		d := math.Abs(float64(got[j]) - float64(want[j]))
		if d > 1e-6*max(1, math.Abs(float64(want[j]))) {
			t.Fatalf("%s of row %d [%d] = %v, want %v", what, row, j, got[j], want[j])
		}
	}
}

func mapValues(m map[string]int) []int {
	var out []int
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// TestDeltaT checks the stateful feature: 0 for a host's first flow, then
// DeltaT of the gap between flow starts, as the embedding's feature part
// shows (the test model's normalisation is the identity).
func TestDeltaT(t *testing.T) {
	m := newTestModel(t, 2, 8, "benign", "scan")
	s, _, _ := newCore(t, testSettings(), m, nil)
	rng := rand.New(rand.NewPCG(5, 0))
	gaps := []int64{0, 3 * int64(time.Second), 250 * int64(time.Millisecond), -int64(time.Second)}
	var flows []schemas.Flow
	start := t0
	for i, g := range gaps {
		start += g
		flows = append(flows, flowOf("10.1.1.1", start, int64(i), false, rng))
	}
	// Two messages: the gap across the message boundary comes from state.
	got := scores(t, s, score(t, s, 0, encodeFlows(t, flows[:2]), encodeFlows(t, flows[2:])))
	for i, g := range gaps {
		want := float32(0)
		if i > 0 {
			want = features.DeltaT(g)
		}
		if dt := got[i].Embedding[m.Hidden()+features.IdxDeltaT]; dt != want {
			t.Errorf("flow %d (gap %v): dt_prev = %v, want %v", i, time.Duration(g), dt, want)
		}
	}
}

// TestExpiryIndependentOfMessages checks that a host idle past the TTL
// starts afresh at its next flow whether or not a message boundary fell
// in the gap: the store drops idle hosts between messages, and the flow
// itself must decide the same inside one. Otherwise the scores would hang
// on how ingest happened to batch the flows, and a live replay would not
// repeat itself.
func TestExpiryIndependentOfMessages(t *testing.T) {
	m := newTestModel(t, 4, 8, "benign", "scan")
	set := testSettings()
	set.State.TTL = time.Minute
	rng := rand.New(rand.NewPCG(9, 0))
	sec := int64(time.Second)
	flows := []schemas.Flow{
		flowOf("10.0.0.1", t0, 0, false, rng),
		flowOf("10.0.0.2", t0+30*sec, 1, false, rng),
		flowOf("10.0.0.2", t0+90*sec, 2, false, rng), // the watermark passes 10.0.0.1's TTL
		flowOf("10.0.0.1", t0+100*sec, 3, false, rng),
		flowOf("10.0.0.1", t0+101*sec, 4, false, rng),
	}
	whole, _, _ := newCore(t, set, m, nil)
	one := scores(t, whole, score(t, whole, 0, encodeFlows(t, flows)))
	split, _, _ := newCore(t, set, m, nil)
	var each [][]byte
	for i := range flows {
		each = append(each, encodeFlows(t, flows[i:i+1]))
	}
	apart := scores(t, split, score(t, split, 0, each...))
	if len(one) != len(flows) || len(apart) != len(flows) {
		t.Fatalf("scored %d and %d rows, want %d", len(one), len(apart), len(flows))
	}
	if dt := one[3].Embedding[m.Hidden()+features.IdxDeltaT]; dt != 0 {
		t.Errorf("in one message, the first flow after the TTL has dt_prev %v, want 0: the host did not start afresh", dt)
	}
	for i := range flows {
		if !slices.Equal(one[i].Probs, apart[i].Probs) || !slices.Equal(one[i].Embedding, apart[i].Embedding) || one[i].Anomaly != apart[i].Anomaly {
			t.Errorf("flow %d scored differently in one message and in one message per flow", i)
		}
	}
}
