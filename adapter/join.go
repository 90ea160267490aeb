package adapter

import (
	"maps"
	"slices"
	"time"

	"github.com/metaids/metaids/schemas"
)

// Outcomes of a label: each label read ends in exactly one, counted in
// metaids_adapter_labels_total{outcome}. Until then it is held (the
// metaids_adapter_join_labels gauge), so read = sum of outcomes + held.
const (
	outcomePublished   = "published"    // fitted into an update that passed the gate
	outcomeRejected    = "rejected"     // fitted into a candidate the gate rejected
	outcomeExpired     = "expired"      // its flow or alert never appeared within the window
	outcomeSuperseded  = "superseded"   // a later label on the same flow or alert replaced it
	outcomeInvalid     = "invalid"      // target id or verdict unusable
	outcomeMalformed   = "malformed"    // the record did not decode
	outcomeRateLimited = "rate_limited" // its analyst was over the rate limit
	outcomeOverflow    = "overflow"     // the join held -adapter.join.max-labels labels already
	outcomeStale       = "stale"        // its embedding came from another encoder than the model's
)

// pending is a label held by the join: waiting for its flow's score, or
// joined and waiting for a fit.
type pending struct {
	label  schemas.Label
	part   int
	offset int64
	readAt time.Time // wall clock, for expiry
	timeNs int64     // the label's time, or its record's: the latest label on a flow wins

	recordNs int64 // the label record's time, for label-to-publish latency

	flow     uint64
	hasFlow  bool
	joined   bool
	emb      []float32
	version  int64    // the model version that scored the flow
	alerted  bool     // the flow was alerted on: a benign verdict is a false positive
	scorePos position // where the flow's score was read, once joined
	host     string   // the flow's host and end, once joined: a label on an
	flowNs   int64    // attack starts a campaign there (model.Campaign)
	alertPos position // where the alert naming the flow was read, for alert labels
	done     bool
}

// position is a record's partition and offset.
type position struct {
	part   int
	offset int64
}

// noPos marks a position not taken.
var noPos = position{part: -1}

// labelQueue is one labels partition's held labels in offset order, and the
// offset after the last one read. Fits take labels from the front only, so
// the partition's resume offset is always a single number: everything
// before it is dealt with, everything from it on is held or unread.
type labelQueue struct {
	next  int64
	items []*pending
}

// joiner joins labels to scored flows. It is owned by one goroutine.
//
// Its state is bounded: at most MaxScores scores, MaxAlerts alert ids and
// MaxLabels held labels. A score older (in the scores' record time) than
// the newest by more than the window is dropped, and so is a label that has
// waited longer than the window for its score.
type joiner struct {
	window    time.Duration
	maxLabels int
	count     func(outcome string)

	scores  scoreBuf
	alerts  alertMap
	byFlow  map[uint64]*pending
	byAlert map[string]*pending
	queues  map[int]*labelQueue
	held    int

	// scoreNext and alertNext are, per partition, the offset after the last
	// score or alert record read.
	scoreNext, alertNext map[int]int64
}

func newJoiner(j JoinConfig, count func(outcome string)) *joiner {
	return &joiner{
		window:    j.Window,
		maxLabels: j.MaxLabels,
		count:     count,
		scores:    scoreBuf{max: j.MaxScores, index: map[uint64]int{}},
		alerts:    alertMap{max: j.MaxAlerts, flow: map[string]alertEntry{}, alerted: map[uint64]int{}},
		byFlow:    map[uint64]*pending{},
		byAlert:   map[string]*pending{},
		queues:    map[int]*labelQueue{},
		scoreNext: map[int]int64{},
		alertNext: map[int]int64{},
	}
}

func (j *joiner) queue(part int) *labelQueue {
	q := j.queues[part]
	if q == nil {
		q = &labelQueue{}
		j.queues[part] = q
	}
	return q
}

// resumeAt sets where partition part is read from.
func (j *joiner) resumeAt(part int, offset int64) { j.queue(part).next = offset }

// read records that the label at offset of part has been read, whatever
// becomes of it.
func (j *joiner) read(part int, offset int64) {
	q := j.queue(part)
	q.next = max(q.next, offset+1)
}

// add takes a decoded, rate-checked label. It returns the outcome if the
// label was settled at once, or "" if it is held.
func (j *joiner) add(p *pending) string {
	p.scorePos, p.alertPos = noPos, noPos
	if j.held >= j.maxLabels {
		return outcomeOverflow
	}
	switch p.label.TargetKind {
	case schemas.TargetFlow:
		id, err := schemas.ParseID(p.label.TargetID)
		if err != nil {
			return outcomeInvalid
		}
		p.flow, p.hasFlow = id, true
	case schemas.TargetAlert:
		p.alerted = true
		if e, ok := j.alerts.flow[p.label.TargetID]; ok {
			p.flow, p.hasFlow, p.alertPos = e.flow, true, e.pos
		}
	default:
		return outcomeInvalid
	}
	if !p.hasFlow {
		if old := j.byAlert[p.label.TargetID]; old != nil {
			if p.timeNs < old.timeNs {
				return outcomeSuperseded
			}
			j.settle(old, outcomeSuperseded)
		}
		j.byAlert[p.label.TargetID] = p
	} else if !j.place(p) {
		return outcomeSuperseded
	}
	q := j.queue(p.part)
	q.items = append(q.items, p)
	j.held++
	return ""
}

