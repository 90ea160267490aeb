package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apache/arrow/go/v15/arrow/memory"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/metaids/metaids/features"
	"github.com/metaids/metaids/schemas"
	"github.com/metaids/metaids/stream"
)

// errUnknownTopic means the Consumer handed over a record of a topic the
// stage was not configured for: a bug, so the batch fails uncommitted.
var errUnknownTopic = errors.New("topic is not an input of this stage")

// stageName is the DeadLetter.Stage of every dead letter ingest writes.
const stageName = "ingest"

// Limits on a dead letter, so that one always fits a produce request: a
// record too large to dead-letter whole would otherwise fail the batch on
// every redelivery.
const (
	deadKeyMax   = 4 << 10 // bytes of the original key kept
	deadErrorMax = 1 << 10 // bytes of the error text kept
)

// Stage is the ingest stage: a consumer group over the input topics that
// decodes each record with its topic's format, validates the flows, sends
// bad records to flows.dlq and produces the good flows to the features
// topic as Arrow batches, one per features partition. Create it with New;
// call Run once.
//
// Every input record ends one of three ways, counted by source and outcome:
// ok (its flows are rows on the features topic), dead_lettered (it is on
// flows.dlq, whole, with its reason and coordinates) or skipped (it held no
// flow: a header line, a non-flow event). Nothing is counted before the
// brokers acknowledge, so records in = ok + dead_lettered + skipped.
//
// State. Replicas share the input partitions, and the stage keeps nothing
// across batches except what the stream itself rebuilds: the decoders'
// header state (Zeek TSV, VPC and CICFlowMeter column layouts) and, with
// -ingest.replay, the validator's latest flow time, both per input
// partition. The latest flow time decides outcomes, so it is committed
// with each offset (in the commit's metadata) and restored with the
// partition: a redelivered record is judged as it was the first time. A
// replica that takes a partition over in the middle of a file
// has not seen that file's header: CSV and custom-format VPC rows are then
// dead-lettered as no_header until the next header line (Zeek TSV falls
// back to the standard conn.log columns), so shippers of header formats
// should start each file, or each rotation, with its header.
//
// Metrics, registered on the Registerer given to New besides the
// metaids_stream_* series of the stage's consumer and producer:
//
//	metaids_ingest_records_total{source,outcome}  outcome: ok, dead_lettered, skipped
//	metaids_ingest_dead_letters_total{reason}     reason: see Reasons
//	metaids_ingest_skipped_total{reason}          reason: see SkipReasons
//	metaids_ingest_flows_total                    rows produced to features
//	metaids_ingest_batches_total                  features messages produced
//	metaids_ingest_batch_rows                     histogram of rows per message
type Stage struct {
	cfg    Config
	log    *slog.Logger
	met    *metrics
	in     *stream.Consumer
	out    *stream.Producer
	codecs *schemas.Codecs
	val    *Validator
	now    func() time.Time
	mem    memory.Allocator

	inputs        map[string]*input // by full topic name
	featuresTopic string
	dlqTopic      string
	deadValueMax  int // bytes of an original value kept in a dead letter

	warn      rateLimited
	panicOnce sync.Once

	// Handler state. The Consumer calls the handler for one batch at a
	// time, so these are reused without locking.
	batcher    flowBatcher
	newBatcher func(partitions int) (flowBatcher, error)
	flows      []schemas.Flow
	recs       []record
	pbs        []features.PartitionBatch
	msgs       []kafka.Message
	closed     atomic.Bool
}

// input is one input topic: its decoder and its counters.
type input struct {
	source string
	format string
	dec    Decoder
	// records by outcome, resolved once: the handler counts every record.
	ok, dead, skipped prometheus.Counter
}

// flowBatcher is what the stage needs of a features.Batcher. The stage
// builds its batchers through Stage.newBatcher, which tests replace to
// reach the paths a features bug would take.
type flowBatcher interface {
	Add(dst []features.PartitionBatch, f *schemas.Flow, now time.Time) ([]features.PartitionBatch, error)
	FlushAll(dst []features.PartitionBatch) ([]features.PartitionBatch, error)
	Partitions() int
	Release()
}

