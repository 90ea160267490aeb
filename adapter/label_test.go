package adapter

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow/go/v15/arrow/memory"
	"github.com/segmentio/kafka-go"

	"github.com/metaids/metaids/features"
	"github.com/metaids/metaids/schemas"
)

// wantFileLabels are the labels of every file in testdata/labels.
var wantFileLabels = []schemas.Label{
	{TargetID: "00000000000000ff", TargetKind: schemas.TargetFlow, Verdict: "benign", Analyst: "ann", Reason: "backup job", TimeNs: 1700000000000000000},
	{TargetID: "9f86d081884c7d65", TargetKind: schemas.TargetAlert, Verdict: "ransomware", Analyst: "bob", Reason: "encrypts shares, then beacons"},
	{TargetID: "0000000000000100", TargetKind: schemas.TargetFlow, Verdict: "ransomware", Analyst: "bob"},
}

func TestReadLabels(t *testing.T) {
	tests := []struct {
		name    string
		file    string // in testdata/labels, or
		text    string // inline
		format  string
		want    []schemas.Label
		wantErr error
		errText string
	}{
		{name: "csv", file: "labels.csv", format: FormatCSV, want: wantFileLabels},
		{name: "ndjson", file: "labels.ndjson", format: FormatJSON, want: wantFileLabels},
		{name: "json array", file: "labels.json", format: FormatJSON, want: wantFileLabels},
		{name: "empty csv", text: "", format: FormatCSV},
		{name: "empty json", text: "\n", format: FormatJSON},
		{name: "csv without verdict column", text: "target_id\n00000000000000ff\n", format: FormatCSV, wantErr: ErrLabelFile, errText: "no verdict column"},
		{name: "csv bad kind", text: "target_id,verdict,target_kind\n00000000000000ff,benign,host\n", format: FormatCSV, wantErr: ErrLabelFile, errText: "line 2"},
		{name: "csv bad flow id", text: "target_id,verdict\n10.0.0.1,benign\n", format: FormatCSV, wantErr: ErrLabelFile, errText: "16 hex digits"},
		{name: "csv bad time", text: "target_id,verdict,time_ns\n00000000000000ff,benign,yesterday\n", format: FormatCSV, wantErr: ErrLabelFile, errText: "time_ns"},
		{name: "csv ragged", text: "target_id,verdict\n00000000000000ff\n", format: FormatCSV, wantErr: ErrLabelFile},
		{name: "reserved verdict", text: `{"target_id": "00000000000000ff", "target_kind": "FLOW", "verdict": "anomaly"}`, format: FormatJSON, wantErr: ErrLabelFile, errText: "line 1"},
		{name: "verdict with spaces", text: `[{"target_id": "x", "target_kind": "ALERT", "verdict": "bad guy"}]`, format: FormatJSON, wantErr: ErrLabelFile, errText: "item 0"},
		{name: "json missing verdict", text: `{"target_id": "x", "target_kind": "ALERT"}`, format: FormatJSON, wantErr: schemas.ErrInvalid},
		{name: "json not json", text: `[{`, format: FormatJSON, wantErr: ErrLabelFile},
		{name: "unknown format", text: "", format: "xml", wantErr: ErrUnknownFormat},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			text := tc.text
			if tc.file != "" {
				b, err := os.ReadFile(filepath.Join("testdata", "labels", tc.file))
				if err != nil {
					t.Fatal(err)
				}
				text = string(b)
			}
			got, err := ReadLabels(strings.NewReader(text), tc.format)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), tc.errText) {
					t.Fatalf("ReadLabels = %v, want %v containing %q", err, tc.wantErr, tc.errText)
				}
				return
			}
			if err != nil {
				t.Fatalf("ReadLabels: %v", err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("ReadLabels = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func FuzzReadLabels(f *testing.F) {
	for _, name := range []string{"labels.csv", "labels.ndjson", "labels.json"} {
		b, err := os.ReadFile(filepath.Join("testdata", "labels", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, name == "labels.csv")
	}
	f.Fuzz(func(t *testing.T, b []byte, csv bool) {
		format := FormatJSON
		if csv {
			format = FormatCSV
		}
		labels, err := ReadLabels(strings.NewReader(string(b)), format)
		if err != nil {
			if !errors.Is(err, ErrLabelFile) && !errors.Is(err, schemas.ErrMalformed) && !errors.Is(err, schemas.ErrInvalid) {
				t.Fatalf("ReadLabels error %v wraps none of the package's errors", err)
			}
			return
		}
		for i := range labels {
			if err := checkLabel(&labels[i]); err != nil {
				t.Fatalf("ReadLabels returned label %d that fails its own check: %v", i, err)
			}
		}
	})
}

func TestSendLabels(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a broker")
	}
	p := newPipeline(t, 40)
	before := time.Now().UnixNano()
	timed := FlowLabel(0xff, "benign", "ann", "")
	timed.TimeNs = 42
	sent := []schemas.Label{timed, AlertLabel("9f86d081884c7d65", "ransomware", "bob", "why")}
	p.send(sent...)
	if err := SendLabels(t.Context(), p.out, p.topics.Labels(), []schemas.Label{FlowLabel(1, "bad verdict", "", "")}); err == nil {
		t.Errorf("SendLabels(bad verdict) = nil, want an error")
	}

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var got []schemas.Label
	for part := range 2 {
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: p.kafka.Brokers, Topic: p.topics.Labels(), Partition: part, MaxWait: 20 * time.Millisecond})
		defer r.Close()
		conn, err := kafka.DialLeader(ctx, "tcp", p.kafka.Brokers[0], p.topics.Labels(), part)
		if err != nil {
			t.Fatal(err)
		}
		last, err := conn.ReadLastOffset()
		conn.Close()
		if err != nil {
			t.Fatal(err)
		}
		for range last {
			msg, err := r.ReadMessage(ctx)
			if err != nil {
				t.Fatal(err)
			}
			l, err := p.codecs.DecodeLabel(msg.Value)
			if err != nil {
				t.Fatalf("DecodeLabel: %v", err)
			}
			if string(msg.Key) != l.TargetID {
				t.Errorf("label keyed %q, want its target id %q", msg.Key, l.TargetID)
			}
			got = append(got, l)
		}
	}
	if len(got) != 2 {
		t.Fatalf("read %d labels back, want 2", len(got))
	}
	slices.SortFunc(got, func(a, b schemas.Label) int { return strings.Compare(a.Verdict, b.Verdict) })
	if got[0] != sent[0] {
		t.Errorf("label read back = %+v, want %+v", got[0], sent[0])
	}
	if got[1].TimeNs < before || got[1].TargetKind != schemas.TargetAlert || got[1].Reason != "why" {
		t.Errorf("label read back = %+v, want the alert label stamped at sending", got[1])
	}
}

