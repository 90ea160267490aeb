package ingest

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/metaids/metaids/features"
	"github.com/metaids/metaids/schemas"
	"github.com/metaids/metaids/stream"
)

// fixtureLines returns the non-empty lines of a testdata file, one record
// each, as a file tailer ships them.
func fixtureLines(t testing.TB, file string) [][]byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, l := range bytes.Split(raw, []byte("\n")) {
		if len(bytes.TrimSpace(l)) > 0 {
			out = append(out, l)
		}
	}
	return out
}

// committed returns the group's committed offset of topic/partition, or -1.
func committed(t testing.TB, addr, group, topic string, partition int) int64 {
	t.Helper()
	c := &kafka.Client{Addr: kafka.TCP(addr), Timeout: 10 * time.Second}
	resp, err := c.OffsetFetch(context.Background(), &kafka.OffsetFetchRequest{
		GroupID: group, Topics: map[string][]int{topic: {partition}},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range resp.Topics[topic] {
		if p.Partition == partition {
			return p.CommittedOffset
		}
	}
	return -1
}

// stageInput is what a test produces to one input topic partition.
type stageInput struct {
	topic, format string
	partition     int
	records       [][]byte
}

// TestStageE2E runs the stage over the embedded broker on several real
// shipper formats at once and checks what reaches the topics: every record
// accounted for, every good flow a feature row whose vector is bit for bit
// the one features.Vector computes from the flow, every host in one
// partition (its murmur2 partition), every bad record on flows.dlq, and the
// input committed.
func TestStageE2E(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: starts a broker and the stage")
	}
	const parts = 4
	var gen [][]byte
	for i := range 3000 {
		gen = append(gen, goflow2Record(i, 300))
	}
	inputs := []stageInput{
		{"flows.goflow2", FormatGoflow2, 0, append(fixtureLines(t, "goflow2/flows.jsonl"), fixtureLines(t, "goflow2/quirks.jsonl")...)},
		{"flows.goflow2", FormatGoflow2, 3, gen},
		{"flows.pmacct", FormatPmacct, 1, append(fixtureLines(t, "pmacct/flows.jsonl"), fixtureLines(t, "pmacct/quirks.jsonl")...)},
		{"flows.zeek", FormatZeekTSV, 2, fixtureLines(t, "zeek/conn.tsv.log")},
		{"flows.suricata", FormatSuricata, 0, fixtureLines(t, "suricata/eve.json")},
		{"flows.vpc", FormatVPC, 1, fixtureLines(t, "vpc/default.txt")},
	}
	formats := map[string]string{}
	for _, in := range inputs {
		formats[in.topic] = in.format
	}
	e := startBroker(t, parts, "flows.goflow2", "flows.pmacct", "flows.zeek", "flows.suricata", "flows.vpc")
	cfg := testConfig(t, e, formats)
	cfg.Ingest.Batch.MaxRecords = 500 // several batches, several commits
	cfg.Ingest.Partitions = parts

	want := map[uint64]schemas.Flow{}
	perSource := map[string]int{}
	values := map[string][]byte{} // topic/partition/offset → record
	for _, in := range inputs {
		for id, f := range expectedFlows(t, cfg.Ingest.DecoderConfig, cfg.Ingest.ValidatorConfig, in.format,
			schemas.Coord{Topic: in.topic, Partition: int32(in.partition)}, in.records) {
			want[id] = f
		}
		perSource[sourceOf(in.topic)] += len(in.records)
		for i, r := range in.records {
			values[fmt.Sprintf("%s/%d/%d", in.topic, in.partition, i)] = r
		}
	}

	s := startStage(t, cfg, nil)
	for _, in := range inputs {
		produce(t, cfg.Config, in.topic, in.partition, nil, in.records...)
	}
	var total counts
	for src, n := range perSource {
		c := waitHandled(t, s.Stage, src, n, 60*time.Second)
		t.Logf("%s: %d records: %v ok, %v dead-lettered, %v skipped", src, n, c.ok, c.dead, c.skipped)
		total.ok += c.ok
		total.dead += c.dead
		total.skipped += c.skipped
	}
	if err := s.stop(); err != nil {
		t.Fatalf("stage Run = %v, want nil", err)
	}
	t.Logf("dead letters by reason: %v", s.deadLetterReasons())

	// Every good flow is one feature row, and nothing else is.
	rows := readFeatures(t, e.Addr(), cfg.Topic("features"), parts)
	if got := testutil.ToFloat64(s.met.flows); got != float64(len(want)) || len(rows) != len(want) {
		t.Fatalf("features topic holds %d rows and flows_total = %v, want %d flows", len(rows), got, len(want))
	}
	hostPart := map[string]int{}
	for id, f := range want {
		row, ok := rows[id]
		if !ok {
			t.Errorf("flow %016x (%s) has no feature row", id, features.Host(&f))
			continue
		}
		if wantVec := features.Vector(nil, &f); !sameVector(row.vec, wantVec) {
			t.Errorf("flow %016x: vector read back = %v, want %v (features.Vector)", id, row.vec, wantVec)
		}
		if row.host != features.Host(&f) {
			t.Errorf("flow %016x: host = %q, want %q", id, row.host, features.Host(&f))
		}
		if p, seen := hostPart[row.host]; seen && p != row.partition {
			t.Errorf("host %s is in partitions %d and %d", row.host, p, row.partition)
		}
		hostPart[row.host] = row.partition
	}
	if len(hostPart) < parts {
		t.Errorf("rows of %d hosts, want hosts in every one of %d partitions", len(hostPart), parts)
	}
	for p := range parts {
		found := false
		for _, hp := range hostPart {
			found = found || hp == p
		}
		if !found {
			t.Errorf("no host in features partition %d", p)
		}
	}

	// Every dead-lettered record is on flows.dlq, whole.
	codecs, _ := schemas.NewCodecs(nil)
	dlq := readTopic(t, e.Addr(), cfg.Topic("flows.dlq"))
	if float64(len(dlq)) != total.dead {
		t.Errorf("flows.dlq holds %d dead letters, want %v", len(dlq), total.dead)
	}
	for _, m := range dlq {
		d, err := codecs.DecodeDeadLetter(m.Value)
		if err != nil {
			t.Fatalf("dead letter %d: %v", m.Offset, err)
		}
		coord := fmt.Sprintf("%s/%d/%d", d.Topic, d.Partition, d.Offset)
		if string(m.Key) != coord {
			t.Errorf("dead letter key = %q, want %q", m.Key, coord)
		}
		if !bytes.Equal(d.Value, values[coord]) {
			t.Errorf("dead letter %s value = %q, want the record %q", coord, d.Value, values[coord])
		}
	}

	// Input committed to the end: a restart would redo nothing.
	for _, in := range inputs {
		if got, want := committed(t, e.Addr(), cfg.Ingest.Group, in.topic, in.partition), int64(len(in.records)); got != want {
			t.Errorf("committed offset of %s/%d = %d, want %d", in.topic, in.partition, got, want)
		}
	}
}

// TestStageDeadLetters feeds malformed records of many kinds and checks
// that each reaches flows.dlq with the right reason, its original key and
// bytes and its coordinates, and is counted under that reason.
func TestStageDeadLetters(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: starts a broker and the stage")
	}
	good := goflow2Record(0, 10)
	flow := func(repl ...string) []byte {
		b := goflow2Record(1, 10) // UDP 10.0.0.1 → 198.51.100.1:53, 41 bytes
		for i := 0; i < len(repl); i += 2 {
			nb := bytes.Replace(b, []byte(repl[i]), []byte(repl[i+1]), 1)
			if bytes.Equal(nb, b) {
				t.Fatalf("goflow2Record holds no %q", repl[i])
			}
			b = nb
		}
		return b
	}
	future := fmt.Sprint(stageNow.Add(24 * time.Hour).UnixNano())
	start := fmt.Sprint(stageNow.Add(-30*time.Minute + time.Millisecond).UnixNano())
	end := fmt.Sprint(stageNow.Add(-30*time.Minute + 2*time.Millisecond).UnixNano())
	cases := []struct {
		topic  string
		value  []byte
		reason string // "" for a good or skipped record
	}{
		{"flows.goflow2", good, ""},
		{"flows.goflow2", []byte(`{"type":"IPFIX","bytes":12,`), "malformed"},
		{"flows.goflow2", flow(`"src_addr":"10.0.0.1"`, `"src_addr":""`), "bad_address"},
		{"flows.goflow2", flow(`"dst_addr":"198.51.100.1"`, `"dst_addr":"300.1.2.3"`), "bad_address"},
		{"flows.goflow2", flow(`"dst_port":53`, `"dst_port":70000`), "bad_port"},
		{"flows.goflow2", flow(`"bytes":41`, `"bytes":-41`), "bad_counter"},
		{"flows.goflow2", flow(`"time_flow_start_ns":`+start, `"time_flow_start_ns":`+future), "end_before_start"},
		{"flows.goflow2", flow(`"time_flow_start_ns":`+start, `"time_flow_start_ns":`+future, `"time_flow_end_ns":`+end, `"time_flow_end_ns":`+future), "time_out_of_window"},
		{"flows.goflow2", append(append([]byte(`{"type":"IPFIX","pad":"`), bytes.Repeat([]byte("x"), 5000)...), `"}`...), "too_large"},
		{"flows.goflow2", nil, ""}, // a tombstone: skipped
		{"flows.auto", []byte(`{"message":"JSON of no known shipper"}`), "unknown_format"},
		{"flows.auto", good, ""},
		{"flows.cic", []byte("192.168.10.5-104.16.207.165-54865-443-6,104.16.207.165,443,192.168.10.5,54865,6,2017-07-03 12:00:00.000000,3,2,0,12,0"), "no_header"},
		{"flows.avro", []byte{0, 0, 0, 0, 99, 1, 2, 3}, "bad_schema"},
		{"flows.avro", []byte{1, 2}, "bad_schema"},
		{"flows.zeek", []byte("1795334460.0\tCabc\t10.1.2.3\t51514\t93.184.216.34"), "missing_field"}, // a cut-off row
		{"flows.panic", good, "internal"},
		{"flows.panic", good, "internal"},
	}
	formats := map[string]string{
		"flows.goflow2": FormatGoflow2, "flows.auto": FormatAuto, "flows.cic": FormatCIC,
		"flows.avro": FormatAvro, "flows.zeek": FormatZeekTSV, "flows.panic": FormatGoflow2,
	}
	e := startBroker(t, 1, "flows.goflow2", "flows.auto", "flows.cic", "flows.avro", "flows.zeek", "flows.panic")
	cfg := testConfig(t, e, formats)
	cfg.Ingest.MaxRecordBytes = 4096
	s := startStage(t, cfg, func(s *Stage) {
		s.inputs["flows.panic"].dec = panicDecoder{}
	})

	offsets := map[string]int64{}
	type sent struct {
		topic  string
		offset int64
		key    []byte
		value  []byte
	}
	byCoord := map[string]sent{}
	wantReasons := map[string]float64{}
	for i, c := range cases {
		key := fmt.Appendf(nil, "key-%d", i)
		produce(t, cfg.Config, c.topic, 0, key, c.value)
		if c.reason != "" {
			byCoord[fmt.Sprintf("%s/0/%d", c.topic, offsets[c.topic])] = sent{c.topic, offsets[c.topic], key, c.value}
			wantReasons[c.reason]++
		}
		offsets[c.topic]++
	}
	for topic, n := range offsets {
		waitHandled(t, s.Stage, sourceOf(topic), int(n), 30*time.Second)
	}
	got := s.deadLetterReasons()
	if fmt.Sprint(got) != fmt.Sprint(wantReasons) {
		t.Errorf("dead letters by reason = %v, want %v", got, wantReasons)
	}
	if c := s.counts("goflow2"); c.ok != 1 || c.skipped != 1 {
		t.Errorf("goflow2 counts = %+v, want 1 ok and 1 skipped", c)
	}

	codecs, _ := schemas.NewCodecs(nil)
	var dlq []kafka.Message
	eventually(t, 10*time.Second, func() error {
		dlq = readTopic(t, e.Addr(), cfg.Topic("flows.dlq"))
		if len(dlq) != len(byCoord) {
			return fmt.Errorf("flows.dlq holds %d dead letters, want %d", len(dlq), len(byCoord))
		}
		return nil
	})
	for _, m := range dlq {
		d, err := codecs.DecodeDeadLetter(m.Value)
		if err != nil {
			t.Fatalf("dead letter %d: %v", m.Offset, err)
		}
		coord := fmt.Sprintf("%s/%d/%d", d.Topic, d.Partition, d.Offset)
		w, ok := byCoord[coord]
		if !ok {
			t.Errorf("unexpected dead letter for %s (%s: %s)", coord, d.Reason, d.Error)
			continue
		}
		delete(byCoord, coord)
		var wantReason string
		for i, c := range cases {
			if c.topic == w.topic && string(fmt.Appendf(nil, "key-%d", i)) == string(w.key) {
				wantReason = c.reason
			}
		}
		if d.Reason != wantReason || d.Stage != "ingest" || !bytes.Equal(d.Key, w.key) || !bytes.Equal(d.Value, w.value) ||
			string(m.Key) != coord || d.TimeNs != stageNow.UnixNano() || d.Error == "" {
			t.Errorf("dead letter for %s = {reason %q, stage %q, key %q, value %q, time %d, error %q} keyed %q,\nwant reason %q, stage ingest, key %q, value %q, time %d, an error, keyed %q",
				coord, d.Reason, d.Stage, d.Key, shorten(d.Value), d.TimeNs, d.Error, m.Key, wantReason, w.key, shorten(w.value), stageNow.UnixNano(), coord)
		}
		t.Logf("%s: %s: %s", coord, d.Reason, d.Error)
	}
	for coord := range byCoord {
		t.Errorf("no dead letter for %s", coord)
	}
}

