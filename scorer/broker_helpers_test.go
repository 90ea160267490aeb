package scorer

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/arrow/go/v15/arrow/memory"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/metaids/metaids/features"
	"github.com/metaids/metaids/integration"
	"github.com/metaids/metaids/model"
	"github.com/metaids/metaids/schemas"
	"github.com/metaids/metaids/stream"
)

// protoModel returns a model whose head tells family's flows from benign
// ones by prototypes, as the adapter sets up a new family: normalisation
// fitted on the events, then each class's head row from the mean embedding
// of its labelled flows (model.Prototypes, AddClass).
func protoModel(t testing.TB, events []integration.Event, family string) *model.Model {
	t.Helper()
	m := newTestModel(t, 11, 16, "benign")
	m.AnomalyThreshold = 0 // class alerts only: the test is about the head
	flows := make([]schemas.Flow, len(events))
	labels := make([]int, len(events))
	for i, e := range events {
		flows[i] = e.Flow
		if e.Label == family {
			labels[i] = 1
		}
	}
	msg := encodeFlows(t, flows)
	var x []float32
	for _, sc := range calibrate(t, m, [][]byte{msg}) {
		x = append(x, sc.Embedding[m.Hidden():]...)
	}
	if err := m.SetNorm(model.FitNorm(x, features.NumFeatures, 1e-2)); err != nil {
		t.Fatal(err)
	}
	var emb []float32
	for _, sc := range calibrate(t, m, [][]byte{msg}) {
		emb = append(emb, sc.Embedding...)
	}
	d := m.EmbeddingDim()
	protos, counts, err := model.Prototypes(emb, d, labels, 2)
	if err != nil {
		t.Fatal(err)
	}
	if counts[1] == 0 {
		t.Fatalf("no %s flows among %d events", family, len(events))
	}
	if err := m.SetClassFromPrototype(0, protos[:d]); err != nil {
		t.Fatal(err)
	}
	if _, err := m.AddClass(family, protos[d:], 0.9); err != nil {
		t.Fatal(err)
	}
	return m
}

// startBroker starts an embedded broker with the pipeline's topics under a
// prefix of its own: features and scorer.state over parts partitions,
// models in one.
func startBroker(t testing.TB, parts int) (*stream.Embedded, stream.Config) {
	t.Helper()
	return startBrokerWith(t, parts, stream.TopicNames{Features: "features", Scores: "scores", Alerts: "alerts", Actions: "actions", Models: "models", ScorerState: "scorer.state"})
}

// startBrokerWith starts an embedded broker with the topics names.
func startBrokerWith(t testing.TB, parts int, names stream.TopicNames) (*stream.Embedded, stream.Config) {
	t.Helper()
	e, err := stream.StartEmbedded(stream.EmbeddedConfig{Log: testLog(t)})
	if err != nil {
		t.Fatalf("StartEmbedded: %v", err)
	}
	t.Cleanup(e.Close)
	cfg := e.Config()
	cfg.TopicPrefix = "t."
	cfg.Timeout = 5 * time.Second
	cfg.RetryBackoff = 20 * time.Millisecond
	cfg.RetryBackoffMax = 200 * time.Millisecond
	cfg.Writer.BatchTimeout = 10 * time.Millisecond
	cfg.Writer.Retries = 2
	cfg.Reader.MaxWait = 100 * time.Millisecond
	cfg.Group.SessionTimeout = 2 * time.Second
	cfg.Group.HeartbeatInterval = 100 * time.Millisecond
	cfg.Group.RebalanceTimeout = 5 * time.Second
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := stream.EnsureTopics(ctx, cfg, stream.PipelineTopics(cfg.TopicPrefix, names, parts, 1)); err != nil {
		t.Fatalf("EnsureTopics: %v", err)
	}
	return e, cfg
}

// stageConfig is the scorer's Config for the broker with test timings.
func stageConfig(t testing.TB, kc stream.Config, key keyPair) Config {
	t.Helper()
	cfg := Config{Config: kc, Scorer: DefaultSettings()}
	cfg.Scorer.Group = strings.NewReplacer("/", ".", " ", "_").Replace(t.Name())
	cfg.Scorer.Model.Keys = []string{key.file}
	cfg.Scorer.Alerts.Republish = 50 * time.Millisecond
	return cfg
}

