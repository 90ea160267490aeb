package ingest

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/metaids/metaids/schemas"
)

// ValidatorConfig configures Validator.
type ValidatorConfig struct {
	// MaxAge is how far a flow's end may lie behind the reference time: now,
	// or in Replay mode the latest flow end seen on the same topic
	// partition. It bounds consumer lag too, so it should cover the input
	// topics' retention. Default: 168h (Kafka's default retention).
	MaxAge time.Duration `yaml:"max-age"`
	// MaxFuture is how far a flow's end may lie ahead of now, in both modes,
	// for exporter clock skew. It catches exporters whose clock or uptime
	// arithmetic is off, such as softflowd's NetFlow v9 without -a, whose
	// flows land about 49.7 days ahead. Default: 10m.
	MaxFuture time.Duration `yaml:"max-future"`
	// Replay judges age against each partition's own latest flow instead of
	// the wall clock, so that replayed datasets (CIC-IDS2017's July 2017)
	// are accepted while outliers within them are not. Default: false.
	Replay bool `yaml:"replay"`
}

// DefaultValidatorConfig returns the defaults documented on ValidatorConfig.
func DefaultValidatorConfig() ValidatorConfig {
	return ValidatorConfig{MaxAge: 7 * 24 * time.Hour, MaxFuture: 10 * time.Minute}
}

// Validate reports every problem with the configuration.
func (c ValidatorConfig) Validate() error {
	var errs []error
	if c.MaxAge <= 0 {
		errs = append(errs, fmt.Errorf("-ingest.max-age: must be positive, got %s", c.MaxAge))
	}
	if c.MaxFuture < 0 {
		errs = append(errs, fmt.Errorf("-ingest.max-future: must not be negative, got %s", c.MaxFuture))
	}
	return errors.Join(errs...)
}

// minFlowTime is earlier than any flow a real exporter reports (NetFlow
// itself dates from 1996): a time before it is a zero or an uptime offset
// taken for an epoch time, whatever the mode.
var minFlowTime = time.Date(1990, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()

// Validator checks decoded flows for what the decoders cannot see in one
// field: both addresses set, end not before start, and times inside the
// window of ValidatorConfig. Decoders have already rejected what they parse
// (ports outside 0–65535, negative or fractional counters, missing required
// fields, malformed addresses). It is safe for concurrent use.
type Validator struct {
	cfg ValidatorConfig
	now func() time.Time

	mu     sync.Mutex
	latest map[streamKey]int64 // Replay: latest flow end per partition
}

// NewValidator returns a Validator. now is the clock; nil means time.Now.
func NewValidator(cfg ValidatorConfig, now func() time.Time) (*Validator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("ingest validator config: %w", err)
	}
	if now == nil {
		now = time.Now
	}
	return &Validator{cfg: cfg, now: now, latest: make(map[streamKey]int64)}, nil
}

// Check validates the flows decoded from one record and returns a
// *RecordError for the first that fails: a record is dead-lettered whole, as
// it was decoded whole. In Replay mode an accepted record advances its
// partition's reference time.
func (v *Validator) Check(flows []schemas.Flow) error {
	if len(flows) == 0 {
		return nil
	}
	now := v.now().UnixNano()
	maxEnd := now + int64(v.cfg.MaxFuture)
	var key streamKey
	if v.cfg.Replay {
		key = streamKey{flows[0].Source.Topic, flows[0].Source.Partition}
		v.mu.Lock()
		defer v.mu.Unlock()
	}
	ref, haveRef := now, true
	if v.cfg.Replay {
		ref, haveRef = v.latest[key]
	}
	minEnd := ref - int64(v.cfg.MaxAge)
	latest := ref
	for i := range flows {
		f := &flows[i]
		switch {
		case !f.SrcAddr.IsValid():
			return recErr(ReasonBadAddress, "src", fmt.Errorf("flow %d: %w", i, errEmptyAddr))
		case !f.DstAddr.IsValid():
			return recErr(ReasonBadAddress, "dst", fmt.Errorf("flow %d: %w", i, errEmptyAddr))
		case f.EndNs < f.StartNs:
			return recErr(ReasonEndBeforeStart, "", fmt.Errorf("flow %d: end %s before start %s",
				i, fmtNs(f.EndNs), fmtNs(f.StartNs)))
		case f.StartNs < minFlowTime:
			return recErr(ReasonTimeOutOfWindow, "", fmt.Errorf("flow %d: start %s before 1990", i, fmtNs(f.StartNs)))
		case f.EndNs > maxEnd:
			return recErr(ReasonTimeOutOfWindow, "", fmt.Errorf("flow %d: end %s more than %s after now %s",
				i, fmtNs(f.EndNs), v.cfg.MaxFuture, fmtNs(now)))
		case haveRef && f.EndNs < minEnd:
			what := "now"
			if v.cfg.Replay {
				what = "the partition's latest flow"
			}
			return recErr(ReasonTimeOutOfWindow, "", fmt.Errorf("flow %d: end %s more than %s before %s %s",
				i, fmtNs(f.EndNs), v.cfg.MaxAge, what, fmtNs(ref)))
		}
		// Flows are judged against the reference the record arrived with,
		// not against each other: one record may span a long interval.
		if f.EndNs > latest {
			latest = f.EndNs
		}
	}
	if v.cfg.Replay {
		v.latest[key] = latest
	}
	return nil
}

// refPrefix starts the committed form of a partition's replay reference
// (see SaveReference).
const refPrefix = "replay_ref_ns="

// SaveReference returns partition's replay reference time in the form
// LoadReference reads, "" if it has none or the Validator is not in Replay
// mode. Ingest commits it with the partition's offset.
func (v *Validator) SaveReference(topic string, partition int) string {
	if !v.cfg.Replay {
		return ""
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	ref, ok := v.latest[streamKey{topic, int32(partition)}]
	if !ok {
		return ""
	}
	return refPrefix + strconv.FormatInt(ref, 10)
}

// LoadReference sets partition's replay reference time from saved, a
// SaveReference result; "" or anything it cannot read leaves the
// partition without one, as a partition nobody has read from is.
func (v *Validator) LoadReference(topic string, partition int, saved string) {
	if !v.cfg.Replay {
		return
	}
	key := streamKey{topic, int32(partition)}
	v.mu.Lock()
	defer v.mu.Unlock()
	delete(v.latest, key)
	if rest, ok := strings.CutPrefix(saved, refPrefix); ok {
		if ref, err := strconv.ParseInt(rest, 10, 64); err == nil {
			v.latest[key] = ref
		}
	}
}

func fmtNs(ns int64) string { return time.Unix(0, ns).UTC().Format(time.RFC3339Nano) }
