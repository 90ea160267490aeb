package eval

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apache/arrow/go/v15/arrow/memory"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/metaids/metaids/adapter"
	"github.com/metaids/metaids/features"
	"github.com/metaids/metaids/integration/pipeline"
	"github.com/metaids/metaids/model"
	"github.com/metaids/metaids/schemas"
	"github.com/metaids/metaids/stream"
)

// LiveSummary describes a live run: the replay and what the pipeline made
// of it.
type LiveSummary struct {
	Rate       float64 `json:"replay_rate"`
	Partitions int     `json:"partitions"`
	// Inputs maps each input topic to its ingest format.
	Inputs  map[string]string `json:"inputs"`
	Records int               `json:"records_produced"` // rows and header lines
	// ReplaySeconds is the time the replay took to produce every record.
	ReplaySeconds float64 `json:"replay_seconds"`
	Scored        int     `json:"scored"`
	// DeadLettered counts evaluated rows ingest dead-lettered, by reason.
	DeadLettered map[string]int `json:"dead_lettered"`
	// Duplicates are scores of a flow already scored (redeliveries);
	// Unmatched are scores of flows the replay did not send; Mismatched
	// are scores whose host or time differ from the row their id names.
	Duplicates int `json:"duplicate_scores"`
	Unmatched  int `json:"unmatched_scores"`
	Mismatched int `json:"mismatched_scores"`
	Alerts     int `json:"alerts"`
	// Updates are the model versions published on the models topic.
	Updates      []int64 `json:"model_updates"`
	GateRejected int     `json:"gate_rejected"`
}

// liveTimings are the Kafka settings of the in-process pipeline: the
// stages' test timings, so that a record crosses the pipeline in
// milliseconds rather than in the production defaults' hundreds.
func liveTimings(k *stream.Config) {
	k.Timeout = 10 * time.Second
	k.RetryBackoff = 20 * time.Millisecond
	k.RetryBackoffMax = 500 * time.Millisecond
	k.Writer.BatchTimeout = 5 * time.Millisecond
	k.Reader.MaxWait = 50 * time.Millisecond
	k.Group.SessionTimeout = 3 * time.Second
	k.Group.HeartbeatInterval = 200 * time.Millisecond
	k.Group.RebalanceTimeout = 5 * time.Second
}

// liveEvent is a record read back from an output topic.
type liveEvent struct {
	topic string
	msg   kafka.Message
	at    time.Time
}

// pendingScore is a score whose model version has not been read from the
// models topic yet.
type pendingScore struct {
	j       int
	version int64
	probs   []float32
	anomaly float32
	emb     []float32
	before  uint32
	atNs    int64
}

// liveAdaptation tracks one round of labels until its update serves.
type liveAdaptation struct {
	ad      *Adaptation
	sentAt  time.Time
	verdict []string
	done    bool // accepted or rejected
}

