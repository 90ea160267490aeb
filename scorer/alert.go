package scorer

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/metaids/metaids/features"
	"github.com/metaids/metaids/model"
	"github.com/metaids/metaids/schemas"
)

// ClassAnomaly is the Class of an alert raised by the anomaly score alone,
// when no attack class passed its threshold.
const ClassAnomaly = "anomaly"

// maxActionAlerts bounds the alert ids one Action lists: the most recent
// ones say enough, and a record must stay small however long a storm lasts.
const maxActionAlerts = 16

// alertKey names an open alert: one per host and class.
type alertKey struct{ host, class string }

// openAlert is an alert whose aggregation window is still open.
type openAlert struct {
	a           schemas.Alert
	windowEnd   int64   // event time at which the next flow opens a new alert
	best        float32 // the score behind the current explanation
	dirty       bool    // Count grew since the last publication
	publishedAt time.Time
}

// episode is a run of alerts from one host with no calm gap, the unit a
// block or rate-limit recommendation is about.
type episode struct {
	host      string
	since     int64 // first alerting flow's end
	last      int64 // latest alerting flow's end
	firstFlow uint64
	flows     int64
	class     string // the latest alert's class
	severity  string // the highest severity seen
	alertIDs  []string
	action    *schemas.Action // issued and not withdrawn
}

// alertOutput is one alerts topic with its format.
type alertOutput struct {
	topic  string // with prefix
	format string
}

// emitter collects the records one handled batch produces.
type emitter struct {
	msgs                    []kafka.Message
	scores, alerts, actions int
	states, tombs           int     // checkpoint records and tombstones
	ckpts                   []ckRef // what they are of, to undo a round that failed
}

// ckRef is the host of a checkpoint record: a slot of p's store, or for a
// tombstone (slot < 0) the key.
type ckRef struct {
	p    *partition
	slot int32
	key  string
}

func (e *emitter) reset() {
	clear(e.msgs) // drop references to the values for the collector
	e.msgs = e.msgs[:0]
	e.scores, e.alerts, e.actions = 0, 0, 0
	e.states, e.tombs = 0, 0
	clear(e.ckpts)
	e.ckpts = e.ckpts[:0]
}

// detect raises, updates and aggregates alerts for the rows of a stepped
// message, in row order so that each host's flows are seen in order.
func (s *Stage) detect(sv *served, p *partition, v *features.View, sp *stepper, now time.Time, em *emitter) {
	m := sv.m
	thr, athr := m.Thresholds, m.AnomalyThreshold
	warmup := uint32(s.set.Alerts.AnomalyWarmup)
	if p.campaignsOf != m {
		p.campaigns.Sync(m.Campaigns)
		p.campaignsOf = m
	}
	for r := range v.Len() {
		// The rule training calibrated and the adapter's gate measured;
		// an uncalibrated class (threshold 0) never alerts.
		k, pk := model.AlertClass(sp.probsOf(r), thr, 0)
		classPass := k > 0
		an := sp.anomaly[r]
		anomPass := athr > 0 && an >= athr && sp.before[r] >= warmup
		if !classPass && !anomPass {
			continue
		}
		t := v.EndNs(r)
		host := v.Host(r)
		class, score := ClassAnomaly, an
		if classPass {
			// The campaign an analyst labelled names the flow; the
			// probability and explanation stay the head's evidence that it
			// is an attack at all.
			class, score = m.Classes()[p.campaigns.Attribute(host, t, k)], pk
			s.met.alertFlows.WithLabelValues(kindClass).Inc()
		} else {
			s.met.alertFlows.WithLabelValues(kindAnomaly).Inc()
		}
		sev := severity(classPass, anomPass, pk, an, athr)

		oa := p.alerts[alertKey{host, class}]
		if oa != nil && t >= oa.windowEnd {
			// The window is over: publish what the old alert still owes
			// and let this flow open the next one.
			if oa.dirty {
				s.publishAlert(oa, now, eventUpdated, em)
			}
			delete(p.alerts, alertKey{host, class})
			oa = nil
		}
		if oa == nil {
			id := v.FlowID(r)
			h := strings.Clone(host)
			oa = &openAlert{
				windowEnd: t + int64(s.set.Alerts.Window),
				best:      score,
				a: schemas.Alert{
					AlertID:      alertID(id, class),
					FlowID:       schemas.FormatID(id),
					Host:         h,
					Peer:         strings.Clone(v.Peer(r)),
					SrcPort:      int32(v.SrcPort(r)),
					DstPort:      int32(v.DstPort(r)),
					Proto:        int32(v.Proto(r)),
					Class:        class,
					Probability:  pk,
					AnomalyScore: an,
					Severity:     sev,
					FirstNs:      t,
					LastNs:       t,
					Count:        1,
					ModelVersion: m.Version,
				},
			}
			oa.a.Explanation = s.explain(m, sp, r, k, classPass)
			p.alerts[alertKey{h, class}] = oa
			s.publishAlert(oa, now, eventOpened, em)
		} else {
			a := &oa.a
			a.Count++
			a.LastNs = max(a.LastNs, t)
			a.FirstNs = min(a.FirstNs, t)
			a.ModelVersion = m.Version
			if severityRank(sev) > severityRank(a.Severity) {
				a.Severity = sev
			}
			if score > oa.best {
				// Keep the strongest evidence: an analyst wants to see
				// why the storm's worst flow scored as it did.
				oa.best = score
				a.Probability, a.AnomalyScore = pk, an
				a.Explanation = s.explain(m, sp, r, k, classPass)
			}
			oa.dirty = true
			if now.Sub(oa.publishedAt) >= s.set.Alerts.Republish {
				s.publishAlert(oa, now, eventUpdated, em)
			}
		}
		if s.actionsTopic != "" {
			s.trackEpisode(p, oa, t, v.FlowID(r), m.Version, em)
		}
	}
}

