package eval

import (
	"math"
	"time"

	"github.com/metaids/metaids/features"
	"github.com/metaids/metaids/model"
	"github.com/metaids/metaids/scorer"
)

// predNone is the prediction of a flow that raised no alert.
const predNone = -1

// scored is what one evaluated row came to once the pipeline scored it.
type scored struct {
	version int64   // the model version that scored it; 0: never scored
	attack  float32 // 1 − p(benign): the threshold-free attack score
	anomaly float32
	pred    int16 // the alert's class, an index into outcome.names; predNone: no alert
	// predHead is pred as the head names it, before any campaign.
	predHead int16
	before   uint32 // the host's flows before this one, for the anomaly warm-up
	atNs     int64  // when the score was seen, ns after the replay started
}

// outcome is what either mode hands to the metrics: a score for every
// evaluated row, the embeddings (so any head can re-score them: updates
// change only the head), the models that served, and the adaptations.
type outcome struct {
	mode   string
	es     *evalSet
	rows   []scored
	emb    []float32 // len(rows)×d
	d      int
	warmup uint32

	names   []string // alert classes seen, "anomaly" included
	nameIdx map[string]int16

	start       *model.Model
	models      map[int64]*model.Model // every version that served, by version
	adaptations []*Adaptation
	labelled    []bool // rows whose labels were sent

	elapsed      time.Duration // first row replayed to last score seen
	alertLatency []float64     // ms, one per alert
	live         *LiveSummary
	notes        []string

	// campaigns mirror the scorer's naming of labelled hosts' alerts
	// (model.CampaignBook), one per features partition as the scorer
	// keeps them.
	campaigns []campaignPart
}

type campaignPart struct {
	book model.CampaignBook
	of   *model.Model
}

func newOutcome(mode string, es *evalSet, start *model.Model, warmup, parts int) *outcome {
	n := len(es.rows)
	o := &outcome{
		mode:      mode,
		es:        es,
		rows:      make([]scored, n),
		d:         start.EmbeddingDim(),
		warmup:    uint32(warmup),
		nameIdx:   map[string]int16{},
		start:     start,
		models:    map[int64]*model.Model{start.Version: start},
		labelled:  make([]bool, n),
		campaigns: make([]campaignPart, max(parts, 1)),
	}
	o.emb = make([]float32, n*o.d)
	return o
}

// name returns the index of an alert class name.
func (o *outcome) name(s string) int16 {
	if k, ok := o.nameIdx[s]; ok {
		return k
	}
	k := int16(len(o.names))
	o.names = append(o.names, s)
	o.nameIdx[s] = k
	return k
}

// record stores row j's score by model m: its class probabilities as m
// served them, anomaly score, embedding and the host's flow count before
// it.
func (o *outcome) record(j int, m *model.Model, probs []float32, anomaly float32, emb []float32, before uint32, atNs int64) {
	r := &o.rows[j]
	r.version = m.Version
	r.attack = 1 - probs[0]
	r.anomaly = anomaly
	r.before = before
	r.atNs = atNs
	r.pred = o.decide(m, probs, anomaly, before)
	r.predHead = r.pred
	copy(o.emb[j*o.d:(j+1)*o.d], emb)
	if r.pred == predNone || len(m.Campaigns) == 0 {
		return
	}
	if k, _ := model.AlertClass(probs, m.Thresholds, 0); k > 0 {
		// The scorer names a labelled host's class alerts by its campaign.
		fl := o.es.flow(j)
		host := features.Host(fl)
		cp := &o.campaigns[features.Partition(host, len(o.campaigns))]
		if cp.of != m {
			cp.book.Sync(m.Campaigns)
			cp.of = m
		}
		r.pred = o.name(m.Classes()[cp.book.Attribute(host, fl.EndNs, k)])
	}
}