// runLive runs the stages over an embedded broker, replays the evaluated
// rows, reads the scores, alerts, dead letters and model updates back,
// and plays the analyst (see the package doc).
func runLive(ctx context.Context, cfg Config, m *model.Model, es *evalSet, log *slog.Logger) (*outcome, error) {
	keys, err := os.MkdirTemp("", "metaids-eval-keys-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(keys)

	pc := pipeline.DefaultConfig()
	liveTimings(&pc.Kafka)
	pc.Broker.Partitions = cfg.Live.Partitions
	pc.Model.SigningKey = keys + "/signing-key.pem"
	pc.Ingest.Partitions = cfg.Live.Partitions
	pc.Ingest.Replay = true
	pc.Features.Batch.Linger = 10 * time.Millisecond
	pc.Scorer.Alerts.AnomalyWarmup = cfg.Scorer.AnomalyWarmup
	pc.Scorer.State.TTL = cfg.Scorer.TTL
	pc.Scorer.Alerts.Republish = 200 * time.Millisecond
	pc.Scorer.Model.Name = m.Name
	pc.Adapter = cfg.Adapter.settings()
	// Fit on a family's K labels and on nothing else: no timer fits a
	// partial set.
	pc.Adapter.MinLabels = cfg.Shots
	pc.Adapter.FitInterval = 0
	pc.Adapter.Group = "metaids-eval-adapter"
	plan, err := buildReplay(es, pc.Kafka.TopicPrefix)
	if err != nil {
		return nil, err
	}
	pc.Ingest.Inputs = slices.Sorted(maps.Keys(plan.formats))
	pc.Ingest.Formats = plan.formats
	if err := pc.Validate(); err != nil {
		return nil, fmt.Errorf("live pipeline config: %w", err)
	}

	rejects := &gateLog{}
	plog := slog.New(rejects.wrap(log.Handler()))
	reg := prometheus.NewRegistry()
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	p, err := pipeline.Start(runCtx, &pc, m, plog, reg)
	if err != nil {
		return nil, fmt.Errorf("live pipeline: %w", err)
	}
	defer p.Close()
	runErr := make(chan error, 1)
	go func() { runErr <- p.Run(runCtx) }()
	stopped := false
	shutdown := func() error {
		if stopped {
			return nil
		}
		stopped = true
		stop()
		select {
		case err := <-runErr:
			return err
		case <-time.After(time.Minute):
			return errors.New("live pipeline did not stop within a minute")
		}
	}
	defer shutdown()

	if err := waitReady(ctx, p, cfg.Live.Timeout, runErr); err != nil {
		return nil, err
	}
	log.Info("live pipeline ready", "broker", p.Kafka.Brokers[0], "inputs", fmt.Sprint(plan.formats), "rows", plan.rows)

	topics := schemas.Topics{Prefix: p.Kafka.TopicPrefix}
	events := make(chan liveEvent, 1024)
	var readers sync.WaitGroup
	readCtx, stopReading := context.WithCancel(ctx)
	defer func() { stopReading(); readers.Wait() }()
	for _, t := range []struct {
		name  string
		parts int
	}{{topics.Scores(), cfg.Live.Partitions}, {topics.Alerts(), cfg.Live.Partitions}, {topics.DLQ(), cfg.Live.Partitions}, {topics.Models(), 1}} {
		for part := range t.parts {
			readers.Go(func() { readTopic(readCtx, p.Kafka, t.name, part, events, log) })
		}
	}

	lv := &liveRun{
		cfg: cfg, es: es, plan: plan, log: log, reg: reg, rejects: rejects,
		o:      newOutcome(ModeLive, es, m, cfg.Scorer.AnomalyWarmup, cfg.Live.Partitions),
		book:   newHostBook(cfg.Scorer.TTL, cfg.Live.Partitions),
		labels: planLabels(es, cfg.Shots),
		rowOf:  make(map[uint64]int, len(plan.flowID)),
		seen:   make([]bool, len(es.rows)),
		prodAt: make([]atomic.Int64, len(es.rows)),
		alerts: map[string]bool{},
		codecs: mustCodecs(),
		sum: &LiveSummary{Rate: cfg.Live.Rate, Partitions: cfg.Live.Partitions, Inputs: plan.formats,
			Records: len(plan.msgs), DeadLettered: map[string]int{}},
	}
	for j, id := range plan.flowID {
		lv.rowOf[id] = j
	}
	if lv.out, err = stream.NewProducer(p.Kafka, log, nil); err != nil {
		return nil, err
	}
	defer lv.out.Close()
	lv.labelsTopic = topics.Labels()
	lv.topics = topics
	lv.serving = p.Scorer.ModelVersion
	lv.paused, lv.resume, lv.pausedAt = make(chan int), make(chan struct{}), -1

	lv.t0 = time.Now()
	replayDone := make(chan error, 1)
	go func() { replayDone <- lv.replay(runCtx, p.Kafka) }()
	if err := lv.loop(ctx, events, replayDone, runErr); err != nil {
		return nil, err
	}
	if err := shutdown(); err != nil {
		log.Warn("live pipeline stopped with an error", "err", err)
	}
	lv.o.live = lv.sum
	if lv.sum.Mismatched > 0 {
		return nil, fmt.Errorf("live: %d scores name a flow whose host or time differ from the row replayed at that offset: the replay's flow ids are off", lv.sum.Mismatched)
	}
	return lv.o, nil
}

// liveRun is the state of one live run's reading loop.
type liveRun struct {
	cfg     Config
	es      *evalSet
	plan    *replayPlan
	log     *slog.Logger
	reg     *prometheus.Registry
	rejects *gateLog
	codecs  *schemas.Codecs
	out     *stream.Producer

	o       *outcome
	book    *hostBook
	labels  *labelPlan
	rowOf   map[uint64]int
	seen    []bool // rows scored or dead-lettered
	prodAt  []atomic.Int64
	alerts  map[string]bool
	pending []pendingScore
	ads     []*liveAdaptation
	sum     *LiveSummary

	labelsTopic string
	topics      schemas.Topics
	// serving is the scorer's model version; paused carries the row after
	// which the replay waits (Sync), and resume lets it go on.
	serving    func() int64
	paused     chan int
	resume     chan struct{}
	pausedAt   int
	pauseSince time.Time
	t0rate     time.Time // the replayer's: when pacing restarted
	sentAtRate int       // the replayer's: rows sent by then
	t0         time.Time
	lastScore  time.Time
	accounted  int
}

func mustCodecs() *schemas.Codecs {
	c, err := schemas.NewCodecs(nil)
	if err != nil {
		panic(fmt.Sprintf("eval: the built-in schema registry: %v", err)) // the embedded schemas are broken: a build bug
	}
	return c
}

// waitReady waits until every stage is ready.
func waitReady(ctx context.Context, p *pipeline.Pipeline, timeout time.Duration, runErr <-chan error) error {
	deadline := time.Now().Add(timeout)
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for !p.Ready() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-runErr:
			return fmt.Errorf("live pipeline stopped while starting: %w", err)
		case <-t.C:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("live pipeline not ready after %s (-live.timeout)", timeout)
		}
	}
	return nil
}

