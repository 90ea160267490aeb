package schemas

import (
	"fmt"
	"math"

	"github.com/linkedin/goavro/v2"
)

// Alert severities, the symbols of the Avro Severity enum.
const (
	SeverityLow      = "low"
	SeverityMedium   = "medium"
	SeverityHigh     = "high"
	SeverityCritical = "critical"
)

// Action kinds, the symbols of the Avro ActionKind enum.
const (
	ActionBlock     = "block"
	ActionRateLimit = "rate_limit"
)

// AppendAlert appends a, Confluent-framed, to dst. Severity must be one of
// the Severity constants.
func (c *Codecs) AppendAlert(dst []byte, a *Alert) ([]byte, error) {
	if err := validateAlert(a); err != nil {
		return dst, fmt.Errorf("encode %s: %w", c.alert.subject, err)
	}
	expl := make([]any, len(a.Explanation))
	for i, e := range a.Explanation {
		expl[i] = map[string]any{"feature": e.Feature, "value": e.Value}
	}
	return c.encode(c.alert, dst, map[string]any{
		"alert_id":      a.AlertID,
		"flow_id":       a.FlowID,
		"host":          a.Host,
		"peer":          a.Peer,
		"src_port":      a.SrcPort,
		"dst_port":      a.DstPort,
		"proto":         a.Proto,
		"class":         a.Class,
		"probability":   a.Probability,
		"anomaly_score": a.AnomalyScore,
		"severity":      a.Severity,
		"first_ns":      a.FirstNs,
		"last_ns":       a.LastNs,
		"count":         a.Count,
		"model_version": a.ModelVersion,
		"explanation":   expl,
	})
}

func validateAlert(a *Alert) error {
	if err := checkRange("src_port", int64(a.SrcPort), 0, math.MaxUint16); err != nil {
		return err
	}
	if err := checkRange("dst_port", int64(a.DstPort), 0, math.MaxUint16); err != nil {
		return err
	}
	if err := checkRange("proto", int64(a.Proto), 0, math.MaxUint8); err != nil {
		return err
	}
	if a.Count < 0 {
		return fmt.Errorf("%w: count %d is negative", ErrInvalid, a.Count)
	}
	switch a.Severity {
	case SeverityLow, SeverityMedium, SeverityHigh, SeverityCritical:
		return nil
	}
	return fmt.Errorf("%w: severity %q is not low, medium, high or critical", ErrInvalid, a.Severity)
}

// DecodeAlert decodes a Confluent-framed Alert.
func (c *Codecs) DecodeAlert(b []byte) (Alert, error) {
	a, err := c.decodeAlert(b)
	if err != nil {
		return Alert{}, fmt.Errorf("decode %s: %w", c.alert.subject, err)
	}
	return a, nil
}

func (c *Codecs) decodeAlert(b []byte) (Alert, error) {
	r, err := c.decode(c.alert, b)
	if err != nil {
		return Alert{}, err
	}
	a := Alert{
		AlertID:      r.str("alert_id"),
		FlowID:       r.str("flow_id"),
		Host:         r.str("host"),
		Peer:         r.str("peer"),
		SrcPort:      r.int("src_port"),
		DstPort:      r.int("dst_port"),
		Proto:        r.int("proto"),
		Class:        r.str("class"),
		Probability:  r.float("probability"),
		AnomalyScore: r.float("anomaly_score"),
		Severity:     r.str("severity"),
		FirstNs:      r.long("first_ns"),
		LastNs:       r.long("last_ns"),
		Count:        r.long("count"),
		ModelVersion: r.long("model_version"),
	}
	for _, it := range r.array("explanation") {
		e := r.sub("explanation", it)
		a.Explanation = append(a.Explanation, Contribution{Feature: e.str("feature"), Value: e.float("value")})
		r.join(e)
	}
	if r.err != nil {
		return Alert{}, r.err
	}
	if err := validateAlert(&a); err != nil {
		return Alert{}, err
	}
	return a, nil
}

// AppendLabel appends l, Confluent-framed, to dst. TargetID and Verdict must
// not be empty, and TargetKind must be TargetFlow or TargetAlert.
func (c *Codecs) AppendLabel(dst []byte, l *Label) ([]byte, error) {
	if err := validateLabel(l); err != nil {
		return dst, fmt.Errorf("encode %s: %w", c.label.subject, err)
	}
	return c.encode(c.label, dst, map[string]any{
		"target_id":   l.TargetID,
		"target_kind": string(l.TargetKind),
		"verdict":     l.Verdict,
		"analyst":     l.Analyst,
		"reason":      l.Reason,
		"time_ns":     l.TimeNs,
	})
}

func validateLabel(l *Label) error {
	switch {
	case l.TargetID == "":
		return fmt.Errorf("%w: target_id is empty", ErrInvalid)
	case l.Verdict == "":
		return fmt.Errorf("%w: verdict is empty", ErrInvalid)
	case l.TargetKind != TargetFlow && l.TargetKind != TargetAlert:
		return fmt.Errorf("%w: target_kind %q is not FLOW or ALERT", ErrInvalid, l.TargetKind)
	}
	return nil
}

