package features

import (
	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/memory"

	"github.com/metaids/metaids/schemas"
)

// Builder accumulates flows into one features record batch (Schema). It is
// not safe for concurrent use. Release it when done.
type Builder struct {
	rb      *array.RecordBuilder
	flowID  *array.Uint64Builder
	host    *array.StringBuilder
	peer    *array.StringBuilder
	srcPort *array.Uint16Builder
	dstPort *array.Uint16Builder
	proto   *array.Uint8Builder
	startNs *array.Int64Builder
	endNs   *array.Int64Builder
	feats   [NumFeatures]*array.Float32Builder

	vec     [NumFeatures]float32 // scratch, so Append does not allocate
	scratch []byte               // host and peer text
	n       int
}

// NewBuilder returns an empty Builder whose buffers come from mem.
func NewBuilder(mem memory.Allocator) *Builder {
	rb := array.NewRecordBuilder(mem, Schema())
	b := &Builder{
		rb:      rb,
		flowID:  rb.Field(colFlowID).(*array.Uint64Builder),
		host:    rb.Field(colHost).(*array.StringBuilder),
		peer:    rb.Field(colPeer).(*array.StringBuilder),
		srcPort: rb.Field(colSrcPort).(*array.Uint16Builder),
		dstPort: rb.Field(colDstPort).(*array.Uint16Builder),
		proto:   rb.Field(colProto).(*array.Uint8Builder),
		startNs: rb.Field(colStartNs).(*array.Int64Builder),
		endNs:   rb.Field(colEndNs).(*array.Int64Builder),
		scratch: make([]byte, 0, 64),
	}
	for j := range b.feats {
		b.feats[j] = rb.Field(FirstFeatureColumn + j).(*array.Float32Builder)
	}
	return b
}

// Append adds f as one row: its identity columns and its feature vector.
func (b *Builder) Append(f *schemas.Flow) {
	b.scratch = AppendHost(b.scratch[:0], f)
	b.append(f, b.scratch)
}

// append adds f with its host key already rendered, which the Batcher has
// done to pick the partition.
func (b *Builder) append(f *schemas.Flow, host []byte) {
	b.flowID.Append(f.ID())
	b.host.BinaryBuilder.Append(host)
	// scratch may be the host buffer; render the peer after the host's
	// bytes so that neither overwrites the other.
	off := len(b.scratch)
	b.scratch = AppendPeer(b.scratch, f)
	b.peer.BinaryBuilder.Append(b.scratch[off:])
	b.scratch = b.scratch[:off]
	b.srcPort.Append(f.SrcPort)
	b.dstPort.Append(f.DstPort)
	b.proto.Append(f.Proto)
	b.startNs.Append(f.StartNs)
	b.endNs.Append(f.EndNs)
	fill(&b.vec, f)
	for j, x := range b.vec {
		b.feats[j].Append(x)
	}
	b.n++
}

// Len returns the number of rows appended since the last NewRecord.
func (b *Builder) Len() int { return b.n }

// NewRecord returns the rows appended so far as a record and resets the
// Builder. The caller owns the record and must Release it.
func (b *Builder) NewRecord() arrow.Record {
	b.n = 0
	return b.rb.NewRecord()
}

// Release frees the Builder's buffers.
func (b *Builder) Release() { b.rb.Release() }
