package ingest

import (
	"net/netip"
)

// Field readers shared by the JSON decoders. Each reads one member value,
// accepts a number either bare or quoted (protojson and some shippers quote
// 64-bit numbers; pmacct quotes tcp_flags), treats null as absent and returns
// a RecordError naming the field otherwise.

// jsonText returns the text of a scalar value: a number's literal or a
// string's content. ok is false for null, booleans, objects and arrays. A
// string with escapes is unescaped into a new slice: shippers escape nothing
// in the fields read here, so that path is rare, and a stack buffer would
// move to the heap on every call because the parsers keep their input.
func jsonText(v jsonVal) (b []byte, ok bool) {
	switch v.kind {
	case jsonNumber:
		return v.raw, true
	case jsonString:
		if !v.esc {
			return v.raw, true
		}
		b, _ = appendUnescaped(nil, v.raw)
		return b, true
	}
	return nil, false
}

func jAddr(v jsonVal, field string) (netip.Addr, bool, error) {
	if v.kind == jsonNull {
		return netip.Addr{}, false, nil
	}
	if v.kind != jsonString {
		return netip.Addr{}, false, recErr(ReasonBadAddress, field, errNotString)
	}
	b, _ := jsonText(v)
	a, err := parseAddr(b)
	if err != nil {
		return a, false, recErr(ReasonBadAddress, field, err)
	}
	return a, true, nil
}

func jPort(v jsonVal, field string) (uint16, bool, error) {
	if v.kind == jsonNull {
		return 0, false, nil
	}
	b, ok := jsonText(v)
	if !ok {
		return 0, false, recErr(ReasonBadPort, field, errNotNumber)
	}
	p, err := parsePort(b)
	if err != nil {
		return 0, false, recErr(ReasonBadPort, field, err)
	}
	return p, true, nil
}

func jCount(v jsonVal, field string) (uint64, bool, error) {
	if v.kind == jsonNull {
		return 0, false, nil
	}
	b, ok := jsonText(v)
	if !ok {
		return 0, false, recErr(ReasonBadCounter, field, errNotNumber)
	}
	n, err := parseCount(b)
	if err != nil {
		return 0, false, recErr(ReasonBadCounter, field, err)
	}
	return n, true, nil
}

func jFlags(v jsonVal, field string) (uint8, error) {
	if v.kind == jsonNull {
		return 0, nil
	}
	b, ok := jsonText(v)
	if !ok {
		return 0, recErr(ReasonBadCounter, field, errNotNumber)
	}
	n, err := parseFlags(b)
	if err != nil {
		return 0, recErr(ReasonBadCounter, field, err)
	}
	return n, nil
}

func jProto(v jsonVal, field string) (uint8, bool, error) {
	if v.kind == jsonNull {
		return 0, false, nil
	}
	b, ok := jsonText(v)
	if !ok {
		return 0, false, recErr(ReasonMalformed, field, errBadProto)
	}
	p, err := parseProto(b)
	if err != nil {
		return 0, false, recErr(ReasonMalformed, field, err)
	}
	return p, true, nil
}

// jInt64 reads a non-negative integer that must fit an int64 (a time).
func jInt64(v jsonVal, field string) (int64, bool, error) {
	if v.kind == jsonNull {
		return 0, false, nil
	}
	b, ok := jsonText(v)
	if !ok {
		return 0, false, recErr(ReasonMalformed, field, errNotNumber)
	}
	n, err := parseInt64(b)
	if err != nil {
		return 0, false, timeErr(field, err)
	}
	return n, true, nil
}

// jEpoch reads seconds (unitNs 1e9) or milliseconds (1e6) since the epoch,
// as a number or a string, with an exact decimal fraction.
func jEpoch(v jsonVal, field string, unitNs int64) (int64, bool, error) {
	if v.kind == jsonNull {
		return 0, false, nil
	}
	b, ok := jsonText(v)
	if !ok {
		return 0, false, recErr(ReasonMalformed, field, errNotTime)
	}
	ns, err := parseEpoch(b, unitNs)
	if err != nil {
		return 0, false, timeErr(field, err)
	}
	return ns, true, nil
}

// jString returns a string value's text, unescaped.
func jString(v jsonVal) ([]byte, bool) {
	if v.kind != jsonString {
		return nil, false
	}
	return jsonText(v)
}

// timeErr classifies a time that does not parse (malformed) apart from one
// that parses but cannot be represented (out of window).
func timeErr(field string, err error) error {
	if err == errOverflow || err == errNegative {
		return recErr(ReasonTimeOutOfWindow, field, err)
	}
	return recErr(ReasonMalformed, field, err)
}

func malformed(err error) error { return recErr(ReasonMalformed, "", err) }

func missing(field string) error { return recErr(ReasonMissingField, field, ErrMissing) }
