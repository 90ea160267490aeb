package stream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
)

// testLog is quiet unless METAIDS_TEST_LOG is set, when it shows kafka-go
// and kfake at Debug.
func testLog(t testing.TB) *slog.Logger {
	t.Helper()
	if os.Getenv("METAIDS_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
}

// startBroker starts an embedded broker for this test alone.
func startBroker(t testing.TB, cfg EmbeddedConfig) *Embedded {
	t.Helper()
	e, err := StartEmbedded(cfg)
	if err != nil {
		t.Fatalf("StartEmbedded: %v", err)
	}
	t.Cleanup(e.Close)
	return e
}

// fastConfig is e's Config with test timings: 10ms linger, 100ms fetch
// wait, a short heartbeat and session.
func fastConfig(e *Embedded) Config {
	cfg := e.Config()
	cfg.Timeout = 5 * time.Second
	cfg.RetryBackoff = 20 * time.Millisecond
	cfg.RetryBackoffMax = 200 * time.Millisecond
	cfg.Writer.BatchTimeout = 10 * time.Millisecond
	cfg.Reader.MaxWait = 100 * time.Millisecond
	cfg.Group.SessionTimeout = 2 * time.Second
	cfg.Group.HeartbeatInterval = 100 * time.Millisecond
	cfg.Group.RebalanceTimeout = 5 * time.Second
	return cfg
}

// topicName makes a topic name, legal for Kafka, from the test's name.
func topicName(t testing.TB, suffix string) string {
	t.Helper()
	r := strings.NewReplacer("/", ".", " ", "_", "#", "_", "=", "_")
	return r.Replace(t.Name()) + "." + suffix
}

func createTopic(t testing.TB, cfg Config, name string, partitions int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := EnsureTopics(ctx, cfg, []TopicSpec{{Name: name, Partitions: partitions}}); err != nil {
		t.Fatalf("EnsureTopics(%s): %v", name, err)
	}
}

func newProducer(t testing.TB, cfg Config, reg prometheus.Registerer) *Producer {
	t.Helper()
	p, err := NewProducer(cfg, testLog(t), reg)
	if err != nil {
		t.Fatalf("NewProducer: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// produceN writes n messages keyed and valued "<prefix>-<i>" to topic.
func produceN(t testing.TB, p *Producer, topic, prefix string, n int) []kafka.Message {
	t.Helper()
	msgs := make([]kafka.Message, n)
	for i := range msgs {
		v := fmt.Sprintf("%s-%d", prefix, i)
		msgs[i] = kafka.Message{Topic: topic, Key: []byte(v), Value: []byte(v)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := p.Produce(ctx, msgs...); err != nil {
		t.Fatalf("Produce: %v", err)
	}
	return msgs
}

// eventually polls fn until it returns nil or timeout passes.
func eventually(t testing.TB, timeout time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", timeout, err)
		}
		time.Sleep(10 * time.Millisecond) // poll interval, not a wait for an event
	}
}

// consistently polls fn for d and fails at its first error.
func consistently(t testing.TB, d time.Duration, fn func() error) {
	t.Helper()
	for deadline := time.Now().Add(d); time.Now().Before(deadline); {
		if err := fn(); err != nil {
			t.Fatalf("within %v: %v", d, err)
		}
		time.Sleep(10 * time.Millisecond) // poll interval, not a wait for an event
	}
}

// running is a Consumer running in the background.
type running struct {
	c      *Consumer
	cancel context.CancelFunc
	done   chan struct{} // closed when Run has returned err
	err    error
}

// stop cancels the consumer and returns what Run returned.
func (r *running) stop(t testing.TB) error {
	t.Helper()
	r.cancel()
	return r.wait(t, 20*time.Second)
}

// wait returns what Run returned, failing the test if it runs on past timeout.
func (r *running) wait(t testing.TB, timeout time.Duration) error {
	t.Helper()
	select {
	case <-r.done:
		return r.err
	case <-time.After(timeout):
		t.Fatalf("consumer still running after %v", timeout)
		return nil
	}
}

func startConsumer(t testing.TB, cfg Config, cc ConsumerConfig, reg prometheus.Registerer, h Handler) *running {
	t.Helper()
	c, err := NewConsumer(cfg, cc, testLog(t), reg)
	if err != nil {
		t.Fatalf("NewConsumer: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{c: c, cancel: cancel, done: make(chan struct{})}
	go func() {
		r.err = c.Run(ctx, h)
		close(r.done)
	}()
	t.Cleanup(func() {
		cancel()
		<-r.done
	})
	return r
}

// collector is a Handler that records what it is given.
type collector struct {
	mu   sync.Mutex
	msgs []kafka.Message
	// fail, if set, is consulted per batch before recording it.
	fail func(batch []kafka.Message) error
}

func (c *collector) handle(_ context.Context, batch []kafka.Message) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail != nil {
		if err := c.fail(batch); err != nil {
			return err
		}
	}
	c.msgs = append(c.msgs, batch...)
	return nil
}

func (c *collector) values() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, len(c.msgs))
	for i, m := range c.msgs {
		out[i] = string(m.Value)
	}
	return out
}

func (c *collector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.msgs)
}

// partitions returns the partitions c has seen records from.
func (c *collector) partitions() map[int]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[int]int{}
	for _, m := range c.msgs {
		out[m.Partition]++
	}
	return out
}

func wantCount(c *collector, n int) func() error {
	return func() error {
		if got := c.count(); got < n {
			return fmt.Errorf("consumed %d records, want %d", got, n)
		}
		return nil
	}
}

// committed reads the group's committed offsets for topic's partitions,
// -1 where there is none.
func committed(t testing.TB, cfg Config, group, topic string, partitions int) map[int]int64 {
	t.Helper()
	out, err := readCommitted(cfg, group, topic, partitions)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// readCommitted is committed for goroutines other than the test's.
func readCommitted(cfg Config, group, topic string, partitions int) (map[int]int64, error) {
	tr, err := cfg.Transport()
	if err != nil {
		return nil, err
	}
	defer tr.CloseIdleConnections()
	client := &kafka.Client{Addr: kafka.TCP(cfg.Brokers...), Transport: tr}
	parts := make([]int, partitions)
	for i := range parts {
		parts[i] = i
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: parts}})
	if err != nil {
		return nil, fmt.Errorf("OffsetFetch: %w", err)
	}
	out := map[int]int64{}
	if errors.Is(resp.Error, kafka.GroupIdNotFound) {
		for _, p := range parts {
			out[p] = -1 // nothing committed yet
		}
		return out, nil
	}
	if resp.Error != nil {
		return nil, fmt.Errorf("OffsetFetch: %w", resp.Error)
	}
	for _, p := range resp.Topics[topic] {
		if p.Error != nil && !errors.Is(p.Error, kafka.UnknownTopicOrPartition) {
			return nil, fmt.Errorf("OffsetFetch %s/%d: %w", topic, p.Partition, p.Error)
		}
		out[p.Partition] = p.CommittedOffset
	}
	return out, nil
}