// place files p under its flow, resolving a conflict with a label already
// held for the flow in favour of the later one, and joins it if the flow's
// score is at hand. It reports whether p was kept.
func (j *joiner) place(p *pending) bool {
	if old := j.byFlow[p.flow]; old != nil {
		if p.timeNs < old.timeNs {
			return false
		}
		if old.joined && !p.joined {
			p.joined, p.emb, p.version, p.scorePos = true, old.emb, old.version, old.scorePos
			p.host, p.flowNs = old.host, old.flowNs
			p.alerted = p.alerted || old.alerted
		}
		j.settle(old, outcomeSuperseded)
	}
	j.byFlow[p.flow] = p
	p.alerted = p.alerted || j.alerts.alerted[p.flow] > 0
	if !p.joined {
		if emb, slot, ok := j.scores.get(p.flow); ok {
			p.joined, p.emb, p.version, p.scorePos = true, slices.Clone(emb), slot.version, slot.pos
			p.host, p.flowNs = slot.host, slot.flowNs
			p.alerted = p.alerted || slot.alerted
		}
	}
	return true
}

// readScore records that the scores record at offset of part has been
// read, whatever it held.
func (j *joiner) readScore(part int, offset int64) {
	j.scoreNext[part] = max(j.scoreNext[part], offset+1)
}

// readAlert records that the alerts record at offset of part has been
// read.
func (j *joiner) readAlert(part int, offset int64) {
	j.alertNext[part] = max(j.alertNext[part], offset+1)
}

// addScore takes one scored flow, read at pos. timeNs is its record's time,
// alerted whether the scorer's model alerted on it; host and flowNs are the
// flow's host and end.
func (j *joiner) addScore(flow uint64, pos position, timeNs, version int64, alerted bool, emb []float32, host string, flowNs int64) {
	j.scores.add(scoreSlot{flow: flow, pos: pos, timeNs: timeNs, version: version, alerted: alerted, host: host, flowNs: flowNs}, emb)
	if p := j.byFlow[flow]; p != nil && !p.joined {
		p.joined, p.emb, p.version, p.scorePos = true, slices.Clone(emb), version, pos
		p.host, p.flowNs = host, flowNs
		p.alerted = p.alerted || alerted
	}
}

// addAlert records which flow an alert id, read at pos, stands for, and
// joins labels waiting on it.
func (j *joiner) addAlert(alertID string, flow uint64, pos position) {
	j.alerts.add(alertID, flow, pos)
	if p := j.byAlert[alertID]; p != nil {
		delete(j.byAlert, alertID)
		p.flow, p.hasFlow, p.alertPos = flow, true, pos
		if !j.place(p) {
			j.settle(p, outcomeSuperseded)
		}
	}
}

// expire settles labels that have waited longer than the window for their
// flow, and drops scores older than the window.
func (j *joiner) expire(now time.Time) {
	for _, q := range j.queues {
		for _, p := range q.items {
			if !p.done && !p.joined && now.Sub(p.readAt) > j.window {
				j.settle(p, outcomeExpired)
			}
		}
	}
	if j.scores.n > 0 {
		j.scores.evictBefore(j.scores.newest - int64(j.window))
	}
	j.compact()
}

// eligible returns the joined labels a fit may take: in each partition,
// those before the first label still waiting for its score, so that the
// partition's resume offset moves past exactly the labels fitted.
func (j *joiner) eligible() []*pending {
	var out []*pending
	for _, part := range j.parts() {
		for _, p := range j.queues[part].items {
			if p.done {
				continue
			}
			if !p.joined {
				break
			}
			out = append(out, p)
		}
	}
	return out
}

// countEligible returns the eligible labels per verdict.
func (j *joiner) countEligible() map[string]int {
	n := map[string]int{}
	for _, p := range j.eligible() {
		n[p.label.Verdict]++
	}
	return n
}

// settle ends a held label with outcome.
func (j *joiner) settle(p *pending, outcome string) {
	if p.done {
		return
	}
	p.done = true
	j.held--
	if p.hasFlow {
		if j.byFlow[p.flow] == p {
			delete(j.byFlow, p.flow)
		}
	} else if j.byAlert[p.label.TargetID] == p {
		delete(j.byAlert, p.label.TargetID)
	}
	j.count(outcome)
}

// compact drops settled labels from the front of each queue.
func (j *joiner) compact() {
	for _, q := range j.queues {
		i := 0
		for i < len(q.items) && q.items[i].done {
			i++
		}
		if i > 0 {
			q.items = slices.Delete(q.items, 0, i)
		}
	}
}

// resume returns, per partition, the offset from which a restarted adapter
// must read the labels again: the first held label's, or the next unread.
func (j *joiner) resume() map[int]int64 {
	j.compact()
	out := make(map[int]int64, len(j.queues))
	for part, q := range j.queues {
		out[part] = q.next
		for _, p := range q.items {
			if !p.done {
				out[part] = p.offset
				break
			}
		}
	}
	return out
}

