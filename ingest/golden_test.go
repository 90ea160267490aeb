package ingest

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/metaids/metaids/schemas"
)

var update = flag.Bool("update", false, "rewrite testdata/golden from the decoders' output")

// testNow is the clock of the fixtures: they were written as if captured in
// the hour before it.
var testNow = time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)

func fixedClock() time.Time { return testNow }

func mustDecoders(t testing.TB, cfg DecoderConfig) map[string]Decoder {
	t.Helper()
	decs, err := NewDecoders(cfg, nil)
	if err != nil {
		t.Fatalf("NewDecoders: %v", err)
	}
	return decs
}

func mustValidator(t testing.TB, replay bool) *Validator {
	t.Helper()
	cfg := DefaultValidatorConfig()
	cfg.Replay = replay
	v, err := NewValidator(cfg, fixedClock)
	if err != nil {
		t.Fatalf("NewValidator: %v", err)
	}
	return v
}

// goldenFlow is a Flow as reviewers read it in the golden files.
type goldenFlow struct {
	Start    string `json:"start"`
	End      string `json:"end"`
	Src      string `json:"src"`
	Dst      string `json:"dst"`
	Proto    uint8  `json:"proto"`
	BytesOut uint64 `json:"bytes_out"`
	BytesIn  uint64 `json:"bytes_in"`
	PktsOut  uint64 `json:"pkts_out"`
	PktsIn   uint64 `json:"pkts_in"`
	TCPFlags string `json:"tcp_flags"`
	Service  string `json:"service,omitempty"`
	Source   string `json:"source"`
	ID       string `json:"id"`
}

func flagString(f uint8) string {
	if f == 0 {
		return ""
	}
	var names []string
	for i, n := range []string{"FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"} {
		if f&(1<<i) != 0 {
			names = append(names, n)
		}
	}
	return fmt.Sprintf("0x%02x %s", f, strings.Join(names, "|"))
}

func toGolden(f *schemas.Flow) goldenFlow {
	return goldenFlow{
		Start:    fmtNs(f.StartNs),
		End:      fmtNs(f.EndNs),
		Src:      netip.AddrPortFrom(f.SrcAddr, f.SrcPort).String(),
		Dst:      netip.AddrPortFrom(f.DstAddr, f.DstPort).String(),
		Proto:    f.Proto,
		BytesOut: f.BytesOut, BytesIn: f.BytesIn, PktsOut: f.PktsOut, PktsIn: f.PktsIn,
		TCPFlags: flagString(f.TCPFlags),
		Service:  f.Service,
		Source:   fmt.Sprintf("%s/%d/%d/%d", f.Source.Topic, f.Source.Partition, f.Source.Offset, f.Source.Index),
		ID:       schemas.FormatID(f.ID()),
	}
}

type goldenRecord struct {
	Offset  int          `json:"offset"`
	Outcome string       `json:"outcome"`
	Reason  string       `json:"reason,omitempty"`
	Error   string       `json:"error,omitempty"`
	Flows   []goldenFlow `json:"flows,omitempty"`
}

// splitRecords cuts a fixture into Kafka records: one per line, as a
// tailer sends them, or the whole file as one chunk.
func splitRecords(b []byte, whole bool) [][]byte {
	if whole {
		return [][]byte{b}
	}
	var recs [][]byte
	for _, l := range bytes.SplitAfter(b, []byte("\n")) {
		if len(l) > 0 {
			recs = append(recs, l)
		}
	}
	return recs
}

// runFixture decodes and validates every record of a fixture as the stage
// would, on a fresh set of decoders.
func runFixture(t *testing.T, format, file string, whole, replay bool) []goldenRecord {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	dec := mustDecoders(t, DefaultDecoderConfig())[format]
	v := mustValidator(t, replay)
	var out []goldenRecord
	for i, rec := range splitRecords(b, whole) {
		src := schemas.Coord{Topic: "flows." + format, Partition: 0, Offset: int64(i)}
		flows, err := dec.Decode(nil, rec, src)
		if err == nil {
			err = v.Check(flows)
		}
		outcome, reason := Outcome(err)
		g := goldenRecord{Offset: i, Outcome: outcome, Reason: reason}
		if err != nil {
			g.Error = err.Error()
			if len(flows) != 0 && outcome != "dead_lettered" {
				t.Errorf("%s record %d: %d flows with error %v", file, i, len(flows), err)
			}
		} else {
			for j := range flows {
				g.Flows = append(g.Flows, toGolden(&flows[j]))
			}
		}
		out = append(out, g)
	}
	return out
}

