package integration

import (
	"math"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/metaids/metaids/features"
)

// contextWindow is how far back the host-history statistics of
// TestSequenceFamiliesNeedTheSequence look.
const contextWindow = 30 * time.Minute

// numContext is the number of host-history statistics per flow.
const numContext = 4

// flowRows returns, for each event, the per-flow input of the model
// (features.Vector with dt_prev, dst_repeat and dt_dst filled from the
// host's earlier flows, as the scorer fills them) and numContext
// statistics of the host's history before it, which no single flow holds:
//
//  0. log1p of the host's flows to the same destination in the last 30 min;
//  1. log1p of the mean gap, in seconds, between the host's last (up to 8)
//     flows to that destination, 0 with none;
//  2. the coefficient of variation of those gaps (regularity), 1 with fewer
//     than two;
//  3. log1p of the distinct destinations the host tried in the last 30 min
//     on the same port with the same outcome (answered or not): fan-out.
func flowRows(evs []Event) (x [][]float32, ctx [][]float32) {
	type past struct {
		ns       int64
		dst      netip.Addr
		port     uint16
		answered bool
	}
	hist := map[netip.Addr][]past{}
	peers := map[netip.Addr]*features.PeerMemory{}
	for _, ev := range evs {
		f := &ev.Flow
		h := hist[f.SrcAddr]
		v := features.Vector(nil, f)
		if len(h) > 0 {
			v[features.IdxDeltaT] = features.DeltaTBetween(h[len(h)-1].ns, f.StartNs)
		}
		m := peers[f.SrcAddr]
		if m == nil {
			m = new(features.PeerMemory)
			peers[f.SrcAddr] = m
		}
		v[features.IdxDstRepeat], v[features.IdxDeltaDst] = m.See(features.FlowPeerKey(f), f.StartNs)
		answered := f.PktsIn > 0 && f.TCPFlags&0x04 == 0
		from := sort.Search(len(h), func(i int) bool { return h[i].ns >= f.StartNs-int64(contextWindow) })
		same := 0
		var times []int64
		fan := map[netip.Addr]bool{}
		for i := len(h) - 1; i >= 0; i-- {
			p := h[i]
			if p.dst == f.DstAddr {
				if i >= from {
					same++
				}
				if len(times) < 8 {
					times = append(times, p.ns)
				}
			}
			if i >= from && p.port == f.DstPort && p.answered == answered {
				fan[p.dst] = true
			}
			if i < from && len(times) >= 8 {
				break
			}
		}
		c := make([]float32, numContext)
		c[0] = float32(math.Log1p(float64(same)))
		c[2] = 1
		if len(times) > 0 {
			gaps := []float64{float64(f.StartNs-times[0]) / 1e9}
			for i := 1; i < len(times); i++ {
				gaps = append(gaps, float64(times[i-1]-times[i])/1e9)
			}
			mean, sd := meanSD(gaps)
			c[1] = float32(math.Log1p(mean))
			if len(gaps) >= 2 && mean > 0 {
				c[2] = float32(sd / mean)
			}
		}
		c[3] = float32(math.Log1p(float64(len(fan))))
		hist[f.SrcAddr] = append(h, past{f.StartNs, f.DstAddr, f.DstPort, answered})
		x = append(x, v)
		ctx = append(ctx, c)
	}
	return x, ctx
}

func meanSD(v []float64) (float64, float64) {
	var s, ss float64
	for _, x := range v {
		s += x
	}
	m := s / float64(len(v))
	for _, x := range v {
		ss += (x - m) * (x - m)
	}
	return m, math.Sqrt(ss / float64(len(v)))
}

// sample picks up to n indices of events labelled label, seeded.
func sample(evs []Event, label string, n int, rng *rand.Rand) []int {
	var idx []int
	for i, ev := range evs {
		if ev.Label == label {
			idx = append(idx, i)
		}
	}
	rng.Shuffle(len(idx), func(i, j int) { idx[i], idx[j] = idx[j], idx[i] })
	return idx[:min(n, len(idx))]
}

// knn returns, for each query point, the labels of its k nearest
// reference points (Euclidean distance).
func knn(ref [][]float64, label []string, query [][]float64, k int) [][]string {
	out := make([][]string, len(query))
	type nd struct {
		d float64
		i int
	}
	best := make([]nd, 0, k+1)
	for qi, q := range query {
		best = best[:0]
		for ri, r := range ref {
			var d float64
			for j := range q {
				e := q[j] - r[j]
				d += e * e
			}
			if len(best) == k && d >= best[k-1].d {
				continue
			}
			i := sort.Search(len(best), func(i int) bool { return best[i].d > d })
			best = slices.Insert(best, i, nd{d, ri})
			if len(best) > k {
				best = best[:k]
			}
		}
		for _, b := range best {
			out[qi] = append(out[qi], label[b.i])
		}
	}
	return out
}

