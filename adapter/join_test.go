package adapter

import (
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/metaids/metaids/schemas"
)

// joinStep is one event fed to a joiner in TestJoin.
type joinStep struct {
	score   uint64        // a scored flow with this id…
	scoreAt time.Duration // …at this record time
	alert   string        // an alert id opening flow…
	flow    uint64        // …this one
	label   *pending      // a label (part, offset, label, timeNs)
	advance time.Duration // wall clock moves on, then expire
	want    string        // add's immediate outcome for a label
}

func flowLabel(part int, off int64, flow uint64, verdict string, timeNs int64) *pending {
	return &pending{part: part, offset: off, timeNs: timeNs, label: schemas.Label{
		TargetID: schemas.FormatID(flow), TargetKind: schemas.TargetFlow, Verdict: verdict}}
}

func alertLabel(part int, off int64, alertID, verdict string, timeNs int64) *pending {
	return &pending{part: part, offset: off, timeNs: timeNs, label: schemas.Label{
		TargetID: alertID, TargetKind: schemas.TargetAlert, Verdict: verdict}}
}

func TestJoin(t *testing.T) {
	const window = time.Minute
	tests := []struct {
		name      string
		maxLabels int
		maxScores int
		steps     []joinStep
		outcomes  map[string]int
		eligible  []string // verdicts, in partition then offset order
		resume    map[int]int64
	}{{
		name:     "score before label",
		steps:    []joinStep{{score: 1}, {label: flowLabel(0, 0, 1, "x", 1)}},
		eligible: []string{"x"},
		resume:   map[int]int64{0: 0},
	}, {
		name:     "label waits for its score",
		steps:    []joinStep{{label: flowLabel(0, 0, 1, "x", 1)}, {advance: window / 2}, {score: 1}},
		eligible: []string{"x"},
		resume:   map[int]int64{0: 0},
	}, {
		name:     "label whose flow never appears expires",
		steps:    []joinStep{{label: flowLabel(0, 0, 1, "x", 1)}, {score: 2}, {advance: window + time.Second}, {score: 1}},
		outcomes: map[string]int{outcomeExpired: 1},
		resume:   map[int]int64{0: 1},
	}, {
		name: "alert label joined through the alerts topic",
		steps: []joinStep{
			{alert: "a1", flow: 7}, {score: 7}, {label: alertLabel(1, 3, "a1", "benign", 1)},
			{label: alertLabel(1, 4, "a2", "y", 1)}, {alert: "a2", flow: 8}, {score: 8},
		},
		eligible: []string{"benign", "y"},
		resume:   map[int]int64{1: 3},
	}, {
		name: "the later label on a flow wins",
		steps: []joinStep{
			{score: 1}, {label: flowLabel(0, 0, 1, "x", 10)}, {label: flowLabel(0, 1, 1, "y", 20)},
			{label: flowLabel(0, 2, 1, "z", 15), want: outcomeSuperseded},
		},
		outcomes: map[string]int{outcomeSuperseded: 2},
		eligible: []string{"y"},
		resume:   map[int]int64{0: 1},
	}, {
		name: "labels on one alert resolved before the alert is known",
		steps: []joinStep{
			{label: alertLabel(0, 0, "a1", "x", 20)}, {label: alertLabel(0, 1, "a1", "y", 10), want: outcomeSuperseded},
			{alert: "a1", flow: 3}, {score: 3},
		},
		outcomes: map[string]int{outcomeSuperseded: 1},
		eligible: []string{"x"},
		resume:   map[int]int64{0: 0},
	}, {
		name: "a label on an alert and on its flow",
		steps: []joinStep{
			{score: 3}, {label: flowLabel(0, 0, 3, "x", 20)}, {label: alertLabel(1, 0, "a1", "y", 30)}, {alert: "a1", flow: 3},
		},
		outcomes: map[string]int{outcomeSuperseded: 1},
		eligible: []string{"y"},
		resume:   map[int]int64{0: 1, 1: 0},
	}, {
		name:     "bad flow id",
		steps:    []joinStep{{label: &pending{label: schemas.Label{TargetID: "xyz", TargetKind: schemas.TargetFlow, Verdict: "x"}}, want: outcomeInvalid}},
		outcomes: map[string]int{outcomeInvalid: 1},
		resume:   map[int]int64{0: 1},
	}, {
		name: "fits take labels only up to the first still waiting",
		steps: []joinStep{
			{score: 2}, {label: flowLabel(0, 0, 1, "x", 1)}, {label: flowLabel(0, 1, 2, "y", 1)},
			{score: 5}, {label: flowLabel(1, 0, 5, "z", 1)},
		},
		eligible: []string{"z"},
		resume:   map[int]int64{0: 0, 1: 0},
	}, {
		name:      "held labels are capped",
		maxLabels: 1,
		steps:     []joinStep{{label: flowLabel(0, 0, 1, "x", 1)}, {label: flowLabel(0, 1, 2, "x", 1), want: outcomeOverflow}},
		outcomes:  map[string]int{outcomeOverflow: 1},
		resume:    map[int]int64{0: 0},
	}, {
		name: "scores older than the window are dropped",
		steps: []joinStep{
			{score: 1, scoreAt: 0}, {score: 2, scoreAt: window + time.Second}, {advance: time.Second},
			{label: flowLabel(0, 0, 1, "x", 1)}, {label: flowLabel(0, 1, 2, "y", 1)},
		},
		eligible: nil, // flow 1 is gone, and blocks flow 2's label
		resume:   map[int]int64{0: 0},
	}, {
		name:      "scores are capped",
		maxScores: 2,
		steps: []joinStep{
			{score: 1}, {score: 2}, {score: 3},
			{label: flowLabel(0, 0, 2, "x", 1)}, {label: flowLabel(1, 0, 1, "y", 1)},
		},
		eligible: []string{"x"},
		resume:   map[int]int64{0: 0, 1: 0},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig().Adapter.Join
			cfg.Window = window
			if tc.maxLabels > 0 {
				cfg.MaxLabels = tc.maxLabels
			}
			if tc.maxScores > 0 {
				cfg.MaxScores = tc.maxScores
			}
			got := map[string]int{}
			j := newJoiner(cfg, func(o string) { got[o]++ })
			now := time.Unix(1000, 0)
			emb := []float32{1, 2, 3}
			for i, s := range tc.steps {
				switch {
				case s.label != nil:
					s.label.readAt = now
					j.read(s.label.part, s.label.offset)
					out := j.add(s.label)
					if out != s.want {
						t.Fatalf("step %d: add = %q, want %q", i, out, s.want)
					}
					if out != "" {
						got[out]++
					}
				case s.score != 0:
					j.readScore(0, int64(i))
					j.addScore(s.score, position{0, int64(i)}, int64(s.scoreAt), 1, false, emb, "", 0)
				case s.alert != "":
					j.readAlert(0, int64(i))
					j.addAlert(s.alert, s.flow, position{0, int64(i)})
				case s.advance != 0:
					now = now.Add(s.advance)
					j.expire(now)
				}
			}
			if tc.outcomes == nil {
				tc.outcomes = map[string]int{}
			}
			if !maps.Equal(got, tc.outcomes) {
				t.Errorf("outcomes = %v, want %v", got, tc.outcomes)
			}
			var el []string
			for _, p := range j.eligible() {
				el = append(el, p.label.Verdict)
				if !slices.Equal(p.emb, emb) {
					t.Errorf("eligible label %s has embedding %v, want %v", p.label.Verdict, p.emb, emb)
				}
			}
			if !slices.Equal(el, tc.eligible) {
				t.Errorf("eligible = %q, want %q", el, tc.eligible)
			}
			if r := j.resume(); !maps.Equal(r, tc.resume) {
				t.Errorf("resume = %v, want %v", r, tc.resume)
			}
		})
	}
}

