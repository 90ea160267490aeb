package scorer

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/memory"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/metaids/metaids/features"
	"github.com/metaids/metaids/model"
	"github.com/metaids/metaids/schemas"
	"github.com/metaids/metaids/stream"
)

// Reasons a features message is skipped, the label values of
// metaids_scorer_bad_batches_total.
const (
	badCorrupt  = "corrupt"       // not one well-formed Arrow IPC batch
	badSchema   = "schema"        // the columns are not the features schema
	badSpec     = "spec_mismatch" // built for another feature spec
	badInternal = "internal"      // the scorer panicked on it
)

// Stage scores feature batches from the features topic and publishes scores,
// alerts and recommended actions. Create it with New; call Run once.
type Stage struct {
	cfg     Config
	set     Settings
	log     *slog.Logger
	met     *metrics
	in      *stream.Consumer // nil in tests of the scoring core
	out     *stream.Producer
	codecs  *schemas.Codecs
	verify  *verifier
	current atomic.Pointer[served] // swapped by the models-topic watcher

	swapMu    sync.Mutex // serialises model updates
	haveModel chan struct{}
	once      sync.Once

	featuresTopic, scoresTopic, modelsTopic, actionsTopic string
	stateTopic                                            string
	inCols                                                [3]int // flow_id, host and end_ns in a features batch
	outputs                                               []alertOutput
	featureNames                                          []string
	scoresBudget                                          int // bytes of score rows per scores message
	mem                                                   memory.Allocator
	now                                                   func() time.Time
	badLog                                                *rateLog

	// mu guards the scoring state below: the consumer's handler and the
	// flush loop both use it.
	mu         sync.Mutex
	parts      map[int]*partition
	sp         *stepper
	encoder    uint64        // the encoder generation host states were written by
	ckptID     encoderID     // that encoder's identity in checkpoints
	schema     *arrow.Schema // of the scores, for the model in schemaFor
	schemaFor  *served
	versions   []int64 // the model_version column's values
	em         emitter
	explainBuf []float32
}

// partition is what the stage holds for one features partition.
type partition struct {
	id       int
	st       *store
	alerts   map[alertKey]*openAlert
	episodes map[string]*episode
	// campaigns names the alerting flows of labelled hosts
	// (model.Campaign), as of the model campaignsOf.
	campaigns   model.CampaignBook
	campaignsOf *model.Model

	next   int64     // features offset after the last message applied; −1 before any
	ckpt   bool      // its hosts are checkpointed
	ckptAt time.Time // wall time of the last checkpoint round (see firstRound)
}

