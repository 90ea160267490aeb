package schemas

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"net/netip"
	"reflect"
	"testing"
)

// The decoders are the first code to touch bytes from Kafka. The property
// fuzzed is the one a stage relies on: no panic, and either a value or an
// error wrapping one of the decode sentinels (which become dead-letter
// reasons). A decoded value must also survive re-encoding unchanged, or a
// stage could not forward what it accepted.

// wantDecodeError fails unless err wraps one of the decode sentinels.
func wantDecodeError(t *testing.T, err error) {
	t.Helper()
	for _, s := range []error{ErrBadMagic, ErrTruncated, ErrUnknownSchemaID, ErrSchemaMismatch, ErrMalformed, ErrInvalid} {
		if errors.Is(err, s) {
			return
		}
	}
	t.Fatalf("decode error %q wraps no decode sentinel", err)
}

// addCut seeds f with b and with b cut short at a few places, so the fuzzer
// starts next to the truncation boundaries.
func addCut(f *testing.F, b []byte) {
	f.Add(b)
	for _, n := range []int{0, 1, HeaderLen, HeaderLen + 1, len(b) / 2, len(b) - 1} {
		if n >= 0 && n < len(b) {
			f.Add(b[:n])
		}
	}
}

func FuzzDecodeFlow(f *testing.F) {
	c := newCodecs(f)
	seeds := []Flow{sampleFlow(), {SrcAddr: netip.MustParseAddr("::1"), DstAddr: netip.MustParseAddr("fe80::1%eth0")}}
	for _, fl := range seeds {
		b, err := c.AppendFlow(nil, &fl)
		if err != nil {
			f.Fatal(err)
		}
		addCut(f, b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fl, err := c.DecodeFlow(b)
		if err != nil {
			wantDecodeError(t, err)
			return
		}
		out, err := c.AppendFlow(nil, &fl)
		if err != nil {
			t.Fatalf("AppendFlow(decoded %+v) = %v", fl, err)
		}
		again, err := c.DecodeFlow(out)
		if err != nil || again != fl {
			t.Fatalf("DecodeFlow(AppendFlow(%+v)) = %+v, %v", fl, again, err)
		}
	})
}

func FuzzDecodeLabel(f *testing.F) {
	c := newCodecs(f)
	l := Label{TargetID: "9f86d081884c7d65", TargetKind: TargetFlow, Verdict: "benign", Analyst: "ana", Reason: "r", TimeNs: 1}
	b, err := c.AppendLabel(nil, &l)
	if err != nil {
		f.Fatal(err)
	}
	addCut(f, b)
	js, err := MarshalLabelJSON(&l)
	if err != nil {
		f.Fatal(err)
	}
	addCut(f, js)
	f.Add([]byte(` {"target_id":"a","target_kind":"ALERT","verdict":"x","extra":[1,{"y":null}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := c.DecodeLabel(b)
		if err != nil {
			wantDecodeError(t, err)
			return
		}
		for _, enc := range []func(*Label) ([]byte, error){
			func(l *Label) ([]byte, error) { return c.AppendLabel(nil, l) },
			MarshalLabelJSON,
		} {
			out, err := enc(&l)
			if err != nil {
				t.Fatalf("re-encode decoded label %+v: %v", l, err)
			}
			again, err := c.DecodeLabel(out)
			if err != nil || again != l {
				t.Fatalf("DecodeLabel(%q) = %+v, %v, want %+v", out, again, err, l)
			}
		}
	})
}

func FuzzDecodeModelUpdate(f *testing.F) {
	c := newCodecs(f)
	pub, priv := testKey(1)
	keys := map[string]ed25519.PublicKey{KeyID(pub): pub}
	for _, u := range []ModelUpdate{sampleModel(), {Name: "m", Kind: UpdateFull}} {
		if err := SignModelUpdate(&u, KeyID(pub), priv); err != nil {
			f.Fatal(err)
		}
		b, err := c.AppendModelUpdate(nil, &u)
		if err != nil {
			f.Fatal(err)
		}
		addCut(f, b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		u, err := c.DecodeModelUpdate(b)
		if err != nil {
			wantDecodeError(t, err)
			return
		}
		// Verification sees whatever decoded; it must answer, not panic.
		_ = VerifyModelUpdate(&u, keys)
		// Compare encodings rather than structs: NaN weights are legal and
		// never equal themselves.
		first, err := c.AppendModelUpdate(nil, &u)
		if err != nil {
			t.Fatalf("AppendModelUpdate(decoded) = %v", err)
		}
		again, err := c.DecodeModelUpdate(first)
		if err != nil {
			t.Fatalf("DecodeModelUpdate(re-encoded) = %v", err)
		}
		second, err := c.AppendModelUpdate(nil, &again)
		if err != nil || !bytes.Equal(first, second) {
			t.Fatalf("re-encoding a decoded update is not stable: %v", err)
		}
	})
}

// FuzzDecodeRecords covers the remaining decoders, whose input comes from
// our own stages but may still be damaged on the way.
func FuzzDecodeRecords(f *testing.F) {
	c := newCodecs(f)
	a := sampleAlert()
	b, err := c.AppendAlert(nil, &a)
	if err != nil {
		f.Fatal(err)
	}
	addCut(f, b)
	act := Action{ActionID: "a", Host: "h", Kind: ActionRateLimit, AlertIDs: []string{"x"}}
	if b, err = c.AppendAction(nil, &act); err != nil {
		f.Fatal(err)
	}
	addCut(f, b)
	d := DeadLetter{Reason: "r", Key: []byte{}, Value: []byte("v")}
	if b, err = c.AppendDeadLetter(nil, &d); err != nil {
		f.Fatal(err)
	}
	addCut(f, b)
	f.Fuzz(func(t *testing.T, b []byte) {
		if a, err := c.DecodeAlert(b); err != nil {
			wantDecodeError(t, err)
		} else {
			out, err := c.AppendAlert(nil, &a)
			if err != nil {
				t.Fatalf("AppendAlert(decoded) = %v", err)
			}
			if _, err := c.DecodeAlert(out); err != nil {
				t.Fatalf("DecodeAlert(re-encoded) = %v", err)
			}
			// Renderings may refuse NaN, but must not panic.
			_, _ = AlertECS(&a)
			_, _ = AlertOCSF(&a)
		}
		if act, err := c.DecodeAction(b); err != nil {
			wantDecodeError(t, err)
		} else {
			out, err := c.AppendAction(nil, &act)
			if err != nil {
				t.Fatalf("AppendAction(decoded) = %v", err)
			}
			if again, err := c.DecodeAction(out); err != nil || !reflect.DeepEqual(again, act) {
				t.Fatalf("DecodeAction(AppendAction(%+v)) = %+v, %v", act, again, err)
			}
		}
		if d, err := c.DecodeDeadLetter(b); err != nil {
			wantDecodeError(t, err)
		} else {
			out, err := c.AppendDeadLetter(nil, &d)
			if err != nil {
				t.Fatalf("AppendDeadLetter(decoded) = %v", err)
			}
			if again, err := c.DecodeDeadLetter(out); err != nil || !reflect.DeepEqual(again, d) {
				t.Fatalf("DecodeDeadLetter(AppendDeadLetter(%+v)) = %+v, %v", d, again, err)
			}
		}
	})
}