// TestJoinSettle follows labels through a fit: settling the eligible ones
// moves the resume offset past them, and the counts balance.
func TestJoinSettle(t *testing.T) {
	got := map[string]int{}
	j := newJoiner(DefaultConfig().Adapter.Join, func(o string) { got[o]++ })
	j.resumeAt(0, 100)
	if r := j.resume(); r[0] != 100 {
		t.Fatalf("resume before reading = %v, want 100", r)
	}
	now := time.Unix(0, 0)
	for off := int64(100); off < 110; off++ {
		flow := uint64(off)
		if off != 105 {
			j.addScore(flow, position{0, off}, 0, 1, false, []float32{float32(off)}, "", 0)
		}
		j.read(0, off)
		if out := j.add(&pending{part: 0, offset: off, readAt: now, label: schemas.Label{
			TargetID: schemas.FormatID(flow), TargetKind: schemas.TargetFlow, Verdict: "x"}}); out != "" {
			t.Fatalf("add(%d) = %q", off, out)
		}
	}
	el := j.eligible()
	if len(el) != 5 || j.countEligible()["x"] != 5 {
		t.Fatalf("eligible = %d labels, want the 5 before offset 105", len(el))
	}
	for _, p := range el {
		j.settle(p, outcomePublished)
	}
	if r := j.resume(); r[0] != 105 {
		t.Errorf("resume after the fit = %d, want 105", r[0])
	}
	j.addScore(105, position{0, 200}, 0, 1, false, []float32{105}, "", 0)
	for _, p := range j.eligible() {
		j.settle(p, outcomeRejected)
	}
	if r := j.resume(); r[0] != 110 {
		t.Errorf("resume after the second fit = %d, want 110", r[0])
	}
	if got[outcomePublished] != 5 || got[outcomeRejected] != 5 || j.held != 0 {
		t.Errorf("outcomes %v with %d held, want 5 published, 5 rejected, none held", got, j.held)
	}
}