func shorten(b []byte) []byte {
	if len(b) > 80 {
		return append(b[:80:80], "…"...)
	}
	return b
}

// panicDecoder stands in for a decoder with a bug.
type panicDecoder struct{}

func (panicDecoder) Decode([]schemas.Flow, []byte, schemas.Coord) ([]schemas.Flow, error) {
	var m map[string]int
	m["boom"]++ // assignment to entry in nil map
	return nil, nil
}

// panickyBatcher panics when asked to add a flow from addr, as a bug in
// the features package would.
type panickyBatcher struct {
	flowBatcher
	addr string
}

func (b panickyBatcher) Add(dst []features.PartitionBatch, f *schemas.Flow, now time.Time) ([]features.PartitionBatch, error) {
	if f.SrcAddr.String() == b.addr {
		panic("features bug")
	}
	return b.flowBatcher.Add(dst, f, now)
}

// TestStageBatcherPanic checks that a panic while building the features
// batches dead-letters only the record whose flow caused it: the batch is
// rebuilt without it, and every other flow still becomes exactly one row.
func TestStageBatcherPanic(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: starts a broker and the stage")
	}
	e := startBroker(t, 2, "flows.goflow2")
	cfg := testConfig(t, e, map[string]string{"flows.goflow2": FormatGoflow2})
	cfg.Ingest.Partitions = 2
	cfg.Features.Batch.MaxRows = 7 // batches flushed by Add too, before the panic
	s := startStage(t, cfg, func(s *Stage) {
		inner := s.newBatcher
		s.newBatcher = func(n int) (flowBatcher, error) {
			b, err := inner(n)
			return panickyBatcher{b, "10.0.0.7"}, err
		}
	})
	var recs [][]byte
	for i := range 100 {
		recs = append(recs, goflow2Record(i, 20))
	}
	produce(t, cfg.Config, "flows.goflow2", 0, nil, recs...)
	c := waitHandled(t, s.Stage, "goflow2", 100, 30*time.Second)
	if c.ok != 95 || c.dead != 5 {
		t.Errorf("counts = %+v, want 95 ok and 5 dead-lettered (host 10.0.0.7 is every 20th record)", c)
	}
	if got := s.deadLetterReasons(); got["internal"] != 5 {
		t.Errorf("dead letters = %v, want 5 internal", got)
	}
	rows := readFeatures(t, e.Addr(), cfg.Topic("features"), 2)
	if len(rows) != 95 {
		t.Errorf("features topic holds %d rows, want 95", len(rows))
	}
	for _, r := range rows {
		if r.host == "10.0.0.7" {
			t.Errorf("a row of host 10.0.0.7, whose records were dead-lettered")
		}
	}
}

