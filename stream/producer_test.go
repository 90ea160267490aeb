package stream

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestPartitionForMatchesKafka checks murmur2 against the vectors in
// Kafka's own UtilsTest.testMurmur2 (clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java)
// and PartitionFor against kafka-go's Murmur2Balancer.
func TestPartitionForMatchesKafka(t *testing.T) {
	for key, want := range map[string]int32{
		"21":                         -973932308,
		"foobar":                     -790332482,
		"a-little-bit-long-string":   -985981536,
		"a-little-bit-longer-string": -1486304829,
		"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
		"abc": 479470107,
	} {
		if got := int32(murmur2([]byte(key))); got != want {
			t.Errorf("murmur2(%q) = %d, want %d", key, got, want)
		}
	}

	rng := rand.New(rand.NewPCG(1, 0))
	for range 2000 {
		key := make([]byte, rng.IntN(40))
		for i := range key {
			key[i] = byte(rng.UintN(256))
		}
		n := 1 + rng.IntN(64)
		parts := make([]int, n)
		for i := range parts {
			parts[i] = i
		}
		want := kafka.Murmur2Balancer{Consistent: true}.Balance(kafka.Message{Key: key}, parts...)
		if got := PartitionFor(key, n); got != want {
			t.Fatalf("PartitionFor(%x, %d) = %d, want %d (kafka.Murmur2Balancer)", key, n, got, want)
		}
	}
}

func TestProducerPartitioning(t *testing.T) {
	e := startBroker(t, EmbeddedConfig{})
	cfg := fastConfig(e)
	topic := topicName(t, "in")
	const parts = 4
	createTopic(t, cfg, topic, parts)
	p := newProducer(t, cfg, nil)

	if n, err := p.Partitions(t.Context(), topic); err != nil || n != parts {
		t.Fatalf("Partitions(%s) = %d, %v, want %d", topic, n, err, parts)
	}

	// Pinned messages carry keys that hash elsewhere, so only the pin can
	// put them where they are asked to go. Keyed ones must follow murmur2.
	var msgs []kafka.Message
	for target := range parts {
		for i := 0; len(msgs) < (target+1)*10; i++ {
			key := fmt.Sprintf("host-%d", i)
			if PartitionFor([]byte(key), parts) == target {
				continue
			}
			msgs = append(msgs, AtPartition(kafka.Message{Topic: topic, Key: []byte(key), Value: []byte("pin:" + strconv.Itoa(target))}, target))
		}
	}
	for i := range 40 {
		key := fmt.Sprintf("10.0.0.%d", i)
		msgs = append(msgs, kafka.Message{Topic: topic, Key: []byte(key), Value: []byte("key:" + strconv.Itoa(PartitionFor([]byte(key), parts)))})
	}
	if err := p.Produce(t.Context(), msgs...); err != nil {
		t.Fatalf("Produce: %v", err)
	}

	var got collector
	r := startConsumer(t, cfg, ConsumerConfig{Group: t.Name(), Topics: []string{topic}}, nil, got.handle)
	eventually(t, 15*time.Second, wantCount(&got, len(msgs)))
	if err := r.stop(t); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	pinned := 0
	for _, m := range got.msgs {
		kind, want, _ := strings.Cut(string(m.Value), ":")
		if strconv.Itoa(m.Partition) != want {
			t.Errorf("%s message with key %s landed on partition %d, want %s", kind, m.Key, m.Partition, want)
		}
		if kind == "pin" {
			pinned++
		}
	}
	if pinned != 40 {
		t.Errorf("consumed %d pinned messages, want 40", pinned)
	}
}

