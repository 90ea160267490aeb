package ingest

import (
	"context"
	"fmt"
	"runtime/pprof"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/segmentio/kafka-go"

	"github.com/metaids/metaids/schemas"
	"github.com/metaids/metaids/stream"
)

// benchBatch is the number of input records per handler call in the
// benchmarks: the default -ingest.batch.max-records.
const benchBatch = 4096

// stageBenchInput returns a fixture's header lines and a batch of
// benchBatch data records cycled from it, on one input partition at
// consecutive offsets, as the Consumer would hand them over.
func stageBenchInput(b *testing.B, topic, file string) (headers, batch []kafka.Message) {
	b.Helper()
	var data [][]byte
	for _, l := range fixtureLines(b, file) {
		if isHeaderLine(l) {
			headers = append(headers, kafka.Message{Topic: topic, Value: l, Offset: int64(len(headers))})
		} else {
			data = append(data, l)
		}
	}
	for i := range benchBatch {
		batch = append(batch, kafka.Message{Topic: topic, Value: data[i%len(data)], Offset: int64(len(headers) + i)})
	}
	return headers, batch
}

// isHeaderLine tells the fixtures' header lines from their records.
func isHeaderLine(l []byte) bool {
	return len(l) > 0 && l[0] == '#' || vpcIsHeader(l) || cicIsHeader(l)
}

// newBenchStage returns a stage for one input, its batcher built for 12
// features partitions; the brokers are never contacted.
func newBenchStage(b *testing.B, topic, format string, replay bool) *Stage {
	b.Helper()
	cfg := DefaultConfig()
	cfg.Ingest.Formats = map[string]string{topic: format}
	cfg.Ingest.Replay = replay
	s, err := newStage(cfg, nil, prometheus.NewRegistry(), stageClock)
	if err != nil {
		b.Fatal(err)
	}
	if s.batcher, err = s.newBatcher(12); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(s.close)
	return s
}

// BenchmarkStage measures the stage's work per input record on one core,
// without Kafka: decode, validate, feature vectors, the Arrow batches and
// their IPC encoding, the dead letters and the counters, in handler calls
// of 4096 records. Run it as
//
//	go test ./ingest -run XXX -bench Stage -cpu 1
func BenchmarkStage(b *testing.B) {
	codecs, err := schemas.NewCodecs(nil)
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name, format, file string
		replay             bool
	}{
		{"goflow2", FormatGoflow2, "", false},
		{"pmacct", FormatPmacct, "pmacct/flows.jsonl", false},
		{"nprobe", FormatNprobe, "nprobe/flows.jsonl", false},
		{"zeek-json", FormatZeekJSON, "zeek/conn.json.log", false},
		{"zeek-tsv", FormatZeekTSV, "zeek/conn.tsv.log", false},
		{"suricata", FormatSuricata, "suricata/eve.json", false},
		{"vpc", FormatVPC, "vpc/default.txt", false},
		{"cic", FormatCIC, "cic/improved.csv", true},
		{"nfdump", FormatNfdump, "nfdump/flows.jsonl", false},
		{"avro", FormatAvro, "", false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			topic := "flows." + bc.name
			var headers, batch []kafka.Message
			switch bc.name {
			case "goflow2": // many hosts, as a collector in front of a network sends
				for i := range benchBatch {
					batch = append(batch, kafka.Message{Topic: topic, Value: goflow2Record(i, 1000), Offset: int64(i)})
				}
			case "avro":
				decs, err := NewDecoders(DefaultDecoderConfig(), codecs)
				if err != nil {
					b.Fatal(err)
				}
				for i := range benchBatch {
					flows, err := decs[FormatGoflow2].Decode(nil, goflow2Record(i, 1000), schemas.Coord{Topic: topic})
					if err != nil {
						b.Fatal(err)
					}
					v, err := codecs.AppendFlow(nil, &flows[0])
					if err != nil {
						b.Fatal(err)
					}
					batch = append(batch, kafka.Message{Topic: topic, Value: v, Offset: int64(i)})
				}
			default:
				headers, batch = stageBenchInput(b, topic, bc.file)
			}
			s := newBenchStage(b, topic, bc.format, bc.replay)
			if len(headers) > 0 {
				if _, err := s.prepare(headers, stageNow); err != nil {
					b.Fatal(err)
				}
			}
			var size int
			for _, m := range batch {
				size += len(m.Value)
			}
			b.SetBytes(int64(size))
			b.ReportAllocs()
			flows := 0
			for b.Loop() {
				if _, err := s.prepare(batch, stageNow); err != nil {
					b.Fatal(err)
				}
				s.acknowledged()
				for i := range s.pbs {
					flows += s.pbs[i].Rows
				}
			}
			if flows == 0 {
				b.Fatal("no flows produced")
			}
			b.ReportMetric(float64(flows)/b.Elapsed().Seconds(), "flows/s")
		})
	}
}

