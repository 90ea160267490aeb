package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/metaids/metaids/features"
	"github.com/metaids/metaids/ingest"
	"github.com/metaids/metaids/stream"
)

// eventually polls f until it returns nil or timeout passes.
func eventually(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", timeout, err)
		}
		<-tick.C
	}
}

func startEmbedded(t *testing.T, partitions int, topics ...string) *stream.Embedded {
	t.Helper()
	e, err := stream.StartEmbedded(stream.EmbeddedConfig{Partitions: partitions, SeedTopics: topics})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

// topicMessages reads every message of topic from the partition leaders.
func topicMessages(t *testing.T, addr, topic string) map[int][]kafka.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	conn, err := kafka.DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	parts, err := conn.ReadPartitions(topic)
	conn.Close()
	if err != nil {
		t.Fatal(err)
	}
	out := map[int][]kafka.Message{}
	for _, p := range parts {
		lc, err := kafka.DialLeader(ctx, "tcp", addr, topic, p.ID)
		if err != nil {
			t.Fatal(err)
		}
		first, last, err := lc.ReadOffsets()
		if err != nil {
			t.Fatal(err)
		}
		for off := first; off < last; {
			lc.Seek(off, kafka.SeekAbsolute)
			lc.SetReadDeadline(time.Now().Add(10 * time.Second))
			b := lc.ReadBatch(1, 16<<20)
			for {
				m, err := b.ReadMessage()
				if err != nil {
					break
				}
				out[p.ID] = append(out[p.ID], m)
				off = m.Offset + 1
			}
			b.Close()
		}
		lc.Close()
	}
	return out
}

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "ingest", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func nonEmptyLines(b []byte) []string {
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSuffix(l, "\r"); l != "" {
			out = append(out, l)
		}
	}
	return out
}

func gz(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestReplayKeepsHeaderContext replays Zeek TSV and CICFlowMeter files,
// plain and gzipped, named as a directory and a glob, and checks that each
// file's lines sit in one partition in file order, headers first, and that
// the ingest stage therefore decodes every row: no dead letter, one skip
// per header line.
func TestReplayKeepsHeaderContext(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: starts a broker and the ingest stage")
	}
	dir := t.TempDir()
	zeek := fixture(t, "zeek/conn.tsv.log")
	cic := fixture(t, "cic/cicids2017.csv")
	custom := fixture(t, "zeek/custom.tsv.log")
	os.MkdirAll(filepath.Join(dir, "zeek"), 0o755)
	files := map[string][]byte{
		filepath.Join(dir, "zeek", "a.conn.log.gz"): gz(t, zeek),
		filepath.Join(dir, "zeek", "b.conn.log"):    custom,
		filepath.Join(dir, "zeek", "README.md"):     []byte("not a log: replay skips it in directories\n"),
		filepath.Join(dir, "cic-1.csv"):             cic,
		filepath.Join(dir, "cic-2.csv.gz"):          gz(t, cic),
	}
	for p, b := range files {
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	const parts = 4
	e := startEmbedded(t, parts)
	for _, tc := range []struct {
		topic  string
		args   []string
		inputs [][]byte // in replay order
	}{
		{"flows.zeek", []string{filepath.Join(dir, "zeek")}, [][]byte{zeek, custom}},
		{"flows.cic", []string{filepath.Join(dir, "cic-*")}, [][]byte{cic, cic}},
	} {
		var out bytes.Buffer
		args := append([]string{"replay", "-kafka.brokers", e.Addr(), "-replay.topic", tc.topic, "-replay.partitions", strconv.Itoa(parts)}, tc.args...)
		if code := run(t.Context(), args, &out); code != exitOK {
			t.Fatalf("run(%q) = %d, want 0; output:\n%s", args, code, out.String())
		}
		got := topicMessages(t, e.Addr(), tc.topic)
		for i, in := range tc.inputs {
			want := nonEmptyLines(in)
			var have []string
			for _, m := range got[i%parts] {
				have = append(have, string(m.Value))
			}
			if strings.Join(have, "\n") != strings.Join(want, "\n") {
				t.Errorf("%s partition %d holds\n%s\nwant the lines of file %d in order:\n%s", tc.topic, i%parts, strings.Join(have, "\n"), i, strings.Join(want, "\n"))
			}
		}
	}

	// The stage reads what replay wrote and finds every header in place.
	cfg := ingest.DefaultConfig()
	cfg.Config = e.Config()
	cfg.Writer.BatchTimeout = 5 * time.Millisecond
	cfg.Reader.MaxWait = 50 * time.Millisecond
	cfg.Group.SessionTimeout, cfg.Group.HeartbeatInterval = 2*time.Second, 200*time.Millisecond
	cfg.Ingest.Formats = map[string]string{"flows.zeek": ingest.FormatZeekTSV, "flows.cic": ingest.FormatCIC}
	cfg.Ingest.Replay = true // the fixtures' and CIC-IDS2017's times are not now
	cfg.Ingest.Partitions = parts
	reg := prometheus.NewRegistry()
	st, err := ingest.New(cfg, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- st.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("stage Run = %v", err)
		}
	}()
	headers := func(b []byte) (n int) {
		for i, l := range nonEmptyLines(b) {
			if strings.HasPrefix(l, "#") || (i == 0 && strings.Contains(l, "Flow ID")) {
				n++
			}
		}
		return n
	}
	wantRecords := len(nonEmptyLines(zeek)) + len(nonEmptyLines(custom)) + 2*len(nonEmptyLines(cic))
	var c map[string]float64
	eventually(t, 30*time.Second, func() error {
		c = outcomes(t, reg)
		if total := c["ok"] + c["dead_lettered"] + c["skipped"]; total != float64(wantRecords) {
			return fmt.Errorf("stage counted %v of %d records: %v", total, wantRecords, c)
		}
		return nil
	})
	wantSkips := headers(zeek) + headers(custom) + 2*headers(cic)
	// custom.tsv.log ends with a #path dns section whose rows are not
	// conn flows; the decoder skips them as non_flow.
	if c["dead_lettered"] != 0 || c["skipped"] < float64(wantSkips) {
		t.Errorf("outcomes = %v, want no dead letter and at least %d skipped header lines (dead letters by reason: %v)", c, wantSkips, byLabel(t, reg, "metaids_ingest_dead_letters_total", "reason"))
	}
	t.Logf("replayed %d records: %v", wantRecords, c)
}

