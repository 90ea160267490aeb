package adapter

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/metaids/metaids/schemas"
)

// Label file formats for ReadLabels.
const (
	FormatCSV  = "csv"
	FormatJSON = "json"
)

// maxLabelFile bounds what ReadLabels reads: a label file is typed or
// exported by people, never this large.
const maxLabelFile = 64 << 20

// FlowLabel returns a label on the flow with the given id. TimeNs is left 0
// for SendLabels to fill in.
func FlowLabel(flowID uint64, verdict, analyst, reason string) schemas.Label {
	return schemas.Label{TargetID: schemas.FormatID(flowID), TargetKind: schemas.TargetFlow, Verdict: verdict, Analyst: analyst, Reason: reason}
}

// AlertLabel returns a label on the alert with the given id: the adapter
// applies it to the flow that opened the alert.
func AlertLabel(alertID, verdict, analyst, reason string) schemas.Label {
	return schemas.Label{TargetID: alertID, TargetKind: schemas.TargetAlert, Verdict: verdict, Analyst: analyst, Reason: reason}
}

// ReadLabels parses a file of labels, for `metaids label -file`.
//
// FormatCSV: a header row, then one label per row. The header names the
// columns in any order: target_id and verdict are required; target_kind
// (FLOW or ALERT, in any case; default FLOW), analyst, reason and time_ns
// are optional. Other columns are ignored, so a spreadsheet export works.
//
// FormatJSON: either a JSON array of label objects or one object per line,
// each in the form schemas.ParseLabelJSON reads.
//
// Every label is checked as the adapter will check it; the error names the
// line or item at fault and wraps ErrLabelFile.
func ReadLabels(r io.Reader, format string) ([]schemas.Label, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxLabelFile+1))
	if err != nil {
		return nil, fmt.Errorf("read labels: %w", err)
	}
	if len(b) > maxLabelFile {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrLabelFile, maxLabelFile)
	}
	switch format {
	case FormatCSV:
		return readCSV(b)
	case FormatJSON:
		return readJSON(b)
	}
	return nil, fmt.Errorf("%w %q: want %s or %s", ErrUnknownFormat, format, FormatCSV, FormatJSON)
}

func readCSV(b []byte) ([]schemas.Label, error) {
	cr := csv.NewReader(bytes.NewReader(b))
	cr.TrimLeadingSpace = true
	cr.Comment = '#'
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: header: %w", ErrLabelFile, err)
	}
	col := map[string]int{}
	for i, h := range header {
		col[strings.ToLower(strings.TrimSpace(h))] = i
	}
	for _, req := range []string{"target_id", "verdict"} {
		if _, ok := col[req]; !ok {
			return nil, fmt.Errorf("%w: header has no %s column", ErrLabelFile, req)
		}
	}
	var out []schemas.Label
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrLabelFile, err)
		}
		line, _ := cr.FieldPos(0)
		field := func(name string) string {
			if i, ok := col[name]; ok {
				return strings.TrimSpace(rec[i])
			}
			return ""
		}
		l := schemas.Label{
			TargetID:   field("target_id"),
			TargetKind: schemas.TargetKind(strings.ToUpper(field("target_kind"))),
			Verdict:    field("verdict"),
			Analyst:    field("analyst"),
			Reason:     field("reason"),
		}
		if l.TargetKind == "" {
			l.TargetKind = schemas.TargetFlow
		}
		if t := field("time_ns"); t != "" {
			if l.TimeNs, err = strconv.ParseInt(t, 10, 64); err != nil {
				return nil, fmt.Errorf("%w: line %d: time_ns %q is not an integer", ErrLabelFile, line, t)
			}
		}
		if err := checkLabel(&l); err != nil {
			return nil, fmt.Errorf("%w: line %d: %w", ErrLabelFile, line, err)
		}
		out = append(out, l)
	}
}

func readJSON(b []byte) ([]schemas.Label, error) {
	trimmed := bytes.TrimSpace(b)
	var out []schemas.Label
	if len(trimmed) > 0 && trimmed[0] == '[' {
		var items []json.RawMessage
		if err := json.Unmarshal(trimmed, &items); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrLabelFile, err)
		}
		for i, it := range items {
			l, err := schemas.ParseLabelJSON(it)
			if err == nil {
				err = checkLabel(&l)
			}
			if err != nil {
				return nil, fmt.Errorf("%w: item %d: %w", ErrLabelFile, i, err)
			}
			out = append(out, l)
		}
		return out, nil
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, maxLabelFile)
	for line := 1; sc.Scan(); line++ {
		text := bytes.TrimSpace(sc.Bytes())
		if len(text) == 0 {
			continue
		}
		l, err := schemas.ParseLabelJSON(text)
		if err == nil {
			err = checkLabel(&l)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: line %d: %w", ErrLabelFile, line, err)
		}
		out = append(out, l)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrLabelFile, err)
	}
	return out, nil
}

// checkLabel applies the adapter's own checks, so that `metaids label`
// refuses at once what the adapter would only count as invalid.
func checkLabel(l *schemas.Label) error {
	switch {
	case l.TargetID == "":
		return errors.New("target_id is empty")
	case l.TargetKind != schemas.TargetFlow && l.TargetKind != schemas.TargetAlert:
		return fmt.Errorf("target_kind %q is not FLOW or ALERT", l.TargetKind)
	case !verdictPattern.MatchString(l.Verdict) || l.Verdict == classAnomaly:
		return fmt.Errorf("verdict %q: want %q or a family name of letters, digits, '.', '_' and '-' (at most 64), not %q",
			l.Verdict, schemas.VerdictBenign, classAnomaly)
	}
	if l.TargetKind == schemas.TargetFlow {
		if _, err := schemas.ParseID(l.TargetID); err != nil {
			return err
		}
	}
	return nil
}

// Producer is what SendLabels writes with; *stream.Producer is one.
type Producer interface {
	Produce(ctx context.Context, msgs ...kafka.Message) error
}

// SendLabels writes labels to topic as Confluent-framed Avro, keyed by
// target id, and returns once the brokers have acknowledged them all. A
// label without a time gets the time of sending, which decides between
// conflicting labels on one flow.
func SendLabels(ctx context.Context, p Producer, topic string, labels []schemas.Label) error {
	codecs, err := schemas.NewCodecs(nil)
	if err != nil {
		return fmt.Errorf("send labels: %w", err)
	}
	now := time.Now()
	msgs := make([]kafka.Message, 0, len(labels))
	for i := range labels {
		l := labels[i]
		if err := checkLabel(&l); err != nil {
			return fmt.Errorf("send labels: label %d: %w", i, err)
		}
		if l.TimeNs == 0 {
			l.TimeNs = now.UnixNano()
		}
		val, err := codecs.AppendLabel(nil, &l)
		if err != nil {
			return fmt.Errorf("send labels: label %d: %w", i, err)
		}
		msgs = append(msgs, kafka.Message{Topic: topic, Key: []byte(l.TargetID), Value: val, Time: now})
	}
	if err := p.Produce(ctx, msgs...); err != nil {
		return fmt.Errorf("send labels: %w", err)
	}
	return nil
}