// readTopic reads one partition of topic from its start and hands every
// record to events until ctx ends.
func readTopic(ctx context.Context, kc stream.Config, topic string, part int, events chan<- liveEvent, log *slog.Logger) {
	d, err := kc.Dialer()
	if err != nil {
		log.Error("live reader", "topic", topic, "err", err)
		return
	}
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: kc.Brokers, Topic: topic, Partition: part, Dialer: d,
		MinBytes: 1, MaxBytes: 16 << 20, MaxWait: 20 * time.Millisecond})
	defer r.Close()
	for {
		msg, err := r.ReadMessage(ctx)
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("live reader stopped", "topic", topic, "partition", part, "err", err)
			}
			return
		}
		select {
		case events <- liveEvent{topic: topic, msg: msg, at: time.Now()}:
		case <-ctx.Done():
			return
		}
	}
}

// replay produces the plan's records at the configured rate, each to
// partition 0 of its topic, in order, and notes when each row was sent.
func (lv *liveRun) replay(ctx context.Context, kc stream.Config) error {
	p, err := stream.NewProducer(kc, lv.log, nil)
	if err != nil {
		return err
	}
	defer p.Close()
	const maxBatch = 256
	rate := lv.cfg.Live.Rate
	msgs := lv.plan.msgs
	batch := make([]kafka.Message, 0, maxBatch)
	sent := 0 // rows sent
	lv.t0rate, lv.sentAtRate = lv.t0, 0
	for i := 0; i < len(msgs); {
		// Rows due by now at the rate; header lines go with the row that
		// needs them.
		due := len(msgs)
		if rate > 0 {
			due = lv.sentAtRate + int(rate*time.Since(lv.t0rate).Seconds()) + 1
			if due <= sent {
				wait := time.Duration(float64(sent+1-due+1) / rate * float64(time.Second))
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(min(wait, 10*time.Millisecond)):
				}
				continue
			}
		}
		batch = batch[:0]
		now := time.Now()
		pause := -1
		for i < len(msgs) && len(batch) < maxBatch && sent < due && pause < 0 {
			mg := msgs[i]
			batch = append(batch, stream.AtPartition(kafka.Message{Topic: kc.Topic(mg.topic), Value: mg.value}, 0))
			if mg.row >= 0 {
				lv.prodAt[mg.row].Store(now.UnixNano())
				sent++
				if lv.cfg.Live.Sync && len(lv.labels.after[mg.row]) > 0 {
					pause = mg.row
				}
			}
			i++
		}
		if err := p.Produce(ctx, batch...); err != nil {
			return fmt.Errorf("replay: %w", err)
		}
		if pause >= 0 {
			select {
			case lv.paused <- pause:
			case <-ctx.Done():
				return ctx.Err()
			}
			select {
			case <-lv.resume:
			case <-ctx.Done():
				return ctx.Err()
			}
			// The pause is not the replay's to make up for: pace from here.
			lv.t0rate = time.Now()
			lv.sentAtRate = sent
		}
	}
	return nil
}