// New returns a Stage for cfg, after checking cfg, loading the trusted keys
// and, if -scorer.model.file is set, verifying that model. It does not
// contact the brokers until Run.
func New(cfg Config, log *slog.Logger, reg prometheus.Registerer) (*Stage, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("scorer config: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("stage", "scorer")
	keys, err := schemas.LoadPublicKeys(cfg.Scorer.Model.Keys...)
	if err != nil {
		return nil, fmt.Errorf("scorer config: -scorer.model.keys: %w", err)
	}
	s, err := newStage(cfg, keys, log, reg)
	if err != nil {
		return nil, err
	}
	if f := cfg.Scorer.Model.File; f != "" {
		sv, err := s.verify.loadModelFile(s.codecs, f)
		if err != nil {
			var rej *RejectError
			if errors.As(err, &rej) {
				s.met.modelUpdates.WithLabelValues(rej.Reason).Inc()
			}
			return nil, err
		}
		s.serve(sv, "file")
	}
	s.in, err = stream.NewConsumer(cfg.Config, stream.ConsumerConfig{
		Group:           cfg.Scorer.Group,
		Topics:          []string{s.featuresTopic},
		MaxBatch:        cfg.Scorer.Batch.MaxRecords,
		ShutdownTimeout: cfg.Shutdown.Timeout,
		Revoked:         s.revoked,
	}, log, reg)
	if err != nil {
		return nil, fmt.Errorf("scorer consumer: %w", err)
	}
	s.out, err = stream.NewProducer(cfg.Config, log, reg)
	if err != nil {
		return nil, fmt.Errorf("scorer producer: %w", err)
	}
	return s, nil
}

// newStage builds everything but the Kafka clients: the scoring core that
// the unit tests and the benchmark drive directly.
func newStage(cfg Config, keys map[string]ed25519.PublicKey, log *slog.Logger, reg prometheus.Registerer) (*Stage, error) {
	codecs, err := openCodecs(cfg.SchemaRegistry)
	if err != nil {
		return nil, fmt.Errorf("scorer codecs: %w", err)
	}
	topics := schemas.Topics{Prefix: cfg.TopicPrefix}
	set := cfg.Scorer
	s := &Stage{
		cfg:    cfg,
		set:    set,
		log:    log,
		met:    newMetrics(reg),
		codecs: codecs,
		verify: &verifier{
			name:     set.Model.Name,
			keys:     keys,
			specHash: features.Default().Hash(),
		},
		haveModel:     make(chan struct{}),
		featuresTopic: topics.Features(),
		scoresTopic:   topics.Scores(),
		modelsTopic:   topics.Models(),
		stateTopic:    topics.ScorerState(),
		featureNames:  features.Default().Names(),
		// Leave room under the producer's request limit for the schema
		// message and the record batch framing.
		scoresBudget: int(min(cfg.Writer.BatchBytes, math.MaxInt32))*7/8 - 8192,
		mem:          memory.DefaultAllocator,
		now:          time.Now,
		badLog:       &rateLog{log: log, every: 10 * time.Second},
		parts:        make(map[int]*partition),
		sp:           newStepper(set.Batch.MaxFlows),
	}
	if set.Actions.Topic != "" {
		s.actionsTopic = cfg.Topic(set.Actions.Topic)
	}
	outputs := set.Alerts.outputs()
	for _, t := range slices.Sorted(maps.Keys(outputs)) {
		s.outputs = append(s.outputs, alertOutput{topic: cfg.Topic(t), format: outputs[t]})
	}
	in := features.Schema()
	for i, name := range []string{"flow_id", "host", "end_ns"} {
		idx := in.FieldIndices(name)
		if len(idx) != 1 {
			return nil, fmt.Errorf("scorer: features schema has %d %q columns, want 1", len(idx), name)
		}
		s.inCols[i] = idx[0]
	}
	for _, r := range updateResults {
		s.met.modelUpdates.WithLabelValues(r)
	}
	return s, nil
}

// Run blocks until ctx is cancelled or a non-recoverable error occurs. It
// follows the models topic from its start, waits for a verified model,
// then joins the consumer group and scores. On cancellation it finishes the
// batch in hand, commits, leaves the group, publishes the alert updates
// still held back by the republish interval, and returns nil.
func (s *Stage) Run(ctx context.Context) error {
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	var bg sync.WaitGroup
	defer bg.Wait()
	bg.Go(func() { s.watchModels(wctx) })

	if s.current.Load() == nil {
		s.log.Info("waiting for a verified model", "topic", s.modelsTopic, "model", s.set.Model.Name)
	}
	select {
	case <-s.haveModel:
	case <-ctx.Done():
		s.out.Close()
		return nil
	}
	bg.Go(func() { s.flushLoop(wctx) })

	err := s.in.Run(ctx, s.handle)
	stopWatch()
	bg.Wait()
	if err == nil {
		// Not after a failure: the states then hold flows whose outputs
		// were not acknowledged, and that come back to be scored again.
		s.finalCheckpoint(ctx)
	}

	// The final flush runs under its own deadline: ctx is already done.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.Timeout)
	defer cancel()
	if ferr := s.flush(fctx); ferr != nil {
		s.log.Warn("final flush of alert updates failed", "err", ferr)
	}
	if cerr := s.out.Close(); cerr != nil {
		s.log.Warn("close producer", "err", cerr)
	}
	s.release()
	s.log.Info("stopped")
	return err
}

// release drops what the stage holds for its model.
func (s *Stage) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.schema, s.schemaFor = nil, nil
}