func TestProduceRejects(t *testing.T) {
	e := startBroker(t, EmbeddedConfig{})
	cfg := fastConfig(e)
	topic := topicName(t, "in")
	createTopic(t, cfg, topic, 2)
	p := newProducer(t, cfg, nil)

	err := p.Produce(t.Context(), AtPartition(kafka.Message{Topic: topic, Value: []byte("x")}, 2))
	if !errors.Is(err, ErrPartitionOutOfRange) {
		t.Errorf("Produce to partition 2 of 2 = %v, want %v", err, ErrPartitionOutOfRange)
	}
	if err := p.Produce(t.Context(), kafka.Message{Value: []byte("x")}); !errors.Is(err, ErrNoTopic) {
		t.Errorf("Produce without topic = %v, want %v", err, ErrNoTopic)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	missing := topicName(t, "missing")
	if err := p.Produce(ctx, kafka.Message{Topic: missing, Value: []byte("x")}); !errors.Is(err, kafka.UnknownTopicOrPartition) {
		t.Errorf("Produce to a missing topic = %v, want %v (no auto-creation)", err, kafka.UnknownTopicOrPartition)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := p.Produce(t.Context(), kafka.Message{Topic: topic, Value: []byte("x")}); !errors.Is(err, ErrClosed) {
		t.Errorf("Produce after Close = %v, want %v", err, ErrClosed)
	}
}

// failProduce makes the broker answer the next n produce requests with code.
func failProduce(e *Embedded, n int, code int16) *atomic.Int32 {
	var failed atomic.Int32
	e.Cluster().ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		if int(failed.Load()) >= n {
			return nil, nil, false
		}
		e.Cluster().KeepControl()
		failed.Add(1)
		preq := req.(*kmsg.ProduceRequest)
		resp := preq.ResponseKind().(*kmsg.ProduceResponse)
		for _, rt := range preq.Topics {
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
		return resp, nil, true
	})
	return &failed
}

func TestProduceRetriesTransientErrors(t *testing.T) {
	e := startBroker(t, EmbeddedConfig{})
	cfg := fastConfig(e)
	topic := topicName(t, "in")
	createTopic(t, cfg, topic, 1)
	reg := prometheus.NewRegistry()
	p := newProducer(t, cfg, reg)

	failed := failProduce(e, 2, kerr.NotLeaderForPartition.Code)
	produceN(t, p, topic, "m", 5)
	if got := failed.Load(); got != 2 {
		t.Fatalf("broker failed %d produce requests, want 2", got)
	}
	if got := testutil.ToFloat64(p.met.produceRetries.WithLabelValues(topic)); got != 10 {
		t.Errorf("produce_retries_total = %v, want 10 (5 messages, twice)", got)
	}
	if got := testutil.ToFloat64(p.met.produced.WithLabelValues(topic)); got != 5 {
		t.Errorf("produced_messages_total = %v, want 5", got)
	}

	var got collector
	r := startConsumer(t, cfg, ConsumerConfig{Group: t.Name(), Topics: []string{topic}}, nil, got.handle)
	eventually(t, 10*time.Second, wantCount(&got, 5))
	if err := r.stop(t); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	if n := got.count(); n != 5 {
		t.Errorf("consumed %d records, want 5: a failed attempt must not have stored any", n)
	}
}

func TestProduceFailsFastOnPermanentError(t *testing.T) {
	e := startBroker(t, EmbeddedConfig{})
	cfg := fastConfig(e)
	topic := topicName(t, "in")
	createTopic(t, cfg, topic, 1)
	reg := prometheus.NewRegistry()
	p := newProducer(t, cfg, reg)

	failProduce(e, 1, kerr.TopicAuthorizationFailed.Code)
	err := p.Produce(t.Context(), kafka.Message{Topic: topic, Value: []byte("a")}, kafka.Message{Topic: topic, Value: []byte("b")})
	if !errors.Is(err, kafka.TopicAuthorizationFailed) {
		t.Fatalf("Produce = %v, want %v", err, kafka.TopicAuthorizationFailed)
	}
	if got := testutil.ToFloat64(p.met.produceRetries.WithLabelValues(topic)); got != 0 {
		t.Errorf("produce_retries_total = %v, want 0", got)
	}
	if got := testutil.ToFloat64(p.met.produceErrors.WithLabelValues(topic)); got != 2 {
		t.Errorf("produce_errors_total = %v, want 2", got)
	}
}

func TestTransient(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{kafka.NotLeaderForPartition, true},
		{fmt.Errorf("wrapped: %w", kafka.RequestTimedOut), true},
		{kafka.SASLAuthenticationFailed, false},
		{kafka.MessageSizeTooLarge, false},
		{context.Canceled, false},
		{context.DeadlineExceeded, false},
		{kafka.WriteErrors{nil, kafka.LeaderNotAvailable}, true},
		{kafka.WriteErrors{kafka.LeaderNotAvailable, kafka.TopicAuthorizationFailed}, false},
		{kafka.WriteErrors{nil, nil}, false},
		{errors.New("unexpected"), false},
	} {
		if got := transient(tc.err); got != tc.want {
			t.Errorf("transient(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
