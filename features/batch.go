package features

import (
	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/memory"

	"github.com/metaids/metaids/schemas"
)

// Builder accumulates flows into one features record batch (Schema). It is
// not safe for concurrent use. Release it when done.
//
// The identity columns use arrow's builders. The feature columns do not:
// a float32 builder updates a validity bitmap on every value, which was a
// quarter of ingest's per-flow cost for columns that are never null.
// Builder writes them straight into allocator buffers instead.
type Builder struct {
	mem     memory.Allocator
	flowID  *array.Uint64Builder
	host    *array.StringBuilder
	peer    *array.StringBuilder
	srcPort *array.Uint16Builder
	dstPort *array.Uint16Builder
	proto   *array.Uint8Builder
	startNs *array.Int64Builder
	endNs   *array.Int64Builder

	featBufs [NumFeatures]*memory.Buffer
	featVals [NumFeatures][]float32 // views of featBufs
	capRows  int                    // rows featBufs have room for
	hint     int                    // rows of the previous batch, to size the next

	vec     [NumFeatures]float32 // scratch, so Append does not allocate
	scratch []byte               // host and peer text
	n       int
}

// NewBuilder returns an empty Builder whose buffers come from mem.
func NewBuilder(mem memory.Allocator) *Builder {
	return &Builder{
		mem:     mem,
		flowID:  array.NewUint64Builder(mem),
		host:    array.NewStringBuilder(mem),
		peer:    array.NewStringBuilder(mem),
		srcPort: array.NewUint16Builder(mem),
		dstPort: array.NewUint16Builder(mem),
		proto:   array.NewUint8Builder(mem),
		startNs: array.NewInt64Builder(mem),
		endNs:   array.NewInt64Builder(mem),
		scratch: make([]byte, 0, 64),
	}
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
	if b.n == b.capRows {
		b.grow()
	}
	fill(&b.vec, f)
	for j, x := range b.vec {
		b.featVals[j][b.n] = x
	}
	b.n++
}

// grow doubles the feature columns' room, starting from the previous
// batch's size so that a steady stream never regrows.
func (b *Builder) grow() {
	rows := max(2*b.capRows, b.hint, 64)
	for j := range b.featBufs {
		nb := memory.NewResizableBuffer(b.mem)
		nb.Resize(rows * 4)
		if old := b.featBufs[j]; old != nil {
			copy(nb.Bytes(), old.Bytes()[:b.n*4])
			old.Release()
		}
		b.featBufs[j] = nb
		b.featVals[j] = arrow.Float32Traits.CastFromBytes(nb.Bytes())
	}
	b.capRows = rows
}

// Len returns the number of rows appended since the last NewRecord.
func (b *Builder) Len() int { return b.n }

// NewRecord returns the rows appended so far as a record and resets the
// Builder. The caller owns the record and must Release it.
func (b *Builder) NewRecord() arrow.Record {
	cols := make([]arrow.Array, 0, numIdentityCols+NumFeatures)
	cols = append(cols,
		b.flowID.NewArray(), b.host.NewArray(), b.peer.NewArray(), b.srcPort.NewArray(),
		b.dstPort.NewArray(), b.proto.NewArray(), b.startNs.NewArray(), b.endNs.NewArray())
	for j := range b.featBufs {
		buf := b.featBufs[j]
		if buf == nil {
			buf = memory.NewResizableBuffer(b.mem)
		}
		buf.ResizeNoShrink(b.n * 4)
		data := array.NewData(arrow.PrimitiveTypes.Float32, b.n, []*memory.Buffer{nil, buf}, nil, 0, 0)
		cols = append(cols, array.NewFloat32Data(data))
		data.Release()
		buf.Release() // the array holds it now
		b.featBufs[j], b.featVals[j] = nil, nil
	}
	rec := array.NewRecord(Schema(), cols, int64(b.n))
	for _, c := range cols {
		c.Release()
	}
	b.hint = max(b.n, 64)
	b.n, b.capRows = 0, 0
	return rec
}

// Release frees the Builder's buffers.
func (b *Builder) Release() {
	for _, bl := range []array.Builder{b.flowID, b.host, b.peer, b.srcPort, b.dstPort, b.proto, b.startNs, b.endNs} {
		bl.Release()
	}
	for j, buf := range b.featBufs {
		if buf != nil {
			buf.Release()
			b.featBufs[j], b.featVals[j] = nil, nil
		}
	}
	b.n, b.capRows = 0, 0
}