// TestStageCommitsOnlyAcknowledged fails every produce to the features
// topic: the stage must stop with an error and commit nothing, and a
// replacement in the same group must then produce every flow.
func TestStageCommitsOnlyAcknowledged(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: starts a broker and the stage")
	}
	e := startBroker(t, 2, "flows.goflow2")
	cfg := testConfig(t, e, map[string]string{"flows.goflow2": FormatGoflow2})
	cfg.Ingest.Partitions = 2
	cfg.Writer.Retries = 1
	features := cfg.Topic("features")

	// The stage creates the features topic; make it now so that the
	// failure below hits produce requests only.
	if err := stream.EnsureTopics(t.Context(), cfg.Config, []stream.TopicSpec{{Name: features, Partitions: 2}, {Name: cfg.Topic("flows.dlq"), Partitions: 2}}); err != nil {
		t.Fatal(err)
	}
	var recs [][]byte
	for i := range 50 {
		recs = append(recs, goflow2Record(i, 10))
	}
	produce(t, cfg.Config, "flows.goflow2", 1, nil, recs...)

	var fail atomic.Bool
	fail.Store(true)
	e.Cluster().ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		e.Cluster().KeepControl()
		preq := req.(*kmsg.ProduceRequest)
		if !fail.Load() || len(preq.Topics) == 0 || preq.Topics[0].Topic != features {
			return nil, nil, false
		}
		return produceError(preq, kerr.NotLeaderForPartition.Code), nil, true
	})
	first := startStage(t, cfg, nil)
	first.failOK.Store(true)
	select {
	case <-first.finished:
	case <-time.After(30 * time.Second):
		t.Fatal("stage still running 30s after the features topic began refusing every batch")
	}
	runErr := first.err
	if runErr == nil {
		t.Fatal("stage Run = nil while the features topic refused every batch, want an error")
	}
	t.Logf("first stage stopped: %v", runErr)
	if got := committed(t, e.Addr(), cfg.Ingest.Group, "flows.goflow2", 1); got >= 0 {
		t.Errorf("committed offset = %d after failed produces, want none", got)
	}
	if c := first.counts("goflow2"); c.total() != 0 {
		t.Errorf("failed stage counted %+v, want nothing (nothing was acknowledged)", c)
	}

	fail.Store(false)
	second := startStage(t, cfg, nil)
	c := waitHandled(t, second.Stage, "goflow2", 50, 30*time.Second)
	if c.ok != 50 {
		t.Errorf("replacement counted %+v, want 50 ok", c)
	}
	if rows := readFeatures(t, e.Addr(), features, 2); len(rows) != 50 {
		t.Errorf("features topic holds %d rows, want 50", len(rows))
	}
	eventually(t, 10*time.Second, func() error {
		if got := committed(t, e.Addr(), cfg.Ingest.Group, "flows.goflow2", 1); got != 50 {
			return fmt.Errorf("committed offset = %d, want 50", got)
		}
		return nil
	})
}