// decide applies the scorer's alert rule (scorer/alert.go, detect): the
// most probable attack class alerts if it reaches that class's threshold
// (a threshold of 0 means uncalibrated, never); otherwise the anomaly score
// alerts if it reaches the model's anomaly threshold and the host is past
// its warm-up. Class 0 is benign, as in every model train writes.
func (o *outcome) decide(m *model.Model, probs []float32, anomaly float32, before uint32) int16 {
	if k, _ := model.AlertClass(probs, m.Thresholds, 0); k > 0 {
		return o.name(m.Classes()[k])
	}
	if m.AnomalyThreshold > 0 && anomaly >= m.AnomalyThreshold && before >= o.warmup {
		return o.name(scorer.ClassAnomaly)
	}
	return predNone
}

// rescore returns every scored row's prediction under m, re-scoring the
// stored embeddings with m's head. The encoder is frozen across updates,
// so the embedding and the anomaly score of a flow are what m itself would
// have computed; only the head differs.
func (o *outcome) rescore(m *model.Model) []int16 {
	out := make([]int16, len(o.rows))
	o.headProbs(m, func(j int, probs []float32) {
		r := &o.rows[j]
		out[j] = predNone
		if r.version != 0 {
			out[j] = o.decide(m, probs, r.anomaly, r.before)
		}
	})
	return out
}

// headProbs calls fn with every stored row's class probabilities under
// m's head, in row order, a chunk of rows per head evaluation.
func (o *outcome) headProbs(m *model.Model, fn func(j int, probs []float32)) {
	c := m.NumClasses()
	const chunk = 4096
	var probs []float32
	for lo := 0; lo < len(o.rows); lo += chunk {
		hi := min(lo+chunk, len(o.rows))
		probs = m.HeadProbs(probs[:0], o.emb[lo*o.d:hi*o.d])
		for j := lo; j < hi; j++ {
			fn(j, probs[(j-lo)*c:(j-lo+1)*c])
		}
	}
}

// hostBook mirrors the scorer's per-host bookkeeping (scorer/state.go and
// waves.go): per features partition a watermark of event time (the newest
// flow end seen), and per host the start of its previous flow (for
// dt_prev) and its recent responders (offline, for dst_repeat and dt_dst),
// its flow count since its state was created (for the anomaly
// warm-up) and when it was last seen. A host idle for longer than the TTL
// against its partition's watermark starts afresh. The scorer expires
// hosts between messages; the book checks when the host next appears,
// against the watermark before that flow, which is the same decision with
// messages of one flow. Offline, entries also hold the LSTM state.
type hostBook struct {
	ttl   int64
	parts int
	wm    []int64
	hosts map[string]*hostEntry
}

type hostEntry struct {
	lastStart int64
	touched   int64
	flows     uint32
	peers     features.PeerMemory // offline only: dst_repeat and dt_dst
	h, c      []float32           // offline only
	chunk     int                 // offline: the last chunk that stepped the host
}

func newHostBook(ttl time.Duration, parts int) *hostBook {
	return &hostBook{ttl: int64(ttl), parts: parts, wm: make([]int64, parts), hosts: map[string]*hostEntry{}}
}

// see records a flow of host and returns its entry, the host's flows
// before it and its dt_prev; fresh reports that the state starts from zero.
func (b *hostBook) see(host string, startNs, endNs int64) (e *hostEntry, before uint32, dt float32, fresh bool) {
	p := features.Partition(host, b.parts)
	wm := b.wm[p]
	e = b.hosts[host]
	if e != nil && wm-e.touched > b.ttl {
		// Expired by the scorer at the end of an earlier message.
		e.flows, e.lastStart = 0, 0
		e.peers.Reset()
	}
	if e == nil {
		e = &hostEntry{chunk: -1}
		b.hosts[host] = e
	}
	if endNs > wm {
		wm = endNs
		b.wm[p] = wm
	}
	e.touched = wm
	before = e.flows
	if e.flows > 0 {
		dt = features.DeltaTBetween(e.lastStart, startNs)
	}
	if e.flows < math.MaxUint32 {
		e.flows++
	}
	e.lastStart = startNs
	return e, before, dt, before == 0
}

// lookup returns host's entry, or nil, recording nothing.
func (b *hostBook) lookup(host string) *hostEntry { return b.hosts[host] }
