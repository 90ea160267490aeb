package ingest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/arrow/go/v15/arrow/memory"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/segmentio/kafka-go"

	"github.com/metaids/metaids/features"
	"github.com/metaids/metaids/schemas"
	"github.com/metaids/metaids/stream"
)

// stageNow is the stage tests' clock: the fixtures in testdata sit in the
// hour before it.
var stageNow = time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)

func stageClock() time.Time { return stageNow }

// eventually polls f until it returns nil or timeout passes, then fails
// with f's last error (nats checkFor).
func eventually(t testing.TB, timeout time.Duration, f func() error) {
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

// startBroker starts an embedded broker with topics of the given
// partitions, closed when the test ends.
func startBroker(t testing.TB, partitions int, topics ...string) *stream.Embedded {
	t.Helper()
	e, err := stream.StartEmbedded(stream.EmbeddedConfig{Partitions: partitions, SeedTopics: topics})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

// testKafka is the broker's config with test timings: short writer and
// fetch waits, a fast group.
func testKafka(e *stream.Embedded) stream.Config { return testKafkaAt(e.Addr()) }

// testKafkaAt is testKafka for a broker at addr, which may not be up yet.
func testKafkaAt(addr string) stream.Config {
	c := stream.DefaultConfig()
	c.Brokers = []string{addr}
	c.Writer.BatchTimeout = 5 * time.Millisecond
	c.Reader.MaxWait = 50 * time.Millisecond
	c.Group.SessionTimeout = 2 * time.Second
	c.Group.HeartbeatInterval = 200 * time.Millisecond
	c.Group.RebalanceTimeout = 5 * time.Second
	c.RetryBackoff = 20 * time.Millisecond
	c.RetryBackoffMax = 500 * time.Millisecond
	return c
}

var nonTopic = regexp.MustCompile(`[^a-zA-Z0-9._-]+`)

// testConfig reads the inputs of formats from the broker, in a group named
// after the test.
func testConfig(t testing.TB, e *stream.Embedded, formats map[string]string) Config {
	cfg := DefaultConfig()
	cfg.Config = testKafka(e)
	cfg.Ingest.Group = nonTopic.ReplaceAllString(t.Name(), "_")
	cfg.Ingest.Formats = formats
	cfg.Ingest.Partitions = 4
	cfg.Shutdown.Timeout = 10 * time.Second
	return cfg
}

// runningStage is a Stage running in the background.
type runningStage struct {
	*Stage
	reg      *prometheus.Registry
	cancel   context.CancelFunc
	finished chan struct{} // closed when Run has returned err
	err      error
	failOK   atomic.Bool // the test expects Run to fail
}

// startStage builds a Stage with the tests' clock and runs it until stop
// or the end of the test. setup, if not nil, may adjust the Stage first.
func startStage(t testing.TB, cfg Config, setup func(*Stage)) *runningStage {
	t.Helper()
	reg := prometheus.NewRegistry()
	s, err := newStage(cfg, nil, reg, stageClock)
	if err != nil {
		t.Fatal(err)
	}
	if setup != nil {
		setup(s)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rs := &runningStage{Stage: s, reg: reg, cancel: cancel, finished: make(chan struct{})}
	go func() {
		rs.err = s.Run(ctx)
		close(rs.finished)
	}()
	t.Cleanup(func() {
		if err := rs.stop(); err != nil && !rs.failOK.Load() {
			t.Errorf("stage Run = %v, want nil after cancellation", err)
		}
	})
	return rs
}

// stop cancels the stage and returns what Run returned.
func (rs *runningStage) stop() error {
	rs.cancel()
	<-rs.finished
	return rs.err
}

// produce writes values to topic, pinned to partition, in order and
// acknowledged, so the i-th value lands at the partition's next offset.
func produce(t testing.TB, cfg stream.Config, topic string, partition int, key []byte, values ...[]byte) {
	t.Helper()
	p, err := stream.NewProducer(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	msgs := make([]kafka.Message, len(values))
	for i, v := range values {
		msgs[i] = stream.AtPartition(kafka.Message{Topic: topic, Key: key, Value: v}, partition)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for len(msgs) > 0 {
		n := min(len(msgs), 4000)
		if err := p.Produce(ctx, msgs[:n]...); err != nil {
			t.Fatalf("produce to %s/%d: %v", topic, partition, err)
		}
		msgs = msgs[n:]
	}
}

// readTopic returns every message of every partition of topic, each
// partition's in offset order, reading from the partition leaders directly
// (no group, nothing committed).
func readTopic(t testing.TB, addr, topic string) []kafka.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := kafka.DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	parts, err := conn.ReadPartitions(topic)
	conn.Close()
	if err != nil {
		t.Fatalf("partitions of %s: %v", topic, err)
	}
	var out []kafka.Message
	for _, p := range parts {
		lc, err := kafka.DialLeader(ctx, "tcp", addr, topic, p.ID)
		if err != nil {
			t.Fatal(err)
		}
		first, last, err := lc.ReadOffsets()
		if err != nil {
			t.Fatal(err)
		}
		off := first
		for off < last {
			if _, err := lc.Seek(off, kafka.SeekAbsolute); err != nil {
				t.Fatal(err)
			}
			lc.SetReadDeadline(time.Now().Add(10 * time.Second))
			b := lc.ReadBatch(1, 64<<20)
			for {
				m, err := b.ReadMessage()
				if err != nil {
					break
				}
				m.Topic, m.Partition = topic, p.ID
				out = append(out, m)
				off = m.Offset + 1
			}
			if err := b.Close(); err != nil && !errors.Is(err, kafka.OffsetOutOfRange) {
				t.Fatalf("read %s/%d at %d: %v", topic, p.ID, off, err)
			}
		}
		lc.Close()
	}
	return out
}

// counts are the stage's record counters for one source.
type counts struct{ ok, dead, skipped float64 }

func (s *Stage) counts(source string) counts {
	return counts{
		ok:      testutil.ToFloat64(s.met.records.WithLabelValues(source, outcomeOK)),
		dead:    testutil.ToFloat64(s.met.records.WithLabelValues(source, outcomeDeadLettered)),
		skipped: testutil.ToFloat64(s.met.records.WithLabelValues(source, outcomeSkipped)),
	}
}

func (c counts) total() float64 { return c.ok + c.dead + c.skipped }

// waitHandled waits until the stage has counted want records of source.
func waitHandled(t testing.TB, s *Stage, source string, want int, timeout time.Duration) counts {
	t.Helper()
	var c counts
	eventually(t, timeout, func() error {
		c = s.counts(source)
		if c.total() > float64(want) {
			return fmt.Errorf("counted %v records of %s, more than the %d produced: %+v", c.total(), source, want, c)
		}
		if c.total() != float64(want) {
			return fmt.Errorf("counted %v of %d records of %s: %+v", c.total(), want, source, c)
		}
		return nil
	})
	return c
}

// deadLetterReasons sums the dead-letter counter by reason, leaving out
// zeros.
func (s *Stage) deadLetterReasons() map[string]float64 {
	out := map[string]float64{}
	for _, r := range Reasons() {
		if v := testutil.ToFloat64(s.met.deadLetters.WithLabelValues(string(r))); v != 0 {
			out[string(r)] = v
		}
	}
	return out
}

// featureRow is one row read back from the features topic.
type featureRow struct {
	partition int
	host      string
	vec       []float32
}

// readFeatures decodes every features message of the broker, checking
// that each decodes and lies in the partition its hosts hash to among
// parts, and returns the rows by flow id.
func readFeatures(t testing.TB, addr, topic string, parts int) map[uint64]featureRow {
	t.Helper()
	msgs := readTopic(t, addr, topic)
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	rows := map[uint64]featureRow{}
	for _, m := range msgs {
		v, err := features.Decode(m.Value, mem)
		if err != nil {
			t.Fatalf("features message %d/%d: %v", m.Partition, m.Offset, err)
		}
		for i := range v.Len() {
			id, host := v.FlowID(i), strings.Clone(v.Host(i))
			if _, dup := rows[id]; dup {
				t.Errorf("flow %016x appears twice on %s", id, topic)
			}
			if want := features.Partition(host, parts); m.Partition != want {
				t.Errorf("flow %016x of host %s is in partition %d, want %d (murmur2 of the host)", id, host, m.Partition, want)
			}
			rows[id] = featureRow{partition: m.Partition, host: host, vec: v.Vector(nil, i)}
		}
		v.Release()
	}
	return rows
}

// expectedFlows decodes and validates records the way the stage should,
// with fresh decoders: the flows of the good ones by flow id.
func expectedFlows(t testing.TB, dc DecoderConfig, vc ValidatorConfig, format string, src schemas.Coord, records [][]byte) map[uint64]schemas.Flow {
	t.Helper()
	decs, err := NewDecoders(dc, nil)
	if err != nil {
		t.Fatal(err)
	}
	val, err := NewValidator(vc, stageClock)
	if err != nil {
		t.Fatal(err)
	}
	out := map[uint64]schemas.Flow{}
	for i, rec := range records {
		c := src
		c.Offset = src.Offset + int64(i)
		flows, err := decs[format].Decode(nil, rec, c)
		if err == nil {
			err = val.Check(flows)
		}
		if err != nil {
			continue
		}
		for _, f := range flows {
			out[f.ID()] = f
		}
	}
	return out
}

// sameVector reports whether a and b hold the same float32 bits.
func sameVector(a, b []float32) bool {
	return slices.EqualFunc(a, b, func(x, y float32) bool { return math.Float32bits(x) == math.Float32bits(y) })
}

// goflow2Record returns a goflow2 -format json record of flow i: hosts
// 10.0.<i/250%250>.<i%250> spread over hosts addresses, times in the
// half hour before stageNow.
func goflow2Record(i, hosts int) []byte {
	h := i % hosts
	start := stageNow.Add(-30*time.Minute + time.Duration(i)*time.Millisecond).UnixNano()
	sport := 1024 + i%60000
	if i%3 == 2 { // ICMP has no ports
		sport = 0
	}
	return fmt.Appendf(nil, `{"type":"IPFIX","time_received_ns":%d,"sequence_num":%d,"sampling_rate":1,"sampler_address":"192.0.2.1",`+
		`"time_flow_start_ns":%d,"time_flow_end_ns":%d,"bytes":%d,"packets":%d,"src_addr":"10.0.%d.%d","dst_addr":"198.51.100.%d",`+
		`"etype":"IPv4","proto":"%s","src_port":%d,"dst_port":%d,"in_if":3,"out_if":7,"tcp_flags":%d,"icmp_type":0,"icmp_code":0}`,
		start+2e9, i, start, start+int64(i%1000)*1e6, 40+i%9000, 1+i%50, h/250%250, h%250, i%200,
		[]string{"TCP", "UDP", "ICMP"}[i%3], sport, []int{443, 53, 0}[i%3], []int{27, 0, 0}[i%3])
}