// BenchmarkE2E measures the pipeline's first hop on the whole machine: an
// in-process shipper (the replay role) produces goflow2 records to four
// input partitions of the embedded broker, the stage consumes them,
// produces the features batches and commits. Each iteration sends
// e2eRecords records and waits until the stage has counted them all.
//
// CPU profile samples are labelled role=broker, role=producer or
// role=ingest (goroutines inherit the label of the goroutine that started
// them), so the split is
//
//	go test ./ingest -run XXX -bench E2E -benchtime 5x -cpuprofile cpu.out
//	go tool pprof -tags cpu.out
func BenchmarkE2E(b *testing.B) {
	const (
		parts      = 4
		e2eRecords = 200_000
		hosts      = 5000
	)
	var e *stream.Embedded
	pprof.Do(context.Background(), pprof.Labels("role", "broker"), func(context.Context) {
		var err error
		e, err = stream.StartEmbedded(stream.EmbeddedConfig{Partitions: parts, SeedTopics: []string{"flows.goflow2"}})
		if err != nil {
			b.Fatal(err)
		}
	})
	defer e.Close()
	kc := e.Config()
	kc.Writer.BatchTimeout = 2 * time.Millisecond
	kc.Writer.BatchSize = 4096
	kc.Reader.MaxWait = 20 * time.Millisecond
	kc.Group.SessionTimeout, kc.Group.HeartbeatInterval = 6*time.Second, time.Second

	cfg := DefaultConfig()
	cfg.Config = kc
	cfg.Ingest.Group = "bench-e2e"
	cfg.Ingest.Formats = map[string]string{"flows.goflow2": FormatGoflow2}
	cfg.Ingest.Partitions = parts
	reg := prometheus.NewRegistry()
	s, err := newStage(cfg, nil, reg, stageClock)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go pprof.Do(ctx, pprof.Labels("role", "ingest"), func(ctx context.Context) { done <- s.Run(ctx) })
	defer func() {
		cancel()
		if err := <-done; err != nil {
			b.Errorf("stage Run = %v", err)
		}
	}()

	// The records are built once; the shipper only produces them.
	var msgs [parts][]kafka.Message
	for i := range e2eRecords {
		p := i % parts
		msgs[p] = append(msgs[p], stream.AtPartition(kafka.Message{Topic: "flows.goflow2", Value: goflow2Record(i, hosts)}, p))
	}
	prod, err := stream.NewProducer(kc, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer prod.Close()
	ship := func() error {
		errs := make(chan error, parts)
		for p := range parts {
			go pprof.Do(ctx, pprof.Labels("role", "producer"), func(ctx context.Context) {
				var err error
				for rest := msgs[p]; len(rest) > 0 && err == nil; {
					n := min(len(rest), 4*kc.Writer.BatchSize)
					err = prod.Produce(ctx, rest[:n]...)
					rest = rest[n:]
				}
				errs <- err
			})
		}
		for range parts {
			if err := <-errs; err != nil {
				return err
			}
		}
		return nil
	}
	handled := func() float64 {
		c := s.counts("goflow2")
		return c.total()
	}
	// One round outside the timer: the group join and the first metadata
	// lookups are not throughput.
	if err := ship(); err != nil {
		b.Fatal(err)
	}
	eventually(b, time.Minute, func() error {
		if got := handled(); got != e2eRecords {
			return fmt.Errorf("warm-up: %v of %d records handled", got, e2eRecords)
		}
		return nil
	})
	sent := float64(e2eRecords)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	rounds := 0
	for b.Loop() {
		if err := ship(); err != nil {
			b.Fatal(err)
		}
		sent += e2eRecords
		rounds++
		for handled() < sent { // the stage runs on its own; poll its counter
			<-tick.C
		}
	}
	b.ReportMetric(float64(rounds*e2eRecords)/b.Elapsed().Seconds(), "flows/s")
	if got := testutil.ToFloat64(s.met.flows); got != sent {
		b.Errorf("flows_total = %v, want %v", got, sent)
	}
}
