package scorer

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/metaids/metaids/features"
	"github.com/metaids/metaids/model"
	"github.com/metaids/metaids/schemas"
	"github.com/metaids/metaids/stream"
)

var (
	// ErrModelRejected means a model update or model file did not pass
	// verification. The error is a *RejectError saying why; the model in
	// service, if any, keeps serving.
	ErrModelRejected = errors.New("model update rejected")

	// ErrNoModel means the stage was asked to score with no verified model
	// yet; Run waits for one before it joins the group.
	ErrNoModel = errors.New("no verified model")
)

// Results of a model update, the label values of
// metaids_scorer_model_updates_total: applied, or the reason for rejecting.
const (
	resultApplied      = "applied"
	reasonMalformed    = "malformed"     // the record is not a ModelUpdate
	reasonUnsigned     = "unsigned"      // no signature
	reasonUnknownKey   = "unknown_key"   // signed by a key not configured
	reasonBadSignature = "bad_signature" // the signature does not verify
	reasonStale        = "stale"         // version not above the one serving
	reasonSpec         = "spec_mismatch" // trained for another feature spec
	reasonShape        = "shape"         // dimensions or tensor shapes wrong
	reasonNonFinite    = "non_finite"    // a NaN or infinite number
	reasonNoBase       = "no_base"       // a head-only update with no model to apply it to
	reasonInvalid      = "invalid"       // anything else the model package refuses
)

var updateResults = []string{resultApplied, reasonMalformed, reasonUnsigned, reasonUnknownKey,
	reasonBadSignature, reasonStale, reasonSpec, reasonShape, reasonNonFinite, reasonNoBase, reasonInvalid}

// RejectError says why a model update was not applied.
type RejectError struct {
	// Reason is the bounded reason, also the metric's result label.
	Reason  string
	Name    string
	Version int64
	Err     error
}

func (e *RejectError) Error() string {
	return fmt.Sprintf("model %s v%d rejected (%s): %v", e.Name, e.Version, e.Reason, e.Err)
}

// Unwrap lets errors.Is find both ErrModelRejected and the cause.
func (e *RejectError) Unwrap() []error { return []error{ErrModelRejected, e.Err} }

// served is a verified model in service. Host states depend on the encoder
// that wrote them, so each served model carries the generation of its
// encoder: a head-only update keeps it and host states survive, while a
// model with a different encoder starts a new generation and the scorer
// resets every state before scoring with it.
type served struct {
	m       *model.Model
	encoder uint64
}

// verifier decides which model updates the stage may serve.
type verifier struct {
	name     string
	keys     map[string]ed25519.PublicKey
	specHash string
}

// accept verifies u and, if it passes, returns the model to serve instead
// of cur (which may be nil). An update must be signed by a trusted key,
// be for this build's feature spec, have the right shapes and finite
// numbers, and carry a version above cur's. A head-only update applies to
// cur's encoder.
func (vf *verifier) accept(u *schemas.ModelUpdate, cur *served) (*served, error) {
	reject := func(reason string, err error) (*served, error) {
		return nil, &RejectError{Reason: reason, Name: u.Name, Version: u.Version, Err: err}
	}
	if err := schemas.VerifyModelUpdate(u, vf.keys); err != nil {
		switch {
		case errors.Is(err, schemas.ErrUnsigned):
			return reject(reasonUnsigned, err)
		case errors.Is(err, schemas.ErrUnknownKey):
			return reject(reasonUnknownKey, err)
		case errors.Is(err, schemas.ErrBadSignature), errors.Is(err, schemas.ErrBadKey):
			return reject(reasonBadSignature, err)
		default:
			return reject(reasonInvalid, err)
		}
	}
	if u.Name != vf.name {
		return reject(reasonInvalid, fmt.Errorf("signed for model %q, this scorer serves %q", u.Name, vf.name))
	}
	if cur != nil && u.Version <= cur.m.Version {
		return reject(reasonStale, fmt.Errorf("version %d is not above %d, the one serving", u.Version, cur.m.Version))
	}
	if u.SpecHash != vf.specHash {
		return reject(reasonSpec, fmt.Errorf("%w: model for feature spec %q, this build computes %q", model.ErrSpecMismatch, u.SpecHash, vf.specHash))
	}
	if int(u.Features) != features.NumFeatures {
		return reject(reasonShape, fmt.Errorf("%w: %d features, this build computes %d", model.ErrShape, u.Features, features.NumFeatures))
	}
	var (
		m   *model.Model
		err error
	)
	switch u.Kind {
	case schemas.UpdateFull:
		m, err = model.FromUpdate(u, vf.specHash)
	case schemas.UpdateHead:
		if cur == nil {
			return reject(reasonNoBase, errors.New("head-only update with no model serving to apply it to"))
		}
		m, err = cur.m.ApplyHead(u)
	default:
		return reject(reasonInvalid, fmt.Errorf("unknown update kind %q", u.Kind))
	}
	if err != nil {
		switch {
		case errors.Is(err, model.ErrNonFinite):
			return reject(reasonNonFinite, err)
		case errors.Is(err, model.ErrShape):
			return reject(reasonShape, err)
		case errors.Is(err, model.ErrSpecMismatch):
			return reject(reasonSpec, err)
		default:
			return reject(reasonInvalid, err)
		}
	}
	next := &served{m: m, encoder: 1}
	if cur != nil {
		next.encoder = cur.encoder
		if u.Kind == schemas.UpdateFull && !sameEncoder(cur.m, m) {
			next.encoder++
		}
	}
	return next, nil
}

