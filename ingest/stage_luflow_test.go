package ingest_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/segmentio/kafka-go"

	"github.com/metaids/metaids/dataset"
	"github.com/metaids/metaids/ingest"
	"github.com/metaids/metaids/schemas"
	"github.com/metaids/metaids/stream"
)

// luflowRows is the sample of each LUFlow day replayed: enough to cross
// every file's quirks (short timestamps, empty ports) while keeping the
// test to seconds; the whole set is 782,990 rows.
func luflowRows() int {
	if ingest.RaceEnabled {
		return 1000
	}
	return 20000
}

// TestLUFlowReplay replays a sample of LUFlow through the stage. LUFlow's
// Cisco Joy CSV is a dataset, not a shipper format, so no ingest decoder
// reads it: the dataset package's reader (the one `metaids train` uses)
// turns each row into a schemas.Flow, which is sent as an Avro Flow with
// Confluent framing, the form a producer that normalises at the edge would
// send, to an input topic of format avro. Every record must be accounted
// for: records in = feature rows + dead letters + skips.
func TestLUFlowReplay(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: replays LUFlow through a broker and the stage")
	}
	dir := filepath.Join("..", "..", "shared", "datasets", "luflow")
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("needs the shared datasets at %s, which is absent: %v", dir, err)
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.csv.gz"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no LUFlow files in %s: %v", dir, err)
	}
	const (
		topic = "flows.luflow"
		parts = 4
	)
	e, err := stream.StartEmbedded(stream.EmbeddedConfig{Partitions: parts, SeedTopics: []string{topic}})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	kc := e.Config()
	kc.Writer.BatchTimeout = 5 * time.Millisecond
	kc.Reader.MaxWait = 50 * time.Millisecond
	kc.Group.SessionTimeout, kc.Group.HeartbeatInterval = 2*time.Second, 200*time.Millisecond

	// Convert first, so that the stage's time is the stage's.
	loader, err := dataset.NewLoader(dataset.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	codecs, err := schemas.NewCodecs(nil)
	if err != nil {
		t.Fatal(err)
	}
	var perPart [parts][]kafka.Message
	sent := 0
	for i, f := range files {
		recs, err := loader.Read(bytes.NewReader(headLines(t, f, luflowRows()+1)), filepath.Base(f))
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			v, err := codecs.AppendFlow(nil, &r.Flow)
			if err != nil {
				t.Fatalf("%s line %d: %v", f, r.Flow.Source.Offset, err)
			}
			perPart[i%parts] = append(perPart[i%parts], stream.AtPartition(kafka.Message{Topic: topic, Value: v}, i%parts))
		}
		sent += len(recs)
	}
	t.Logf("%d files, %d rows each at most: %d flows read, rows rejected by the reader: %v", len(files), luflowRows(), sent, loader.Stats.Rejected)

	cfg := ingest.DefaultConfig()
	cfg.Config = kc
	cfg.Ingest.Group = "luflow-replay"
	cfg.Ingest.Formats = map[string]string{topic: ingest.FormatAvro}
	cfg.Ingest.Replay = true
	cfg.Ingest.Partitions = parts
	reg := prometheus.NewRegistry()
	st, err := ingest.New(cfg, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- st.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("stage Run = %v", err)
		}
	}()

	p, err := stream.NewProducer(kc, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for _, msgs := range perPart {
		for len(msgs) > 0 {
			n := min(len(msgs), 4000)
			if err := p.Produce(t.Context(), msgs[:n]...); err != nil {
				t.Fatal(err)
			}
			msgs = msgs[n:]
		}
	}

	var in map[string]float64
	deadline := time.Now().Add(90 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		in = sumBy(t, reg, "metaids_ingest_records_total", "outcome")
		if total := in["ok"] + in["dead_lettered"] + in["skipped"]; total == float64(sent) {
			break
		} else if time.Now().After(deadline) || total > float64(sent) {
			t.Fatalf("stage counted %v records, want %d: %v", total, sent, in)
		}
		<-tick.C
	}
	elapsed := time.Since(start)
	rows := sumBy(t, reg, "metaids_ingest_flows_total", "")[""]
	reasons := sumBy(t, reg, "metaids_ingest_dead_letters_total", "reason")
	dlq := sumBy(t, reg, "metaids_stream_produced_messages_total", "topic")["flows.dlq"]
	t.Logf("%d records in %v: %v feature rows, %v dead letters %v, %v skipped", sent, elapsed.Round(time.Millisecond), rows, in["dead_lettered"], nonZero(reasons), in["skipped"])
	if rows+in["dead_lettered"]+in["skipped"] != float64(sent) || rows != in["ok"] || dlq != in["dead_lettered"] {
		t.Errorf("records in = %d, want feature rows (%v) + dead letters (%v, %v on flows.dlq) + skipped (%v)", sent, rows, in["dead_lettered"], dlq, in["skipped"])
	}
	if rows < 0.99*float64(sent) {
		t.Errorf("%v of %d flows became feature rows, want at least 99%%", rows, sent)
	}
}

// headLines returns the first n lines of a gzip file, re-joined.
func headLines(t *testing.T, path string, n int) []byte {
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
	var out bytes.Buffer
	sc := bufio.NewScanner(zr)
	for i := 0; i < n && sc.Scan(); i++ {
		out.Write(sc.Bytes())
		out.WriteByte('\n')
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// sumBy sums a counter's series by one label's value ("" sums them all).
func sumBy(t *testing.T, g prometheus.Gatherer, name, label string) map[string]float64 {
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
			out[labelValue(m, label)] += m.GetCounter().GetValue()
		}
	}
	return out
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func nonZero(m map[string]float64) string {
	var b bytes.Buffer
	for k, v := range m {
		if v != 0 {
			fmt.Fprintf(&b, "%s:%v ", k, v)
		}
	}
	return b.String()
}
