package ingest

import (
	"errors"
	"fmt"
)

// Reason is why a record was dead-lettered. It is a small fixed set because it
// becomes the DLQ record's reason and a metric label.
type Reason string

// Dead-letter reasons.
const (
	// ReasonMalformed: the record is not valid in its format (bad JSON, a
	// number that does not parse, a truncated line, an unknown protocol name).
	ReasonMalformed Reason = "malformed"
	// ReasonMissingField: a field every flow needs (addresses, start time,
	// protocol) is absent or unset.
	ReasonMissingField Reason = "missing_field"
	// ReasonBadAddress: an address is empty or does not parse as IPv4/IPv6.
	ReasonBadAddress Reason = "bad_address"
	// ReasonBadPort: a port is outside 0–65535 or not an integer.
	ReasonBadPort Reason = "bad_port"
	// ReasonBadCounter: a byte, packet or flag counter is negative, fractional
	// or overflows.
	ReasonBadCounter Reason = "bad_counter"
	// ReasonEndBeforeStart: the flow ends before it starts.
	ReasonEndBeforeStart Reason = "end_before_start"
	// ReasonTimeOutOfWindow: the flow's time is outside the accepted window
	// (see ValidatorConfig).
	ReasonTimeOutOfWindow Reason = "time_out_of_window"
	// ReasonTooLarge: the record exceeds DecoderConfig.MaxRecordBytes and was
	// not parsed.
	ReasonTooLarge Reason = "too_large"
	// ReasonNoHeader: a row whose column layout comes from a header line
	// (CICFlowMeter CSV, custom VPC formats) arrived before any header on its
	// stream.
	ReasonNoHeader Reason = "no_header"
	// ReasonUnknownFormat: the auto decoder could not recognise the record.
	ReasonUnknownFormat Reason = "unknown_format"
	// ReasonBadSchema: an Avro record's framing or schema id is not the Flow
	// schema, or its body does not decode against it.
	ReasonBadSchema Reason = "bad_schema"
	// ReasonInternal: a bug in ingest (a recovered panic). The stage sets it;
	// decoders never return it.
	ReasonInternal Reason = "internal"
)

// Reasons lists every dead-letter reason, so the stage can pre-create its
// metric series and an unused reason still shows as zero.
func Reasons() []Reason {
	return []Reason{
		ReasonMalformed, ReasonMissingField, ReasonBadAddress, ReasonBadPort,
		ReasonBadCounter, ReasonEndBeforeStart, ReasonTimeOutOfWindow,
		ReasonTooLarge, ReasonNoHeader, ReasonUnknownFormat, ReasonBadSchema,
		ReasonInternal,
	}
}

// Sentinel causes wrapped by a RecordError, for errors.Is.
var (
	// ErrUnknownFormat is returned by NewDecoders for a format name it does
	// not know, and wrapped by the auto decoder's unknown_format errors.
	ErrUnknownFormat = errors.New("unknown format")
	// ErrTooLarge is the cause of every too_large RecordError.
	ErrTooLarge = errors.New("record too large")
	// ErrSyntax is the cause of malformed JSON, CSV or TSV.
	ErrSyntax = errors.New("syntax error")
	// ErrMissing is the cause of every missing_field RecordError.
	ErrMissing = errors.New("required field missing")
	// ErrRange is the cause of values outside their field's range.
	ErrRange = errors.New("value out of range")
	// ErrNoHeader is the cause of every no_header RecordError.
	ErrNoHeader = errors.New("no header seen on this stream")
)

// RecordError is a record-level failure: the record is dead-lettered with
// Reason and counted; the stage goes on with the next record.
type RecordError struct {
	Reason Reason
	// Field names the offending field in the format's own spelling, when one
	// is to blame.
	Field string
	// Line is the 1-based line of a multi-line record (a TSV or CSV chunk)
	// that failed, or 0.
	Line int
	Err  error
}

func (e *RecordError) Error() string {
	msg := "ingest " + string(e.Reason)
	if e.Line > 0 {
		msg += fmt.Sprintf(": line %d", e.Line)
	}
	if e.Field != "" {
		msg += ": field " + e.Field
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap returns the cause.
func (e *RecordError) Unwrap() error { return e.Err }

func recErr(r Reason, field string, err error) *RecordError {
	return &RecordError{Reason: r, Field: field, Err: err}
}

// SkipReason says why a record carried no flow. Like Reason it is a metric
// label, so the set is small and fixed.
type SkipReason string

// Skip reasons.
const (
	// SkipHeader: header or metadata lines only (Zeek #fields, a VPC or
	// CICFlowMeter header row). They set per-stream state.
	SkipHeader SkipReason = "header"
	// SkipNonFlow: an event that is not a flow (Suricata alert/dns/…, a
	// pmacct purge_init marker, a Zeek log other than conn).
	SkipNonFlow SkipReason = "non_flow"
	// SkipNoData: AWS VPC NODATA/SKIPDATA records, which report that nothing
	// (or not everything) was captured in an interval.
	SkipNoData SkipReason = "no_data"
	// SkipEmpty: an empty or whitespace-only record (a tombstone, a blank line
	// from a tailer).
	SkipEmpty SkipReason = "empty"
)

// SkipReasons lists every skip reason.
func SkipReasons() []SkipReason {
	return []SkipReason{SkipHeader, SkipNonFlow, SkipNoData, SkipEmpty}
}

// Skip is returned by Decode for a record that was understood but holds no
// flow. It is neither ok nor a dead letter: the stage counts it as skipped,
// so that records in = ok + dead-lettered + skipped.
type Skip struct {
	Reason SkipReason
}

func (s *Skip) Error() string { return "ingest skipped: " + string(s.Reason) }

// One value per reason: skips are common (every Suricata non-flow event) and
// should not allocate. They are never modified.
var (
	skipHeader  = &Skip{Reason: SkipHeader}
	skipNonFlow = &Skip{Reason: SkipNonFlow}
	skipNoData  = &Skip{Reason: SkipNoData}
	skipEmpty   = &Skip{Reason: SkipEmpty}
)

// Outcome classifies the error returned by Decode or Validator.Check for the
// stage's records counter: "ok", "skipped" or "dead_lettered", with the skip
// or dead-letter reason. An error that is neither a *Skip nor a *RecordError
// (which decoders never return) is reported as internal.
func Outcome(err error) (outcome, reason string) {
	if err == nil {
		return "ok", ""
	}
	var sk *Skip
	if errors.As(err, &sk) {
		return "skipped", string(sk.Reason)
	}
	var re *RecordError
	if errors.As(err, &re) {
		return "dead_lettered", string(re.Reason)
	}
	return "dead_lettered", string(ReasonInternal)
}