// produceError answers every partition of req with code.
func produceError(req *kmsg.ProduceRequest, code int16) *kmsg.ProduceResponse {
	resp := req.ResponseKind().(*kmsg.ProduceResponse)
	for _, rt := range req.Topics {
		st := kmsg.NewProduceResponseTopic()
		st.Topic, st.TopicID = rt.Topic, rt.TopicID
		for _, rp := range rt.Partitions {
			sp := kmsg.NewProduceResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.ErrorCode = code
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}

// TestStageSharedRegistry builds two stages on one Registerer, as two
// replicas in one process would be: no panic, and one set of series.
func TestStageSharedRegistry(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Ingest.Inputs = []string{"flows.goflow2"}
	reg := prometheus.NewRegistry()
	a, err := newStage(cfg, nil, reg, stageClock)
	if err != nil {
		t.Fatal(err)
	}
	b, err := newStage(cfg, nil, reg, stageClock)
	if err != nil {
		t.Fatal(err)
	}
	a.met.flows.Add(2)
	b.met.flows.Add(3)
	if got := testutil.ToFloat64(a.met.flows); got != 5 {
		t.Errorf("flows_total seen by the first stage = %v, want 5 (both stages count in one series)", got)
	}
}

// TestStageWaitsForBroker starts ingest before its broker, on a loopback
// port where no broker answers yet: it retries creating its output topics,
// logging each attempt, instead of failing, and once the broker is up it
// creates them and ingests.
func TestStageWaitsForBroker(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: starts a broker and the stage")
	}
	// Held until the broker starts, so that no other test's broker takes
	// the port; connections to it are closed at once.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	accepting := make(chan struct{})
	go func() {
		defer close(accepting)
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			conn.Close()
		}
	}()
	release := sync.OnceFunc(func() {
		l.Close()
		<-accepting
	})
	defer release()

	cfg := DefaultConfig()
	cfg.Config = testKafkaAt(addr)
	cfg.Timeout = time.Second
	cfg.Ingest.Group = nonTopic.ReplaceAllString(t.Name(), "_")
	cfg.Ingest.Formats = map[string]string{"flows.goflow2": FormatGoflow2}
	cfg.Ingest.Partitions = 4
	cfg.Shutdown.Timeout = 10 * time.Second
	warns := &warnCounter{msg: "create topics failed, retrying"}
	s, err := newStage(cfg, slog.New(warns), prometheus.NewRegistry(), stageClock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v, want nil after cancellation", err)
		}
	}()
	eventually(t, 30*time.Second, func() error {
		select {
		case err := <-done:
			done <- err
			return fmt.Errorf("Run returned %v while the broker was down, want it to keep trying", err)
		default:
		}
		if n := warns.n.Load(); n < 3 {
			return fmt.Errorf("%d failed attempts logged, want at least 3", n)
		}
		return nil
	})

	release()
	e, err := stream.StartEmbedded(stream.EmbeddedConfig{Addr: addr, Partitions: 4, SeedTopics: []string{"flows.goflow2"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	produce(t, testKafka(e), "flows.goflow2", 0, nil, goflow2Record(0, 1), goflow2Record(1, 1))
	if c := waitHandled(t, s, "goflow2", 2, 30*time.Second); c.ok != 2 {
		t.Errorf("records after the broker came up: %+v, want 2 ok", c)
	}
	if got := len(readTopic(t, addr, "features")); got == 0 {
		t.Error("nothing on the features topic, which ingest was to create")
	}
}

// warnCounter is a slog.Handler that counts Warn records with message msg.
type warnCounter struct {
	msg string
	n   atomic.Int64
}

func (h *warnCounter) Enabled(context.Context, slog.Level) bool { return true }
func (h *warnCounter) Handle(_ context.Context, r slog.Record) error {
	if r.Level == slog.LevelWarn && r.Message == h.msg {
		h.n.Add(1)
	}
	return nil
}
func (h *warnCounter) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *warnCounter) WithGroup(string) slog.Handler      { return h }