// DecodeLabel decodes a label in either form the labels topic carries: a
// Confluent-framed Avro Label (first byte 0) or a JSON object (first
// non-space byte '{'), as analysts' tools and SOAR playbooks write them. Any
// other first byte is ErrBadMagic.
func (c *Codecs) DecodeLabel(b []byte) (Label, error) {
	if looksJSON(b) {
		return ParseLabelJSON(b)
	}
	l, err := c.decodeLabel(b)
	if err != nil {
		return Label{}, fmt.Errorf("decode %s: %w", c.label.subject, err)
	}
	return l, nil
}

func (c *Codecs) decodeLabel(b []byte) (Label, error) {
	r, err := c.decode(c.label, b)
	if err != nil {
		return Label{}, err
	}
	l := Label{
		TargetID:   r.str("target_id"),
		TargetKind: TargetKind(r.str("target_kind")),
		Verdict:    r.str("verdict"),
		Analyst:    r.str("analyst"),
		Reason:     r.str("reason"),
		TimeNs:     r.long("time_ns"),
	}
	if r.err != nil {
		return Label{}, r.err
	}
	if err := validateLabel(&l); err != nil {
		return Label{}, err
	}
	return l, nil
}

// AppendAction appends a, Confluent-framed, to dst. Kind must be ActionBlock
// or ActionRateLimit.
func (c *Codecs) AppendAction(dst []byte, a *Action) ([]byte, error) {
	if err := validateAction(a); err != nil {
		return dst, fmt.Errorf("encode %s: %w", c.action.subject, err)
	}
	return c.encode(c.action, dst, map[string]any{
		"action_id":     a.ActionID,
		"host":          a.Host,
		"kind":          a.Kind,
		"reason":        a.Reason,
		"duration_sec":  a.DurationSec,
		"alert_ids":     stringsNative(a.AlertIDs),
		"time_ns":       a.TimeNs,
		"withdrawn":     a.Withdrawn,
		"model_version": a.ModelVersion,
	})
}

func validateAction(a *Action) error {
	if a.Kind != ActionBlock && a.Kind != ActionRateLimit {
		return fmt.Errorf("%w: kind %q is not block or rate_limit", ErrInvalid, a.Kind)
	}
	if a.DurationSec < 0 {
		return fmt.Errorf("%w: duration_sec %d is negative", ErrInvalid, a.DurationSec)
	}
	return nil
}

// DecodeAction decodes a Confluent-framed Action.
func (c *Codecs) DecodeAction(b []byte) (Action, error) {
	a, err := c.decodeAction(b)
	if err != nil {
		return Action{}, fmt.Errorf("decode %s: %w", c.action.subject, err)
	}
	return a, nil
}

func (c *Codecs) decodeAction(b []byte) (Action, error) {
	r, err := c.decode(c.action, b)
	if err != nil {
		return Action{}, err
	}
	a := Action{
		ActionID:     r.str("action_id"),
		Host:         r.str("host"),
		Kind:         r.str("kind"),
		Reason:       r.str("reason"),
		DurationSec:  r.long("duration_sec"),
		AlertIDs:     r.strings("alert_ids"),
		TimeNs:       r.long("time_ns"),
		Withdrawn:    r.boolean("withdrawn"),
		ModelVersion: r.long("model_version"),
	}
	if r.err != nil {
		return Action{}, r.err
	}
	if err := validateAction(&a); err != nil {
		return Action{}, err
	}
	return a, nil
}

// AppendDeadLetter appends d, Confluent-framed, to dst. A nil Key or Value
// travels as null and an empty one as empty bytes, so a null Kafka key or a
// tombstone survives the round trip.
func (c *Codecs) AppendDeadLetter(dst []byte, d *DeadLetter) ([]byte, error) {
	var key, value any
	if d.Key != nil {
		key = goavro.Union("bytes", d.Key)
	}
	if d.Value != nil {
		value = goavro.Union("bytes", d.Value)
	}
	return c.encode(c.dead, dst, map[string]any{
		"reason":    d.Reason,
		"error":     d.Error,
		"stage":     d.Stage,
		"topic":     d.Topic,
		"partition": d.Partition,
		"offset":    d.Offset,
		"key":       key,
		"value":     value,
		"time_ns":   d.TimeNs,
	})
}

// DecodeDeadLetter decodes a Confluent-framed DeadLetter. Key and Value are
// copies, not views into b.
func (c *Codecs) DecodeDeadLetter(b []byte) (DeadLetter, error) {
	d, err := c.decodeDeadLetter(b)
	if err != nil {
		return DeadLetter{}, fmt.Errorf("decode %s: %w", c.dead.subject, err)
	}
	return d, nil
}

func (c *Codecs) decodeDeadLetter(b []byte) (DeadLetter, error) {
	r, err := c.decode(c.dead, b)
	if err != nil {
		return DeadLetter{}, err
	}
	d := DeadLetter{
		Reason:    r.str("reason"),
		Error:     r.str("error"),
		Stage:     r.str("stage"),
		Topic:     r.str("topic"),
		Partition: r.int("partition"),
		Offset:    r.long("offset"),
		TimeNs:    r.long("time_ns"),
	}
	if v, set := r.optional("key", "bytes"); set {
		d.Key = copyBytes(v)
	}
	if v, set := r.optional("value", "bytes"); set {
		d.Value = copyBytes(v)
	}
	if r.err != nil {
		return DeadLetter{}, r.err
	}
	return d, nil
}

// copyBytes copies a decoded bytes value, keeping empty distinct from nil.
func copyBytes(v any) []byte {
	b, _ := v.([]byte)
	return append([]byte{}, b...)
}
