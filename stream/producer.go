package stream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
)

// partitionsTTL bounds how stale a cached partition count may be; counts
// only grow, and a pinned partition above the cached count refreshes it.
const partitionsTTL = 30 * time.Second

// Producer writes messages to any topic and returns only once the brokers
// have acknowledged them, so a stage can commit its input after Produce
// returns. It is safe for concurrent use.
type Producer struct {
	cfg    Config
	log    *slog.Logger
	met    *metrics
	tr     *kafka.Transport
	dialer *kafka.Dialer // for probe only
	w      *kafka.Writer
	client *kafka.Client
	closed atomic.Bool

	mu    sync.Mutex
	parts map[string]cachedCount
}

type cachedCount struct {
	n  int
	at time.Time
}

// NewProducer returns a Producer for cfg. It does not contact the brokers
// until the first Produce.
func NewProducer(cfg Config, log *slog.Logger, reg prometheus.Registerer) (*Producer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("stream config: %w", err)
	}
	log = orDiscard(log)
	tr, err := cfg.Transport()
	if err != nil {
		return nil, err
	}
	dialer, err := cfg.Dialer()
	if err != nil {
		return nil, err
	}
	codec, err := compression(cfg.Writer.Compression)
	if err != nil {
		return nil, fmt.Errorf("-kafka.writer.compression: %w", err)
	}
	addr := kafka.TCP(cfg.Brokers...)
	w := &kafka.Writer{
		Addr: addr,
		// kafka-go's default balancer, RoundRobin, and its Hash (FNV-1a)
		// both disagree with Kafka's default partitioner; murmur2 is what
		// every other producer of a keyed topic uses.
		Balancer: pinningBalancer{kafka.Murmur2Balancer{}},
		// Produce retries itself, so that retries are counted and only
		// transient errors are retried.
		MaxAttempts:  1,
		BatchSize:    cfg.Writer.BatchSize,
		BatchBytes:   cfg.Writer.BatchBytes,
		BatchTimeout: cfg.Writer.BatchTimeout,
		ReadTimeout:  cfg.Timeout,
		WriteTimeout: cfg.Timeout,
		// kafka-go defaults to RequireNone, which acknowledges nothing:
		// at-least-once needs every in-sync replica.
		RequiredAcks:           kafka.RequireAll,
		Compression:            codec,
		Logger:                 Logger(log),
		ErrorLogger:            ErrorLogger(log),
		Transport:              tr,
		AllowAutoTopicCreation: false, // topics come from EnsureTopics, with their intended partitions
	}
	return &Producer{
		cfg:    cfg,
		log:    log,
		met:    newMetrics(reg),
		tr:     tr,
		dialer: dialer,
		w:      w,
		client: &kafka.Client{Addr: addr, Transport: tr, Timeout: cfg.Timeout},
		parts:  make(map[string]cachedCount),
	}, nil
}

// Produce writes msgs and blocks until every one is acknowledged by all
// in-sync replicas, retrying transient failures with backoff up to
// -kafka.writer.retries times. Each message names its Topic. Keyed
// messages go to murmur2(key) mod partitions, as Kafka's default
// partitioner does; use AtPartition to choose the partition yourself
// (Message.Partition alone is ignored, as in kafka-go). On error some
// messages may have been written: at-least-once callers retry the lot.
func (p *Producer) Produce(ctx context.Context, msgs ...kafka.Message) error {
	if p.closed.Load() {
		return ErrClosed
	}
	if len(msgs) == 0 {
		return nil
	}
	now := time.Now()
	for i := range msgs {
		if msgs[i].Topic == "" {
			return fmt.Errorf("produce message %d: %w", i, ErrNoTopic)
		}
		// kafka-go sends a zero Time as timestamp 0, which breaks offset
		// lookups by time and retention; stamp it the way Kafka's own
		// clients do (CreateTime = now). This writes into the caller's
		// slice, which is theirs to reuse anyway once Produce returns.
		if msgs[i].Time.IsZero() {
			msgs[i].Time = now
		}
		if part, ok := pinned(msgs[i]); ok {
			if err := p.checkPartition(ctx, msgs[i].Topic, part); err != nil {
				return fmt.Errorf("produce message %d: %w", i, err)
			}
		}
	}

	pending := msgs
	for attempt := 0; ; attempt++ {
		err := p.w.WriteMessages(ctx, pending...)
		if err == nil {
			p.count(p.met.produced, pending, nil)
			return nil
		}
		failed := pending
		var werrs kafka.WriteErrors
		if errors.As(err, &werrs) && len(werrs) == len(pending) {
			p.count(p.met.produced, pending, func(i int) bool { return werrs[i] == nil })
			failed = make([]kafka.Message, 0, werrs.Count())
			for i, e := range werrs {
				if e != nil {
					failed = append(failed, pending[i])
				}
			}
			err = firstError(werrs)
		}
		var kerr kafka.Error
		if !errors.As(err, &kerr) && transient(err) {
			// A connection failed, and the Transport does not say why: a
			// rejected login or certificate must fail now, not after every
			// retry, and say what is wrong.
			if perr := probe(ctx, p.dialer, p.cfg.Brokers); perr != nil && securityError(perr) {
				err = fmt.Errorf("%w (writer: %v)", perr, err)
			}
		}
		if !transient(err) || attempt >= p.cfg.Writer.Retries || ctx.Err() != nil {
			p.count(p.met.produceErrors, failed, nil)
			return fmt.Errorf("produce %d of %d messages to %s: %w", len(failed), len(msgs), topicsOf(failed), err)
		}
		wait := backoff(attempt, p.cfg.RetryBackoff, p.cfg.RetryBackoffMax)
		p.log.Warn("produce failed, retrying", "topic", topicsOf(failed), "messages", len(failed),
			"attempt", attempt+1, "backoff", wait, "err", err)
		p.count(p.met.produceRetries, failed, nil)
		if !sleep(ctx, wait) {
			p.count(p.met.produceErrors, failed, nil)
			return fmt.Errorf("produce %d of %d messages to %s: %w (after %v)", len(failed), len(msgs), topicsOf(failed), ctx.Err(), err)
		}
		pending = failed
	}
}