// Ready reports whether the stage has joined its group and holds a
// verified model.
func (s *Stage) Ready() bool {
	return s.in != nil && s.in.Ready() && s.current.Load() != nil
}

// ModelVersion returns the version of the model being served, 0 before the
// first.
func (s *Stage) ModelVersion() int64 {
	if sv := s.current.Load(); sv != nil {
		return sv.m.Version
	}
	return 0
}

// StateStats summarises the host state a Stage holds.
type StateStats struct {
	Partitions int   // features partitions with state
	Hosts      int   // hosts with state
	Bytes      int64 // estimated memory of that state
}

// BytesPerHost returns Bytes/Hosts, or 0 without hosts.
func (st StateStats) BytesPerHost() float64 {
	if st.Hosts == 0 {
		return 0
	}
	return float64(st.Bytes) / float64(st.Hosts)
}

// State returns the current StateStats. It waits for the batch in hand.
func (s *Stage) State() StateStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stateLocked()
}

func (s *Stage) stateLocked() StateStats {
	var st StateStats
	for _, p := range s.parts {
		st.Partitions++
		st.Hosts += p.st.live
		st.Bytes += int64(p.st.bytes())
	}
	return st
}

// handle is the consumer's Handler: it scores every message of the batch
// and returns once all outputs are acknowledged, so the consumer commits
// only then.
func (s *Stage) handle(ctx context.Context, batch []kafka.Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.syncAssignment()
	sv := s.current.Load()
	s.adopt(sv)
	s.restoreNew(ctx, sv, batch)
	em := &s.em
	em.reset()
	s.scoreBatch(batch, em)
	s.checkpointDue(em, s.now(), false)
	return s.produce(ctx, em)
}

// scoreBatch scores batch into em with the model in service.
func (s *Stage) scoreBatch(batch []kafka.Message, em *emitter) {
	sv := s.current.Load()
	s.adopt(sv)
	now := s.now()
	touched := make(map[int]*partition, 4)
	for i := range batch {
		p := s.partition(sv, batch[i].Partition)
		touched[p.id] = p
		s.process(sv, p, &batch[i], now, em)
		p.next = batch[i].Offset + 1
	}
	for _, p := range touched {
		s.housekeep(p, now, em)
	}
	s.updateGauges()
}

// produce writes em's records and waits for their acknowledgement.
func (s *Stage) produce(ctx context.Context, em *emitter) error {
	if len(em.msgs) == 0 {
		return nil
	}
	if err := s.out.Produce(ctx, em.msgs...); err != nil {
		return fmt.Errorf("produce %d scores, %d alerts and %d actions: %w", em.scores, em.alerts, em.actions, err)
	}
	s.met.outputRecords.WithLabelValues("scores").Add(float64(em.scores))
	s.met.outputRecords.WithLabelValues("alerts").Add(float64(em.alerts))
	s.met.outputRecords.WithLabelValues("actions").Add(float64(em.actions))
	s.met.checkpointRecords.WithLabelValues(kindState).Add(float64(em.states))
	s.met.checkpointRecords.WithLabelValues(kindTombstone).Add(float64(em.tombs))
	return nil
}