// scores splits the test points' share of fam among their neighbours into
// the benign points' and fam's points' scores.
func scores(nn [][]string, label []string, fam string) (benign, attack []float64) {
	for i, ls := range nn {
		n := 0
		for _, l := range ls {
			if l == fam {
				n++
			}
		}
		s := float64(n) / float64(len(ls))
		switch label[i] {
		case FamilyBenign:
			benign = append(benign, s)
		case fam:
			attack = append(attack, s)
		}
	}
	return benign, attack
}

// recallAtFPR returns the recall of the positives at a benign false
// positive rate of fpr, reading the ROC curve with ties as straight
// segments (the expected recall of a threshold that breaks ties at
// random), so a score that ties everything earns recall fpr, not 0 or 1.
func recallAtFPR(benign, attack []float64, fpr float64) float64 {
	type pt struct {
		s   float64
		pos bool
	}
	var all []pt
	for _, s := range benign {
		all = append(all, pt{s, false})
	}
	for _, s := range attack {
		all = append(all, pt{s, true})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].s > all[j].s })
	nb, na := float64(len(benign)), float64(len(attack))
	var fp, tp float64
	for i := 0; i < len(all); {
		j := i
		var dfp, dtp float64
		for ; j < len(all) && all[j].s == all[i].s; j++ {
			if all[j].pos {
				dtp++
			} else {
				dfp++
			}
		}
		if (fp+dfp)/nb >= fpr {
			if dfp == 0 {
				return (tp + dtp) / na
			}
			return (tp + dtp*(fpr*nb-fp)/dfp) / na
		}
		fp, tp, i = fp+dfp, tp+dtp, j
	}
	return 1
}

// TestSequenceFamiliesNeedTheSequence shows that the sequence families are
// what they claim: trained on the train part's flows and scored on the
// test part's (other hosts, other time, other implants), a k-nearest-
// neighbour classifier on each flow's model input (features.Vector with
// dt_prev, dst_repeat and dt_dst, filled as the scorer fills them) finds
// about half of the families' flows or less at a 1% benign false positive
// rate, and each family clearly less than the same classifier given four
// statistics of the host's history before each flow (repeats to the
// destination, their spacing and regularity, fan-out), which finds nearly
// all of them. Benign routines (NTP, update checks, backups) and
// look-alike sessions are in the benign data, so periodicity, repetition
// or a short gap to the same destination alone does not pass. The
// threshold is set on the test part's benign scores, the most favourable
// choice for the per-flow classifier.
func TestSequenceFamiliesNeedTheSequence(t *testing.T) {
	if raceEnabled {
		t.Skip("a nearest-neighbour study on one goroutine: nothing for the race detector to find; go test without -race runs it")
	}
	cfg := DefaultSequenceConfig()
	parts := map[Part][]Event{}
	for _, p := range []Part{PartTrain, PartTest} {
		sc, err := SequenceScenario(cfg, p)
		if err != nil {
			t.Fatal(err)
		}
		parts[p] = sc.Events()
	}
	const (
		nBenign = 6000
		nAttack = 400
		k       = 15
		fpr     = 0.01
		// Single flows may give a family partly away, since only
		// about 2% of benign flows imitate each family; not mostly.
		maxMeanPerFlow = 0.55
		minGain        = 0.2
		minWithSeq     = 0.85
	)
	rng := rand.New(rand.NewPCG(11, 0))
	type set struct {
		flow, seq [][]float64
		label     []string
	}
	build := func(evs []Event) set {
		x, c := flowRows(evs)
		var s set
		add := func(idx []int, label string) {
			for _, i := range idx {
				f := make([]float64, 0, features.NumFeatures+numContext)
				for _, v := range x[i] {
					f = append(f, float64(v))
				}
				s.flow = append(s.flow, f)
				g := slices.Clone(f)
				for _, v := range c[i] {
					g = append(g, float64(v))
				}
				s.seq = append(s.seq, g)
				s.label = append(s.label, label)
			}
		}
		add(sample(evs, FamilyBenign, nBenign, rng), FamilyBenign)
		for _, fam := range SequenceFamilies {
			add(sample(evs, fam, nAttack, rng), fam)
		}
		return s
	}
	train, test := build(parts[PartTrain]), build(parts[PartTest])
	standardise(train.flow, test.flow)
	standardise(train.seq, test.seq)

	nnFlow := knn(train.flow, train.label, test.flow, k)
	nnSeq := knn(train.seq, train.label, test.seq, k)
	var meanPerFlow float64
	for _, fam := range SequenceFamilies {
		// A family's score is the share of its training flows among a
		// test flow's neighbours; only benign flows and this family's are
		// scored: the question is whether it stands out from benign.
		b, a := scores(nnFlow, test.label, fam)
		perFlow := recallAtFPR(b, a, fpr)
		b, a = scores(nnSeq, test.label, fam)
		withSeq := recallAtFPR(b, a, fpr)
		t.Logf("%-20s recall at %.0f%% benign FPR: per flow %.3f, with host history %.3f", fam, 100*fpr, perFlow, withSeq)
		meanPerFlow += perFlow / float64(len(SequenceFamilies))
		if withSeq-perFlow < minGain {
			t.Errorf("%s: recall at %.0f%% FPR per flow %.3f, with host history %.3f: want the history to add ≥ %.1f", fam, 100*fpr, perFlow, withSeq, minGain)
		}
		if withSeq < minWithSeq {
			t.Errorf("%s: recall with host history at %.0f%% FPR = %.3f, want ≥ %.1f: the sequence does not give the family away", fam, 100*fpr, withSeq, minWithSeq)
		}
	}
	if meanPerFlow > maxMeanPerFlow {
		t.Errorf("mean per-flow recall at %.0f%% FPR = %.3f, want ≤ %.2f: single flows give the families away", 100*fpr, meanPerFlow, maxMeanPerFlow)
	}
}

