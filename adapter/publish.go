package adapter

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/metaids/metaids/schemas"
)

// publishTimeout bounds publishing an update once fitted, even when Run's
// context is cancelled meanwhile: an update whose fate is unknown would be
// fitted again by the next adapter.
const publishTimeout = 30 * time.Second

// Fit triggers, the label values of metaids_adapter_fits_total.
const (
	triggerLabels = "labels"
	triggerTimer  = "timer"
)

// maybeFit fits if there is a model and, for triggerLabels, some class has
// -adapter.min-labels eligible labels; for triggerTimer, any will do.
func (s *Stage) maybeFit(ctx context.Context, trigger string) error {
	if s.cur == nil {
		return nil
	}
	counts := s.join.countEligible()
	enough := false
	for _, n := range counts {
		enough = enough || n >= s.set.MinLabels || trigger == triggerTimer
	}
	if !enough {
		return nil
	}
	return s.fit(ctx, trigger)
}

// fit fits a candidate head on every eligible label, gates it, and
// publishes it if it passes. The labels are settled either way: a
// rejected candidate's labels are dropped rather than kept for the next
// fit, so one poisoned batch cannot block every later one. It returns an
// error only if the update could not be published.
func (s *Stage) fit(ctx context.Context, trigger string) error {
	d := s.cur.EmbeddingDim()
	var (
		samples  []sample
		used     []*pending
		newestNs int64
		fps      int
	)
	for _, p := range s.join.eligible() {
		if len(p.emb) != d || !s.sameEncoder(p.version) {
			s.join.settle(p, outcomeStale)
			continue
		}
		samples = append(samples, sample{verdict: p.label.Verdict, emb: p.emb, host: p.host, endNs: p.flowNs})
		used = append(used, p)
		newestNs = max(newestNs, p.recordNs)
		if p.label.Verdict == schemas.VerdictBenign && p.alerted {
			fps++
		}
	}
	defer s.gauges()
	if len(used) == 0 {
		s.commitResume(ctx)
		return nil
	}
	s.met.fits.WithLabelValues(trigger).Inc()
	s.met.falsePositives.Add(float64(fps))
	version := s.maxVersion + 1
	// Seeded by what is fitted, so the same labels on the same model give
	// the same candidate.
	rng := rand.New(rand.NewPCG(uint64(version), uint64(len(used))))
	start := time.Now()
	cand, rep, err := fitHead(s.cur, samples, s.params, rng)
	s.met.fitSeconds.Observe(time.Since(start).Seconds())
	// The labels are settled before the gate's verdict is counted, so that
	// whoever sees the verdict (a dashboard, a test) sees its labels'
	// outcomes too.
	if err != nil || !rep.Accepted {
		for _, p := range used {
			s.join.settle(p, outcomeRejected)
		}
		s.met.gate.WithLabelValues("rejected").Inc()
		if err != nil {
			s.log.Warn("fit failed", "model_version", s.cur.Version, "labels", len(used), "err", err)
		} else {
			s.log.Warn("candidate rejected by the gate", append([]any{"reason", rep.Reason,
				"model_version", s.cur.Version, "labels", len(used), "trigger", trigger}, rep.logAttrs()...)...)
		}
		s.commitResume(ctx)
		return nil
	}
	for _, p := range used {
		s.join.settle(p, outcomePublished)
	}
	s.met.gate.WithLabelValues("accepted").Inc()
	cand.Version, cand.ParentVersion, cand.CreatedNs = version, s.cur.Version, time.Now().UnixNano()
	u, err := cand.Update(schemas.UpdateHead)
	if err != nil {
		return fmt.Errorf("build update v%d: %w", version, err)
	}
	u.Gate = rep.numbers(s.params)
	for part, off := range s.join.resume() {
		u.Gate[gateResumePrefix+strconv.Itoa(part)] = float64(off)
	}
	if err := schemas.SignModelUpdate(u, s.keyID, s.priv); err != nil {
		return fmt.Errorf("sign update v%d: %w", version, err)
	}
	val, err := s.codecs.AppendModelUpdate(nil, u)
	if err != nil {
		return fmt.Errorf("encode update v%d: %w", version, err)
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), publishTimeout)
	defer cancel()
	// Keyed apart from the full model, so compaction keeps both: the
	// newest head and the encoder it belongs to.
	msg := kafka.Message{Topic: s.modelsTopic, Key: []byte(s.set.Model + ".head"), Value: val, Time: time.Now()}
	if err := s.out.Produce(pctx, msg); err != nil {
		return fmt.Errorf("publish model %s v%d: %w", s.set.Model, version, err)
	}
	s.met.published.Inc()
	s.met.labelToPublish.Observe(time.Since(time.Unix(0, newestNs)).Seconds())
	s.encoders[version] = s.encoders[s.cur.Version]
	parent := s.cur.Version
	s.cur, s.maxVersion = cand, version
	s.version.Store(version)
	s.met.modelVersion.Set(float64(version))
	s.log.Info("published head update", append([]any{"model_version", version, "parent_version", parent,
		"classes", len(cand.Classes()), "labels", len(used), "false_positives", fps, "trigger", trigger,
		"exemplars", len(cand.Exemplars)}, rep.logAttrs()...)...)
	s.commitResume(ctx)
	return nil
}