// adopt switches the scoring state to sv: host states written by another
// encoder are reset, and the scores builder follows the classes.
func (s *Stage) adopt(sv *served) {
	if sv == nil {
		panic("scorer: scoring without a model") // Run waits for one
	}
	if s.encoder != 0 && s.encoder != sv.encoder {
		// Fresh stores rather than zeroed ones: the new encoder may have
		// another hidden size, and the memory of the old slabs goes back.
		// The checkpoints of the old states are deleted at the next round.
		for _, p := range s.parts {
			s.met.evicted.WithLabelValues(evictReset).Add(float64(p.st.live))
			old := p.st
			p.st = s.newStore(sv)
			if p.st.track {
				for i := range old.meta {
					if m := &old.meta[i]; m.saved && m.key != "" {
						p.st.tombs = append(p.st.tombs, m.key)
					}
				}
				p.st.tombs = append(p.st.tombs, old.tombs...)
			}
		}
		s.met.statesReset.Inc()
		s.log.Info("host states reset for a new encoder", "model_version", sv.m.Version)
	}
	if s.encoder != sv.encoder {
		s.ckptID = fingerprint(sv.m)
	}
	s.encoder = sv.encoder
	if s.schemaFor != sv {
		schema, err := features.ScoresSchema(sv.m.Classes(), sv.m.EmbeddingDim())
		if err != nil {
			panic(fmt.Sprintf("scorer: scores schema for a verified model: %v", err))
		}
		s.schema, s.schemaFor = schema, sv
	}
}

// partition returns the state of partition id, creating it for sv.
func (s *Stage) partition(sv *served, id int) *partition {
	p := s.parts[id]
	if p == nil {
		p = &partition{
			id:       id,
			st:       s.newStore(sv),
			alerts:   make(map[alertKey]*openAlert),
			episodes: make(map[string]*episode),
			next:     -1,
			ckpt:     s.checkpointsOn(),
			ckptAt:   s.firstRound(),
		}
		s.parts[id] = p
	}
	return p
}

// newStore returns an empty host store for sv's hidden size.
func (s *Stage) newStore(sv *served) *store {
	st := newStore(sv.m.Hidden(), s.set.State.MaxHosts, int64(s.set.State.TTL))
	st.track = s.checkpointsOn()
	return st
}

// syncAssignment drops the state of partitions this member no longer
// holds: their hosts are another member's now, and if the partition comes
// back its states would be stale.
func (s *Stage) syncAssignment() {
	if s.in == nil {
		return
	}
	held := s.in.Assignment()[s.featuresTopic]
	for id, p := range s.parts {
		if !slices.Contains(held, id) {
			s.met.evicted.WithLabelValues(evictRevoked).Add(float64(p.st.live))
			delete(s.parts, id)
			s.log.Info("dropped state of a revoked partition", "partition", id, "hosts", p.st.live)
		}
	}
}

// process scores one features message into em. A message that cannot be
// decoded is counted and skipped (see the package doc for why it is not
// dead-lettered); a panic while scoring it is recovered, counted and
// skipped the same way, so one bad record never stops the stage.
func (s *Stage) process(sv *served, p *partition, msg *kafka.Message, now time.Time, em *emitter) {
	mark := len(em.msgs)
	marks := [3]int{em.scores, em.alerts, em.actions}
	defer func() {
		if r := recover(); r != nil {
			clear(em.msgs[mark:])
			em.msgs = em.msgs[:mark]
			em.scores, em.alerts, em.actions = marks[0], marks[1], marks[2]
			s.skip(msg, badInternal, fmt.Errorf("panic: %v", r), debug.Stack())
		}
	}()
	v, err := features.Decode(msg.Value, s.mem)
	if err != nil {
		reason := badCorrupt
		switch {
		case errors.Is(err, features.ErrSpecMismatch):
			reason = badSpec
		case errors.Is(err, features.ErrSchemaMismatch):
			reason = badSchema
		}
		s.skip(msg, reason, err, nil)
		return
	}
	defer v.Release()
	s.scoreView(sv, p, v, msg.Key, now, em)
	s.met.records.WithLabelValues(outcomeOK).Inc()
}

