package stream

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
)

// lagTracker keeps, for each partition of one generation, the position of
// the next record to hand out and the highest end offset seen, and reports
// their difference as metaids_stream_consumer_lag.
//
// Two sources feed the end offset: each record carries its fetch's high
// watermark, which is fresh when records trickle in, and pollLag asks the
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

func newLagTracker(group string, gen *kafka.Generation, gauge *prometheus.GaugeVec) *lagTracker {
	t := &lagTracker{group: group, gauge: gauge, parts: make(map[topicPartition]*partitionLag)}
	for topic, pas := range gen.Assignments {
		for _, pa := range pas {
			// pa.Offset is the committed offset, or kafka-go's
			// FirstOffset/LastOffset sentinel (negative) when the group
			// has committed nothing there.
			t.parts[topicPartition{topic, pa.ID}] = &partitionLag{next: pa.Offset, end: -1}
		}
	}
	return t
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

// pollLag asks the brokers for the end offsets of the generation's
// partitions every -kafka.reader.lag-interval until ctx is done. A failed
// poll is logged at debug level, and what it did return is used: the
// readers report broker trouble already, and the records' own watermarks
// keep the gauge going meanwhile.
func (c *Consumer) pollLag(ctx context.Context, t *lagTracker) {
	tick := time.NewTicker(c.cfg.Reader.LagInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		all, unknown := t.partitions()
		ends, first, err := c.listOffsets(ctx, all, unknown)
		if err != nil && ctx.Err() == nil {
			c.log.Debug("lag poll failed", "err", err)
		}
		t.polled(ends, first)
	}
}

// listOffsets returns the end offset of every partition in all and the log
// start of every partition in first. Partitions the brokers failed to
// answer for are left out, and their errors joined.
func (c *Consumer) listOffsets(ctx context.Context, all, first map[string][]int) (ends, starts map[topicPartition]int64, err error) {
	req := &kafka.ListOffsetsRequest{Topics: make(map[string][]kafka.OffsetRequest, len(all))}
	for topic, parts := range all {
		for _, p := range parts {
			req.Topics[topic] = append(req.Topics[topic], kafka.LastOffsetOf(p))
		}
	}
	for topic, parts := range first {
		for _, p := range parts {
			req.Topics[topic] = append(req.Topics[topic], kafka.FirstOffsetOf(p))
		}
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	resp, err := c.client.ListOffsets(ctx, req)
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
