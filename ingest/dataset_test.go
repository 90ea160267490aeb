package ingest

import (
	"bufio"
	"compress/gzip"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/metaids/metaids/schemas"
)

// sharedDatasets is where the project's shared datasets live, relative to
// this package's directory.
const sharedDatasets = "../../shared/datasets"

// datasetLines returns the first n lines of a gzip file, or skips the test
// when the shared datasets are not beside the repository.
func datasetLines(t *testing.T, path string, n int) [][]byte {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	zr, err := gzip.NewReader(fh)
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(zr)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var lines [][]byte
	for len(lines) < n && sc.Scan() {
		lines = append(lines, append([]byte(nil), sc.Bytes()...))
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return lines
}

func sharedFiles(t *testing.T, dir, pattern string) []string {
	t.Helper()
	d := filepath.Join(sharedDatasets, dir)
	if _, err := os.Stat(d); err != nil {
		t.Skipf("needs the shared datasets at %s (not present: %v)", d, err)
	}
	files, err := filepath.Glob(filepath.Join(d, pattern))
	if err != nil || len(files) == 0 {
		t.Fatalf("no %s in %s: %v", pattern, d, err)
	}
	return files
}

// TestStratosphereZeekTSV decodes the first lines of each real Stratosphere
// CTU-50 conn.log, one line per record as a tailer ships them: eight header
// lines are skipped, every row decodes and passes replay validation.
func TestStratosphereZeekTSV(t *testing.T) {
	for i, path := range sharedFiles(t, "stratosphere-ctu50-zeek", "*.conn.log.labeled.gz") {
		t.Run(filepath.Base(path), func(t *testing.T) {
			decs := mustDecoders(t, DefaultDecoderConfig())
			v := mustValidator(t, true)
			lines := datasetLines(t, path, 500)
			for _, format := range []string{FormatZeekTSV, FormatAuto} {
				headers, rows, tcp, flagged := 0, 0, 0, 0
				for off, line := range lines {
					src := schemas.Coord{Topic: "flows.zeek-" + format, Partition: int32(i), Offset: int64(off)}
					flows, err := decs[format].Decode(nil, line, src)
					if isSkip(err, SkipHeader) {
						headers++
						continue
					}
					if err == nil {
						err = v.Check(flows)
					}
					if err != nil || len(flows) != 1 {
						t.Fatalf("%s line %d: %d flows, %v\n%s", format, off+1, len(flows), err, line)
					}
					// OTH rows with history "C" or unset carry no flags;
					// nearly every other TCP row does.
					if f := flows[0]; f.Proto == 6 {
						tcp++
						if f.TCPFlags != 0 {
							flagged++
						}
					}
					rows++
				}
				if flagged < tcp*9/10 {
					t.Errorf("%s: only %d of %d TCP flows have flags", format, flagged, tcp)
				}
				if headers != 8 || rows != len(lines)-8 {
					t.Errorf("%s: %d headers and %d rows, want 8 and %d", format, headers, rows, len(lines)-8)
				}
			}
			// The same lines as one chunk give the same flows.
			chunk := append(bytesJoin(lines), '\n')
			flows, err := decs[FormatZeekTSV].Decode(nil, chunk, schemas.Coord{Topic: "chunk"})
			if err != nil || len(flows) != len(lines)-8 {
				t.Errorf("as one chunk: %d flows, %v; want %d", len(flows), err, len(lines)-8)
			}
		})
	}
}

// TestCICImprovedDataset decodes the first rows of each file of the
// corrected CIC-IDS2017 sample in replay mode.
func TestCICImprovedDataset(t *testing.T) {
	for i, path := range sharedFiles(t, "cicids2017-improved-sampled", "*.csv.gz") {
		t.Run(filepath.Base(path), func(t *testing.T) {
			dec := mustDecoders(t, DefaultDecoderConfig())[FormatCIC]
			v := mustValidator(t, true)
			lines := datasetLines(t, path, 300)
			for off, line := range lines {
				src := schemas.Coord{Topic: "flows.cic", Partition: int32(i), Offset: int64(off)}
				flows, err := dec.Decode(nil, line, src)
				if off == 0 {
					if !isSkip(err, SkipHeader) {
						t.Fatalf("header: %v", err)
					}
					continue
				}
				if err == nil {
					err = v.Check(flows)
				}
				if err != nil || len(flows) != 1 {
					t.Fatalf("row %d: %v\n%.200s", off, err, line)
				}
				if f := flows[0]; f.PktsOut == 0 || f.StartNs < 1498867200e9 || f.StartNs > 1499472000e9 {
					t.Errorf("row %d: implausible flow %+v", off, f)
				}
			}
		})
	}
}

func bytesJoin(lines [][]byte) []byte {
	var out []byte
	for i, l := range lines {
		if i > 0 {
			out = append(out, '\n')
		}
		out = append(out, l...)
	}
	return out
}

// TestAvro round-trips flows through schemas' codec and checks that the
// decoder adopts the input coordinates and maps codec errors to reasons.
func TestAvro(t *testing.T) {
	codecs, err := schemas.NewCodecs(nil)
	if err != nil {
		t.Fatal(err)
	}
	decs, err := NewDecoders(DefaultDecoderConfig(), codecs)
	if err != nil {
		t.Fatal(err)
	}
	in := flowAt(testNow.Add(-2e9), testNow.Add(-1e9), 0)
	in.BytesOut, in.PktsOut, in.Service = 1500, 3, "https"
	in.Source = schemas.Coord{Topic: "edge", Partition: 9, Offset: 77, Index: 4}
	rec, err := codecs.AppendFlow(nil, &in)
	if err != nil {
		t.Fatal(err)
	}
	src := schemas.Coord{Topic: "flows.avro", Partition: 1, Offset: 5}
	for _, format := range []string{FormatAvro, FormatAuto} {
		flows, err := decs[format].Decode(nil, rec, src)
		if err != nil || len(flows) != 1 {
			t.Fatalf("%s: Decode = %d flows, %v", format, len(flows), err)
		}
		want := in
		want.Source = src
		if flows[0] != want {
			t.Errorf("%s: Decode = %+v, want %+v", format, flows[0], want)
		}
	}
	for _, tc := range []struct {
		name string
		rec  []byte
		want Reason
	}{
		{"truncated body", rec[:len(rec)-3], ReasonBadSchema},
		{"other schema id", append([]byte{0, 0, 0, 0, 2}, rec[5:]...), ReasonBadSchema},
	} {
		_, err := decs[FormatAvro].Decode(nil, tc.rec, src)
		var re *RecordError
		if !errors.As(err, &re) || re.Reason != tc.want {
			t.Errorf("%s: Decode = %v, want %s", tc.name, err, tc.want)
		}
	}
}