// Partitions returns the partition count of topic, from a cache refreshed
// every 30s. Ingest uses it with PartitionFor to build one batch per
// target partition.
func (p *Producer) Partitions(ctx context.Context, topic string) (int, error) {
	return p.partitions(ctx, topic, false)
}

func (p *Producer) partitions(ctx context.Context, topic string, refresh bool) (int, error) {
	p.mu.Lock()
	c, ok := p.parts[topic]
	p.mu.Unlock()
	if ok && !refresh && time.Since(c.at) < partitionsTTL {
		return c.n, nil
	}
	resp, err := p.client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return 0, fmt.Errorf("metadata for %s: %w", topic, err)
	}
	for _, t := range resp.Topics {
		if t.Name != topic {
			continue
		}
		if t.Error != nil {
			return 0, fmt.Errorf("metadata for %s: %w", topic, t.Error)
		}
		p.mu.Lock()
		p.parts[topic] = cachedCount{n: len(t.Partitions), at: time.Now()}
		p.mu.Unlock()
		return len(t.Partitions), nil
	}
	return 0, fmt.Errorf("metadata for %s: %w", topic, kafka.UnknownTopicOrPartition)
}

func (p *Producer) checkPartition(ctx context.Context, topic string, part int) error {
	n, err := p.partitions(ctx, topic, false)
	if err == nil && part >= n {
		n, err = p.partitions(ctx, topic, true) // the topic may have grown
	}
	if err != nil {
		return err
	}
	if part < 0 || part >= n {
		return fmt.Errorf("partition %d of %s, which has %d: %w", part, topic, n, ErrPartitionOutOfRange)
	}
	return nil
}

// Close releases the Producer's connections. Produce calls that are still
// running may fail.
func (p *Producer) Close() error {
	if p.closed.Swap(true) {
		return nil
	}
	err := p.w.Close()
	p.tr.CloseIdleConnections()
	if err != nil {
		return fmt.Errorf("close producer: %w", err)
	}
	return nil
}

func (p *Producer) count(c *prometheus.CounterVec, msgs []kafka.Message, keep func(int) bool) {
	for i := range msgs {
		if keep == nil || keep(i) {
			c.WithLabelValues(msgs[i].Topic).Inc()
		}
	}
}

func firstError(errs kafka.WriteErrors) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// topicsOf names the topics of msgs for logs and errors, most often one.
func topicsOf(msgs []kafka.Message) string {
	var out string
	seen := map[string]bool{}
	for _, m := range msgs {
		if !seen[m.Topic] {
			if out != "" {
				out += ","
			}
			seen[m.Topic] = true
			out += m.Topic
		}
	}
	return out
}

// explicitPartition marks a message for pinningBalancer. It rides in
// Message.WriterData, which kafka-go hands to the Balancer untouched and
// never sends to the broker; the zero Partition could not serve as the
// mark, since 0 is a real partition.
type explicitPartition int

// AtPartition returns m addressed to partition of its topic, bypassing key
// hashing. Produce checks that the topic has the partition. It uses
// m.WriterData, so m must not carry other writer data.
func AtPartition(m kafka.Message, partition int) kafka.Message {
	m.Partition = partition
	m.WriterData = explicitPartition(partition)
	return m
}

func pinned(m kafka.Message) (int, bool) {
	p, ok := m.WriterData.(explicitPartition)
	return int(p), ok
}

// pinningBalancer sends a message marked by AtPartition to its partition
// and hashes every other message with next.
type pinningBalancer struct{ next kafka.Balancer }

func (b pinningBalancer) Balance(m kafka.Message, partitions ...int) int {
	if p, ok := pinned(m); ok {
		// Produce checked p against fresh metadata; the writer's own
		// partition list may be older, so trust p over it.
		return p
	}
	return b.next.Balance(m, partitions...)
}

// PartitionFor returns the partition Kafka's default partitioner, and so a
// Producer, picks for key on a topic with n partitions:
// (murmur2(key) & 0x7fffffff) mod n. It is kafka.Murmur2Balancer without
// the per-call partition list, for ingest's per-flow hot path; a test
// holds the two (and Kafka's own test vectors) in agreement.
func PartitionFor(key []byte, n int) int {
	if n <= 0 {
		return 0
	}
	return int((murmur2(key) & 0x7fffffff) % uint32(n))
}

// murmur2 is Kafka's Utils.murmur2 (Java), seed 0x9747b28c.
func murmur2(data []byte) uint32 {
	const (
		seed uint32 = 0x9747b28c
		m    uint32 = 0x5bd1e995
		r           = 24
	)
	n := len(data)
	h := seed ^ uint32(n)
	for i := 0; i+4 <= n; i += 4 {
		k := uint32(data[i]) | uint32(data[i+1])<<8 | uint32(data[i+2])<<16 | uint32(data[i+3])<<24
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
	}
	tail := data[n&^3:]
	switch len(tail) {
	case 3:
		h ^= uint32(tail[2]) << 16
		fallthrough
	case 2:
		h ^= uint32(tail[1]) << 8
		fallthrough
	case 1:
		h ^= uint32(tail[0])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return h
}