func newProducer(t testing.TB, cfg stream.Config) *stream.Producer {
	t.Helper()
	p, err := stream.NewProducer(cfg, testLog(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// publishModel writes u to the models topic, keyed by its name.
func publishModel(t testing.TB, p *stream.Producer, cfg stream.Config, u *schemas.ModelUpdate) {
	t.Helper()
	codecs, err := schemas.NewCodecs(nil)
	if err != nil {
		t.Fatal(err)
	}
	val, err := codecs.AppendModelUpdate(nil, u)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Produce(t.Context(), kafka.Message{Topic: cfg.Topic("models"), Key: []byte(u.Name), Value: val}); err != nil {
		t.Fatalf("publish model v%d: %v", u.Version, err)
	}
}

// produceFlows batches flows for the features topic as ingest does and
// produces the batches, each to its partition. It returns the message count.
func produceFlows(t testing.TB, p *stream.Producer, cfg stream.Config, parts int, flows []schemas.Flow) int {
	t.Helper()
	b, err := features.NewBatcher(memory.DefaultAllocator, features.Config{Batch: features.BatchConfig{MaxRows: 512, Linger: time.Second}}, parts)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Release()
	var out []features.PartitionBatch
	now := time.Unix(1_800_000_000, 0)
	for i := range flows {
		if out, err = b.Add(out, &flows[i], now); err != nil {
			t.Fatal(err)
		}
	}
	if out, err = b.FlushAll(out); err != nil {
		t.Fatal(err)
	}
	msgs := make([]kafka.Message, len(out))
	for i, pb := range out {
		msgs[i] = stream.AtPartition(kafka.Message{Topic: cfg.Topic("features"), Key: pb.Key, Value: pb.Value}, pb.Partition)
	}
	if err := p.Produce(t.Context(), msgs...); err != nil {
		t.Fatalf("produce features: %v", err)
	}
	return len(msgs)
}

// runningStage is a Stage running in the background.
type runningStage struct {
	s      *Stage
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan error
	err    atomic.Pointer[error]
}

func startStage(t testing.TB, cfg Config) *runningStage {
	t.Helper()
	reg := prometheus.NewRegistry()
	s, err := New(cfg, testLog(t), reg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningStage{s: s, reg: reg, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-r.done
	})
	return r
}

// stop cancels the stage and returns what Run returned.
func (r *runningStage) stop(t testing.TB) error {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		r.done <- err // for the cleanup
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("stage did not stop")
		return nil
	}
}

// readTopic returns every record of topic, all partitions, as of now.
func readTopic(t testing.TB, cfg stream.Config, topic string) []kafka.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	d, err := cfg.Dialer()
	if err != nil {
		t.Fatal(err)
	}
	parts, err := d.LookupPartitions(ctx, "tcp", cfg.Brokers[0], topic)
	if err != nil {
		t.Fatalf("partitions of %s: %v", topic, err)
	}
	var out []kafka.Message
	for _, p := range parts {
		conn, err := d.DialLeader(ctx, "tcp", cfg.Brokers[0], topic, p.ID)
		if err != nil {
			t.Fatal(err)
		}
		last, err := conn.ReadLastOffset()
		conn.Close()
		if err != nil {
			t.Fatal(err)
		}
		if last == 0 {
			continue
		}
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: cfg.Brokers, Topic: topic, Partition: p.ID, Dialer: d, MaxWait: 100 * time.Millisecond})
		for {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				r.Close()
				t.Fatalf("read %s/%d: %v", topic, p.ID, err)
			}
			out = append(out, m)
			if m.Offset >= last-1 {
				break
			}
		}
		r.Close()
	}
	return out
}

// committed reads the group's committed offsets for topic's partitions;
// −1 means none.
func committed(t testing.TB, cfg stream.Config, group, topic string, parts int) map[int]int64 {
	t.Helper()
	tr, err := cfg.Transport()
	if err != nil {
		t.Fatal(err)
	}
	defer tr.CloseIdleConnections()
	client := &kafka.Client{Addr: kafka.TCP(cfg.Brokers...), Transport: tr}
	ids := make([]int, parts)
	for i := range ids {
		ids[i] = i
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	resp, err := client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: ids}})
	if err != nil {
		t.Fatalf("OffsetFetch: %v", err)
	}
	out := map[int]int64{}
	for _, p := range resp.Topics[topic] {
		if p.Error != nil && !errors.Is(p.Error, kafka.UnknownTopicOrPartition) {
			t.Fatalf("OffsetFetch %s/%d: %v", topic, p.Partition, p.Error)
		}
		out[p.Partition] = p.CommittedOffset
	}
	return out
}

// failProduceTo makes the broker refuse every produce request that writes
// to topic, with a retriable error, until the returned func is called.
func failProduceTo(e *stream.Embedded, topic string) (failed *atomic.Int32, heal func()) {
	failed = new(atomic.Int32)
	var healed atomic.Bool
	e.Cluster().ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		if healed.Load() {
			return nil, nil, false
		}
		e.Cluster().KeepControl()
		preq := req.(*kmsg.ProduceRequest)
		hit := false
		for _, rt := range preq.Topics {
			hit = hit || rt.Topic == topic
		}
		if !hit {
			return nil, nil, false
		}
		failed.Add(1)
		resp := preq.ResponseKind().(*kmsg.ProduceResponse)
		for _, rt := range preq.Topics {
			st := kmsg.NewProduceResponseTopic()
			st.Topic, st.TopicID = rt.Topic, rt.TopicID
			for _, rp := range rt.Partitions {
				sp := kmsg.NewProduceResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.ErrorCode = 19 // NOT_ENOUGH_REPLICAS: retriable
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	return failed, func() { healed.Store(true) }
}

func counter(t testing.TB, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if want, ok := labels[lp.GetName()]; ok && want != lp.GetValue() {
					continue metric
				}
			}
			switch {
			case m.GetCounter() != nil:
				sum += m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				sum += m.GetGauge().GetValue()
			}
		}
	}
	return sum
}

func countErr(name string, got, want float64) error {
	if got != want {
		return fmt.Errorf("%s = %v, want %v", name, got, want)
	}
	return nil
}
