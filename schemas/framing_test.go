package schemas

import (
	"errors"
	"strings"
	"testing"
)

func TestSplitFrame(t *testing.T) {
	tests := []struct {
		name     string
		in       []byte
		wantID   int32
		wantBody string
		wantErr  error
		wantMsg  string
	}{
		{"header only", []byte{0, 0, 0, 0, 1}, 1, "", nil, ""},
		{"with body", []byte{0, 0, 0, 1, 0, 'x', 'y'}, 256, "xy", nil, ""},
		{"largest id", []byte{0, 0x7f, 0xff, 0xff, 0xff}, 1<<31 - 1, "", nil, ""},
		{"empty", nil, 0, "", ErrTruncated, "empty record"},
		{"short header", []byte{0, 0, 1}, 0, "", ErrTruncated, "3-byte record, want at least 5"},
		{"json", []byte(`{"a":1}`), 0, "", ErrBadMagic, "0x7b"},
		{"magic 1", []byte{1, 0, 0, 0, 1}, 0, "", ErrBadMagic, "0x01, want 0x00"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id, body, err := SplitFrame(tc.in)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr != nil && !strings.Contains(err.Error(), tc.wantMsg)) {
				t.Fatalf("SplitFrame(%x) error = %v, want %v mentioning %q", tc.in, err, tc.wantErr, tc.wantMsg)
			}
			if id != tc.wantID || string(body) != tc.wantBody {
				t.Errorf("SplitFrame(%x) = %d, %q, want %d, %q", tc.in, id, body, tc.wantID, tc.wantBody)
			}
		})
	}
}

func TestAppendHeader(t *testing.T) {
	got := AppendHeader([]byte{9}, 0x01020304)
	want := []byte{9, 0, 1, 2, 3, 4}
	if string(got) != string(want) {
		t.Errorf("AppendHeader = %x, want %x", got, want)
	}
}

// TestDecodeFramingErrors feeds every decoder the framing faults a consumer
// meets, and checks that each error says which fault it is.
func TestDecodeFramingErrors(t *testing.T) {
	c := newCodecs(t)
	f := sampleFlow()
	flow, err := c.AppendFlow(nil, &f)
	if err != nil {
		t.Fatal(err)
	}
	a := sampleAlert()
	alert, err := c.AppendAlert(nil, &a)
	if err != nil {
		t.Fatal(err)
	}
	withID := func(b []byte, id byte) []byte {
		out := append([]byte{}, b...)
		out[4] = id
		return out
	}
	tests := []struct {
		name    string
		in      []byte
		wantErr error
		wantMsg string
	}{
		{"wrong magic byte", append([]byte{0x02}, flow[1:]...), ErrBadMagic, "bad magic byte 0x02"},
		{"unknown schema id", withID(flow, 99), ErrUnknownSchemaID, "unknown schema id 99"},
		{"empty", []byte{}, ErrTruncated, "empty record"},
		{"header cut", flow[:4], ErrTruncated, "4-byte record"},
		{"body cut in a string", flow[:HeaderLen+25], ErrTruncated, "25-byte body"},
		{"body cut one byte short", flow[:len(flow)-1], ErrTruncated, "in field source.index"},
		{"no body", flow[:HeaderLen], ErrTruncated, "in field start_ns"},
		{"trailing bytes", append(append([]byte{}, flow...), 0, 0), ErrMalformed, "2 trailing bytes"},
		{"alert framed as flow", alert, ErrSchemaMismatch, "schema id 2 is io.metaids.Alert, want io.metaids.Flow"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := c.DecodeFlow(tc.in)
			if !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), tc.wantMsg) {
				t.Fatalf("DecodeFlow(%x) = %v, want %v mentioning %q", tc.in, err, tc.wantErr, tc.wantMsg)
			}
			if !strings.HasPrefix(err.Error(), "decode io.metaids.Flow: ") {
				t.Errorf("DecodeFlow error %q does not say what was being decoded", err)
			}
			if got != (Flow{}) {
				t.Errorf("DecodeFlow on error = %+v, want zero Flow", got)
			}
		})
	}
}

// TestDecodeMismatchEveryType checks that each decoder refuses every other
// record type's frame as a schema mismatch rather than misreading it.
func TestDecodeMismatchEveryType(t *testing.T) {
	c := newCodecs(t)
	f, a, u := sampleFlow(), sampleAlert(), sampleModel()
	l := Label{TargetID: "x", TargetKind: TargetFlow, Verdict: "benign"}
	act := Action{Kind: ActionBlock}
	d := DeadLetter{Reason: "r"}
	encoded := map[string][]byte{}
	var err error
	if encoded[SubjectFlow], err = c.AppendFlow(nil, &f); err != nil {
		t.Fatal(err)
	}
	if encoded[SubjectAlert], err = c.AppendAlert(nil, &a); err != nil {
		t.Fatal(err)
	}
	if encoded[SubjectLabel], err = c.AppendLabel(nil, &l); err != nil {
		t.Fatal(err)
	}
	if encoded[SubjectModelUpdate], err = c.AppendModelUpdate(nil, &u); err != nil {
		t.Fatal(err)
	}
	if encoded[SubjectDeadLetter], err = c.AppendDeadLetter(nil, &d); err != nil {
		t.Fatal(err)
	}
	if encoded[SubjectAction], err = c.AppendAction(nil, &act); err != nil {
		t.Fatal(err)
	}
	decoders := map[string]func([]byte) error{
		SubjectFlow:        func(b []byte) error { _, err := c.DecodeFlow(b); return err },
		SubjectAlert:       func(b []byte) error { _, err := c.DecodeAlert(b); return err },
		SubjectLabel:       func(b []byte) error { _, err := c.DecodeLabel(b); return err },
		SubjectModelUpdate: func(b []byte) error { _, err := c.DecodeModelUpdate(b); return err },
		SubjectDeadLetter:  func(b []byte) error { _, err := c.DecodeDeadLetter(b); return err },
		SubjectAction:      func(b []byte) error { _, err := c.DecodeAction(b); return err },
	}
	for dec, decode := range decoders {
		for enc, b := range encoded {
			err := decode(b)
			if dec == enc {
				if err != nil {
					t.Errorf("decode %s as itself = %v", enc, err)
				}
				continue
			}
			if !errors.Is(err, ErrSchemaMismatch) || !strings.Contains(err.Error(), enc) {
				t.Errorf("decode %s as %s = %v, want ErrSchemaMismatch naming %s", enc, dec, err, enc)
			}
		}
	}
}