// record is what the handler learned about one input record of a batch.
type record struct {
	msg        *kafka.Message
	in         *input
	first, end int // its flows in Stage.flows, when outcome is ok
	outcome    string
	reason     string
	err        error
	panic      any // what the Batcher panicked with on its flows
}

// New returns a Stage for cfg. It does not contact the brokers until Run.
func New(cfg Config, log *slog.Logger, reg prometheus.Registerer) (*Stage, error) {
	return newStage(cfg, log, reg, time.Now)
}

// newStage is New with the validator's clock, which tests fix.
func newStage(cfg Config, log *slog.Logger, reg prometheus.Registerer, now func() time.Time) (*Stage, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("ingest config: %w", err)
	}
	// The caller names the stage in log (log.With("stage", "ingest")), as
	// cmd/metaids does for every stage.
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	codecs, err := openCodecs(cfg.SchemaRegistry)
	if err != nil {
		return nil, fmt.Errorf("ingest codecs: %w", err)
	}
	decoders, err := NewDecoders(cfg.Ingest.DecoderConfig, codecs)
	if err != nil {
		return nil, err
	}
	val, err := NewValidator(cfg.Ingest.ValidatorConfig, now)
	if err != nil {
		return nil, err
	}
	topics := schemas.Topics{Prefix: cfg.TopicPrefix}
	names := cfg.Ingest.InputTopics()
	sources := make([]string, len(names))
	for i, n := range names {
		sources[i] = sourceOf(n)
	}
	s := &Stage{
		cfg:           cfg,
		log:           log,
		met:           newMetrics(reg, sources),
		codecs:        codecs,
		val:           val,
		now:           now,
		mem:           memory.NewGoAllocator(),
		inputs:        make(map[string]*input, len(names)),
		featuresTopic: topics.Features(),
		dlqTopic:      topics.DLQ(),
		deadValueMax:  int(cfg.Writer.BatchBytes) - deadLetterOverhead - deadKeyMax,
		warn:          rateLimited{every: 10 * time.Second},
	}
	s.newBatcher = func(n int) (flowBatcher, error) {
		b, err := features.NewBatcher(s.mem, cfg.Features, n)
		if err != nil {
			return nil, fmt.Errorf("features batcher: %w", err)
		}
		return b, nil
	}
	full := make([]string, len(names))
	for i, n := range names {
		full[i] = cfg.Topic(n)
		format := cfg.Ingest.FormatFor(n)
		s.inputs[full[i]] = s.newInput(sources[i], format, decoders[format])
	}
	cc := stream.ConsumerConfig{
		Group:           cfg.Ingest.Group,
		Topics:          full,
		MaxBatch:        cfg.Ingest.Batch.MaxRecords,
		ShutdownTimeout: cfg.Shutdown.Timeout,
	}
	if cfg.Ingest.Replay {
		// The reference time decides a record's outcome, so it moves
		// with the committed offset: a redelivered record is judged
		// against the reference it was first judged against.
		cc.State = replayState{val}
	}
	s.in, err = stream.NewConsumer(cfg.Config, cc, log, reg)
	if err != nil {
		return nil, fmt.Errorf("ingest consumer: %w", err)
	}
	s.out, err = stream.NewProducer(cfg.Config, log, reg)
	if err != nil {
		return nil, fmt.Errorf("ingest producer: %w", err)
	}
	return s, nil
}

// replayState commits each input partition's replay reference time with
// its offset (stream.PartitionState).
type replayState struct{ val *Validator }

func (r replayState) Save(topic string, partition int) string {
	return r.val.SaveReference(topic, partition)
}

func (r replayState) Load(topic string, partition int, saved string) {
	r.val.LoadReference(topic, partition, saved)
}

func (s *Stage) newInput(source, format string, dec Decoder) *input {
	return &input{
		source:  source,
		format:  format,
		dec:     dec,
		ok:      s.met.records.WithLabelValues(source, outcomeOK),
		dead:    s.met.records.WithLabelValues(source, outcomeDeadLettered),
		skipped: s.met.records.WithLabelValues(source, outcomeSkipped),
	}
}