func TestScriptedAnalyst(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	truth := map[uint64]string{}
	batch := func(first uint64, n int) *features.ScoresView {
		b, err := features.NewScoresBuilder(mem, []string{"benign"}, 2)
		if err != nil {
			t.Fatal(err)
		}
		defer b.Release()
		for i := range n {
			id := first + uint64(i)
			truth[id] = "benign"
			if id%3 == 0 {
				truth[id] = "ransomware"
			}
			if err := b.Append(&features.Score{FlowID: id, Probs: []float32{1}, Embedding: []float32{0, 0}}); err != nil {
				t.Fatal(err)
			}
		}
		rec := b.NewRecord()
		defer rec.Release()
		enc, err := features.Encode(nil, rec)
		if err != nil {
			t.Fatal(err)
		}
		v, err := features.DecodeScores(enc, mem)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	a := &ScriptedAnalyst{Family: "ransomware", Truth: func(id uint64) (string, bool) { f, ok := truth[id]; return f, ok }}
	var labels []schemas.Label
	for first := uint64(1); !a.Done(); first += 12 {
		v := batch(first, 12)
		labels = append(labels, a.Observe(v)...)
		labels = append(labels, a.Observe(v)...) // seen again: no new labels
		v.Release()
		if first > 1000 {
			t.Fatal("the analyst never finished")
		}
	}
	if len(labels) != 10 {
		t.Fatalf("analyst gave %d labels, want 10", len(labels))
	}
	seen := map[string]bool{}
	for _, l := range labels {
		id, err := schemas.ParseID(l.TargetID)
		if err != nil || truth[id] != "ransomware" || l.Verdict != "ransomware" || l.TargetKind != schemas.TargetFlow || seen[l.TargetID] {
			t.Errorf("label %+v: want one label per ransomware flow", l)
		}
		seen[l.TargetID] = true
		if err := checkLabel(&l); err != nil {
			t.Errorf("label %+v: %v", l, err)
		}
	}
}
