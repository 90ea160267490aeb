package adapter

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apache/arrow/go/v15/arrow/memory"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/metaids/metaids/features"
	"github.com/metaids/metaids/model"
	"github.com/metaids/metaids/schemas"
	"github.com/metaids/metaids/stream"
)

// ErrRunning means Run was called on a Stage that has already run.
var ErrRunning = errors.New("adapter: Run called twice")

// Stage joins analysts' labels to scored flows, fits and gates the
// classifier head, and publishes signed head updates. Create it with New;
// call Run once.
type Stage struct {
	cfg      Config
	set      Settings
	log      *slog.Logger
	met      *metrics
	codecs   *schemas.Codecs
	priv     ed25519.PrivateKey
	keyID    string
	keys     map[string]ed25519.PublicKey
	specHash string
	params   fitParams
	out      *stream.Producer
	lag      *stream.PartitionLag // of the labels, scores and alerts read
	dialer   *kafka.Dialer
	client   *kafka.Client

	labelsTopic, scoresTopic, alertsTopic, modelsTopic string

	started atomic.Bool
	ready   atomic.Bool
	version atomic.Int64

	// Owned by Run's goroutine.
	cur        *model.Model
	maxVersion int64           // the highest verified version of the model on the topic
	encoders   map[int64]int64 // model version → version of the full update whose encoder it runs
	resumeSeen map[int]int64   // labels resume offsets from updates' gate maps
	join       *joiner
	rate       *rateLimiter
	committed  string // the resume offsets last committed, to skip repeats
}

// New validates cfg, loads the signing and trusted keys and prepares the
// stage. It does not contact the brokers until Run. A nil log discards,
// a nil reg keeps the metrics unexported.
func New(cfg Config, log *slog.Logger, reg prometheus.Registerer) (*Stage, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("adapter config: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if reg == nil {
		reg = prometheus.NewRegistry() // metrics kept, not exported
	}
	log = log.With("stage", "adapter")
	set := cfg.Adapter
	priv, err := schemas.LoadPrivateKey(set.SigningKey)
	if err != nil {
		return nil, fmt.Errorf("-adapter.signing-key: %w", err)
	}
	keys, err := schemas.LoadPublicKeys(set.TrustedKeys...)
	if err != nil {
		return nil, fmt.Errorf("-adapter.trusted-keys: %w", err)
	}
	pub := priv.Public().(ed25519.PublicKey)
	keyID := schemas.KeyID(pub)
	keys[keyID] = pub
	codecs, err := openCodecs(cfg.SchemaRegistry)
	if err != nil {
		return nil, fmt.Errorf("adapter: %w", err)
	}
	dialer, err := cfg.Dialer()
	if err != nil {
		return nil, fmt.Errorf("adapter: %w", err)
	}
	tr, err := cfg.Transport()
	if err != nil {
		return nil, fmt.Errorf("adapter: %w", err)
	}
	out, err := stream.NewProducer(cfg.Config, log, reg)
	if err != nil {
		return nil, fmt.Errorf("adapter: %w", err)
	}
	client := &kafka.Client{Addr: kafka.TCP(cfg.Brokers...), Transport: tr, Timeout: cfg.Timeout}
	topics := schemas.Topics{Prefix: cfg.TopicPrefix}
	s := &Stage{
		cfg:         cfg,
		set:         set,
		log:         log,
		met:         newMetrics(reg),
		codecs:      codecs,
		priv:        priv,
		keyID:       keyID,
		keys:        keys,
		specHash:    features.Default().Hash(),
		params:      paramsFrom(cfg),
		out:         out,
		lag:         stream.NewPartitionLag(cfg.Config, client, set.Group, log, reg),
		dialer:      dialer,
		client:      client,
		labelsTopic: topics.Labels(),
		scoresTopic: topics.Scores(),
		alertsTopic: topics.Alerts(),
		modelsTopic: topics.Models(),
		encoders:    map[int64]int64{},
		resumeSeen:  map[int]int64{},
		rate:        newRateLimiter(set.RateLimit),
	}
	s.join = newJoiner(set.Join, func(outcome string) { s.met.labels.WithLabelValues(outcome).Inc() })
	return s, nil
}