var goldenCases = []struct {
	name, format, file string
	whole, replay      bool
}{
	{"goflow2-flows", FormatGoflow2, "goflow2/flows.jsonl", false, false},
	{"goflow2-quirks", FormatGoflow2, "goflow2/quirks.jsonl", false, false},
	{"pmacct-flows", FormatPmacct, "pmacct/flows.jsonl", false, false},
	{"pmacct-quirks", FormatPmacct, "pmacct/quirks.jsonl", false, false},
	{"nprobe-flows", FormatNprobe, "nprobe/flows.jsonl", false, false},
	{"nprobe-quirks", FormatNprobe, "nprobe/quirks.jsonl", false, false},
	{"zeek-json", FormatZeekJSON, "zeek/conn.json.log", false, false},
	{"zeek-tsv-lines", FormatZeekTSV, "zeek/conn.tsv.log", false, false},
	{"zeek-tsv-chunk", FormatZeekTSV, "zeek/conn.tsv.log", true, false},
	{"zeek-tsv-labeled", FormatZeekTSV, "zeek/labeled.tsv.log", false, false},
	{"zeek-tsv-custom", FormatZeekTSV, "zeek/custom.tsv.log", false, false},
	{"zeek-tsv-noheader", FormatZeekTSV, "zeek/noheader.tsv.log", false, false},
	{"suricata-eve", FormatSuricata, "suricata/eve.json", false, false},
	{"vpc-default", FormatVPC, "vpc/default.txt", false, false},
	{"vpc-custom", FormatVPC, "vpc/custom.txt", false, false},
	{"cic-improved", FormatCIC, "cic/improved.csv", false, true},
	{"cic-cicids2017", FormatCIC, "cic/cicids2017.csv", false, true},
	{"cic-cicids2018", FormatCIC, "cic/cicids2018.csv", false, true},
	{"nfdump-flows", FormatNfdump, "nfdump/flows.jsonl", false, false},
	{"nfdump-array", FormatNfdump, "nfdump/array.json", true, false},
}

// TestGolden decodes every fixture and compares the outcome of each record
// with testdata/golden. Run go test ./ingest -update to rewrite the golden
// files after a deliberate change, and review the diff.
func TestGolden(t *testing.T) {
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := json.MarshalIndent(runFixture(t, tc.format, tc.file, tc.whole, tc.replay), "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			path := filepath.Join("testdata", "golden", tc.name+".json")
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./ingest -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("decoded %s differs from %s (go test ./ingest -update rewrites it):\n%s", tc.file, path, lineDiff(string(want), string(got)))
			}
		})
	}
}

// lineDiff shows the first differing lines, enough to see what changed.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return fmt.Sprintf("line %d:\n- %s\n+ %s", i+1, wl, gl)
		}
	}
	return ""
}

// TestAutoMatchesFormat checks that the auto decoder sniffs every fixture
// to the decoder it was written for: same outcomes, same flows.
func TestAutoMatchesFormat(t *testing.T) {
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			want := runFixture(t, tc.format, tc.file, tc.whole, tc.replay)
			got := runFixtureAs(t, FormatAuto, tc.format, tc.file, tc.whole, tc.replay)
			gj, _ := json.Marshal(got)
			wj, _ := json.Marshal(want)
			if !bytes.Equal(gj, wj) {
				t.Errorf("auto on %s:\n%s", tc.file, lineDiff(string(wj), string(gj)))
			}
		})
	}
}

// runFixtureAs is runFixture with the decoder of format dec but the topic
// of format topicFormat, so ids match.
func runFixtureAs(t *testing.T, dec, topicFormat, file string, whole, replay bool) []goldenRecord {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	d := mustDecoders(t, DefaultDecoderConfig())[dec]
	v := mustValidator(t, replay)
	var out []goldenRecord
	for i, rec := range splitRecords(b, whole) {
		src := schemas.Coord{Topic: "flows." + topicFormat, Partition: 0, Offset: int64(i)}
		flows, err := d.Decode(nil, rec, src)
		if err == nil {
			err = v.Check(flows)
		}
		outcome, reason := Outcome(err)
		g := goldenRecord{Offset: i, Outcome: outcome, Reason: reason}
		if err != nil {
			g.Error = err.Error()
		} else {
			for j := range flows {
				g.Flows = append(g.Flows, toGolden(&flows[j]))
			}
		}
		out = append(out, g)
	}
	return out
}
