package ingest

import (
	"bufio"
	"compress/gzip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// sharedDatasetDir returns ../../shared/datasets/name, or skips the test
// when the shared datasets are not beside the repository.
func sharedDatasetDir(t *testing.T, name string) string {
	t.Helper()
	dir := filepath.Join("..", "..", "shared", "datasets", name)
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("needs the shared datasets at %s, which is absent: %v", dir, err)
	}
	return dir
}

// gzipLines returns the non-empty lines of a gzip file, as `metaids replay`
// sends them: one message per line, without the line ending.
func gzipLines(t *testing.T, path string) [][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(zr)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var out [][]byte
	for sc.Scan() {
		if len(sc.Bytes()) > 0 {
			out = append(out, append([]byte(nil), sc.Bytes()...))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return out
}

// TestDatasetReplay replays every file of the shared datasets in an ingest
// format through the stage over the embedded broker, as `metaids replay`
// does (one message per line, headers first, file i on partition i mod 4),
// with -ingest.replay on so that 2017 and 2022 flows are judged against
// their own partition's time. Every record must be accounted for: records
// in = feature rows on the topic + dead letters + skips. LUFlow is not an
// ingest format; TestLUFlowReplay sends it as Avro flows. Under -race only
// the first 2000 lines of each file are replayed.
func TestDatasetReplay(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: replays the shared datasets through a broker and the stage")
	}
	for _, tc := range []struct {
		dir, pattern, topic, format string
		minOK                       float64 // share of data rows that must become flows
	}{
		{"cicids2017-improved-sampled", "*.csv.gz", "flows.cic", FormatCIC, 0.99},
		{"stratosphere-ctu50-zeek", "*.conn.log.labeled.gz", "flows.zeek", FormatZeekTSV, 0.99},
	} {
		t.Run(tc.dir, func(t *testing.T) {
			dir := sharedDatasetDir(t, tc.dir)
			files, err := filepath.Glob(filepath.Join(dir, tc.pattern))
			if err != nil || len(files) == 0 {
				t.Fatalf("no %s in %s: %v", tc.pattern, dir, err)
			}
			const parts = 4
			e := startBroker(t, parts, tc.topic)
			cfg := testConfig(t, e, map[string]string{tc.topic: tc.format})
			cfg.Ingest.Replay = true
			cfg.Ingest.Partitions = parts
			start := time.Now()
			s := startStage(t, cfg, nil)
			sent := 0
			for i, f := range files {
				lines := gzipLines(t, f)
				if RaceEnabled {
					lines = lines[:min(len(lines), 2000)]
				}
				produce(t, cfg.Config, tc.topic, i%parts, nil, lines...)
				sent += len(lines)
			}
			c := waitHandled(t, s.Stage, sourceOf(tc.topic), sent, 90*time.Second)
			elapsed := time.Since(start)
			rows := len(readFeatures(t, e.Addr(), cfg.Topic("features"), parts))
			dlq := len(readTopic(t, e.Addr(), cfg.Topic("flows.dlq")))
			t.Logf("%d files, %d records in %v: %d feature rows, %d dead letters %v, %v skipped",
				len(files), sent, elapsed.Round(time.Millisecond), rows, dlq, s.deadLetterReasons(), c.skipped)
			if float64(rows)+float64(dlq)+c.skipped != float64(sent) {
				t.Errorf("records in = %d, want feature rows (%d) + dead letters (%d) + skipped (%v) = %v",
					sent, rows, dlq, c.skipped, float64(rows)+float64(dlq)+c.skipped)
			}
			if got := testutil.ToFloat64(s.met.flows); got != float64(rows) || c.ok != float64(rows) || c.dead != float64(dlq) {
				t.Errorf("flows_total = %v, ok = %v, dead_lettered = %v; want %d rows, one per ok record, and %d dead letters",
					got, c.ok, c.dead, rows, dlq)
			}
			if data := float64(sent) - c.skipped; float64(rows) < tc.minOK*data {
				t.Errorf("%d of %v data rows became flows, want at least %.0f%%", rows, data, 100*tc.minOK)
			}
		})
	}
}