// Ready reports whether the stage has read the models topic up to where it
// stood at start and is reading its inputs.
func (s *Stage) Ready() bool { return s.ready.Load() }

// Version returns the version of the model the stage builds on, 0 before
// it has one.
func (s *Stage) Version() int64 { return s.version.Load() }

// input is one record read from an input topic.
type input struct {
	kind inputKind
	msg  kafka.Message
}

type inputKind int

const (
	fromLabels inputKind = iota
	fromScores
	fromAlerts
	fromModels
)

// Run reads the models topic up to its end, then the labels, scores and
// alerts from where the last adapter left them, fitting and publishing as
// labels come, until ctx is cancelled or publishing fails. On
// cancellation it commits how far it has dealt with the labels and returns
// nil. It returns an error only when an update could not be published:
// the labels behind it are then read again by the next adapter.
func (s *Stage) Run(ctx context.Context) error {
	if !s.started.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer s.ready.Store(false)
	defer s.out.Close()
	rctx, stopReaders := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stopReaders()

	in := make(chan input, 4096)
	if err := s.start(rctx, &wg, in); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	s.ready.Store(true)
	s.log.Info("adapter running", "model", s.set.Model, "model_version", s.version.Load(),
		"labels_resume", s.join.resume())

	sweep := time.NewTicker(max(min(s.set.Join.Window/4, time.Second), time.Millisecond))
	defer sweep.Stop()
	var fitTick <-chan time.Time
	if s.set.FitInterval > 0 {
		t := time.NewTicker(s.set.FitInterval)
		defer t.Stop()
		fitTick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			stopReaders()
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.Shutdown.Timeout)
			s.commitResume(dctx)
			cancel()
			s.log.Info("adapter stopped", "model_version", s.version.Load())
			return nil
		case it := <-in:
			s.handle(it)
			// Take what else has arrived, so that a label and its score
			// read together join before a fit is considered.
			for more := true; more; {
				select {
				case it := <-in:
					s.handle(it)
				default:
					more = false
				}
			}
			if err := s.maybeFit(ctx, "labels"); err != nil {
				return err
			}
		case <-sweep.C:
			s.join.expire(time.Now())
			s.gauges()
			s.commitResume(ctx)
		case <-fitTick:
			if err := s.maybeFit(ctx, "timer"); err != nil {
				return err
			}
		}
	}
}

// handle processes one input record. Bad records are counted, never
// fatal.
func (s *Stage) handle(it input) {
	if it.kind != fromModels {
		s.lag.Handed(it.msg)
	}
	switch it.kind {
	case fromLabels:
		s.handleLabel(&it.msg)
	case fromScores:
		s.handleScores(&it.msg)
	case fromAlerts:
		s.handleAlert(&it.msg)
	case fromModels:
		s.handleModel(&it.msg)
	}
}

// verdictPattern is what a verdict must look like: a class name short and
// plain enough for metric values, log keys and SIEM fields.
var verdictPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// classAnomaly is the class the scorer gives anomaly-only alerts; it is
// not a family an analyst can teach.
const classAnomaly = "anomaly"

func (s *Stage) handleLabel(msg *kafka.Message) {
	s.met.labelsRead.Inc()
	s.join.read(msg.Partition, msg.Offset)
	now := time.Now()
	recordNs := recordTime(msg, now)
	l, err := s.codecs.DecodeLabel(msg.Value)
	if err != nil {
		s.met.labels.WithLabelValues(outcomeMalformed).Inc()
		s.log.Debug("malformed label", "partition", msg.Partition, "offset", msg.Offset, "err", err)
		return
	}
	if !verdictPattern.MatchString(l.Verdict) || l.Verdict == classAnomaly {
		s.met.labels.WithLabelValues(outcomeInvalid).Inc()
		s.log.Debug("label with an unusable verdict", "partition", msg.Partition, "offset", msg.Offset, "verdict", l.Verdict)
		return
	}
	l.Verdict = s.canonical(l.Verdict)
	if !s.rate.allow(l.Analyst, recordNs) {
		s.met.labels.WithLabelValues(outcomeRateLimited).Inc()
		s.log.Debug("label over its analyst's rate limit", "analyst", l.Analyst, "partition", msg.Partition, "offset", msg.Offset)
		return
	}
	timeNs := l.TimeNs
	if timeNs == 0 {
		timeNs = recordNs
	}
	p := &pending{label: l, part: msg.Partition, offset: msg.Offset, readAt: now, timeNs: timeNs, recordNs: recordNs}
	if out := s.join.add(p); out != "" {
		s.met.labels.WithLabelValues(out).Inc()
	}
}

