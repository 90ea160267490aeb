package stream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
)

// lagTracker keeps, for each partition a stage reads, the position of
// the next record to hand out and the highest end offset seen, and reports
// their difference as metaids_stream_consumer_lag.
//
// Two sources feed the end offset: each record carries its fetch's high
// watermark, which is fresh when records trickle in, and a lagPoller asks the
// brokers every -kafka.reader.lag-interval. The poll is what makes a flood
// visible: a stage slowly working through a full fetch would otherwise
// report only the records left in that fetch, whatever piled up behind it.
type lagTracker struct {
	group string
	gauge *prometheus.GaugeVec

	mu    sync.Mutex
	parts map[topicPartition]*partitionLag
}

type topicPartition struct {
	topic     string
	partition int
}

type partitionLag struct {
	next int64 // offset of the next record to hand out; < 0 until known
	end  int64 // the highest end offset seen; < 0 until one is
}

func newLagTracker(group string, gauge *prometheus.GaugeVec) *lagTracker {
	return &lagTracker{group: group, gauge: gauge, parts: make(map[topicPartition]*partitionLag)}
}

// assign starts tracking topic/partition, whose next record to hand out is
// at next: an offset, or kafka-go's FirstOffset/LastOffset sentinel
// (negative) when a group has committed nothing there.
func (t *lagTracker) assign(topic string, partition int, next int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.parts[topicPartition{topic, partition}] = &partitionLag{next: next, end: -1}
}

// handed records m as the last record of its partition handed to the
// handler.
func (t *lagTracker) handed(m kafka.Message) {
	t.mu.Lock()
	defer t.mu.Unlock()
	k := topicPartition{m.Topic, m.Partition}
	p := t.parts[k]
	if p == nil {
		return // not assigned in this generation: cannot happen, and not ours to report
	}
	p.next = m.Offset + 1
	p.end = max(p.end, m.HighWaterMark)
	t.set(k, p)
}

// polled records end offsets from the brokers. first holds the log start
// of partitions whose position is not known yet; a group that starts
// there reads from it.
func (t *lagTracker) polled(ends, first map[topicPartition]int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, end := range ends {
		p := t.parts[k]
		if p == nil {
			continue
		}
		if f, ok := first[k]; ok && p.next == kafka.FirstOffset {
			p.next = f
		}
		p.end = max(p.end, end)
		t.set(k, p)
	}
}

// partitions returns every partition of the generation, per topic, and
// those whose position is still kafka.FirstOffset.
func (t *lagTracker) partitions() (all, unknown map[string][]int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	all, unknown = make(map[string][]int), make(map[string][]int)
	for k, p := range t.parts {
		all[k.topic] = append(all[k.topic], k.partition)
		if p.next == kafka.FirstOffset {
			unknown[k.topic] = append(unknown[k.topic], k.partition)
		}
	}
	return all, unknown
}

// set reports p's lag, once both ends are known. A group starting at
// LastOffset with nothing committed has no position until its first
// record, and no lag to report: it skips whatever came before it.
func (t *lagTracker) set(k topicPartition, p *partitionLag) {
	if p.next < 0 || p.end < 0 {
		return
	}
	t.gauge.WithLabelValues(t.group, k.topic, strconv.Itoa(k.partition)).Set(float64(max(0, p.end-p.next)))
}

// lagPoller asks the brokers for the end offsets of a lagTracker's
// partitions.
type lagPoller struct {
	client   *kafka.Client
	timeout  time.Duration // of one request
	interval time.Duration
	log      *slog.Logger
}

// run polls every interval until ctx is done. A failed poll is logged at
// debug level, and what it did return is used: the readers report broker
// trouble already, and the records' own watermarks keep the gauge going
// meanwhile.
func (p lagPoller) run(ctx context.Context, t *lagTracker) {
	tick := time.NewTicker(p.interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		all, unknown := t.partitions()
		ends, first, err := p.listOffsets(ctx, all, unknown)
		if err != nil && ctx.Err() == nil {
			p.log.Debug("lag poll failed", "err", err)
		}
		t.polled(ends, first)
	}
}

// listOffsets returns the end offset of every partition in all and the log
// start of every partition in first. Partitions the brokers failed to
// answer for are left out, and their errors joined.
func (p lagPoller) listOffsets(ctx context.Context, all, first map[string][]int) (ends, starts map[topicPartition]int64, err error) {
	req := &kafka.ListOffsetsRequest{Topics: make(map[string][]kafka.OffsetRequest, len(all))}
	for topic, parts := range all {
		for _, part := range parts {
			req.Topics[topic] = append(req.Topics[topic], kafka.LastOffsetOf(part))
		}
	}
	for topic, parts := range first {
		for _, part := range parts {
			req.Topics[topic] = append(req.Topics[topic], kafka.FirstOffsetOf(part))
		}
	}
	if len(req.Topics) == 0 {
		return nil, nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	resp, err := p.client.ListOffsets(ctx, req)
	if err != nil {
		return nil, nil, err
	}
	ends, starts = make(map[topicPartition]int64), make(map[topicPartition]int64)
	var errs []error
	for topic, pos := range resp.Topics {
		for _, po := range pos {
			if po.Error != nil {
				errs = append(errs, fmt.Errorf("%s/%d: %w", topic, po.Partition, po.Error))
				continue
			}
			k := topicPartition{topic, po.Partition}
			if po.LastOffset >= 0 {
				ends[k] = po.LastOffset
			}
			if po.FirstOffset >= 0 && slices.Contains(first[topic], po.Partition) {
				starts[k] = po.FirstOffset
			}
		}
	}
	return ends, starts, errors.Join(errs...)
}

// PartitionLag reports metaids_stream_consumer_lag for partitions a stage
// reads with its own partition readers rather than a Consumer: the
// adapter, which reads every partition of its inputs outside any group.
// Create it with NewPartitionLag, Assign each partition as its reader is
// positioned, call Handed with each record the stage takes, and Run it.
type PartitionLag struct {
	t *lagTracker
	p lagPoller
}

// NewPartitionLag returns a PartitionLag reporting under group. It polls
// end offsets through client, the stage's own, every cfg.Reader.LagInterval,
// each request bounded by cfg.Timeout.
func NewPartitionLag(cfg Config, client *kafka.Client, group string, log *slog.Logger, reg prometheus.Registerer) *PartitionLag {
	return &PartitionLag{
		t: newLagTracker(group, newMetrics(reg).lag),
		p: lagPoller{client: client, timeout: cfg.Timeout, interval: cfg.Reader.LagInterval, log: orDiscard(log).With("group", group)},
	}
}

// Assign starts tracking topic/partition, read from offset next on.
func (l *PartitionLag) Assign(topic string, partition int, next int64) {
	l.t.assign(topic, partition, next)
}

// Handed records m as taken by the stage.
func (l *PartitionLag) Handed(m kafka.Message) { l.t.handed(m) }

// Run polls the assigned partitions' end offsets until ctx is done.
func (l *PartitionLag) Run(ctx context.Context) { l.p.run(ctx, l.t) }