// TestReplayKeyAndRate checks -replay.key (every message keyed, all in the
// key's partition) and -replay.rate (the replay takes at least as long as
// the rate allows).
func TestReplayKeyAndRate(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: starts a broker")
	}
	var lines bytes.Buffer
	for i := range 300 {
		fmt.Fprintf(&lines, `{"n":%d}`+"\n", i)
	}
	path := filepath.Join(t.TempDir(), "lines.jsonl")
	os.WriteFile(path, lines.Bytes(), 0o644)
	e := startEmbedded(t, 4)
	kc := e.Config()
	kc.Writer.BatchTimeout = 5 * time.Millisecond
	set := replaySettings{Topic: "flows.keyed", Rate: 1000, Key: "shipper-7", Partitions: 4}
	st, err := replay(t.Context(), kc, set, []string{path}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// 300 records at 1000/s in chunks of 50: the last chunk is due 250ms
	// after the first.
	if st.Records != 300 || st.Elapsed < 250*time.Millisecond {
		t.Errorf("replay sent %d records in %v, want 300 in at least 250ms at -replay.rate 1000", st.Records, st.Elapsed)
	}
	got := topicMessages(t, e.Addr(), "flows.keyed")
	want := features.Partition("shipper-7", 4)
	if len(got[want]) != 300 {
		t.Errorf("partition %d (murmur2 of the key) holds %d messages, want all 300; by partition: %v", want, len(got[want]), countBy(got))
	}
	for i, m := range got[want] {
		if string(m.Key) != "shipper-7" || string(m.Value) != fmt.Sprintf(`{"n":%d}`, i) {
			t.Fatalf("message %d = key %q value %q, want key shipper-7 value {\"n\":%d}", i, m.Key, m.Value, i)
		}
	}
}

func countBy(m map[int][]kafka.Message) map[int]int {
	out := map[int]int{}
	for p, ms := range m {
		out[p] = len(ms)
	}
	return out
}

func TestReplayUsage(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "a.log")
	os.WriteFile(file, []byte("x\n"), 0o644)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{file}, "-replay.topic: required"},
		{[]string{"-replay.topic", "flows.x"}, "no files given"},
		{[]string{"-replay.topic", "flows.x", filepath.Join(dir, "nope*")}, "no such file"},
		{[]string{"-replay.topic", "flows x", file}, "-replay.topic"},
		{[]string{"-replay.topic", "flows.x", "-replay.rate", "-5", file}, "-replay.rate"},
		{[]string{"-replay.topic", "flows.x", "-kafka.brokers", "nohostport", file}, "-kafka.brokers"},
	} {
		var out bytes.Buffer
		args := append([]string{"replay"}, tc.args...)
		if code := run(t.Context(), args, &out); code != exitUsage || !strings.Contains(out.String(), tc.want) {
			t.Errorf("run(%q) = %d, %q; want %d and a message containing %q", args, code, out.String(), exitUsage, tc.want)
		}
	}
	var out bytes.Buffer
	if code := run(t.Context(), []string{"replay", "-replay.topic", "flows.x", "-config.check", dir}, &out); code != exitOK {
		t.Errorf("replay -config.check = %d, want 0; output:\n%s", code, out.String())
	}
}

func outcomes(t *testing.T, g prometheus.Gatherer) map[string]float64 {
	return byLabel(t, g, "metaids_ingest_records_total", "outcome")
}

func byLabel(t *testing.T, g prometheus.Gatherer, name, label string) map[string]float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && m.GetCounter().GetValue() != 0 {
					out[l.GetValue()] += m.GetCounter().GetValue()
				}
			}
		}
	}
	return out
}