// severity grades one alerting flow: a confident class is high, a class
// backed by an anomalous flow one step higher; the anomaly score alone is
// low unless it is far past its threshold.
func severity(classPass, anomPass bool, p, anomaly, anomalyThreshold float32) string {
	switch {
	case classPass && anomPass && p >= 0.9:
		return schemas.SeverityCritical
	case classPass && (anomPass || p >= 0.9):
		return schemas.SeverityHigh
	case classPass:
		return schemas.SeverityMedium
	case anomaly >= 4*anomalyThreshold:
		return schemas.SeverityMedium
	default:
		return schemas.SeverityLow
	}
}

// severityRank orders severities; −1 for an unknown one.
func severityRank(s string) int {
	switch s {
	case schemas.SeverityLow:
		return 0
	case schemas.SeverityMedium:
		return 1
	case schemas.SeverityHigh:
		return 2
	case schemas.SeverityCritical:
		return 3
	}
	return -1
}

// alertID derives an alert's id from the flow that opened it and the class,
// so that a redelivered batch re-opens its alerts under the same ids and
// consumers can drop the duplicates.
func alertID(flowID uint64, class string) string {
	h := fnv.New64a()
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], flowID)
	h.Write(b[:])
	h.Write([]byte(class))
	return schemas.FormatID(h.Sum64())
}

// actionID derives a recommendation's id from its host and the flow that
// started the episode, deterministic for the same reason as alertID.
func actionID(host string, firstFlow uint64) string {
	h := fnv.New64a()
	h.Write([]byte("action\x00"))
	h.Write([]byte(host))
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], firstFlow)
	h.Write(b[:])
	return schemas.FormatID(h.Sum64())
}

// explain lists the features that moved row r's score most. A class alert
// is explained by gradient × input on the classifier head for class k
// (model.Explain). An anomaly-only alert is explained by each feature's
// share of the anomaly score, the squared error of the predictor's guess
// for it: those shares add up to the score, so they say exactly which parts
// of the flow the host's history did not anticipate.
func (s *Stage) explain(m *model.Model, sp *stepper, r, k int, class bool) []schemas.Contribution {
	n := s.set.Alerts.Explain
	if n == 0 {
		return nil
	}
	var contrib []float32
	if class {
		s.explainBuf, _ = m.Explain(s.explainBuf, sp.embOf(r), k)
		contrib = s.explainBuf
	} else {
		hPrev, ok := sp.prevOf(r, m.Hidden())
		if !ok {
			return nil
		}
		contrib = anomalyShares(s.explainBuf, m, hPrev, sp.embOf(r))
		s.explainBuf = contrib
	}
	return topContributions(contrib, s.featureNames, n)
}

