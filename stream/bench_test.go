package stream

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/segmentio/kafka-go"
)

// BenchmarkProduceConsume pushes n small keyed messages per iteration
// through the embedded broker, from Produce to a Consumer's handler, and
// reports end-to-end throughput.
func BenchmarkProduceConsume(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("msgs=%d", n), func(b *testing.B) {
			e := startBroker(b, EmbeddedConfig{})
			cfg := fastConfig(e)
			topic := topicName(b, "in")
			createTopic(b, cfg, topic, 4)
			p := newProducer(b, cfg, nil)

			var consumed atomic.Int64
			progress := make(chan struct{}, 1)
			h := func(_ context.Context, batch []kafka.Message) error {
				consumed.Add(int64(len(batch)))
				select {
				case progress <- struct{}{}:
				default:
				}
				return nil
			}
			startConsumer(b, cfg, ConsumerConfig{Group: b.Name(), Topics: []string{topic}, MaxBatch: 1000}, nil, h)

			value := make([]byte, 100)
			msgs := make([]kafka.Message, n)
			for i := range msgs {
				msgs[i] = kafka.Message{Topic: topic, Key: fmt.Appendf(nil, "10.0.%d.%d", i/256%256, i%256), Value: value}
			}
			var total int64
			b.ReportAllocs()
			for b.Loop() {
				if err := p.Produce(b.Context(), msgs...); err != nil {
					b.Fatalf("Produce: %v", err)
				}
				total += int64(n)
				for consumed.Load() < total {
					<-progress
				}
			}
			b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

func BenchmarkPartitionFor(b *testing.B) {
	key := []byte("10.20.30.40")
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		n += PartitionFor(key, 12)
	}
	_ = n
}
