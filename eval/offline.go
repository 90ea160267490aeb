package eval

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"time"

	"github.com/metaids/metaids/adapter"
	"github.com/metaids/metaids/features"
	"github.com/metaids/metaids/model"
	"github.com/metaids/metaids/stream"
)

// Adaptation is one round of labels and the update they led to.
type Adaptation struct {
	// Families are the new families the labels named.
	Families []string `json:"families"`
	Labels   int      `json:"labels"`
	// LabelledAt is the evaluated flow, by position in the replay, after
	// whose score the labels were sent: the K-th flow of the family.
	LabelledAt int `json:"labelled_at_flow"`
	// Accepted says whether the adapter's gate passed the candidate;
	// Reason says why not.
	Accepted bool   `json:"accepted"`
	Reason   string `json:"reason,omitempty"`
	// Version is the model version the update published.
	Version int64 `json:"version,omitempty"`
	// LiveAt is the first evaluated flow scored by Version, −1 if none was.
	LiveAt int `json:"live_at_flow"`
	// LatencyMs is from the K-th label's acknowledgement to the first
	// score by the new version (live), or the time the fit and gate took
	// (offline, where the update serves from the next flow on). ServingMs
	// is, live, to the scorer serving it, whether or not a flow came.
	LatencyMs Metric `json:"latency_ms"`
	ServingMs Metric `json:"serving_ms"`
	// Gate holds the gate's numbers, as in ModelUpdate.Gate.
	Gate map[string]float64 `json:"gate,omitempty"`
}

// labelPlan says which flows the analyst labels: for each new family its
// first K evaluated flows, sent once the K-th is scored.
type labelPlan struct {
	rows  map[string][]int    // family → positions of its K labelled flows
	after map[int][]string    // position of a K-th flow → the families labelled after it
	short map[string]int      // families with fewer than K flows, and their count
	total map[string]int      // flows of each family
	seen  map[string]int      // live: flows of each family scored so far
	index map[int]struct{}    // positions of labelled flows
	fam   map[int]string      // position → new family, for every flow of one
	noted map[string]struct{} // live: families whose labels went out
}

func planLabels(es *evalSet, k int) *labelPlan {
	p := &labelPlan{rows: map[string][]int{}, after: map[int][]string{}, short: map[string]int{},
		total: map[string]int{}, seen: map[string]int{}, index: map[int]struct{}{}, fam: map[int]string{}, noted: map[string]struct{}{}}
	isNew := map[string]bool{}
	for _, f := range es.families {
		isNew[f] = true
	}
	for j := range es.rows {
		f := es.truth(j)
		if !isNew[f] {
			continue
		}
		p.fam[j] = f
		p.total[f]++
		if len(p.rows[f]) < k {
			p.rows[f] = append(p.rows[f], j)
			p.index[j] = struct{}{}
			if len(p.rows[f]) == k {
				p.after[j] = append(p.after[j], f)
			}
		}
	}
	for _, f := range es.families {
		if n := p.total[f]; n < k {
			p.short[f] = n
		}
	}
	return p
}

// maxStep bounds the hosts stepped at once offline, as
// -scorer.batch.max-flows does live.
const maxStep = 4096

