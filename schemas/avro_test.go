package schemas

import (
	"errors"
	"math"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/linkedin/goavro/v2"
)

func newCodecs(t testing.TB) *Codecs {
	t.Helper()
	c, err := NewCodecs(nil)
	if err != nil {
		t.Fatalf("NewCodecs(nil) = %v", err)
	}
	return c
}

func sampleFlow() Flow {
	return Flow{
		StartNs:  1_700_000_000_000_000_000,
		EndNs:    1_700_000_000_250_000_000,
		SrcAddr:  netip.MustParseAddr("10.0.0.9"),
		DstAddr:  netip.MustParseAddr("192.0.2.80"),
		SrcPort:  51515,
		DstPort:  443,
		Proto:    6,
		BytesOut: 1200,
		BytesIn:  64000,
		PktsOut:  10,
		PktsIn:   48,
		TCPFlags: 0x1b,
		Service:  "https",
		Source:   Coord{Topic: "flows.goflow2", Partition: 3, Offset: 981, Index: 2},
	}
}

func TestFlowRoundTrip(t *testing.T) {
	c := newCodecs(t)
	tests := []struct {
		name string
		edit func(*Flow)
	}{
		{"ipv4", func(*Flow) {}},
		{"ipv6", func(f *Flow) {
			f.SrcAddr = netip.MustParseAddr("2001:db8::1")
			f.DstAddr = netip.MustParseAddr("fe80::1:2:3:4")
		}},
		{"ipv6 with zone", func(f *Flow) { f.SrcAddr = netip.MustParseAddr("fe80::1%eth0") }},
		{"ipv4-mapped ipv6", func(f *Flow) { f.DstAddr = netip.MustParseAddr("::ffff:192.0.2.1") }},
		{"no service", func(f *Flow) { f.Service = "" }},
		{"zero value but addresses", func(f *Flow) {
			*f = Flow{SrcAddr: netip.IPv4Unspecified(), DstAddr: netip.IPv6Unspecified()}
		}},
		{"largest values", func(f *Flow) {
			f.StartNs, f.EndNs = math.MinInt64, math.MaxInt64
			f.SrcPort, f.DstPort, f.Proto, f.TCPFlags = math.MaxUint16, math.MaxUint16, math.MaxUint8, math.MaxUint8
			f.BytesOut, f.BytesIn, f.PktsOut, f.PktsIn = math.MaxInt64, math.MaxInt64, math.MaxInt64, math.MaxInt64
			f.Source = Coord{Topic: strings.Repeat("t", 249), Partition: math.MaxInt32, Offset: math.MaxInt64, Index: math.MaxInt32}
		}},
		{"unicode service", func(f *Flow) { f.Service = "résumé-sync ✓" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want := sampleFlow()
			tc.edit(&want)
			b, err := c.AppendFlow(nil, &want)
			if err != nil {
				t.Fatalf("AppendFlow(%+v) = %v", want, err)
			}
			got, err := c.DecodeFlow(b)
			if err != nil {
				t.Fatalf("DecodeFlow = %v", err)
			}
			if got != want {
				t.Errorf("DecodeFlow(AppendFlow(f)) = %+v, want %+v", got, want)
			}
			if got.ID() != want.ID() {
				t.Errorf("ID after round trip = %x, want %x", got.ID(), want.ID())
			}
		})
	}
}

func TestAppendFlowKeepsPrefix(t *testing.T) {
	c := newCodecs(t)
	f := sampleFlow()
	buf := []byte("prefix")
	b, err := c.AppendFlow(buf, &f)
	if err != nil {
		t.Fatalf("AppendFlow = %v", err)
	}
	if got := string(b[:6]); got != "prefix" {
		t.Fatalf("AppendFlow changed the prefix to %q", got)
	}
	if _, err := c.DecodeFlow(b[6:]); err != nil {
		t.Fatalf("DecodeFlow(appended part) = %v", err)
	}
	// Two flows appended to one buffer decode separately.
	two, err := c.AppendFlow(b[6:], &f)
	if err != nil {
		t.Fatalf("second AppendFlow = %v", err)
	}
	if _, err := c.DecodeFlow(two[len(b)-6:]); err != nil {
		t.Fatalf("DecodeFlow(second flow) = %v", err)
	}
}