// canonical returns the class name a verdict means: an analyst who types
// "Benign" or "PortScan" means the class the model already has, not a new
// family.
func (s *Stage) canonical(verdict string) string {
	if strings.EqualFold(verdict, schemas.VerdictBenign) {
		return schemas.VerdictBenign
	}
	if s.cur != nil {
		for _, c := range s.cur.Classes() {
			if strings.EqualFold(verdict, c) {
				return c
			}
		}
	}
	return verdict
}

func (s *Stage) handleScores(msg *kafka.Message) {
	s.join.readScore(msg.Partition, msg.Offset)
	v, err := features.DecodeScores(msg.Value, memory.DefaultAllocator)
	if err != nil {
		s.met.scoreBatches.WithLabelValues("malformed").Inc()
		s.log.Debug("malformed scores record", "partition", msg.Partition, "offset", msg.Offset, "err", err)
		return
	}
	defer v.Release()
	if v.SpecHash() != s.specHash {
		s.met.scoreBatches.WithLabelValues("spec_mismatch").Inc()
		return
	}
	s.met.scoreBatches.WithLabelValues("ok").Inc()
	s.met.scoredFlows.Add(float64(v.Len()))
	thr := s.thresholds(v.Classes())
	pos := position{msg.Partition, msg.Offset}
	timeNs := recordTime(msg, time.Now())
	var host string
	for i := range v.Len() {
		// Consecutive rows are mostly one host's: share its string.
		if h := v.Host(i); h != host {
			host = strings.Clone(h)
		}
		s.join.addScore(v.FlowID(i), pos, timeNs, v.ModelVersion(i), alerted(v.Probs(i), thr), v.Embedding(i), host, v.TimeNs(i))
	}
}

// thresholds returns, for the scores' class order, each class's alerting
// threshold in the current model, 0 (never) for benign and classes it
// does not know.
func (s *Stage) thresholds(classes []string) []float32 {
	thr := make([]float32, len(classes))
	if s.cur == nil {
		return thr
	}
	for i, c := range classes {
		if k, ok := s.cur.ClassIndex(c); ok && c != schemas.VerdictBenign {
			thr[i] = s.cur.Thresholds[k]
		}
	}
	return thr
}

// alerted applies the scorer's rule: the most probable class with a
// threshold alerts if it reaches it.
func alerted(probs, thr []float32) bool {
	best := -1
	for k, p := range probs {
		if thr[k] > 0 && (best < 0 || p > probs[best]) {
			best = k
		}
	}
	return best >= 0 && probs[best] >= thr[best]
}

func (s *Stage) handleAlert(msg *kafka.Message) {
	s.join.readAlert(msg.Partition, msg.Offset)
	a, err := s.codecs.DecodeAlert(msg.Value)
	if err != nil {
		s.met.alerts.WithLabelValues("malformed").Inc()
		return
	}
	flow, err := schemas.ParseID(a.FlowID)
	if err != nil {
		s.met.alerts.WithLabelValues("malformed").Inc()
		return
	}
	s.met.alerts.WithLabelValues("ok").Inc()
	s.join.addAlert(a.AlertID, flow, position{msg.Partition, msg.Offset})
}

// recordTime returns the record's timestamp in ns, or now if the producer
// left it unset (kafka-go then sends 0).
func recordTime(msg *kafka.Message, now time.Time) int64 {
	if msg.Time.Unix() <= 0 {
		return now.UnixNano()
	}
	return msg.Time.UnixNano()
}

func (s *Stage) gauges() {
	s.met.heldLabels.Set(float64(s.join.held))
	s.met.heldScores.Set(float64(s.join.scores.n))
}
