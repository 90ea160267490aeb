package schemas

import (
	"errors"
	"strings"
	"testing"
)

func TestDecodeLabelJSON(t *testing.T) {
	c := newCodecs(t)
	full := Label{TargetID: "9f86d081884c7d65", TargetKind: TargetFlow, Verdict: "mirai", Analyst: "ana", Reason: "C2 beacon", TimeNs: 1_700_000_000_123_456_789}
	tests := []struct {
		name    string
		in      string
		want    Label
		wantErr error
		wantMsg string
	}{
		{"full", `{"target_id":"9f86d081884c7d65","target_kind":"FLOW","verdict":"mirai","analyst":"ana","reason":"C2 beacon","time_ns":1700000000123456789}`, full, nil, ""},
		{"leading space and unknown field", " \n\t{\"ticket\": \"INC-7\", \"target_id\": \"a1\", \"target_kind\": \"ALERT\", \"verdict\": \"benign\"}\n",
			Label{TargetID: "a1", TargetKind: TargetAlert, Verdict: VerdictBenign}, nil, ""},
		{"missing verdict", `{"target_id":"a","target_kind":"FLOW"}`, Label{}, ErrInvalid, "verdict missing"},
		{"missing kind", `{"target_id":"a","verdict":"benign"}`, Label{}, ErrInvalid, "target_kind missing"},
		{"empty target", `{"target_id":"","target_kind":"FLOW","verdict":"benign"}`, Label{}, ErrInvalid, "target_id is empty"},
		{"bad kind", `{"target_id":"a","target_kind":"HOST","verdict":"benign"}`, Label{}, ErrInvalid, `target_kind "HOST"`},
		{"time as float", `{"target_id":"a","target_kind":"FLOW","verdict":"b","time_ns":1.5e18}`, Label{}, ErrMalformed, "time_ns"},
		{"number for id", `{"target_id":7,"target_kind":"FLOW","verdict":"b"}`, Label{}, ErrMalformed, "target_id"},
		{"cut short", `{"target_id":"a","target_kind":"FLOW"`, Label{}, ErrMalformed, "unexpected EOF"},
		{"two objects", `{"target_id":"a","target_kind":"FLOW","verdict":"b"}{}`, Label{}, ErrMalformed, "data after the label"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := c.DecodeLabel([]byte(tc.in))
			if !errors.Is(err, tc.wantErr) || (tc.wantErr != nil && !strings.Contains(err.Error(), tc.wantMsg)) {
				t.Fatalf("DecodeLabel(%s) error = %v, want %v mentioning %q", tc.in, err, tc.wantErr, tc.wantMsg)
			}
			if got != tc.want {
				t.Errorf("DecodeLabel(%s) = %+v, want %+v", tc.in, got, tc.want)
			}
		})
	}
}

func TestDecodeLabelSniffs(t *testing.T) {
	c := newCodecs(t)
	l := Label{TargetID: "a1", TargetKind: TargetAlert, Verdict: "benign", TimeNs: 3}
	avro, err := c.AppendLabel(nil, &l)
	if err != nil {
		t.Fatal(err)
	}
	js, err := MarshalLabelJSON(&l)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		in      []byte
		wantErr error
		wantMsg string
	}{
		{"avro", avro, nil, ""},
		{"json", js, nil, ""},
		{"text", []byte("benign a1"), ErrBadMagic, "0x62"},
		{"json array", []byte(`[{"target_id":"a1"}]`), ErrBadMagic, "0x5b"},
		{"empty", nil, ErrTruncated, "empty record"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := c.DecodeLabel(tc.in)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr != nil && !strings.Contains(err.Error(), tc.wantMsg)) {
				t.Fatalf("DecodeLabel(%q) = %v, want %v mentioning %q", tc.in, err, tc.wantErr, tc.wantMsg)
			}
			if tc.wantErr == nil && got != l {
				t.Errorf("DecodeLabel(%q) = %+v, want %+v", tc.in, got, l)
			}
		})
	}
}

func TestMarshalLabelJSON(t *testing.T) {
	l := Label{TargetID: "a", TargetKind: TargetFlow, Verdict: "benign", Analyst: "bo", TimeNs: 42}
	got, err := MarshalLabelJSON(&l)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"target_id":"a","target_kind":"FLOW","verdict":"benign","analyst":"bo","time_ns":42}`
	if string(got) != want {
		t.Errorf("MarshalLabelJSON = %s, want %s", got, want)
	}
	bad := Label{TargetKind: TargetFlow, Verdict: "benign"}
	if _, err := MarshalLabelJSON(&bad); !errors.Is(err, ErrInvalid) {
		t.Errorf("MarshalLabelJSON(no target) = %v, want ErrInvalid", err)
	}
}