func TestAppendFlowRejects(t *testing.T) {
	c := newCodecs(t)
	tests := []struct {
		name string
		edit func(*Flow)
		want string
	}{
		{"unset src", func(f *Flow) { f.SrcAddr = netip.Addr{} }, "src_addr unset"},
		{"unset dst", func(f *Flow) { f.DstAddr = netip.Addr{} }, "dst_addr unset"},
		{"bytes above int64", func(f *Flow) { f.BytesIn = math.MaxInt64 + 1 }, "bytes_in"},
		{"packets above int64", func(f *Flow) { f.PktsOut = math.MaxUint64 }, "pkts_out"},
		{"negative partition", func(f *Flow) { f.Source.Partition = -1 }, "source.partition -1"},
		{"negative offset", func(f *Flow) { f.Source.Offset = -1 }, "source.offset -1"},
		{"negative index", func(f *Flow) { f.Source.Index = -2 }, "source.index -2"},
		{"service not utf-8", func(f *Flow) { f.Service = "dns\xff" }, "not valid UTF-8 in field service"},
		{"topic not utf-8", func(f *Flow) { f.Source.Topic = "\xc3" }, "not valid UTF-8 in field source.topic"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := sampleFlow()
			tc.edit(&f)
			dst := []byte{0xaa}
			got, err := c.AppendFlow(dst, &f)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("AppendFlow = %v, want ErrInvalid mentioning %q", err, tc.want)
			}
			if len(got) != 1 {
				t.Errorf("AppendFlow on error returned %d bytes, want dst unchanged (1)", len(got))
			}
		})
	}
}

// rawFrame encodes native with the embedded schema of subject, bypassing the
// codecs' validation, and frames it with id. It makes records only a buggy or
// hostile producer would write.
func rawFrame(t *testing.T, subject string, id int32, native map[string]any) []byte {
	t.Helper()
	text, err := Schema(subject)
	if err != nil {
		t.Fatal(err)
	}
	codec, err := goavro.NewCodec(text)
	if err != nil {
		t.Fatal(err)
	}
	b, err := codec.BinaryFromNative(AppendHeader(nil, id), native)
	if err != nil {
		t.Fatalf("encode raw %s: %v", subject, err)
	}
	return b
}

func flowNative(edit func(map[string]any)) map[string]any {
	m := map[string]any{
		"start_ns": int64(1), "end_ns": int64(2),
		"src_addr": "10.0.0.1", "dst_addr": "10.0.0.2",
		"src_port": int32(1), "dst_port": int32(2), "proto": int32(17),
		"bytes_out": int64(1), "bytes_in": int64(1), "pkts_out": int64(1), "pkts_in": int64(1),
		"tcp_flags": int32(0), "service": nil,
		"source": map[string]any{"topic": "flows.x", "partition": int32(0), "offset": int64(0), "index": int32(0)},
	}
	edit(m)
	return m
}

func TestDecodeFlowValidates(t *testing.T) {
	c := newCodecs(t)
	tests := []struct {
		name string
		edit func(map[string]any)
		want string
	}{
		{"bad src address", func(m map[string]any) { m["src_addr"] = "10.0.0.256" }, "src_addr"},
		{"empty dst address", func(m map[string]any) { m["dst_addr"] = "" }, "dst_addr"},
		{"host name for address", func(m map[string]any) { m["dst_addr"] = "example.com" }, "dst_addr"},
		{"src port above 65535", func(m map[string]any) { m["src_port"] = int32(70000) }, "src_port 70000 not in 0..65535"},
		{"negative dst port", func(m map[string]any) { m["dst_port"] = int32(-1) }, "dst_port -1 not in 0..65535"},
		{"proto above 255", func(m map[string]any) { m["proto"] = int32(256) }, "proto 256 not in 0..255"},
		{"tcp flags above 255", func(m map[string]any) { m["tcp_flags"] = int32(511) }, "tcp_flags 511"},
		{"negative bytes", func(m map[string]any) { m["bytes_out"] = int64(-5) }, "bytes_out -5 is negative"},
		{"negative packets", func(m map[string]any) { m["pkts_in"] = int64(-1) }, "pkts_in -1 is negative"},
		{"negative offset", func(m map[string]any) {
			m["source"] = map[string]any{"topic": "t", "partition": int32(0), "offset": int64(-7), "index": int32(0)}
		}, "source.offset -7"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := rawFrame(t, SubjectFlow, 1, flowNative(tc.edit))
			got, err := c.DecodeFlow(b)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("DecodeFlow = %+v, %v; want ErrInvalid mentioning %q", got, err, tc.want)
			}
			if got != (Flow{}) {
				t.Errorf("DecodeFlow on error = %+v, want zero Flow", got)
			}
		})
	}
}