func TestCodecsSubject(t *testing.T) {
	c := newCodecs(t)
	f := sampleFlow()
	b, err := c.AppendFlow(nil, &f)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := c.Subject(b); err != nil || got != SubjectFlow {
		t.Errorf("Subject(flow) = %q, %v, want %q", got, err, SubjectFlow)
	}
	if _, err := c.Subject([]byte{0, 0, 0, 0, 42}); !errors.Is(err, ErrUnknownSchemaID) {
		t.Errorf("Subject(id 42) = %v, want ErrUnknownSchemaID", err)
	}
	if id, err := c.ID(SubjectModelUpdate); err != nil || id != 4 {
		t.Errorf("ID(%s) = %d, %v, want 4", SubjectModelUpdate, id, err)
	}
	if _, err := c.ID("io.metaids.Nope"); !errors.Is(err, ErrUnknownSubject) {
		t.Errorf("ID(unknown) = %v, want ErrUnknownSubject", err)
	}
}

// TestHostileCounts feeds bodies whose block counts or lengths claim far more
// data than they carry. goavro would size its buffers from the claim and run
// out of memory (a fatal error, not a panic); the walk must refuse first.
func TestHostileCounts(t *testing.T) {
	c := newCodecs(t)
	// A model update whose body is valid up to the classes array, which
	// then claims 2^31-1 strings.
	prefix := []byte{
		0, 0, 0, 0, 4, // frame, id 4
		2, 'm', // name "m"
		0, 0, // version, parent_version
		0,    // kind FULL
		0,    // spec_hash ""
		0, 0, // features, hidden
		0, // created_ns
	}
	tests := []struct {
		name string
		tail []byte
		want error
		msg  string
	}{
		{"array count 2^31-1", []byte{0xfe, 0xff, 0xff, 0xff, 0x0f}, ErrTruncated, "for 2147483647 items in field classes"},
		{"array count max long", []byte{0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, ErrTruncated, "items in field classes"},
		{"negative count min long", []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, ErrMalformed, "block count"},
		{"negative count with huge size", []byte{0x01, 0xfe, 0xff, 0xff, 0xff, 0x0f, 2, 'a'}, ErrTruncated, "byte block"},
		{"string length 2^40", []byte{2, 0x80, 0x80, 0x80, 0x80, 0x80, 0x20}, ErrTruncated, "in field classes"},
		{"negative string length", []byte{2, 0x01}, ErrMalformed, "negative length -1"},
		{"varint overflow", []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}, ErrMalformed, "overflows 64 bits"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := append(append([]byte{}, prefix...), tc.tail...)
			_, err := c.DecodeModelUpdate(b)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("DecodeModelUpdate(%x) = %v, want %v mentioning %q", b, err, tc.want, tc.msg)
			}
		})
	}
}

func TestMalformedBodies(t *testing.T) {
	c := newCodecs(t)
	l := Label{TargetID: "x", TargetKind: TargetFlow, Verdict: "v"}
	label, err := c.AppendLabel(nil, &l)
	if err != nil {
		t.Fatal(err)
	}
	d := DeadLetter{}
	dead, err := c.AppendDeadLetter(nil, &d)
	if err != nil {
		t.Fatal(err)
	}
	a := Action{Kind: ActionBlock}
	action, err := c.AppendAction(nil, &a)
	if err != nil {
		t.Fatal(err)
	}
	set := func(b []byte, i int, v byte) []byte {
		out := append([]byte{}, b...)
		out[i] = v
		return out
	}
	// Label body: target_id "x" (2 bytes), then the target_kind enum index.
	// DeadLetter body: five empty strings/ints (5 bytes), offset, then the key union index.
	// Action body: action_id, host, kind, reason, duration, alert_ids, time_ns, withdrawn.
	tests := []struct {
		name   string
		decode func([]byte) error
		in     []byte
		msg    string
	}{
		{"enum index out of range", func(b []byte) error { _, err := c.DecodeLabel(b); return err },
			set(label, HeaderLen+2, 4), "enum index 2 not in 0..1 in field target_kind"},
		{"union index out of range", func(b []byte) error { _, err := c.DecodeDeadLetter(b); return err },
			set(dead, HeaderLen+6, 4), "union index 2 not in 0..1 in field key"},
		{"boolean byte 2", func(b []byte) error { _, err := c.DecodeAction(b); return err },
			set(action, HeaderLen+7, 2), "boolean byte 0x02 in field withdrawn"},
		{"int varint overflow", func(b []byte) error { _, err := c.DecodeDeadLetter(b); return err },
			append(append(append([]byte{}, dead[:HeaderLen+4]...), 0xff, 0xff, 0xff, 0xff, 0x1f), dead[HeaderLen+5:]...), "overflows 32 bits in field partition"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.decode(tc.in)
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("decode(%x) = %v, want ErrMalformed mentioning %q", tc.in, err, tc.msg)
			}
		})
	}
}
