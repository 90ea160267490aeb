package schemas

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// labelJSON is the JSON form of a Label. Pointers tell a missing field from
// a zero one, so a label without a verdict is rejected rather than read as
// an empty verdict.
type labelJSON struct {
	TargetID   *string `json:"target_id"`
	TargetKind *string `json:"target_kind"`
	Verdict    *string `json:"verdict"`
	Analyst    string  `json:"analyst,omitempty"`
	Reason     string  `json:"reason,omitempty"`
	TimeNs     int64   `json:"time_ns,omitempty"`
}

// looksJSON reports whether b starts, after white space, with '{'. Neither
// byte can begin a Confluent frame, whose first byte is 0.
func looksJSON(b []byte) bool {
	b = bytes.TrimLeft(b, " \t\r\n")
	return len(b) > 0 && b[0] == '{'
}

// ParseLabelJSON parses one label written as JSON:
//
//	{"target_id": "…", "target_kind": "FLOW", "verdict": "benign",
//	 "analyst": "…", "reason": "…", "time_ns": 1700000000000000000}
//
// target_id, target_kind (FLOW or ALERT) and verdict are required and must
// not be empty; analyst, reason and time_ns may be left out. Unknown fields
// are ignored, because SOAR tools add their own (ticket ids and the like).
func ParseLabelJSON(b []byte) (Label, error) {
	l, err := parseLabelJSON(b)
	if err != nil {
		return Label{}, fmt.Errorf("decode json label: %w", err)
	}
	return l, nil
}

func parseLabelJSON(b []byte) (Label, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	var j labelJSON
	if err := dec.Decode(&j); err != nil {
		return Label{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Label{}, fmt.Errorf("%w: data after the label object", ErrMalformed)
	}
	for _, req := range [...]struct {
		name string
		v    *string
	}{{"target_id", j.TargetID}, {"target_kind", j.TargetKind}, {"verdict", j.Verdict}} {
		if req.v == nil {
			return Label{}, fmt.Errorf("%w: %s missing", ErrInvalid, req.name)
		}
	}
	l := Label{
		TargetID:   *j.TargetID,
		TargetKind: TargetKind(*j.TargetKind),
		Verdict:    *j.Verdict,
		Analyst:    j.Analyst,
		Reason:     j.Reason,
		TimeNs:     j.TimeNs,
	}
	if err := validateLabel(&l); err != nil {
		return Label{}, err
	}
	return l, nil
}

// MarshalLabelJSON renders l in the JSON form ParseLabelJSON reads, for
// tools that write labels by hand.
func MarshalLabelJSON(l *Label) ([]byte, error) {
	if err := validateLabel(l); err != nil {
		return nil, fmt.Errorf("encode json label: %w", err)
	}
	kind := string(l.TargetKind)
	return json.Marshal(labelJSON{
		TargetID:   &l.TargetID,
		TargetKind: &kind,
		Verdict:    &l.Verdict,
		Analyst:    l.Analyst,
		Reason:     l.Reason,
		TimeNs:     l.TimeNs,
	})
}