// sourceOf names an input topic (without the prefix) for the source label:
// "flows.goflow2" is goflow2, as the DESIGN's flows.<source> says; any
// other name is itself.
func sourceOf(topic string) string {
	if s, ok := strings.CutPrefix(topic, "flows."); ok && s != "" {
		return s
	}
	return topic
}

// Run creates the output topics if so configured, then consumes until ctx
// is cancelled or a batch's outputs cannot be produced. On cancellation it
// finishes the batch in hand, commits, leaves the group and returns nil.
func (s *Stage) Run(ctx context.Context) error {
	defer s.close()
	if s.cfg.Ingest.CreateTopics {
		n := s.cfg.Ingest.Partitions
		// Retried until ctx ends: a broker that is not up yet must not
		// crash-loop ingest, whose consumer would wait for it anyway.
		if err := stream.EnsureTopicsRetry(ctx, s.cfg.Config, []stream.TopicSpec{
			{Name: s.featuresTopic, Partitions: n},
			{Name: s.dlqTopic, Partitions: n},
		}, s.log); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			s.log.Error("create output topics", "err", err)
			return fmt.Errorf("ingest: %w", err)
		}
	}
	formats := make(map[string]string, len(s.inputs))
	for t, in := range s.inputs {
		formats[t] = in.format
	}
	s.log.Info("starting", "group", s.cfg.Ingest.Group, "inputs", formats,
		"features", s.featuresTopic, "dlq", s.dlqTopic, "replay", s.cfg.Ingest.Replay)
	err := s.in.Run(ctx, s.handle)
	s.log.Info("stopped", "err", err)
	return err
}

// Ready reports whether the stage has joined its consumer group.
func (s *Stage) Ready() bool { return s.in.Ready() }

func (s *Stage) close() {
	if s.closed.Swap(true) {
		return
	}
	if s.batcher != nil {
		s.batcher.Release()
		s.batcher = nil
	}
	if err := s.out.Close(); err != nil {
		s.log.Warn("close producer", "err", err)
	}
}

// handle is the stage's stream.Handler. It decodes and validates every
// record of the batch, builds the features batches of all the good flows
// and flushes them all, then produces them together with the dead letters
// and returns once the brokers have acknowledged every one: the Consumer
// commits the batch's offsets only then. Flushing the whole batch before
// returning is what makes a commit safe without tracking which offsets'
// flows sit in which features batch; -ingest.batch.max-records and
// -kafka.reader.max-wait, not -features.batch.linger, therefore bound how
// long a flow waits.
func (s *Stage) handle(ctx context.Context, batch []kafka.Message) error {
	if err := s.ensureBatcher(ctx); err != nil {
		return err
	}
	msgs, err := s.prepare(batch, s.now())
	if err != nil {
		return err
	}
	if err := s.out.Produce(ctx, msgs...); err != nil {
		return fmt.Errorf("produce %d features batches and %d dead letters: %w", len(s.pbs), len(msgs)-len(s.pbs), err)
	}
	s.acknowledged()
	return nil
}

// prepare turns a batch into the messages to produce: the features batches,
// pinned to their partitions, then the dead letters. It leaves what it
// learned about each record in s.recs and the flushed batches in s.pbs,
// for acknowledged to count.
func (s *Stage) prepare(batch []kafka.Message, now time.Time) ([]kafka.Message, error) {
	clear(s.msgs) // drop the last batch's values
	s.flows, s.recs, s.msgs = s.flows[:0], s.recs[:0], s.msgs[:0]
	for i := range batch {
		m := &batch[i]
		in := s.inputs[m.Topic]
		if in == nil {
			// The Consumer reads only the configured topics.
			return nil, fmt.Errorf("record from %s/%d/%d: %w", m.Topic, m.Partition, m.Offset, errUnknownTopic)
		}
		s.recs = append(s.recs, s.decode(m, in))
	}
	pbs, err := s.fill(now)
	s.pbs = pbs
	if err != nil {
		return nil, err
	}
	for i := range pbs {
		pb := &pbs[i]
		// The batch's partition is chosen by features.Partition, flow by
		// flow; pinning it keeps the message there even if a producer
		// elsewhere hashed keys differently.
		s.msgs = append(s.msgs, stream.AtPartition(kafka.Message{Topic: s.featuresTopic, Key: pb.Key, Value: pb.Value}, pb.Partition))
	}
	for i := range s.recs {
		if r := &s.recs[i]; r.outcome == outcomeDeadLettered {
			m, err := s.deadLetter(r, now)
			if err != nil {
				return nil, err
			}
			s.msgs = append(s.msgs, m)
		}
	}
	return s.msgs, nil
}