// anomalyShares writes feature j's share of the anomaly score into dst:
// (pred_j − x̂_j)²/F, where pred = PredW·h_{t−1} + PredB is the predictor's
// guess and x̂ the normalised flow, the tail of the embedding.
func anomalyShares(dst []float32, m *model.Model, hPrev, emb []float32) []float32 {
	f, hid := m.Features(), m.Hidden()
	dst = grow(dst, f)
	xn := emb[hid:]
	for j := range f {
		w := m.P.PredW[j*hid : (j+1)*hid]
		p := m.P.PredB[j]
		for l, h := range hPrev {
			p += w[l] * h
		}
		d := p - xn[j]
		dst[j] = d * d / float32(f)
	}
	return dst
}

// topContributions returns the n contributions largest in magnitude, named
// by the feature spec, largest first.
func topContributions(v []float32, names []string, n int) []schemas.Contribution {
	n = min(n, len(v))
	idx := make([]int, 0, n+1)
	for j, x := range v {
		if !finite(x) || x == 0 { // a feature that moved nothing explains nothing
			continue
		}
		// Insertion into the short sorted list of the best so far.
		pos := len(idx)
		for pos > 0 && abs32(v[idx[pos-1]]) < abs32(x) {
			pos--
		}
		if pos >= n {
			continue
		}
		idx = append(idx, 0)
		copy(idx[pos+1:], idx[pos:])
		idx[pos] = j
		if len(idx) > n {
			idx = idx[:n]
		}
	}
	out := make([]schemas.Contribution, len(idx))
	for i, j := range idx {
		out[i] = schemas.Contribution{Feature: names[j], Value: v[j]}
	}
	return out
}

func abs32(x float32) float32 { return float32(math.Abs(float64(x))) }

func finite(x float32) bool { return x-x == 0 }

// publishAlert emits the alert to every alerts topic in its format.
func (s *Stage) publishAlert(oa *openAlert, now time.Time, event string, em *emitter) {
	oa.dirty = false
	oa.publishedAt = now
	a := &oa.a
	for _, o := range s.outputs {
		var (
			val []byte
			err error
		)
		switch o.format {
		case FormatECS:
			val, err = schemas.AlertECS(a)
		case FormatOCSF:
			val, err = schemas.AlertOCSF(a)
		default:
			val, err = s.codecs.AppendAlert(nil, a)
		}
		if err != nil {
			// Only values the formats cannot carry get here (a NaN
			// would have failed the thresholds): a bug, counted and
			// logged rather than failing the batch.
			s.badLog.warn("encode alert", "topic", o.topic, "alert_id", a.AlertID, "err", err)
			continue
		}
		em.msgs = append(em.msgs, kafka.Message{Topic: o.topic, Key: []byte(a.Host), Value: val})
	}
	em.alerts++
	s.met.alerts.WithLabelValues(event).Inc()
}