// loop handles what the pipeline writes until every replayed row is
// scored or dead-lettered and every round of labels is settled.
func (lv *liveRun) loop(ctx context.Context, events <-chan liveEvent, replayDone <-chan error, runErr <-chan error) error {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	progress := time.Now()
	replayed := false
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-runErr:
			return fmt.Errorf("live pipeline stopped: %w", err)
		case err := <-replayDone:
			if err != nil {
				return err
			}
			replayed = true
			lv.sum.ReplaySeconds = time.Since(lv.t0).Seconds()
			lv.log.Info("replay done", "records", len(lv.plan.msgs), "seconds", lv.sum.ReplaySeconds)
		case ev := <-events:
			before := lv.accounted
			if err := lv.handle(ctx, ev); err != nil {
				return err
			}
			if lv.accounted != before {
				progress = time.Now()
			}
		case j := <-lv.paused:
			lv.pausedAt, lv.pauseSince = j, time.Now()
			progress = time.Now()
		case <-tick.C:
			if !lv.settled() {
				lv.checkRejected()
			}
			lv.checkServing()
			if lv.pausedAt >= 0 && lv.updateSettled(lv.pausedAt) {
				lv.pausedAt = -1
				lv.resume <- struct{}{}
			} else if lv.pausedAt >= 0 && time.Since(lv.pauseSince) > lv.cfg.Live.Timeout {
				lv.o.notes = append(lv.o.notes, fmt.Sprintf("the replay resumed after waiting %s (-live.timeout) for an update after flow %d", lv.cfg.Live.Timeout, lv.pausedAt))
				lv.pausedAt = -1
				lv.resume <- struct{}{}
			}
		}
		if replayed && lv.accounted == len(lv.es.rows) && lv.settled() {
			return nil
		}
		if time.Since(progress) > lv.cfg.Live.Timeout {
			if replayed && lv.accounted == len(lv.es.rows) {
				lv.o.notes = append(lv.o.notes, "the pipeline settled no outcome of some labels within -live.timeout")
				return nil
			}
			return fmt.Errorf("live: no flow scored for %s (-live.timeout): %d of %d rows scored or dead-lettered", lv.cfg.Live.Timeout, lv.accounted, len(lv.es.rows))
		}
	}
}

// updateSettled reports whether the labels sent after row j have been
// rejected, or their update serves.
func (lv *liveRun) updateSettled(j int) bool {
	for _, a := range lv.ads {
		if a.ad.LabelledAt != j {
			continue
		}
		if !a.done || (a.ad.Accepted && a.ad.ServingMs != a.ad.ServingMs) {
			return false
		}
		return true
	}
	return false // the labels have not gone out yet
}

// checkServing notes when the scorer starts serving each accepted update.
func (lv *liveRun) checkServing() {
	v := lv.serving()
	for _, a := range lv.ads {
		if a.ad.Accepted && a.ad.ServingMs != a.ad.ServingMs && v >= a.ad.Version {
			a.ad.ServingMs = Metric(ms(time.Since(a.sentAt)))
		}
	}
}

// settled reports whether every round of labels sent has been accepted or
// rejected.
func (lv *liveRun) settled() bool {
	for _, a := range lv.ads {
		if !a.done {
			return false
		}
	}
	return true
}

func (lv *liveRun) handle(ctx context.Context, ev liveEvent) error {
	topics := lv.topics
	switch ev.topic {
	case topics.Scores():
		return lv.scores(ctx, ev)
	case topics.Alerts():
		a, err := lv.codecs.DecodeAlert(ev.msg.Value)
		if err != nil {
			return fmt.Errorf("live: alert at offset %d: %w", ev.msg.Offset, err)
		}
		if lv.alerts[a.AlertID] {
			return nil // a re-publication of a growing alert
		}
		lv.alerts[a.AlertID] = true
		lv.sum.Alerts++
		id, err := schemas.ParseID(a.FlowID)
		if err != nil {
			return fmt.Errorf("live: alert %s: %w", a.AlertID, err)
		}
		if j, ok := lv.rowOf[id]; ok {
			if sent := lv.prodAt[j].Load(); sent > 0 {
				lv.o.alertLatency = append(lv.o.alertLatency, ms(ev.at.Sub(time.Unix(0, sent))))
			}
		}
	case topics.DLQ():
		dl, err := lv.codecs.DecodeDeadLetter(ev.msg.Value)
		if err != nil {
			return fmt.Errorf("live: dead letter at offset %d: %w", ev.msg.Offset, err)
		}
		id := schemas.FlowID(schemas.Coord{Topic: dl.Topic, Partition: dl.Partition, Offset: dl.Offset})
		if j, ok := lv.rowOf[id]; ok && !lv.seen[j] {
			lv.seen[j] = true
			lv.accounted++
			lv.sum.DeadLettered[dl.Reason]++
		}
	case topics.Models():
		return lv.model(ev)
	}
	return nil
}