func TestDecodeFlowRejectsInvalidUTF8(t *testing.T) {
	c := newCodecs(t)
	b := rawFrame(t, SubjectFlow, 1, flowNative(func(m map[string]any) { m["service"] = goavro.Union("string", "\xed\xa0\x80") }))
	if _, err := c.DecodeFlow(b); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "not valid UTF-8 in field service") {
		t.Errorf("DecodeFlow(surrogate in service) = %v, want ErrMalformed naming the field", err)
	}
}

func TestDecodeFlowService(t *testing.T) {
	c := newCodecs(t)
	tests := []struct {
		name    string
		service any
		want    string
	}{
		{"null", nil, ""},
		{"set", goavro.Union("string", "dns"), "dns"},
		{"empty string", goavro.Union("string", ""), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := rawFrame(t, SubjectFlow, 1, flowNative(func(m map[string]any) { m["service"] = tc.service }))
			f, err := c.DecodeFlow(b)
			if err != nil {
				t.Fatalf("DecodeFlow = %v", err)
			}
			if f.Service != tc.want {
				t.Errorf("DecodeFlow service = %q, want %q", f.Service, tc.want)
			}
		})
	}
}

func sampleAlert() Alert {
	return Alert{
		AlertID:      "9f86d081884c7d65-scan",
		FlowID:       "9f86d081884c7d65",
		Host:         "10.0.0.9",
		Peer:         "192.0.2.80",
		SrcPort:      51515,
		DstPort:      22,
		Proto:        6,
		Class:        "portscan",
		Probability:  0.93,
		AnomalyScore: 4.25,
		Severity:     SeverityHigh,
		FirstNs:      1_700_000_000_000_000_000,
		LastNs:       1_700_000_060_000_000_000,
		Count:        1200,
		ModelVersion: 7,
		Explanation:  []Contribution{{"dst_port_class", 0.41}, {"bytes_per_packet", 0.22}},
	}
}

func TestAlertRoundTrip(t *testing.T) {
	c := newCodecs(t)
	tests := []struct {
		name string
		edit func(*Alert)
	}{
		{"full", func(*Alert) {}},
		{"ipv6 and no explanation", func(a *Alert) {
			a.Host, a.Peer, a.Explanation = "2001:db8::9", "2001:db8::80", nil
		}},
		{"empty strings", func(a *Alert) { *a = Alert{Severity: SeverityLow} }},
		{"extremes", func(a *Alert) {
			a.SrcPort, a.DstPort, a.Proto = 65535, 0, 255
			a.FirstNs, a.LastNs, a.Count, a.ModelVersion = math.MinInt64, math.MaxInt64, math.MaxInt64, math.MaxInt64
			a.Probability, a.AnomalyScore = math.MaxFloat32, float32(math.Inf(1))
			a.Severity = SeverityCritical
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want := sampleAlert()
			tc.edit(&want)
			b, err := c.AppendAlert(nil, &want)
			if err != nil {
				t.Fatalf("AppendAlert = %v", err)
			}
			got, err := c.DecodeAlert(b)
			if err != nil {
				t.Fatalf("DecodeAlert = %v", err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("DecodeAlert(AppendAlert(a)) = %+v, want %+v", got, want)
			}
		})
	}
}

func TestAlertRejects(t *testing.T) {
	c := newCodecs(t)
	tests := []struct {
		name string
		edit func(*Alert)
		want string
	}{
		{"unknown severity", func(a *Alert) { a.Severity = "info" }, `severity "info"`},
		{"port above 65535", func(a *Alert) { a.DstPort = 65536 }, "dst_port 65536"},
		{"negative proto", func(a *Alert) { a.Proto = -1 }, "proto -1"},
		{"negative count", func(a *Alert) { a.Count = -1 }, "count -1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := sampleAlert()
			tc.edit(&a)
			if _, err := c.AppendAlert(nil, &a); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("AppendAlert = %v, want ErrInvalid mentioning %q", err, tc.want)
			}
		})
	}
}