// standardise scales every column of ref and query by ref's mean and
// standard deviation (constant columns are left centred).
func standardise(ref, query [][]float64) {
	for j := range ref[0] {
		col := make([]float64, len(ref))
		for i := range ref {
			col[i] = ref[i][j]
		}
		m, sd := meanSD(col)
		if sd == 0 {
			sd = 1
		}
		for _, rows := range [][][]float64{ref, query} {
			for i := range rows {
				rows[i][j] = (rows[i][j] - m) / sd
			}
		}
	}
}

// TestSessionsImitateTheirFamily checks the look-alike sessions: each is
// Count benign flows of its kind from its host, spaced as its period and
// jitter allow, the scan-like one to consecutive addresses, and adding
// sessions to the scenario leaves its attacks and routines as they were.
func TestSessionsImitateTheirFamily(t *testing.T) {
	cfg := DefaultSequenceConfig()
	cfg.Hosts, cfg.Infected, cfg.Duration = 16, 1, time.Hour
	sc, err := SequenceScenario(cfg, PartTest)
	if err != nil {
		t.Fatal(err)
	}
	off := cfg
	off.Sessions = 0
	bare, err := SequenceScenario(off, PartTest)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sc.Attacks, bare.Attacks) {
		t.Errorf("attacks change with sessions:\n%+v\n%+v", sc.Attacks, bare.Attacks)
	}
	if n := len(bare.Routines); n == 0 || !slices.Equal(sc.Routines[:n], bare.Routines) {
		t.Errorf("routines change with sessions")
	}
	sessions := sc.Routines[len(bare.Routines):]
	kinds := map[string]int{}
	for _, r := range sessions {
		kinds[r.Kind]++
		if r.Count < 3 || r.Count > 8 {
			t.Errorf("%s session of %d flows, want 3 to 8", r.Kind, r.Count)
		}
	}
	for _, k := range Sessions {
		if kinds[k] == 0 {
			t.Errorf("no %s session among %d: %v", k, len(sessions), kinds)
		}
	}

	// Run each session alone, so its flows are told apart by host.
	for i, r := range sessions[:min(len(sessions), 40)] {
		// Without the part's end, which cuts some sessions short.
		r.Host, r.Duration = HostAddr(60000+i), 24*time.Hour
		tr := NewTraffic(Hosts(0), Start(sc.Start), WithProfile(ProfileOffice), WithAttacks(), WithRoutine(r))
		evs := tr.Events(r.Count)
		if len(tr.q) != 0 {
			t.Errorf("%s session goes on after its %d flows", r.Kind, r.Count)
		}
		for j, ev := range evs {
			if ev.Label != FamilyBenign || ev.Kind != r.Kind || ev.Flow.SrcAddr != r.Host {
				t.Fatalf("%s flow %d: label %s kind %s from %s", r.Kind, j, ev.Label, ev.Kind, ev.Flow.SrcAddr)
			}
			if r.Kind == SessionScanLike && ev.Flow.DstAddr != addrPlus(r.Target, j) {
				t.Errorf("%s flow %d to %s, want %s", r.Kind, j, ev.Flow.DstAddr, addrPlus(r.Target, j))
			}
			if r.Kind != SessionScanLike && ev.Flow.DstAddr != r.Target {
				t.Errorf("%s flow %d to %s, want %s", r.Kind, j, ev.Flow.DstAddr, r.Target)
			}
			if j > 0 {
				gap := time.Duration(ev.Flow.StartNs - evs[j-1].Flow.StartNs)
				lo := time.Duration(float64(r.Period) * (1 - r.Jitter))
				hi := time.Duration(float64(r.Period) * (1 + r.Jitter))
				if gap < lo-time.Millisecond || gap > hi+time.Millisecond {
					t.Errorf("%s flow %d: gap %s outside [%s, %s]", r.Kind, j, gap, lo, hi)
				}
			}
		}
	}
}