// scores records a scores batch, row by row in partition order.
func (lv *liveRun) scores(ctx context.Context, ev liveEvent) error {
	v, err := features.DecodeScores(ev.msg.Value, memory.DefaultAllocator)
	if err != nil {
		return fmt.Errorf("live: scores at offset %d: %w", ev.msg.Offset, err)
	}
	defer v.Release()
	lv.lastScore = ev.at
	atNs := int64(ev.at.Sub(lv.t0))
	for i := range v.Len() {
		j, ok := lv.rowOf[v.FlowID(i)]
		switch {
		case !ok:
			lv.sum.Unmatched++
			continue
		case lv.seen[j]:
			lv.sum.Duplicates++
			continue
		}
		lv.seen[j] = true
		lv.accounted++
		lv.sum.Scored++
		fl := lv.es.flow(j)
		host := features.Host(fl)
		if v.Host(i) != host || v.TimeNs(i) != fl.EndNs {
			lv.sum.Mismatched++
			continue
		}
		_, before, _, _ := lv.book.see(host, fl.StartNs, fl.EndNs)
		ver := v.ModelVersion(i)
		if mm := lv.o.models[ver]; mm != nil {
			if mm.NumClasses() != len(v.Probs(i)) {
				return fmt.Errorf("live: a score by v%d has %d classes, the model %d", ver, len(v.Probs(i)), mm.NumClasses())
			}
			lv.o.record(j, mm, v.Probs(i), v.Anomaly(i), v.Embedding(i), before, atNs)
		} else {
			lv.pending = append(lv.pending, pendingScore{j: j, version: ver, probs: slices.Clone(v.Probs(i)),
				anomaly: v.Anomaly(i), emb: slices.Clone(v.Embedding(i)), before: before, atNs: atNs})
		}
		for _, a := range lv.ads {
			if a.ad.Accepted && a.ad.LiveAt < 0 && ver >= a.ad.Version {
				a.ad.LiveAt = j
				a.ad.LatencyMs = Metric(ms(ev.at.Sub(a.sentAt)))
				lv.log.Info("update live", "model_version", ver, "families", fmt.Sprint(a.ad.Families), "latency_ms", float64(a.ad.LatencyMs))
			}
		}
		if err := lv.analyst(ctx, j); err != nil {
			return err
		}
	}
	lv.o.elapsed = lv.lastScore.Sub(lv.t0)
	return nil
}

// analyst sends a new family's K labels once its first K flows are all
// scored, as an analyst would on spotting the campaign.
func (lv *liveRun) analyst(ctx context.Context, j int) error {
	fam, ok := lv.labels.fam[j]
	if !ok {
		return nil
	}
	if _, labelled := lv.labels.index[j]; !labelled {
		return nil
	}
	if _, short := lv.labels.short[fam]; short {
		return nil
	}
	if _, done := lv.labels.noted[fam]; done {
		return nil
	}
	rows := lv.labels.rows[fam]
	for _, r := range rows {
		if !lv.seen[r] {
			return nil
		}
	}
	lv.labels.noted[fam] = struct{}{}
	verdict := lv.es.verdicts[fam]
	ls := make([]schemas.Label, len(rows))
	for i, r := range rows {
		ls[i] = adapter.FlowLabel(lv.plan.flowID[r], verdict, "metaids-eval", "first flows of a new family")
		lv.o.labelled[r] = true
	}
	if err := adapter.SendLabels(ctx, lv.out, lv.labelsTopic, ls); err != nil {
		return fmt.Errorf("live: send labels: %w", err)
	}
	a := &liveAdaptation{sentAt: time.Now(), verdict: []string{verdict},
		ad: &Adaptation{Families: []string{fam}, Labels: len(ls), LabelledAt: rows[len(rows)-1], LiveAt: -1,
			LatencyMs: Metric(math.NaN()), ServingMs: Metric(math.NaN())}}
	lv.ads = append(lv.ads, a)
	lv.o.adaptations = append(lv.o.adaptations, a.ad)
	lv.log.Info("labels sent", "family", fam, "verdict", verdict, "labels", len(ls))
	return nil
}