// trackEpisode folds an alerting flow into its host's episode, issuing a
// recommendation once the alerts have persisted for the hysteresis and
// renewing it while they go on.
func (s *Stage) trackEpisode(p *partition, oa *openAlert, t int64, flowID uint64, version int64, em *emitter) {
	cfg := s.set.Actions
	host := oa.a.Host
	ep := p.episodes[host]
	if ep != nil && t-ep.last > int64(cfg.Calm) {
		// The host calmed down between two flows of this batch: close
		// the old episode before this flow starts a new one.
		s.withdraw(ep, ep.last+int64(cfg.Calm), em)
		delete(p.episodes, host)
		ep = nil
	}
	if ep == nil {
		ep = &episode{host: host, since: t, last: t, firstFlow: flowID}
		p.episodes[host] = ep
	}
	ep.since = min(ep.since, t)
	ep.last = max(ep.last, t)
	ep.flows++
	ep.class = oa.a.Class
	if severityRank(oa.a.Severity) > severityRank(ep.severity) {
		ep.severity = oa.a.Severity
	}
	if n := len(ep.alertIDs); n == 0 || ep.alertIDs[n-1] != oa.a.AlertID {
		ep.alertIDs = append(ep.alertIDs, oa.a.AlertID)
		if len(ep.alertIDs) > maxActionAlerts {
			ep.alertIDs = append(ep.alertIDs[:0], ep.alertIDs[len(ep.alertIDs)-maxActionAlerts:]...)
		}
	}
	kind := schemas.ActionRateLimit
	if severityRank(ep.severity) >= severityRank(cfg.BlockSeverity) {
		kind = schemas.ActionBlock
	}
	switch {
	case ep.action == nil && ep.last-ep.since >= int64(cfg.Hysteresis):
		ep.action = &schemas.Action{ActionID: actionID(host, ep.firstFlow), Host: host}
		s.recommend(ep, kind, version, eventIssued, em)
	case ep.action != nil && (ep.last-ep.action.TimeNs >= int64(cfg.Duration)/2 || kind != ep.action.Kind && kind == schemas.ActionBlock):
		// Renew before the suggested duration runs out, and escalate a
		// rate limit to a block as soon as the severity calls for it.
		s.recommend(ep, kind, version, eventRenewed, em)
	}
}

// recommend emits ep's action, issued or renewed, as of its latest flow.
func (s *Stage) recommend(ep *episode, kind string, version int64, event string, em *emitter) {
	a := ep.action
	a.Kind = kind
	a.TimeNs = ep.last
	a.DurationSec = int64(s.set.Actions.Duration / time.Second)
	a.AlertIDs = append(a.AlertIDs[:0], ep.alertIDs...)
	a.ModelVersion = version
	a.Reason = fmt.Sprintf("%s alerts (severity %s) for %s over %d flows",
		ep.class, ep.severity, time.Duration(ep.last-ep.since).Round(time.Second), ep.flows)
	s.emitAction(a, event, em)
}

// withdraw emits the withdrawal of ep's action, if one was issued.
func (s *Stage) withdraw(ep *episode, at int64, em *emitter) {
	if ep.action == nil {
		return
	}
	w := *ep.action
	w.AlertIDs = append([]string(nil), ep.action.AlertIDs...)
	w.Withdrawn = true
	w.TimeNs = at
	w.Reason = fmt.Sprintf("no alerts for %s", s.set.Actions.Calm)
	s.emitAction(&w, eventWithdrawn, em)
	ep.action = nil
}

func (s *Stage) emitAction(a *schemas.Action, event string, em *emitter) {
	val, err := s.codecs.AppendAction(nil, a)
	if err != nil {
		s.badLog.warn("encode action", "action_id", a.ActionID, "err", err)
		return
	}
	em.msgs = append(em.msgs, kafka.Message{Topic: s.actionsTopic, Key: []byte(a.Host), Value: val})
	em.actions++
	s.met.actions.WithLabelValues(event).Inc()
}

// housekeep ages partition p: it drops idle and surplus hosts, closes alerts
// whose window has passed in event time, re-publishes grown alerts whose
// republish interval has passed in wall time, and withdraws the
// recommendations of hosts that have calmed down.
func (s *Stage) housekeep(p *partition, now time.Time, em *emitter) {
	p.st.expire()
	ttl, capacity := p.st.takeEvicted()
	s.met.evicted.WithLabelValues(evictTTL).Add(float64(ttl))
	s.met.evicted.WithLabelValues(evictCapacity).Add(float64(capacity))
	wm := p.st.watermark
	for key, oa := range p.alerts {
		switch {
		case wm >= oa.windowEnd:
			if oa.dirty {
				s.publishAlert(oa, now, eventUpdated, em)
			}
			delete(p.alerts, key)
		case oa.dirty && now.Sub(oa.publishedAt) >= s.set.Alerts.Republish:
			s.publishAlert(oa, now, eventUpdated, em)
		}
	}
	calm := int64(s.set.Actions.Calm)
	for host, ep := range p.episodes {
		if wm-ep.last > calm {
			s.withdraw(ep, wm, em)
			delete(p.episodes, host)
		}
	}
}