// acknowledged counts the batch prepare made, now that the brokers hold
// its outputs. Counting no earlier means a batch that failed, and is redone
// by the next owner of its partitions, is counted once, there.
func (s *Stage) acknowledged() {
	for i := range s.recs {
		s.count(&s.recs[i])
	}
	rows := 0
	for i := range s.pbs {
		rows += s.pbs[i].Rows
		s.met.batchRows.Observe(float64(s.pbs[i].Rows))
	}
	s.met.batches.Add(float64(len(s.pbs)))
	s.met.flows.Add(float64(rows))
}

// ensureBatcher (re)builds the Batcher for the features topic's current
// partition count, which can grow while the stage runs: partition choice
// must use the count the scorers see. Between batches the Batcher is empty,
// so replacing it loses nothing.
func (s *Stage) ensureBatcher(ctx context.Context) error {
	n, err := s.out.Partitions(ctx, s.featuresTopic)
	if err != nil {
		return fmt.Errorf("features topic partitions: %w", err)
	}
	if s.batcher != nil && s.batcher.Partitions() == n {
		return nil
	}
	if s.batcher != nil {
		s.log.Info("features topic partitions changed", "topic", s.featuresTopic, "from", s.batcher.Partitions(), "to", n)
		s.batcher.Release()
	}
	s.batcher, err = s.newBatcher(n)
	return err
}

// decode decodes and validates one record, appending its flows to s.flows
// when it is good.
func (s *Stage) decode(m *kafka.Message, in *input) record {
	n0 := len(s.flows)
	err := s.decodeSafe(in.dec, m, n0)
	if err != nil {
		s.flows = s.flows[:n0]
	}
	r := record{msg: m, in: in, first: n0, end: len(s.flows), err: err}
	r.outcome, r.reason = Outcome(err)
	return r
}

// decodeSafe runs the decoder and the validator, turning a panic in either
// into an internal RecordError: one record must not stop the stage, and
// redelivering it would only panic again.
func (s *Stage) decodeSafe(dec Decoder, m *kafka.Message, n0 int) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = s.internal(p, m)
		}
	}()
	src := schemas.Coord{Topic: m.Topic, Partition: int32(m.Partition), Offset: m.Offset}
	flows, err := dec.Decode(s.flows, m.Value, src)
	if err != nil {
		s.flows = flows[:n0]
		return err
	}
	s.flows = flows
	return s.val.Check(flows[n0:])
}