func TestScoreBuf(t *testing.T) {
	b := scoreBuf{max: 4, index: map[uint64]int{}}
	for i := range uint64(3) {
		b.add(scoreSlot{flow: i, timeNs: int64(i)}, []float32{float32(i), 0})
	}
	b.evictBefore(2) // drops 0 and 1, leaving a gap at the front
	for i := uint64(3); i < 7; i++ {
		b.add(scoreSlot{flow: i, timeNs: int64(i)}, []float32{float32(i), 0})
	}
	// The ring holds 3..6: 2 was the oldest when the fifth slot was needed.
	for i := range uint64(7) {
		emb, _, ok := b.get(i)
		if want := i >= 3; ok != want {
			t.Errorf("get(%d) ok = %v, want %v", i, ok, want)
		} else if ok && emb[0] != float32(i) {
			t.Errorf("get(%d) = %v, want [%d 0]", i, emb, i)
		}
	}
	b.add(scoreSlot{flow: 9, timeNs: 9}, []float32{9, 9, 9}) // a model of another shape
	if _, _, ok := b.get(6); ok || b.n != 1 {
		t.Errorf("after a wider embedding: %d held, flow 6 still there = %v; want only the new one", b.n, ok)
	}
}

func TestRateLimiter(t *testing.T) {
	const min = int64(time.Minute)
	tests := []struct {
		name   string
		cfg    RateLimitConfig
		labels []struct {
			analyst string
			at      int64
		}
		allowed []bool
	}{{
		name: "burst then refill",
		cfg:  RateLimitConfig{PerMinute: 60, Burst: 2, MaxAnalysts: 10},
		labels: []struct {
			analyst string
			at      int64
		}{
			{"ann", 0}, {"ann", 0}, {"ann", 0}, {"bob", 0}, {"ann", min / 60}, {"ann", min / 60},
		},
		allowed: []bool{true, true, false, true, true, false},
	}, {
		name: "made-up analysts do not buy fresh buckets",
		cfg:  RateLimitConfig{PerMinute: 1, Burst: 1, MaxAnalysts: 2},
		labels: []struct {
			analyst string
			at      int64
		}{
			{"a", 0}, {"b", 0}, {"c", 0}, {"d", 2 * min},
		},
		allowed: []bool{true, true, false, true},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRateLimiter(tc.cfg)
			for i, l := range tc.labels {
				if got := r.allow(l.analyst, l.at); got != tc.allowed[i] {
					t.Errorf("label %d (%s at %d) allowed = %v, want %v", i, l.analyst, l.at, got, tc.allowed[i])
				}
			}
		})
	}
}

// TestJoinReplayPositions checks the offsets a restarted adapter reads
// scores and alerts from: far enough back to rebuild every held score and
// alert mapping, including those of held labels that the buffers have
// since dropped.
func TestJoinReplayPositions(t *testing.T) {
	cfg := DefaultConfig().Adapter.Join
	cfg.MaxScores, cfg.MaxAlerts = 3, 1
	j := newJoiner(cfg, func(string) {})
	score := func(part int, off int64, flow uint64) {
		j.readScore(part, off)
		j.addScore(flow, position{part, off}, 0, 1, false, []float32{1}, "", 0)
	}
	alert := func(part int, off int64, id string, flow uint64) {
		j.readAlert(part, off)
		j.addAlert(id, flow, position{part, off})
	}
	score(0, 0, 10)
	score(1, 0, 20)
	alert(0, 7, "a1", 10)
	j.read(0, 0)
	lbl := alertLabel(0, 0, "a1", "x", 1)
	if out := j.add(lbl); out != "" || !lbl.joined {
		t.Fatalf("add = %q, joined %v; want a joined label", out, lbl.joined)
	}
	for off := int64(1); off < 5; off++ {
		score(0, off, 10+uint64(off))
	}
	alert(0, 8, "a2", 11)
	if got, want := j.scoresResume(), map[int]int64{0: 0, 1: 1}; !maps.Equal(got, want) {
		t.Errorf("scoresResume with a held label = %v, want %v", got, want)
	}
	if got, want := j.alertsResume(), map[int]int64{0: 7}; !maps.Equal(got, want) {
		t.Errorf("alertsResume with a held label = %v, want %v", got, want)
	}
	j.settle(lbl, outcomePublished)
	// The buffer holds offsets 2-4 of partition 0; partition 1's score was
	// dropped, so it resumes after it.
	if got, want := j.scoresResume(), map[int]int64{0: 2, 1: 1}; !maps.Equal(got, want) {
		t.Errorf("scoresResume = %v, want %v", got, want)
	}
	if got, want := j.alertsResume(), map[int]int64{0: 8}; !maps.Equal(got, want) {
		t.Errorf("alertsResume = %v, want %v", got, want)
	}
}