// runOffline scores the evaluated rows in replay order with the model in
// this process, exactly as the scorer would (see the package doc), and
// adapts the model with the adapter's fit and gate as soon as a new
// family's K-th flow is scored.
func runOffline(ctx context.Context, cfg Config, m *model.Model, es *evalSet, log *slog.Logger) (*outcome, error) {
	o := newOutcome(ModeOffline, es, m, cfg.Scorer.AnomalyWarmup, cfg.Live.Partitions)
	plan := planLabels(es, cfg.Shots)
	book := newHostBook(cfg.Scorer.TTL, cfg.Live.Partitions)
	settings, batchBytes := cfg.Adapter.settings(), stream.DefaultConfig().Writer.BatchBytes
	cur, maxVersion := m, m.Version
	f, hid := m.Features(), m.Hidden()
	ws := model.NewWorkspace(m, maxStep)
	x := make([]float32, maxStep*f)
	hs, cs := make([]float32, maxStep*hid), make([]float32, maxStep*hid)
	var (
		out    model.StepOut
		vec    []float32
		chunk  []int
		ents   []*hostEntry
		before []uint32
	)
	t0 := time.Now()
	n := len(es.rows)
	for j, c := 0, 0; j < n; c++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		// A chunk is a run of flows of distinct hosts, so one Step advances
		// them all and each host's flows are applied in order; it ends
		// early after a flow whose score sends labels, so that the update
		// serves from the next flow on.
		tc := time.Now()
		chunk, ents, before = chunk[:0], ents[:0], before[:0]
		for j < n && len(chunk) < maxStep {
			fl := es.flow(j)
			host := features.Host(fl)
			if e := book.lookup(host); e != nil && e.chunk == c {
				break
			}
			e, bf, dt, fresh := book.see(host, fl.StartNs, fl.EndNs)
			if e.h == nil {
				e.h, e.c = make([]float32, hid), make([]float32, hid)
			} else if fresh {
				clear(e.h)
				clear(e.c)
			}
			e.chunk = c
			k := len(chunk)
			vec = features.Vector(vec[:0], fl)
			copy(x[k*f:(k+1)*f], vec)
			x[k*f+features.IdxDeltaT] = dt
			x[k*f+features.IdxDstRepeat], x[k*f+features.IdxDeltaDst] = e.peers.See(features.FlowPeerKey(fl), fl.StartNs)
			copy(hs[k*hid:(k+1)*hid], e.h)
			copy(cs[k*hid:(k+1)*hid], e.c)
			chunk, ents, before = append(chunk, j), append(ents, e), append(before, bf)
			j++
			if len(plan.after[j-1]) > 0 {
				break
			}
		}
		b := len(chunk)
		cur.Step(ws, hs[:b*hid], cs[:b*hid], x[:b*f], &out)
		flushSubnormals(hs[:b*hid])
		flushSubnormals(cs[:b*hid])
		at := int64(time.Since(t0))
		lat := ms(time.Since(tc))
		for k, jj := range chunk {
			copy(ents[k].h, hs[k*hid:(k+1)*hid])
			copy(ents[k].c, cs[k*hid:(k+1)*hid])
			o.record(jj, cur, out.ProbsOf(k), out.Anomaly[k], out.EmbOf(k), before[k], at)
			if o.rows[jj].pred != predNone {
				o.alertLatency = append(o.alertLatency, lat)
			}
		}
		fams := plan.after[j-1]
		if len(fams) == 0 {
			continue
		}
		var samples []adapter.Labelled
		for _, fam := range fams {
			for _, jj := range plan.rows[fam] {
				fl := es.flow(jj)
				samples = append(samples, adapter.Labelled{Verdict: es.verdicts[fam], Embedding: o.embOf(jj), Host: features.Host(fl), EndNs: fl.EndNs})
				o.labelled[jj] = true
			}
		}
		// The adapter numbers an update one above the newest version it
		// has seen and seeds its fit with that and the label count.
		version := maxVersion + 1
		rng := rand.New(rand.NewPCG(uint64(version), uint64(len(samples))))
		tf := time.Now()
		res, err := adapter.Fit(cur, samples, settings, batchBytes, rng)
		fit := Metric(ms(time.Since(tf)))
		ad := &Adaptation{Families: fams, Labels: len(samples), LabelledAt: j - 1, LiveAt: -1, LatencyMs: fit, ServingMs: fit}
		o.adaptations = append(o.adaptations, ad)
		switch {
		case err != nil:
			ad.Reason = err.Error()
		case !res.Accepted:
			ad.Reason = res.Reason
			ad.Gate = res.Gate
		default:
			ad.Gate = res.Gate
			cand := res.Candidate
			cand.Name, cand.Version, cand.ParentVersion = cur.Name, version, cur.Version
			cur, maxVersion = cand, version
			o.models[version] = cand
			ad.Accepted, ad.Version = true, version
			if j < n {
				ad.LiveAt = j
			}
		}
		log.Info("adaptation", "families", fmt.Sprint(fams), "labels", len(samples), "accepted", ad.Accepted,
			"reason", ad.Reason, "model_version", cur.Version, "fit_ms", float64(ad.LatencyMs))
	}
	o.elapsed = time.Since(t0)
	return o, nil
}

// embOf returns row j's stored embedding.
func (o *outcome) embOf(j int) []float32 { return o.emb[j*o.d : (j+1)*o.d] }

// flushSubnormals zeroes subnormal state values, as the scorer does after
// every step (scorer/waves.go): the values differ from zero by less than
// float32 resolves, but leaving them would make the two scorers' states
// drift apart.
func flushSubnormals(x []float32) {
	for i, v := range x {
		if math.Float32bits(v)&0x7f800000 == 0 {
			x[i] = 0
		}
	}
}

// ms converts a duration to milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
