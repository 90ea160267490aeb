package ingest

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/metaids/metaids/schemas"
)

// benchRecords loads a fixture's records and splits off the header lines,
// which prime a stateful decoder once instead of being timed.
func benchRecords(b *testing.B, file string) (headers, data [][]byte) {
	b.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		b.Fatal(err)
	}
	for _, rec := range splitRecords(raw, false) {
		t := bytes.TrimSpace(rec)
		switch {
		case len(t) == 0:
		case t[0] == '#' || vpcIsHeader(t) || cicIsHeader(t):
			headers = append(headers, rec)
		default:
			data = append(data, rec)
		}
	}
	return headers, data
}

// BenchmarkDecode measures each decoder on one core over its fixture's
// records, one record per Decode as the stage calls it, into a reused dst.
// Run with go test ./ingest -run XXX -bench . -cpu 1.
func BenchmarkDecode(b *testing.B) {
	for _, bc := range []struct{ name, format, file string }{
		{"goflow2", FormatGoflow2, "goflow2/flows.jsonl"},
		{"pmacct", FormatPmacct, "pmacct/flows.jsonl"},
		{"nprobe", FormatNprobe, "nprobe/flows.jsonl"},
		{"zeek-json", FormatZeekJSON, "zeek/conn.json.log"},
		{"zeek-tsv", FormatZeekTSV, "zeek/conn.tsv.log"},
		{"suricata", FormatSuricata, "suricata/eve.json"},
		{"vpc", FormatVPC, "vpc/default.txt"},
		{"cic", FormatCIC, "cic/improved.csv"},
		{"nfdump", FormatNfdump, "nfdump/flows.jsonl"},
		{"auto-goflow2", FormatAuto, "goflow2/flows.jsonl"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			dec := mustDecoders(b, DefaultDecoderConfig())[bc.format]
			headers, data := benchRecords(b, bc.file)
			src := schemas.Coord{Topic: "flows.bench"}
			for _, h := range headers {
				dec.Decode(nil, h, src)
			}
			dst := make([]schemas.Flow, 0, 16)
			var size int
			for _, d := range data {
				size += len(d)
			}
			b.SetBytes(int64(size / len(data)))
			b.ReportAllocs()
			n, i := 0, 0
			for b.Loop() {
				var err error
				dst, err = dec.Decode(dst[:0], data[i], src)
				if err != nil {
					if _, skip := err.(*Skip); !skip {
						b.Fatal(err)
					}
				}
				n += len(dst)
				if i++; i == len(data) {
					i = 0
				}
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "flows/s")
		})
	}
}

// BenchmarkDecodeChunk measures a tailer chunk of many Zeek TSV lines in one
// record.
func BenchmarkDecodeChunk(b *testing.B) {
	_, data := benchRecords(b, "zeek/conn.tsv.log")
	var chunk []byte
	for len(chunk) < 64<<10 {
		for _, d := range data {
			chunk = append(chunk, d...)
		}
	}
	dec := mustDecoders(b, DefaultDecoderConfig())[FormatZeekTSV]
	src := schemas.Coord{Topic: "flows.bench"}
	dst := make([]schemas.Flow, 0, 1024)
	b.SetBytes(int64(len(chunk)))
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		var err error
		if dst, err = dec.Decode(dst[:0], chunk, src); err != nil {
			b.Fatal(err)
		}
		n += len(dst)
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "flows/s")
}

func BenchmarkValidate(b *testing.B) {
	for _, replay := range []bool{false, true} {
		name := "live"
		if replay {
			name = "replay"
		}
		b.Run(name, func(b *testing.B) {
			v := mustValidator(b, replay)
			flows := []schemas.Flow{flowAt(testNow.Add(-2e9), testNow.Add(-1e9), 0)}
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				if err := v.Check(flows); err != nil {
					b.Fatal(err)
				}
				n++
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "flows/s")
		})
	}
}