// scoreView steps the flows of v, emits their scores and raises alerts.
func (s *Stage) scoreView(sv *served, p *partition, v *features.View, key []byte, now time.Time, em *emitter) {
	n := v.Len()
	if n == 0 {
		return
	}
	m := sv.m
	start := time.Now()
	waves := s.sp.plan(p.st, v)
	keep := float32(math.Inf(1))
	if m.AnomalyThreshold > 0 {
		keep = m.AnomalyThreshold
	}
	s.sp.run(m, p.st, v, waves, keep)
	s.met.stepSeconds.Observe(time.Since(start).Seconds())
	s.met.batchFlows.Observe(float64(n))
	s.met.waves.Observe(float64(waves))
	s.met.invalid.Add(float64(s.sp.invalid))

	// Scores, split so that no message outgrows the producer's limit.
	rowBytes := 48 + 4*(m.NumClasses()+m.EmbeddingDim())
	per := max(1, s.scoresBudget/rowBytes)
	for a := 0; a < n; a += per {
		s.emitScores(sv, v, a, min(a+per, n), key, em)
	}
	s.met.flows.Add(float64(n))
	s.detect(sv, p, v, s.sp, now, em)
}

// emitScores produces the scores of rows [a, b) as one message, keyed like
// the features message so that it lands on the same partition number.
func (s *Stage) emitScores(sv *served, v *features.View, a, b int, key []byte, em *emitter) {
	rec := s.scoresRecord(sv, v, a, b)
	// Sized up front (IPv6-long hosts, padding, the schema message) so the
	// encoder never grows the buffer by copying it.
	size := (b-a)*(80+4*(sv.m.NumClasses()+sv.m.EmbeddingDim())) + 16<<10
	val, err := features.Encode(make([]byte, 0, size), rec)
	rec.Release()
	if err != nil {
		panic(fmt.Sprintf("scorer: encode scores: %v", err))
	}
	em.msgs = append(em.msgs, kafka.Message{Topic: s.scoresTopic, Key: key, Value: val})
	em.scores++
}

// scoresRecord assembles the scores of rows [a, b) in the schema of
// features.ScoresSchema without copying a value: the flow id, host and time
// columns are slices of the features batch's own columns, and the anomaly,
// probability and embedding columns wrap the stepper's row-major results.
// Only the IPC encoding then copies, once. (Appending row by row through
// features.ScoresBuilder cost as much as the model step itself.)
func (s *Stage) scoresRecord(sv *served, v *features.View, a, b int) arrow.Record {
	m := sv.m
	c, d := m.NumClasses(), m.EmbeddingDim()
	in := v.Record()
	s.versions = grow(s.versions, b-a)
	for i := range s.versions {
		s.versions[i] = m.Version
	}
	f32 := func(x []float32) *array.Data {
		return array.NewData(arrow.PrimitiveTypes.Float32, len(x),
			[]*memory.Buffer{nil, memory.NewBufferBytes(arrow.Float32Traits.CastToBytes(x))}, nil, 0, 0)
	}
	list := func(typ arrow.DataType, values *array.Data, n int) arrow.Array {
		defer values.Release()
		data := array.NewData(typ, n, []*memory.Buffer{nil}, []arrow.ArrayData{values}, 0, 0)
		defer data.Release()
		return array.MakeFromData(data)
	}
	schema := s.schema
	anomaly := f32(s.sp.anomaly[a:b])
	version := array.NewData(arrow.PrimitiveTypes.Int64, b-a,
		[]*memory.Buffer{nil, memory.NewBufferBytes(arrow.Int64Traits.CastToBytes(s.versions))}, nil, 0, 0)
	cols := []arrow.Array{
		array.NewSlice(in.Column(s.inCols[0]), int64(a), int64(b)),
		array.NewSlice(in.Column(s.inCols[1]), int64(a), int64(b)),
		array.NewSlice(in.Column(s.inCols[2]), int64(a), int64(b)),
		array.MakeFromData(anomaly),
		array.MakeFromData(version),
		list(schema.Field(5).Type, f32(s.sp.probs[a*c:b*c]), b-a),
		list(schema.Field(6).Type, f32(s.sp.emb[a*d:b*d]), b-a),
	}
	anomaly.Release()
	version.Release()
	rec := array.NewRecord(schema, cols, int64(b-a))
	for _, col := range cols {
		col.Release()
	}
	return rec
}

