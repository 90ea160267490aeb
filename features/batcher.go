package features

import (
	"fmt"
	"time"

	"github.com/apache/arrow/go/v15/arrow/memory"

	"github.com/metaids/metaids/schemas"
)

// Span is a run of input records, all from one topic partition, that a
// batch has flows from. Offsets are inclusive.
type Span struct {
	Topic       string
	Partition   int32
	FirstOffset int64
	LastOffset  int64
}

// PartitionBatch is one flushed batch, ready to be produced to the features
// topic. The caller owns every slice in it.
type PartitionBatch struct {
	// Partition is the features partition every flow of the batch maps to.
	Partition int
	// Key is the host key of the batch's first flow. All hosts of a batch
	// hash to Partition, so producing with Key through kafka-go's Writer
	// and kafka.Murmur2Balancer lands the message on Partition as long as
	// the Batcher and the topic agree on the partition count.
	Key []byte
	// Value is the batch as one Arrow IPC stream (see Encode).
	Value []byte
	// Rows is the number of flows in the batch.
	Rows int
	// Spans lists the input records the batch holds flows from, one span
	// per input topic partition, so ingest can tell which input offsets
	// are safe to commit once the batch is acknowledged.
	Spans []Span
	// Opened is when the batch's first flow was added.
	Opened time.Time
}

// pending is one partition's open batch.
type pending struct {
	b      *Builder
	key    []byte
	opened time.Time
	spans  []Span
	last   int // index into spans of the span last extended
}

// Batcher routes flows to features partitions and keeps one open batch per
// partition. The caller drives it, passing the current time: Add flushes a
// partition that reaches Config.Batch.MaxRows, FlushExpired flushes those
// whose oldest flow is older than Config.Batch.Linger, and FlushAll flushes
// everything (before committing, or on shutdown). Deadline says when the
// next FlushExpired call is due. Keeping the clock and the timer with the
// caller keeps the Batcher deterministic to test and free of goroutines.
//
// A Batcher is not safe for concurrent use. Release it when done.
type Batcher struct {
	cfg   BatchConfig
	mem   memory.Allocator
	parts []pending
	host  []byte // scratch for the host key
	rows  int
}

// NewBatcher returns a Batcher for a features topic of the given number of
// partitions, which must be the topic's real partition count: partition
// choice and message keys both depend on it.
func NewBatcher(mem memory.Allocator, cfg Config, partitions int) (*Batcher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("features config: %w", err)
	}
	if partitions < 1 || partitions > maxPartitions {
		return nil, fmt.Errorf("features batcher: partitions must be between 1 and %d, got %d", maxPartitions, partitions)
	}
	return &Batcher{
		cfg:   cfg.Batch,
		mem:   mem,
		parts: make([]pending, partitions),
		host:  make([]byte, 0, 64),
	}, nil
}

// Partitions returns the partition count the Batcher routes over.
func (b *Batcher) Partitions() int { return len(b.parts) }

// Len returns the number of flows added and not yet flushed.
func (b *Batcher) Len() int { return b.rows }

// Add appends f to its host's partition batch. If that batch reaches
// MaxRows it is flushed and appended to dst. An error means the batch could
// not be encoded (a bug, not bad input); its flows are lost, so the caller
// must not commit their input.
func (b *Batcher) Add(dst []PartitionBatch, f *schemas.Flow, now time.Time) ([]PartitionBatch, error) {
	b.host = AppendHost(b.host[:0], f)
	p := Partition(b.host, len(b.parts))
	pb := &b.parts[p]
	if pb.b == nil {
		pb.b = NewBuilder(b.mem)
	}
	if pb.b.Len() == 0 {
		pb.opened = now
		pb.key = append(pb.key[:0], b.host...)
	}
	pb.b.append(f, b.host)
	pb.addCoord(f.Source)
	b.rows++
	if pb.b.Len() >= b.cfg.MaxRows {
		return b.flush(dst, p)
	}
	return dst, nil
}

// addCoord extends the span of c's topic partition. Flows arrive in runs
// from one input partition, so the span extended last is checked first.
func (pb *pending) addCoord(c schemas.Coord) {
	if pb.last < len(pb.spans) {
		if s := &pb.spans[pb.last]; s.Partition == c.Partition && s.Topic == c.Topic {
			s.FirstOffset = min(s.FirstOffset, c.Offset)
			s.LastOffset = max(s.LastOffset, c.Offset)
			return
		}
	}
	for i := range pb.spans {
		if s := &pb.spans[i]; s.Partition == c.Partition && s.Topic == c.Topic {
			s.FirstOffset = min(s.FirstOffset, c.Offset)
			s.LastOffset = max(s.LastOffset, c.Offset)
			pb.last = i
			return
		}
	}
	pb.spans = append(pb.spans, Span{Topic: c.Topic, Partition: c.Partition, FirstOffset: c.Offset, LastOffset: c.Offset})
	pb.last = len(pb.spans) - 1
}

// FlushExpired flushes, in partition order, every batch whose first flow
// was added Linger or more before now, appending them to dst.
func (b *Batcher) FlushExpired(dst []PartitionBatch, now time.Time) ([]PartitionBatch, error) {
	for p := range b.parts {
		pb := &b.parts[p]
		if pb.b != nil && pb.b.Len() > 0 && now.Sub(pb.opened) >= b.cfg.Linger {
			var err error
			if dst, err = b.flush(dst, p); err != nil {
				return dst, err
			}
		}
	}
	return dst, nil
}

// FlushAll flushes every non-empty batch, in partition order.
func (b *Batcher) FlushAll(dst []PartitionBatch) ([]PartitionBatch, error) {
	for p := range b.parts {
		if pb := &b.parts[p]; pb.b != nil && pb.b.Len() > 0 {
			var err error
			if dst, err = b.flush(dst, p); err != nil {
				return dst, err
			}
		}
	}
	return dst, nil
}

// Deadline returns when the oldest open batch expires, or false when no
// batch is open. The caller arms its timer for it and then calls
// FlushExpired.
func (b *Batcher) Deadline() (time.Time, bool) {
	var (
		first time.Time
		ok    bool
	)
	for p := range b.parts {
		pb := &b.parts[p]
		if pb.b != nil && pb.b.Len() > 0 && (!ok || pb.opened.Before(first)) {
			first, ok = pb.opened, true
		}
	}
	if !ok {
		return time.Time{}, false
	}
	return first.Add(b.cfg.Linger), true
}

func (b *Batcher) flush(dst []PartitionBatch, p int) ([]PartitionBatch, error) {
	pb := &b.parts[p]
	rows := pb.b.Len()
	// Size the output once: fixed-width columns, string offsets and text,
	// plus room for the schema message and padding.
	size := rows*(29+4*NumFeatures+8) + pb.b.host.DataLen() + pb.b.peer.DataLen() + 8192
	rec := pb.b.NewRecord()
	val, err := Encode(make([]byte, 0, size), rec)
	rec.Release()
	b.rows -= rows
	spans := pb.spans
	pb.spans, pb.last = nil, 0
	if err != nil {
		return dst, fmt.Errorf("flush features partition %d: %w", p, err)
	}
	return append(dst, PartitionBatch{
		Partition: p,
		Key:       append([]byte(nil), pb.key...),
		Value:     val,
		Rows:      rows,
		Spans:     spans,
		Opened:    pb.opened,
	}), nil
}

// Release frees every open batch's buffers; unflushed flows are dropped.
func (b *Batcher) Release() {
	for p := range b.parts {
		if pb := &b.parts[p]; pb.b != nil {
			pb.b.Release()
			pb.b = nil
		}
	}
	b.rows = 0
}