// internal turns a recovered panic into the record's dead-letter error and
// logs the stack, once per process: the same bug would otherwise flood the
// log at the input's rate.
func (s *Stage) internal(p any, m *kafka.Message) error {
	s.panicOnce.Do(func() {
		s.log.Error("recovered panic while handling a record; it is dead-lettered as internal (stack logged once)",
			"topic", m.Topic, "partition", m.Partition, "offset", m.Offset, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
	})
	return &RecordError{Reason: ReasonInternal, Err: fmt.Errorf("panic: %v", p)}
}

// fill adds the good records' flows to the Batcher and flushes it. A panic
// while adding a record's flows dead-letters that record as internal and
// starts the batch over with a fresh Batcher, since the old one may hold
// part of the record.
func (s *Stage) fill(now time.Time) ([]features.PartitionBatch, error) {
	for {
		pbs, bad, err := s.tryFill(now)
		if bad < 0 || err != nil {
			return pbs, err
		}
		r := &s.recs[bad]
		r.err = s.internal(r.panic, r.msg)
		r.panic = nil
		r.outcome, r.reason = Outcome(r.err)
		n := s.batcher.Partitions()
		s.batcher.Release()
		if s.batcher, err = s.newBatcher(n); err != nil {
			return nil, err
		}
	}
}

// tryFill returns the index of the record whose flow made the Batcher
// panic, or -1.
func (s *Stage) tryFill(now time.Time) (pbs []features.PartitionBatch, bad int, err error) {
	cur := -1
	defer func() {
		if p := recover(); p != nil {
			if cur < 0 {
				pbs, bad, err = nil, -1, fmt.Errorf("flush features batches: panic: %v", p)
				return
			}
			s.recs[cur].panic = p
			pbs, bad, err = nil, cur, nil
		}
	}()
	pbs = s.pbs[:0]
	for i := range s.recs {
		r := &s.recs[i]
		if r.outcome != outcomeOK {
			continue
		}
		cur = i
		for j := r.first; j < r.end; j++ {
			if pbs, err = s.batcher.Add(pbs, &s.flows[j], now); err != nil {
				return nil, -1, err
			}
		}
	}
	cur = -1
	if pbs, err = s.batcher.FlushAll(pbs); err != nil {
		return nil, -1, err
	}
	return pbs, -1, nil
}

// deadLetter builds the flows.dlq message for r: the record whole, with its
// coordinates and why it failed, keyed by its coordinates.
func (s *Stage) deadLetter(r *record, now time.Time) (kafka.Message, error) {
	m := r.msg
	msg := strings.ToValidUTF8(r.err.Error(), "\uFFFD")
	key, value := m.Key, m.Value
	if len(key) > deadKeyMax {
		msg += fmt.Sprintf("; key truncated to %d of %d bytes", deadKeyMax, len(key))
		key = key[:deadKeyMax]
	}
	if len(value) > s.deadValueMax {
		msg += fmt.Sprintf("; value truncated to %d of %d bytes", s.deadValueMax, len(value))
		value = value[:s.deadValueMax]
	}
	if len(msg) > deadErrorMax {
		msg = strings.ToValidUTF8(msg[:deadErrorMax], "")
	}
	d := schemas.DeadLetter{
		Reason:    r.reason,
		Error:     msg,
		Stage:     stageName,
		Topic:     m.Topic,
		Partition: int32(m.Partition),
		Offset:    m.Offset,
		Key:       key,
		Value:     value,
		TimeNs:    now.UnixNano(),
	}
	b, err := s.codecs.AppendDeadLetter(nil, &d)
	if err != nil {
		return kafka.Message{}, fmt.Errorf("encode dead letter for %s/%d/%d: %w", m.Topic, m.Partition, m.Offset, err)
	}
	k := make([]byte, 0, len(m.Topic)+24)
	k = append(k, m.Topic...)
	k = append(k, '/')
	k = strconv.AppendInt(k, int64(m.Partition), 10)
	k = append(k, '/')
	k = strconv.AppendInt(k, m.Offset, 10)
	return kafka.Message{Topic: s.dlqTopic, Key: k, Value: b}, nil
}

// count advances the counters of an acknowledged record and logs a dead
// letter: at Debug each, at Warn at most once per interval.
func (s *Stage) count(r *record) {
	switch r.outcome {
	case outcomeOK:
		r.in.ok.Inc()
	case outcomeSkipped:
		r.in.skipped.Inc()
		s.met.skips.WithLabelValues(r.reason).Inc()
	default:
		r.in.dead.Inc()
		s.met.deadLetters.WithLabelValues(r.reason).Inc()
		m := r.msg
		s.log.Debug("dead-lettered", "topic", m.Topic, "partition", m.Partition, "offset", m.Offset, "reason", r.reason, "err", r.err)
		if n, ok := s.warn.allow(s.now()); ok {
			s.log.Warn("dead-lettered records", "topic", m.Topic, "partition", m.Partition, "offset", m.Offset,
				"reason", r.reason, "err", r.err, "since_last_warning", n)
		}
	}
}

// rateLimited lets one event through per interval and counts the rest, as
// goflow2's BatchMute does for per-record errors.
type rateLimited struct {
	every time.Duration
	last  time.Time
	muted int
}

// allow reports whether to log now and how many events were muted since
// the last one logged, this one included.
func (r *rateLimited) allow(now time.Time) (int, bool) {
	r.muted++
	if !r.last.IsZero() && now.Sub(r.last) < r.every {
		return 0, false
	}
	n := r.muted
	r.last, r.muted = now, 0
	return n, true
}

var _ stream.Handler = (*Stage)(nil).handle