// skip counts and logs (rate-limited) a features message the scorer cannot
// score.
func (s *Stage) skip(msg *kafka.Message, reason string, err error, stack []byte) {
	s.met.records.WithLabelValues(outcomeBad).Inc()
	s.met.badBatches.WithLabelValues(reason).Inc()
	args := []any{"topic", msg.Topic, "partition", msg.Partition, "offset", msg.Offset, "reason", reason, "err", err}
	if stack != nil {
		args = append(args, "stack", string(stack))
	}
	s.badLog.warn("skipped features message", args...)
}

func (s *Stage) updateGauges() {
	st := s.stateLocked()
	s.met.hosts.Set(float64(st.Hosts))
	s.met.stateBytes.Set(float64(st.Bytes))
	s.met.bytesPerHost.Set(st.BytesPerHost())
}

// flushLoop publishes alert updates held back by the republish interval
// and withdraws recommendations, also when no features arrive.
func (s *Stage) flushLoop(ctx context.Context) {
	every := max(s.set.Alerts.Republish, 100*time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.flush(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("flush of alert updates failed", "err", err)
			}
			s.checkpointIdle(ctx)
		}
	}
}

// flush runs housekeeping on every partition and produces what it emits.
// Its records are not tied to input offsets: a lost update is superseded
// by the alert's next one.
func (s *Stage) flush(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	em := &s.em
	em.reset()
	now := s.now()
	for _, p := range s.parts {
		s.housekeep(p, now, em)
	}
	s.updateGauges()
	return s.produce(ctx, em)
}

// serve puts sv in service and records it.
func (s *Stage) serve(sv *served, source string) {
	prev := s.current.Swap(sv)
	s.met.modelUpdates.WithLabelValues(resultApplied).Inc()
	s.met.modelVersion.Set(float64(sv.m.Version))
	args := []any{"model_version", sv.m.Version, "source", source, "classes", len(sv.m.Classes())}
	if prev != nil {
		args = append(args, "previous_version", prev.m.Version, "states_kept", prev.encoder == sv.encoder)
	}
	s.log.Info("model swapped in", args...)
	s.once.Do(func() { close(s.haveModel) })
}

// offer verifies a model update and serves it if it passes; a rejected one
// is counted and logged with its reason, and the model in service stays.
func (s *Stage) offer(u *schemas.ModelUpdate, source string) error {
	s.swapMu.Lock()
	defer s.swapMu.Unlock()
	sv, err := s.verify.accept(u, s.current.Load())
	if err != nil {
		var rej *RejectError
		reason := reasonInvalid
		if errors.As(err, &rej) {
			reason = rej.Reason
		}
		s.met.modelUpdates.WithLabelValues(reason).Inc()
		s.log.Warn("model update rejected", "model_version", u.Version, "reason", reason, "source", source, "err", err)
		return err
	}
	s.serve(sv, source)
	return nil
}

// rateLog logs at Warn at most once per interval and says how many
// messages it held back in between, as goflow2's BatchMute does: a stream of
// bad records must not flood the logs (the metrics count every one).
type rateLog struct {
	log        *slog.Logger
	every      time.Duration
	mu         sync.Mutex
	last       time.Time
	suppressed int
}

func (r *rateLog) warn(msg string, args ...any) {
	r.mu.Lock()
	now := time.Now()
	if !r.last.IsZero() && now.Sub(r.last) < r.every {
		r.suppressed++
		r.mu.Unlock()
		return
	}
	n := r.suppressed
	r.last, r.suppressed = now, 0
	r.mu.Unlock()
	if n > 0 {
		args = append(args, "suppressed", n)
	}
	r.log.Warn(msg, args...)
}
