package model

import (
	"errors"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/metaids/metaids/schemas"
)

func TestCampaignsTravelInUpdates(t *testing.T) {
	m := newTrainedLike(t)
	m.Campaigns = []Campaign{
		{Host: "172.16.0.1", Class: 2, FirstNs: 1499259534539220000, LastNs: 1499259634539221001, IdleNs: 600e9},
		{Host: "2001:db8::7", Class: 1, FirstNs: 0, LastNs: 1<<63 - 1, IdleNs: 1},
	}
	for _, kind := range []schemas.UpdateKind{schemas.UpdateFull, schemas.UpdateHead} {
		u, err := m.Update(kind)
		if err != nil {
			t.Fatal(err)
		}
		var got *Model
		if kind == schemas.UpdateFull {
			got, err = FromUpdate(u, "")
		} else {
			base := m.Clone()
			base.Campaigns = nil
			got, err = base.ApplyHead(u)
		}
		if err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		if !reflect.DeepEqual(got.Campaigns, m.Campaigns) {
			t.Errorf("%s: campaigns %+v, want %+v", kind, got.Campaigns, m.Campaigns)
		}
	}
	// A head update without campaigns ends those of the model it applies to:
	// the update is the whole truth about the head.
	c := m.Clone()
	c.Campaigns = nil
	u, err := c.Update(schemas.UpdateHead)
	if err != nil {
		t.Fatal(err)
	}
	got, err := m.ApplyHead(u)
	if err != nil || len(got.Campaigns) != 0 {
		t.Fatalf("campaigns %v, err %v; want none", got.Campaigns, err)
	}
}

func TestCampaignsRejected(t *testing.T) {
	m := newTrainedLike(t)
	m.Campaigns = []Campaign{{Host: "10.0.0.1", Class: 1, FirstNs: 5, LastNs: 9, IdleNs: 3}}
	for name, corrupt := range map[string]func(d []float32){
		"benign class":  func(d []float32) { d[8] = 0 },
		"class too big": func(d []float32) { d[8] = 3 },
		"fraction":      func(d []float32) { d[3] = 0.5 },
		"word too big":  func(d []float32) { d[0] = 70000 },
		"limb too big":  func(d []float32) { d[11] = 1 << 21 },
		"last < first":  func(d []float32) { d[14] = 4 },
	} {
		u, err := m.Update(schemas.UpdateFull)
		if err != nil {
			t.Fatal(err)
		}
		corrupt(tensorOf(u, TensorCampaigns).Data)
		if _, err := FromUpdate(u, ""); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err %v, want ErrInvalid", name, err)
		}
	}
	m.Campaigns[0].Host = "not-an-address"
	if _, err := m.Update(schemas.UpdateHead); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad host: err %v, want ErrInvalid", err)
	}
}

func TestCampaignBook(t *testing.T) {
	const s = int64(1e9)
	var b CampaignBook
	b.Sync([]Campaign{{Host: "h", Class: 3, FirstNs: 100 * s, LastNs: 110 * s, IdleNs: 60 * s}})
	steps := []struct {
		host string
		at   int64
		head int
		want int
		why  string
	}{
		{"h", 30 * s, 2, 2, "before the campaign by more than the pause"},
		{"h", 50 * s, 2, 3, "within a pause before the first label"},
		{"h", 160 * s, 0, 0, "no alert from the head: nothing to name"},
		{"h", 160 * s, 2, 3, "within a pause of the last label"},
		{"other", 161 * s, 2, 2, "another host"},
		{"h", 215 * s, 1, 3, "within a pause of the flow before"},
		{"h", 140 * s, 1, 3, "ends out of order, inside the run"},
		{"h", 300 * s, 1, 1, "after a longer pause: the campaign is over"},
		{"h", 320 * s, 1, 1, "and stays over"},
	}
	for _, st := range steps {
		if got := b.Attribute(st.host, st.at, st.head); got != st.want {
			t.Errorf("%s at %ds, head %d: got %d, want %d (%s)", st.host, st.at/s, st.head, got, st.want, st.why)
		}
	}
	// A new model version with the same campaign keeps how far it ran; a
	// campaign of another class on the host starts from its labels.
	b.Sync([]Campaign{{Host: "h", Class: 3, FirstNs: 100 * s, LastNs: 110 * s, IdleNs: 100 * s}})
	if got := b.Attribute("h", 300*s, 1); got != 3 {
		t.Errorf("after a resync that lengthens the pause: got %d, want 3 (the run reached 215s)", got)
	}
	b.Sync([]Campaign{{Host: "h", Class: 2, FirstNs: 100 * s, LastNs: 110 * s, IdleNs: 100 * s}})
	if got := b.Attribute("h", 400*s, 1); got != 1 {
		t.Errorf("a new campaign on the host: got %d, want 1 (its labels ended at 110s)", got)
	}
	b.Sync(nil)
	if got := b.Attribute("h", 150*s, 1); got != 1 {
		t.Errorf("no campaigns: got %d, want 1", got)
	}

	// A run restored from a checkpoint, before the model is synced or
	// after, carries on where it was; one of another campaign does not.
	c := Campaign{Host: "h", Class: 3, FirstNs: 100 * s, LastNs: 110 * s, IdleNs: 60 * s}
	for _, seedFirst := range []bool{true, false} {
		for _, first := range []int64{100 * s, 90 * s} {
			var r CampaignBook
			if seedFirst {
				r.Seed("h", first, 500*s)
				r.Sync([]Campaign{c})
			} else {
				r.Sync([]Campaign{c})
				r.Seed("h", first, 500*s)
			}
			want := map[bool]int{true: 3, false: 1}[first == c.FirstNs]
			if got := r.Attribute("h", 550*s, 1); got != want {
				t.Errorf("seeded before sync %v, run of the campaign first at %ds: got %d, want %d", seedFirst, first/s, got, want)
			}
			if f, l, ok := r.Run("h"); !ok || f != c.FirstNs || (want == 3) != (l == 550*s) {
				t.Errorf("Run = %d, %d, %v", f/s, l/s, ok)
			}
		}
	}
}

func TestDormantClassNeverNamed(t *testing.T) {
	m := newTrainedLike(t)
	k, err := m.AddDormantClass("new", 0.5)
	if err != nil {
		t.Fatal(err)
	}
	if !m.Dormant(k) || m.Dormant(1) {
		t.Fatalf("Dormant(%d) = %v, Dormant(1) = %v", k, m.Dormant(k), m.Dormant(1))
	}
	emb := randSlice(rand.New(rand.NewPCG(5, 0)), 50*m.EmbeddingDim(), 5)
	probs := m.HeadProbs(nil, emb)
	c := m.NumClasses()
	for i := range 50 {
		// The head's fast exp bottoms out near the smallest normal float32
		// rather than at zero: far below any threshold either way.
		if p := probs[i*c+k]; p > 1e-30 {
			t.Fatalf("flow %d: dormant class probability %g", i, p)
		}
		if got, _ := AlertClass(probs[i*c:(i+1)*c], m.Thresholds, 0); got == k {
			t.Fatalf("flow %d: dormant class alerts", i)
		}
	}
}