// sameEncoder reports whether a and b turn the same flows into the same
// states: equal shapes, normalisation and LSTM tensors. The predictor and
// classifier do not touch the state.
func sameEncoder(a, b *model.Model) bool {
	if a.Features() != b.Features() || a.Hidden() != b.Hidden() {
		return false
	}
	am, as := a.Norm()
	bm, bs := b.Norm()
	if !slices.Equal(am, bm) || !slices.Equal(as, bs) {
		return false
	}
	return slices.Equal(a.P.WeightIH, b.P.WeightIH) && slices.Equal(a.P.WeightHH, b.P.WeightHH) &&
		slices.Equal(a.P.BiasIH, b.P.BiasIH) && slices.Equal(a.P.BiasHH, b.P.BiasHH)
}

// loadModelFile reads a model update file (one Confluent-framed Avro
// ModelUpdate, the bytes `metaids train` publishes) and verifies it as if it
// had come from the topic.
func (vf *verifier) loadModelFile(codecs *schemas.Codecs, path string) (*served, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("-scorer.model.file: %w", err)
	}
	u, err := codecs.DecodeModelUpdate(b)
	if err != nil {
		return nil, fmt.Errorf("-scorer.model.file %s: %w", path, &RejectError{Reason: reasonMalformed, Err: err})
	}
	sv, err := vf.accept(&u, nil)
	if err != nil {
		return nil, fmt.Errorf("-scorer.model.file %s: %w", path, err)
	}
	return sv, nil
}

// watchModels follows every partition of the models topic from its start
// with plain partition readers (no group: every replica needs every
// update, and the compacted topic is the model's history), offering each
// update to the stage until ctx is done. Broker trouble is retried; it
// never stops the stage, which keeps serving the model it has.
func (s *Stage) watchModels(ctx context.Context) {
	dialer, err := s.cfg.Dialer()
	if err != nil { // Validate checked TLS and SASL; a file may have gone since
		s.log.Error("models topic: no dialer", "err", err)
		return
	}
	var parts []kafka.Partition
	for attempt := 0; ; attempt++ {
		parts, err = lookupPartitions(ctx, dialer, s.cfg.Brokers, s.modelsTopic)
		if err == nil && len(parts) > 0 {
			break
		}
		if err == nil {
			err = errors.New("topic has no partitions")
		}
		s.log.Warn("models topic unavailable, retrying", "topic", s.modelsTopic, "err", err)
		if !sleepCtx(ctx, backoff(attempt, s.cfg.RetryBackoff, s.cfg.RetryBackoffMax)) {
			return
		}
	}
	var wg sync.WaitGroup
	for _, p := range parts {
		wg.Go(func() { s.followModels(ctx, dialer, p.ID) })
	}
	wg.Wait()
}

// followModels reads one partition of the models topic from its first
// offset.
func (s *Stage) followModels(ctx context.Context, dialer *kafka.Dialer, partition int) {
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:        s.cfg.Brokers,
		Topic:          s.modelsTopic,
		Partition:      partition,
		Dialer:         dialer,
		MinBytes:       s.cfg.Reader.MinBytes,
		MaxBytes:       s.cfg.Reader.MaxBytes,
		MaxWait:        s.cfg.Reader.MaxWait,
		ReadBackoffMin: s.cfg.RetryBackoff,
		ReadBackoffMax: s.cfg.RetryBackoffMax,
		Logger:         stream.Logger(s.log),
		ErrorLogger:    stream.ErrorLogger(s.log),
	})
	defer r.Close()
	if err := r.SetOffset(kafka.FirstOffset); err != nil {
		s.log.Error("models topic: set offset", "partition", partition, "err", err)
		return
	}
	for {
		msg, err := r.ReadMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			s.log.Warn("models topic: read failed, retrying", "partition", partition, "err", err)
			if !sleepCtx(ctx, s.cfg.RetryBackoff) {
				return
			}
			continue
		}
		s.offerRecord(&msg)
	}
}

// offerRecord decodes one record of the models topic and offers it.
// Records of other models and tombstones are not updates for this scorer.
func (s *Stage) offerRecord(msg *kafka.Message) {
	if msg.Value == nil {
		return
	}
	src := fmt.Sprintf("%s/%d@%d", msg.Topic, msg.Partition, msg.Offset)
	u, err := s.codecs.DecodeModelUpdate(msg.Value)
	if err != nil {
		s.met.modelUpdates.WithLabelValues(reasonMalformed).Inc()
		s.log.Warn("model update rejected", "reason", reasonMalformed, "source", src, "err", err)
		return
	}
	if u.Name != s.set.Model.Name {
		s.log.Debug("model update for another model", "model", u.Name, "source", src)
		return
	}
	_ = s.offer(&u, src) // offer logs and counts a rejection
}

// lookupPartitions asks the brokers, one after another, for topic's
// partitions.
func lookupPartitions(ctx context.Context, d *kafka.Dialer, brokers []string, topic string) ([]kafka.Partition, error) {
	var errs []error
	for _, b := range brokers {
		parts, err := d.LookupPartitions(ctx, "tcp", b, topic)
		if err == nil {
			return parts, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

// backoff is the wait before retry attempt (0-based): base doubling up to
// limit.
func backoff(attempt int, base, limit time.Duration) time.Duration {
	d := base
	for range min(attempt, 30) {
		d *= 2
		if d >= limit {
			return limit
		}
	}
	return min(d, limit)
}

// sleepCtx waits for d or until ctx is done, reporting whether it slept
// the whole time.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