func TestLabelRoundTrip(t *testing.T) {
	c := newCodecs(t)
	tests := []Label{
		{TargetID: "9f86d081884c7d65", TargetKind: TargetFlow, Verdict: VerdictBenign, Analyst: "ana", Reason: "backup job", TimeNs: 1_700_000_000_000_000_000},
		{TargetID: "9f86d081884c7d65-scan", TargetKind: TargetAlert, Verdict: "mirai", TimeNs: math.MaxInt64},
		{TargetID: "x", TargetKind: TargetAlert, Verdict: "y", TimeNs: -1},
	}
	for _, want := range tests {
		t.Run(want.Verdict, func(t *testing.T) {
			b, err := c.AppendLabel(nil, &want)
			if err != nil {
				t.Fatalf("AppendLabel = %v", err)
			}
			got, err := c.DecodeLabel(b)
			if err != nil {
				t.Fatalf("DecodeLabel = %v", err)
			}
			if got != want {
				t.Errorf("DecodeLabel(AppendLabel(l)) = %+v, want %+v", got, want)
			}
		})
	}
}

func TestLabelRejects(t *testing.T) {
	c := newCodecs(t)
	ok := Label{TargetID: "a", TargetKind: TargetFlow, Verdict: "benign"}
	tests := []struct {
		name string
		edit func(*Label)
		want string
	}{
		{"no target", func(l *Label) { l.TargetID = "" }, "target_id is empty"},
		{"no verdict", func(l *Label) { l.Verdict = "" }, "verdict is empty"},
		{"lower-case kind", func(l *Label) { l.TargetKind = "flow" }, `target_kind "flow"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := ok
			tc.edit(&l)
			if _, err := c.AppendLabel(nil, &l); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("AppendLabel = %v, want ErrInvalid mentioning %q", err, tc.want)
			}
		})
	}
}

func TestActionRoundTrip(t *testing.T) {
	c := newCodecs(t)
	tests := []Action{
		{ActionID: "a1", Host: "10.0.0.9", Kind: ActionBlock, Reason: "portscan", DurationSec: 3600, AlertIDs: []string{"x", "y"}, TimeNs: 5, ModelVersion: 7},
		{ActionID: "a2", Host: "2001:db8::9", Kind: ActionRateLimit, Withdrawn: true, DurationSec: math.MaxInt64},
	}
	for _, want := range tests {
		t.Run(want.ActionID, func(t *testing.T) {
			b, err := c.AppendAction(nil, &want)
			if err != nil {
				t.Fatalf("AppendAction = %v", err)
			}
			got, err := c.DecodeAction(b)
			if err != nil {
				t.Fatalf("DecodeAction = %v", err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("DecodeAction(AppendAction(a)) = %+v, want %+v", got, want)
			}
		})
	}
	bad := Action{Kind: "quarantine"}
	if _, err := c.AppendAction(nil, &bad); !errors.Is(err, ErrInvalid) {
		t.Errorf("AppendAction(kind quarantine) = %v, want ErrInvalid", err)
	}
	bad = Action{Kind: ActionBlock, DurationSec: -1}
	if _, err := c.AppendAction(nil, &bad); !errors.Is(err, ErrInvalid) {
		t.Errorf("AppendAction(duration -1) = %v, want ErrInvalid", err)
	}
}

func TestDeadLetterRoundTrip(t *testing.T) {
	c := newCodecs(t)
	tests := []struct {
		name string
		d    DeadLetter
	}{
		{"full", DeadLetter{Reason: "truncated", Error: "decode ipfix: short", Stage: "ingest", Topic: "flows.ipfix", Partition: 2, Offset: 77, Key: []byte("k"), Value: []byte{0, 1, 2, 0xff}, TimeNs: 9}},
		{"null key and tombstone", DeadLetter{Reason: "bad_version", Key: nil, Value: nil}},
		{"empty key and value", DeadLetter{Reason: "bad_version", Key: []byte{}, Value: []byte{}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := c.AppendDeadLetter(nil, &tc.d)
			if err != nil {
				t.Fatalf("AppendDeadLetter = %v", err)
			}
			got, err := c.DecodeDeadLetter(b)
			if err != nil {
				t.Fatalf("DecodeDeadLetter = %v", err)
			}
			if !reflect.DeepEqual(got, tc.d) {
				t.Errorf("DecodeDeadLetter(AppendDeadLetter(d)) = %+v, want %+v", got, tc.d)
			}
			if (got.Key == nil) != (tc.d.Key == nil) || (got.Value == nil) != (tc.d.Value == nil) {
				t.Errorf("nil-ness of key, value = %v, %v, want %v, %v", got.Key == nil, got.Value == nil, tc.d.Key == nil, tc.d.Value == nil)
			}
			// The decoded bytes must not alias the input, which Kafka clients reuse.
			for i := range b {
				b[i] = 0xee
			}
			if !reflect.DeepEqual(got, tc.d) {
				t.Errorf("decoded dead letter changed with its input buffer: %+v", got)
			}
		})
	}
}

func sampleModel() ModelUpdate {
	return ModelUpdate{
		Name:             "metaids",
		Version:          12,
		ParentVersion:    11,
		Kind:             UpdateHead,
		SpecHash:         "sha256:0f1e",
		Features:         32,
		Hidden:           4,
		CreatedNs:        1_700_000_000_000_000_000,
		Classes:          []string{"benign", "portscan", "mirai"},
		Thresholds:       []float32{0, 0.8, 0.75},
		AnomalyThreshold: 3.5,
		NormMean:         []float32{1, 2, 3},
		NormStd:          []float32{0.5, 1, float32(math.SmallestNonzeroFloat32)},
		Tensors: []Tensor{
			{Name: "head.w", Rows: 3, Cols: 4, Data: []float32{1, -2, 3, -4, 5, -6, 7, -8, 9, -10, 11, float32(math.MaxFloat32)}},
			{Name: "head.b", Rows: 3, Cols: 1, Data: []float32{0.1, 0.2, 0.3}},
			{Name: "empty", Rows: 0, Cols: 8},
		},
		Exemplars: []Exemplar{{Class: 1, Embedding: []float32{0.5, 0.25, -1, 2}}, {Class: 2}},
		Gate:      map[string]float64{"recall.portscan": 0.97, "recall.mirai": 0.9, "fpr.benign": 0.001, "n": 400},
		KeyID:     "0123456789abcdef",
		Signature: []byte{1, 2, 3},
	}
}

func TestModelUpdateRoundTrip(t *testing.T) {
	c := newCodecs(t)
	tests := []struct {
		name string
		edit func(*ModelUpdate)
	}{
		{"full", func(*ModelUpdate) {}},
		{"minimal", func(u *ModelUpdate) { *u = ModelUpdate{Name: "m", Kind: UpdateFull} }},
		{"one gate entry", func(u *ModelUpdate) { u.Gate = map[string]float64{"only": -0.0} }},
		{"large tensor", func(u *ModelUpdate) {
			data := make([]float32, 256*64)
			for i := range data {
				data[i] = float32(i) / 7
			}
			u.Tensors = []Tensor{{Name: "lstm.w", Rows: 256, Cols: 64, Data: data}}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want := sampleModel()
			tc.edit(&want)
			b, err := c.AppendModelUpdate(nil, &want)
			if err != nil {
				t.Fatalf("AppendModelUpdate = %v", err)
			}
			got, err := c.DecodeModelUpdate(b)
			if err != nil {
				t.Fatalf("DecodeModelUpdate = %v", err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("DecodeModelUpdate(AppendModelUpdate(u)) = %+v, want %+v", got, want)
			}
		})
	}
}

func TestModelUpdateKeepsFloatBits(t *testing.T) {
	c := newCodecs(t)
	u := ModelUpdate{Name: "m", Kind: UpdateFull, Tensors: []Tensor{{Name: "w", Rows: 1, Cols: 3,
		Data: []float32{float32(math.NaN()), float32(math.Inf(-1)), math.Float32frombits(0x80000000)}}}}
	b, err := c.AppendModelUpdate(nil, &u)
	if err != nil {
		t.Fatalf("AppendModelUpdate = %v", err)
	}
	got, err := c.DecodeModelUpdate(b)
	if err != nil {
		t.Fatalf("DecodeModelUpdate = %v", err)
	}
	for i, v := range got.Tensors[0].Data {
		if g, w := math.Float32bits(v), math.Float32bits(u.Tensors[0].Data[i]); g != w {
			t.Errorf("data[%d] bits = %#x, want %#x", i, g, w)
		}
	}
}

func TestModelUpdateEncodingIsCanonical(t *testing.T) {
	c := newCodecs(t)
	u := sampleModel()
	u.Gate = map[string]float64{}
	for i := range 64 {
		u.Gate[string(rune('a'+i%26))+strings.Repeat("x", i)] = float64(i)
	}
	first, err := c.AppendModelUpdate(nil, &u)
	if err != nil {
		t.Fatalf("AppendModelUpdate = %v", err)
	}
	for i := range 20 {
		again, err := c.AppendModelUpdate(nil, &u)
		if err != nil {
			t.Fatalf("AppendModelUpdate = %v", err)
		}
		if string(again) != string(first) {
			t.Fatalf("encoding %d differs from the first: the gate map is not written in a fixed order", i)
		}
	}
}

func TestModelUpdateRejects(t *testing.T) {
	c := newCodecs(t)
	tests := []struct {
		name string
		edit func(*ModelUpdate)
		want string
	}{
		{"no name", func(u *ModelUpdate) { u.Name = "" }, "name is empty"},
		{"bad kind", func(u *ModelUpdate) { u.Kind = "PARTIAL" }, `kind "PARTIAL"`},
		{"negative hidden", func(u *ModelUpdate) { u.Hidden = -1 }, "hidden -1"},
		{"data shorter than shape", func(u *ModelUpdate) { u.Tensors[1].Data = u.Tensors[1].Data[:2] }, "head.b) of shape 3x1 holds 2 values, want 3"},
		{"negative rows", func(u *ModelUpdate) { u.Tensors[2].Rows = -1 }, "shape -1x8"},
		{"negative class", func(u *ModelUpdate) { u.Exemplars[0].Class = -1 }, "exemplar 0 has class -1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u := sampleModel()
			tc.edit(&u)
			if _, err := c.AppendModelUpdate(nil, &u); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("AppendModelUpdate = %v, want ErrInvalid mentioning %q", err, tc.want)
			}
		})
	}
}

func modelNative(edit func(map[string]any)) map[string]any {
	m := map[string]any{
		"name": "m", "version": int64(1), "parent_version": int64(0), "kind": "FULL", "spec_hash": "",
		"features": int32(1), "hidden": int32(1), "created_ns": int64(0),
		"classes": []any{}, "thresholds": []any{}, "anomaly_threshold": float32(1),
		"norm_mean": []any{}, "norm_std": []any{},
		"tensors":   []any{map[string]any{"name": "w", "rows": int32(1), "cols": int32(2), "data": make([]byte, 8)}},
		"exemplars": []any{map[string]any{"class": int32(0), "embedding": make([]byte, 8)}},
		"gate":      map[string]any{}, "key_id": "", "signature": []byte{},
	}
	edit(m)
	return m
}

func TestDecodeModelUpdateValidates(t *testing.T) {
	c := newCodecs(t)
	tests := []struct {
		name string
		edit func(map[string]any)
		want string
	}{
		{"data not whole floats", func(m map[string]any) {
			m["tensors"] = []any{map[string]any{"name": "w", "rows": int32(1), "cols": int32(2), "data": make([]byte, 7)}}
		}, "data is 7 bytes"},
		{"data does not match shape", func(m map[string]any) {
			m["tensors"] = []any{map[string]any{"name": "w", "rows": int32(2), "cols": int32(2), "data": make([]byte, 8)}}
		}, "holds 2 values, want 4"},
		{"shape overflows int32 product", func(m map[string]any) {
			m["tensors"] = []any{map[string]any{"name": "w", "rows": int32(math.MaxInt32), "cols": int32(math.MaxInt32), "data": make([]byte, 4)}}
		}, "want 4611686014132420609"},
		{"embedding not whole floats", func(m map[string]any) {
			m["exemplars"] = []any{map[string]any{"class": int32(0), "embedding": make([]byte, 5)}}
		}, "embedding is 5 bytes"},
		{"negative features", func(m map[string]any) { m["features"] = int32(-3) }, "features -3"},
		{"empty name", func(m map[string]any) { m["name"] = "" }, "name is empty"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := rawFrame(t, SubjectModelUpdate, 4, modelNative(tc.edit))
			if _, err := c.DecodeModelUpdate(b); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("DecodeModelUpdate = %v, want ErrInvalid mentioning %q", err, tc.want)
			}
		})
	}
}

func TestCodecsConcurrent(t *testing.T) {
	c := newCodecs(t)
	f := sampleFlow()
	u := sampleModel()
	roundTrip := func() error {
		b, err := c.AppendFlow(nil, &f)
		if err != nil {
			return err
		}
		if _, err := c.DecodeFlow(b); err != nil {
			return err
		}
		if b, err = c.AppendModelUpdate(nil, &u); err != nil {
			return err
		}
		_, err = c.DecodeModelUpdate(b)
		return err
	}
	errs := make(chan error, 8)
	for range cap(errs) {
		go func() {
			var err error
			for i := 0; i < 50 && err == nil; i++ {
				err = roundTrip()
			}
			errs <- err
		}()
	}
	for range cap(errs) {
		if err := <-errs; err != nil {
			t.Errorf("concurrent round trip = %v", err)
		}
	}
}