// scoresResume returns, per scores partition, the offset from which a
// restarted adapter must read the scores again to hold what this one
// holds: the oldest score in the buffer, or behind any held label, else
// the next unread.
func (j *joiner) scoresResume() map[int]int64 {
	out := maps.Clone(j.scoreNext)
	at := func(pos position) {
		if pos.part >= 0 {
			out[pos.part] = min(out[pos.part], pos.offset)
		}
	}
	for i := range j.scores.n {
		at(j.scores.slots[(j.scores.start+i)%len(j.scores.slots)].pos)
	}
	for _, p := range j.byFlow {
		if p.joined {
			at(p.scorePos)
		}
	}
	return out
}

// alertsResume is scoresResume for the alerts topic.
func (j *joiner) alertsResume() map[int]int64 {
	out := maps.Clone(j.alertNext)
	at := func(pos position) {
		if pos.part >= 0 {
			out[pos.part] = min(out[pos.part], pos.offset)
		}
	}
	a := &j.alerts
	for i := range len(a.order) {
		at(a.flow[a.order[(a.start+i)%len(a.order)]].pos)
	}
	for _, p := range j.byFlow {
		at(p.alertPos)
	}
	return out
}

func (j *joiner) parts() []int {
	parts := make([]int, 0, len(j.queues))
	for p := range j.queues {
		parts = append(parts, p)
	}
	slices.Sort(parts)
	return parts
}

// scoreBuf is a ring of recent scores with an index by flow id. Embeddings
// sit in one slice, so holding many costs no per-score allocation.
type scoreBuf struct {
	max    int
	dim    int
	slots  []scoreSlot
	emb    []float32 // len(slots)*dim
	start  int       // the oldest
	n      int
	newest int64
	index  map[uint64]int
}

type scoreSlot struct {
	flow    uint64
	pos     position
	timeNs  int64
	version int64
	alerted bool
	host    string
	flowNs  int64 // the flow's end, event time
}

func (b *scoreBuf) add(slot scoreSlot, emb []float32) {
	if len(emb) != b.dim {
		// A model of another shape now scores flows: the old embeddings
		// are useless to it.
		b.dim, b.slots, b.emb, b.start, b.n = len(emb), nil, nil, 0, 0
		clear(b.index)
	}
	if b.n == b.max {
		b.evictOldest()
	}
	var pos int
	if b.n < len(b.slots) {
		pos = (b.start + b.n) % len(b.slots)
	} else {
		// Every slot is in use but the ring may grow: put it back in
		// order first, so the new slot at the end is the newest.
		if b.start != 0 {
			b.slots = slices.Concat(b.slots[b.start:], b.slots[:b.start])
			b.emb = slices.Concat(b.emb[b.start*b.dim:], b.emb[:b.start*b.dim])
			for i, s := range b.slots {
				b.index[s.flow] = i
			}
			b.start = 0
		}
		pos = len(b.slots)
		b.slots = append(b.slots, scoreSlot{})
		b.emb = append(b.emb, make([]float32, b.dim)...)
	}
	b.slots[pos] = slot
	copy(b.emb[pos*b.dim:(pos+1)*b.dim], emb)
	b.index[slot.flow] = pos
	b.n++
	b.newest = max(b.newest, slot.timeNs)
}

func (b *scoreBuf) evictOldest() {
	s := b.slots[b.start]
	if b.index[s.flow] == b.start {
		delete(b.index, s.flow)
	}
	b.start = (b.start + 1) % len(b.slots)
	b.n--
}

func (b *scoreBuf) evictBefore(timeNs int64) {
	for b.n > 0 && b.slots[b.start].timeNs < timeNs {
		b.evictOldest()
	}
}

// get returns the flow's embedding, aliasing the buffer, and its slot.
func (b *scoreBuf) get(flow uint64) (emb []float32, slot scoreSlot, ok bool) {
	pos, ok := b.index[flow]
	if !ok {
		return nil, scoreSlot{}, false
	}
	return b.emb[pos*b.dim : (pos+1)*b.dim], b.slots[pos], true
}

// alertMap maps alert ids to the flows that opened them, first in first
// out, and counts alerts per flow.
type alertMap struct {
	max     int
	order   []string // ring of alert ids, oldest at start
	start   int
	flow    map[string]alertEntry
	alerted map[uint64]int
}

type alertEntry struct {
	flow uint64
	pos  position
}

func (a *alertMap) add(alertID string, flow uint64, pos position) {
	if _, ok := a.flow[alertID]; ok {
		return // an update of an open alert, or a redelivery
	}
	if len(a.flow) == a.max {
		old := a.order[a.start]
		f := a.flow[old].flow
		delete(a.flow, old)
		if a.alerted[f]--; a.alerted[f] <= 0 {
			delete(a.alerted, f)
		}
		a.order[a.start] = alertID
		a.start = (a.start + 1) % len(a.order)
	} else {
		a.order = append(a.order, alertID)
	}
	a.flow[alertID] = alertEntry{flow, pos}
	a.alerted[flow]++
}