// model reads a models-topic record: a head update becomes a servable
// model (the starting encoder with its head), settles the round of labels
// that taught it, and lets the scores waiting for it be recorded.
func (lv *liveRun) model(ev liveEvent) error {
	u, err := lv.codecs.DecodeModelUpdate(ev.msg.Value)
	if err != nil {
		return fmt.Errorf("live: model update at offset %d: %w", ev.msg.Offset, err)
	}
	if u.Kind != schemas.UpdateHead || lv.o.models[u.Version] != nil {
		return nil // the starting model, published by the pipeline
	}
	mm, err := lv.o.start.ApplyHead(&u)
	if err != nil {
		return fmt.Errorf("live: head update v%d: %w", u.Version, err)
	}
	lv.o.models[u.Version] = mm
	lv.sum.Updates = append(lv.sum.Updates, u.Version)
	for _, a := range lv.ads {
		if a.done || !slices.ContainsFunc(a.verdict, func(v string) bool { return slices.Contains(u.Classes, v) }) {
			continue
		}
		a.done = true
		a.ad.Accepted, a.ad.Version = true, u.Version
		a.ad.Gate = map[string]float64{}
		for k, v := range u.Gate {
			if !strings.HasPrefix(k, "resume.") {
				a.ad.Gate[k] = v
			}
		}
	}
	kept := lv.pending[:0]
	for _, ps := range lv.pending {
		if m := lv.o.models[ps.version]; m != nil {
			lv.o.record(ps.j, m, ps.probs, ps.anomaly, ps.emb, ps.before, ps.atNs)
		} else {
			kept = append(kept, ps)
		}
	}
	lv.pending = kept
	return nil
}

// checkRejected settles rounds of labels the adapter's gate rejected: the
// adapter publishes nothing for them, but counts them.
func (lv *liveRun) checkRejected() {
	n := int(counterValue(lv.reg, "metaids_adapter_gate_decisions_total", "result", "rejected"))
	for n > lv.sum.GateRejected {
		lv.sum.GateRejected++
		for _, a := range lv.ads {
			if !a.done {
				a.done = true
				a.ad.Reason = lv.rejects.next()
				break
			}
		}
	}
}

// counterValue returns the value of the counter name{label=value} in reg,
// 0 if absent.
func counterValue(reg prometheus.Gatherer, name, label, value string) float64 {
	mfs, err := reg.Gather()
	if err != nil {
		return 0
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// gateLog passes log records through and keeps the reasons the adapter
// logs for the candidates its gate rejects, for the report.
type gateLog struct {
	mu      sync.Mutex
	reasons []string
}

func (g *gateLog) wrap(h slog.Handler) slog.Handler { return &gateHandler{Handler: h, g: g} }

func (g *gateLog) next() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.reasons) == 0 {
		return "rejected by the adapter's gate"
	}
	r := g.reasons[0]
	g.reasons = g.reasons[1:]
	return r
}

type gateHandler struct {
	slog.Handler
	g *gateLog
}

func (h *gateHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *gateHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "candidate rejected by the gate" {
		reason := "rejected by the adapter's gate"
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "reason" {
				reason = a.Value.String()
				return false
			}
			return true
		})
		h.g.mu.Lock()
		h.g.reasons = append(h.g.reasons, reason)
		h.g.mu.Unlock()
	}
	if !h.Handler.Enabled(ctx, r.Level) {
		return nil
	}
	return h.Handler.Handle(ctx, r)
}

func (h *gateHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &gateHandler{Handler: h.Handler.WithAttrs(as), g: h.g}
}

func (h *gateHandler) WithGroup(name string) slog.Handler {
	return &gateHandler{Handler: h.Handler.WithGroup(name), g: h.g}
}
