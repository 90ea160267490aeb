package features

import (
	"encoding/binary"
	"fmt"
	"math"
	"unsafe"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/memory"
)

// This file is a strict reader for the Arrow IPC streams this package
// writes: one schema message, one record batch message, an optional
// end-of-stream marker, nothing else. It exists because arrow's ipc.Reader
// trusts length fields: it allocates a message's metadata length, its body
// length, a schema's field count and every buffer length as read, before
// comparing them with the input, so a few hostile bytes can ask for
// gigabytes. Here every length is checked against the bytes actually
// present before it is used, every offset is bounds-checked, and the arrays
// are built over the input without copying it.
//
// The flatbuffer layouts follow format/Message.fbs and format/Schema.fbs of
// the Arrow specification (metadata versions V4 and V5).

// Flatbuffer enum values used below.
const (
	fbMetadataV4 = 3
	fbMetadataV5 = 4

	fbHeaderSchema      = 1
	fbHeaderRecordBatch = 3

	fbTypeInt           = 2
	fbTypeFloatingPoint = 3
	fbTypeBinary        = 4
	fbTypeUtf8          = 5
	fbTypeFixedSizeList = 16

	fbPrecisionHalf   = 0
	fbPrecisionSingle = 1
	fbPrecisionDouble = 2

	ipcContinuation = 0xFFFFFFFF
)

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrCorrupt}, args...)...)
}

// fbTable is one flatbuffer table inside buf, with its vtable located and
// bounds-checked.
type fbTable struct {
	buf []byte
	pos int // start of the table
	vt  int // start of its vtable
	nvt int // field slots in the vtable
}

func fbRoot(buf []byte) (fbTable, error) {
	if len(buf) < 4 {
		return fbTable{}, corrupt("flatbuffer of %d bytes", len(buf))
	}
	return fbTableAt(buf, uint64(binary.LittleEndian.Uint32(buf)))
}

func fbTableAt(buf []byte, pos uint64) (fbTable, error) {
	if pos+4 > uint64(len(buf)) {
		return fbTable{}, corrupt("flatbuffer table at %d outside %d bytes", pos, len(buf))
	}
	p := int(pos)
	vt := int64(p) - int64(int32(binary.LittleEndian.Uint32(buf[p:])))
	if vt < 0 || vt+4 > int64(len(buf)) {
		return fbTable{}, corrupt("flatbuffer vtable at %d outside %d bytes", vt, len(buf))
	}
	size := int(binary.LittleEndian.Uint16(buf[vt:]))
	if size < 4 || size&1 != 0 || int(vt)+size > len(buf) {
		return fbTable{}, corrupt("flatbuffer vtable of %d bytes at %d", size, vt)
	}
	return fbTable{buf: buf, pos: p, vt: int(vt), nvt: (size - 4) / 2}, nil
}

// field returns the position of field i's inline data, which must have
// size bytes, or -1 when the field is absent (and takes its default).
func (t fbTable) field(i, size int) (int, error) {
	if i >= t.nvt {
		return -1, nil
	}
	off := int(binary.LittleEndian.Uint16(t.buf[t.vt+4+2*i:]))
	if off == 0 {
		return -1, nil
	}
	p := t.pos + off
	if p+size > len(t.buf) {
		return 0, corrupt("flatbuffer field %d at %d outside %d bytes", i, p, len(t.buf))
	}
	return p, nil
}

func (t fbTable) u8(i int, def uint8) (uint8, error) {
	p, err := t.field(i, 1)
	if err != nil || p < 0 {
		return def, err
	}
	return t.buf[p], nil
}

func (t fbTable) i16(i int, def int16) (int16, error) {
	p, err := t.field(i, 2)
	if err != nil || p < 0 {
		return def, err
	}
	return int16(binary.LittleEndian.Uint16(t.buf[p:])), nil
}

func (t fbTable) i32(i int, def int32) (int32, error) {
	p, err := t.field(i, 4)
	if err != nil || p < 0 {
		return def, err
	}
	return int32(binary.LittleEndian.Uint32(t.buf[p:])), nil
}

func (t fbTable) i64(i int, def int64) (int64, error) {
	p, err := t.field(i, 8)
	if err != nil || p < 0 {
		return def, err
	}
	return int64(binary.LittleEndian.Uint64(t.buf[p:])), nil
}

// ref follows the offset stored in field i; ok is false when it is absent.
func (t fbTable) ref(i int) (target uint64, ok bool, err error) {
	p, err := t.field(i, 4)
	if err != nil || p < 0 {
		return 0, false, err
	}
	return uint64(p) + uint64(binary.LittleEndian.Uint32(t.buf[p:])), true, nil
}

func (t fbTable) table(i int) (fbTable, bool, error) {
	target, ok, err := t.ref(i)
	if err != nil || !ok {
		return fbTable{}, false, err
	}
	sub, err := fbTableAt(t.buf, target)
	return sub, err == nil, err
}

// vector returns the position of the first element of the vector in field
// i and its length, after checking that n elements of elemSize bytes fit.
func (t fbTable) vector(i, elemSize int) (start, n int, err error) {
	target, ok, err := t.ref(i)
	if err != nil || !ok {
		return 0, 0, err
	}
	if target+4 > uint64(len(t.buf)) {
		return 0, 0, corrupt("flatbuffer vector at %d outside %d bytes", target, len(t.buf))
	}
	count := uint64(binary.LittleEndian.Uint32(t.buf[target:]))
	start64 := target + 4
	if count*uint64(elemSize) > uint64(len(t.buf))-start64 {
		return 0, 0, corrupt("flatbuffer vector of %d elements at %d outside %d bytes", count, target, len(t.buf))
	}
	return int(start64), int(count), nil
}

// vectorTable returns table k of a vector of tables starting at start.
func (t fbTable) vectorTable(start, k int) (fbTable, error) {
	p := start + 4*k
	return fbTableAt(t.buf, uint64(p)+uint64(binary.LittleEndian.Uint32(t.buf[p:])))
}

// bytes returns the string in field i, aliasing buf.
func (t fbTable) bytes(i int) ([]byte, error) {
	start, n, err := t.vector(i, 1)
	if err != nil {
		return nil, err
	}
	return t.buf[start : start+n], nil
}

// ipcField is one column as the stream declares it. typ is nil when the
// type is one this package never writes; typeID then names it.
type ipcField struct {
	name   string
	typ    arrow.DataType
	typeID uint8
}

type ipcSchema struct {
	fields []ipcField
	meta   map[string]string
}

// ipcBatch is the record batch message, its nodes and buffers still raw.
type ipcBatch struct {
	rows    int64
	nodes   []byte // FieldNode structs: length, null_count (int64 each)
	buffers []byte // Buffer structs: offset, length (int64 each)
	body    []byte
}

// readIPC parses a stream of exactly one schema and one record batch.
// wantFields bounds the schema's field count before any field is parsed.
func readIPC(b []byte, wantFields int) (ipcSchema, ipcBatch, error) {
	meta, _, rest, err := readMessage(b, fbHeaderSchema)
	if err != nil {
		return ipcSchema{}, ipcBatch{}, fmt.Errorf("schema message: %w", err)
	}
	sch, err := parseSchema(meta, wantFields)
	if err != nil {
		return ipcSchema{}, ipcBatch{}, err
	}
	meta, body, rest, err := readMessage(rest, fbHeaderRecordBatch)
	if err != nil {
		return sch, ipcBatch{}, fmt.Errorf("record batch message: %w", err)
	}
	batch, err := parseBatch(meta, body)
	if err != nil {
		return sch, ipcBatch{}, err
	}
	// Writers end a stream with a continuation marker and a zero length;
	// the marker is optional, anything else (a second batch) is not ours.
	switch {
	case len(rest) == 0:
	case len(rest) == 8 && binary.LittleEndian.Uint32(rest) == ipcContinuation && binary.LittleEndian.Uint32(rest[4:]) == 0:
	case len(rest) == 4 && binary.LittleEndian.Uint32(rest) == 0:
	default:
		return sch, ipcBatch{}, corrupt("%d bytes after the record batch, want an end-of-stream marker", len(rest))
	}
	return sch, batch, nil
}

// readMessage splits one encapsulated message off b: the flatbuffer
// Message table of the wanted header type, its body, and the bytes after.
func readMessage(b []byte, wantHeader uint8) (hdr fbTable, body, rest []byte, err error) {
	if len(b) < 8 {
		return fbTable{}, nil, nil, corrupt("truncated: %d bytes left, want a message prefix", len(b))
	}
	if binary.LittleEndian.Uint32(b) != ipcContinuation {
		return fbTable{}, nil, nil, corrupt("no continuation marker")
	}
	metaLen := uint64(binary.LittleEndian.Uint32(b[4:]))
	b = b[8:]
	if metaLen == 0 {
		return fbTable{}, nil, nil, corrupt("end of stream before the message")
	}
	if metaLen > uint64(len(b)) {
		return fbTable{}, nil, nil, corrupt("truncated: metadata of %d bytes, %d left", metaLen, len(b))
	}
	metaBuf := b[:metaLen]
	b = b[metaLen:]
	msg, err := fbRoot(metaBuf)
	if err != nil {
		return fbTable{}, nil, nil, err
	}
	version, err := msg.i16(0, 0)
	if err != nil {
		return fbTable{}, nil, nil, err
	}
	if version != fbMetadataV4 && version != fbMetadataV5 {
		return fbTable{}, nil, nil, corrupt("metadata version %d, want V4 or V5", int(version)+1)
	}
	htype, err := msg.u8(1, 0)
	if err != nil {
		return fbTable{}, nil, nil, err
	}
	if htype != wantHeader {
		return fbTable{}, nil, nil, corrupt("message type %d, want %d", htype, wantHeader)
	}
	hdr, ok, err := msg.table(2)
	if err != nil {
		return fbTable{}, nil, nil, err
	}
	if !ok {
		return fbTable{}, nil, nil, corrupt("message without a header")
	}
	bodyLen, err := msg.i64(3, 0)
	if err != nil {
		return fbTable{}, nil, nil, err
	}
	if bodyLen < 0 || uint64(bodyLen) > uint64(len(b)) {
		return fbTable{}, nil, nil, corrupt("truncated: body of %d bytes, %d left", bodyLen, len(b))
	}
	return hdr, b[:bodyLen], b[bodyLen:], nil
}

func parseSchema(s fbTable, wantFields int) (ipcSchema, error) {
	endianness, err := s.i16(0, 0)
	if err != nil {
		return ipcSchema{}, err
	}
	if endianness != 0 {
		return ipcSchema{}, fmt.Errorf("%w: big-endian stream", ErrSchemaMismatch)
	}
	start, n, err := s.vector(1, 4)
	if err != nil {
		return ipcSchema{}, err
	}
	if n != wantFields {
		return ipcSchema{}, fmt.Errorf("%w: %d columns, want %d", ErrSchemaMismatch, n, wantFields)
	}
	sch := ipcSchema{fields: make([]ipcField, n)}
	for i := range n {
		ft, err := s.vectorTable(start, i)
		if err != nil {
			return ipcSchema{}, err
		}
		if sch.fields[i], err = parseField(ft, true); err != nil {
			return ipcSchema{}, fmt.Errorf("column %d: %w", i, err)
		}
	}
	if sch.meta, err = parseMetadata(s, 2); err != nil {
		return ipcSchema{}, err
	}
	return sch, nil
}

// parseField reads a column's name and type. Only a fixed-size list may
// have a child, and only at the top level, which bounds the recursion.
func parseField(ft fbTable, top bool) (ipcField, error) {
	name, err := ft.bytes(0)
	if err != nil {
		return ipcField{}, err
	}
	f := ipcField{name: string(name)}
	if f.typeID, err = ft.u8(2, 0); err != nil {
		return ipcField{}, err
	}
	if _, ok, err := ft.ref(4); err != nil || ok {
		if err == nil {
			err = fmt.Errorf("%w: column %q is dictionary-encoded", ErrSchemaMismatch, f.name)
		}
		return ipcField{}, err
	}
	childStart, nchild, err := ft.vector(5, 4)
	if err != nil {
		return ipcField{}, err
	}
	typ, hasType, err := ft.table(3)
	if err != nil {
		return ipcField{}, err
	}
	if !hasType {
		return f, nil // typ stays nil: reported as a mismatch by the caller
	}
	switch f.typeID {
	case fbTypeInt:
		width, err := typ.i32(0, 0)
		if err != nil {
			return ipcField{}, err
		}
		signed, err := typ.u8(1, 0)
		if err != nil {
			return ipcField{}, err
		}
		f.typ = intType(width, signed != 0)
	case fbTypeFloatingPoint:
		prec, err := typ.i16(0, 0)
		if err != nil {
			return ipcField{}, err
		}
		switch prec {
		case fbPrecisionHalf:
			f.typ = arrow.FixedWidthTypes.Float16
		case fbPrecisionSingle:
			f.typ = arrow.PrimitiveTypes.Float32
		case fbPrecisionDouble:
			f.typ = arrow.PrimitiveTypes.Float64
		}
	case fbTypeUtf8:
		f.typ = arrow.BinaryTypes.String
	case fbTypeBinary:
		f.typ = arrow.BinaryTypes.Binary
	case fbTypeFixedSizeList:
		size, err := typ.i32(0, 0)
		if err != nil {
			return ipcField{}, err
		}
		if !top || nchild != 1 || size < 1 {
			return f, nil
		}
		ct, err := ft.vectorTable(childStart, 0)
		if err != nil {
			return ipcField{}, err
		}
		child, err := parseField(ct, false)
		if err != nil {
			return ipcField{}, err
		}
		if child.typ == nil {
			return f, nil
		}
		f.typ = arrow.FixedSizeListOf(size, child.typ)
		return f, nil
	}
	if nchild != 0 {
		f.typ = nil // a child on a flat type: not a schema we write
	}
	return f, nil
}

func intType(width int32, signed bool) arrow.DataType {
	switch {
	case width == 8 && signed:
		return arrow.PrimitiveTypes.Int8
	case width == 8:
		return arrow.PrimitiveTypes.Uint8
	case width == 16 && signed:
		return arrow.PrimitiveTypes.Int16
	case width == 16:
		return arrow.PrimitiveTypes.Uint16
	case width == 32 && signed:
		return arrow.PrimitiveTypes.Int32
	case width == 32:
		return arrow.PrimitiveTypes.Uint32
	case width == 64 && signed:
		return arrow.PrimitiveTypes.Int64
	case width == 64:
		return arrow.PrimitiveTypes.Uint64
	}
	return nil
}

// parseMetadata reads a custom_metadata vector of KeyValue tables, keeping
// only the metaids.* keys so that a hostile stream cannot make it allocate
// in proportion to the number of entries.
func parseMetadata(t fbTable, i int) (map[string]string, error) {
	start, n, err := t.vector(i, 4)
	if err != nil {
		return nil, err
	}
	md := make(map[string]string, 4)
	for k := range n {
		kv, err := t.vectorTable(start, k)
		if err != nil {
			return nil, err
		}
		key, err := kv.bytes(0)
		if err != nil {
			return nil, err
		}
		val, err := kv.bytes(1)
		if err != nil {
			return nil, err
		}
		switch string(key) {
		case MetaSpecHash, MetaSpecVersion, MetaScoresVersion, MetaScoresClasses:
			md[string(key)] = string(val)
		}
	}
	return md, nil
}

func parseBatch(rb fbTable, body []byte) (ipcBatch, error) {
	rows, err := rb.i64(0, 0)
	if err != nil {
		return ipcBatch{}, err
	}
	// Every schema here has a fixed-width column, so each row takes at
	// least a byte of body; this bounds all later size arithmetic.
	if rows < 0 || rows > int64(len(body)) {
		return ipcBatch{}, corrupt("%d rows in a body of %d bytes", rows, len(body))
	}
	nstart, nn, err := rb.vector(1, 16)
	if err != nil {
		return ipcBatch{}, err
	}
	bstart, nb, err := rb.vector(2, 16)
	if err != nil {
		return ipcBatch{}, err
	}
	if _, ok, err := rb.ref(3); err != nil || ok {
		if err == nil {
			err = corrupt("compressed record batch")
		}
		return ipcBatch{}, err
	}
	return ipcBatch{
		rows:    rows,
		nodes:   rb.buf[nstart : nstart+16*nn],
		buffers: rb.buf[bstart : bstart+16*nb],
		body:    body,
	}, nil
}

// checkColumns compares the declared columns with want, naming the first
// difference.
func checkColumns(sch ipcSchema, want *arrow.Schema) error {
	for i, f := range sch.fields {
		w := want.Field(i)
		if f.name != w.Name {
			return fmt.Errorf("%w: column %d is %q, want %q", ErrSchemaMismatch, i, f.name, w.Name)
		}
		if f.typ == nil || !sameType(f.typ, w.Type) {
			got := fmt.Sprintf("type id %d", f.typeID)
			if f.typ != nil {
				got = f.typ.String()
			}
			return fmt.Errorf("%w: column %d %q has %s, want %s", ErrSchemaMismatch, i, f.name, got, w.Type)
		}
	}
	return nil
}

// sameType ignores the names and nullability of list children, which
// writers choose freely ("item", "element").
func sameType(got, want arrow.DataType) bool {
	g, gok := got.(*arrow.FixedSizeListType)
	w, wok := want.(*arrow.FixedSizeListType)
	if gok || wok {
		return gok && wok && g.Len() == w.Len() && arrow.TypeEqual(g.Elem(), w.Elem())
	}
	return arrow.TypeEqual(got, want)
}

// columnLoader hands out the batch's nodes and buffers in order, checking
// each against the body.
type columnLoader struct {
	b     ipcBatch
	node  int
	buf   int
	base  uintptr // address of body[0], for the alignment check
	arrs  []arrow.Array
	empty *memory.Buffer
}

func (l *columnLoader) nextNode() (length int64, err error) {
	if (l.node+1)*16 > len(l.b.nodes) {
		return 0, corrupt("record batch has %d field nodes, want more", len(l.b.nodes)/16)
	}
	p := l.b.nodes[l.node*16:]
	l.node++
	length = int64(binary.LittleEndian.Uint64(p))
	nulls := int64(binary.LittleEndian.Uint64(p[8:]))
	if nulls != 0 {
		return 0, corrupt("field node %d has %d nulls; columns here are never null", l.node-1, nulls)
	}
	return length, nil
}

// nextBuffer returns the next body buffer, which must hold at least minLen
// bytes and, when align > 1, start at an aligned address.
func (l *columnLoader) nextBuffer(minLen int64, align uintptr) ([]byte, error) {
	if (l.buf+1)*16 > len(l.b.buffers) {
		return nil, corrupt("record batch has %d buffers, want more", len(l.b.buffers)/16)
	}
	p := l.b.buffers[l.buf*16:]
	i := l.buf
	l.buf++
	off := int64(binary.LittleEndian.Uint64(p))
	n := int64(binary.LittleEndian.Uint64(p[8:]))
	if off < 0 || n < 0 || off > int64(len(l.b.body)) || n > int64(len(l.b.body))-off {
		return nil, corrupt("buffer %d [%d,+%d) outside a body of %d bytes", i, off, n, len(l.b.body))
	}
	if n < minLen {
		return nil, corrupt("buffer %d has %d bytes, want at least %d", i, n, minLen)
	}
	if align > 1 && (l.base+uintptr(off))%align != 0 {
		return nil, corrupt("buffer %d at body offset %d is not %d-byte aligned", i, off, align)
	}
	return l.b.body[off : off+n : off+n], nil
}

// load builds one array of type dt over the body, without copying.
func (l *columnLoader) load(dt arrow.DataType, rows int64) (arrow.ArrayData, error) {
	length, err := l.nextNode()
	if err != nil {
		return nil, err
	}
	if length != rows {
		return nil, corrupt("field node %d has %d rows, want %d", l.node-1, length, rows)
	}
	// Every array here needs at least a byte of body per row, and the
	// bound keeps the size arithmetic below far from overflow.
	if rows > int64(len(l.b.body)) {
		return nil, corrupt("field node %d has %d rows in a body of %d bytes", l.node-1, rows, len(l.b.body))
	}
	// The validity bitmap is ignored: nextNode has established that there
	// are no nulls, and writers may then omit it.
	if _, err := l.nextBuffer(0, 1); err != nil {
		return nil, err
	}
	switch dt := dt.(type) {
	case *arrow.FixedSizeListType:
		child, err := l.load(dt.Elem(), rows*int64(dt.Len()))
		if err != nil {
			return nil, err
		}
		defer child.Release()
		return array.NewData(dt, int(rows), []*memory.Buffer{nil}, []arrow.ArrayData{child}, 0, 0), nil
	case *arrow.StringType, *arrow.BinaryType:
		var minOff int64
		if rows > 0 {
			minOff = 4 * (rows + 1)
		}
		offBuf, err := l.nextBuffer(minOff, 4)
		if err != nil {
			return nil, err
		}
		data, err := l.nextBuffer(0, 1)
		if err != nil {
			return nil, err
		}
		if rows == 0 {
			// An empty column may have an empty offsets buffer; arrow's
			// String still wants one offset.
			offBuf = l.empty.Bytes()
		}
		if err := checkOffsets(offBuf, rows, len(data)); err != nil {
			return nil, fmt.Errorf("field node %d: %w", l.node-1, err)
		}
		return array.NewData(dt, int(rows), []*memory.Buffer{nil, memory.NewBufferBytes(offBuf), memory.NewBufferBytes(data)}, nil, 0, 0), nil
	case arrow.FixedWidthDataType:
		width := int64(dt.BitWidth() / 8)
		vals, err := l.nextBuffer(width*rows, uintptr(width))
		if err != nil {
			return nil, err
		}
		return array.NewData(dt, int(rows), []*memory.Buffer{nil, memory.NewBufferBytes(vals)}, nil, 0, 0), nil
	}
	return nil, fmt.Errorf("%w: cannot load type %s", ErrSchemaMismatch, dt)
}

// checkOffsets verifies that a string column's offsets start at or after 0,
// never decrease and stay inside its data, so every Value(i) is in range.
func checkOffsets(b []byte, rows int64, dataLen int) error {
	prev := int32(binary.LittleEndian.Uint32(b))
	if prev < 0 {
		return corrupt("string offset 0 is %d", prev)
	}
	for i := int64(1); i <= rows; i++ {
		o := int32(binary.LittleEndian.Uint32(b[4*i:]))
		if o < prev {
			return corrupt("string offset %d is %d, below %d", i, o, prev)
		}
		prev = o
	}
	if int64(prev) > int64(dataLen) {
		return corrupt("string offsets end at %d, data has %d bytes", prev, dataLen)
	}
	return nil
}

// loadRecord builds a record of schema over the batch. Every column of the
// schema must be present with exactly rows rows, and every node and buffer
// of the batch must be used.
func loadRecord(batch ipcBatch, schema *arrow.Schema) (arrow.Record, error) {
	if batch.rows > math.MaxInt32 {
		return nil, corrupt("%d rows", batch.rows)
	}
	l := &columnLoader{
		b:     batch,
		base:  uintptr(unsafe.Pointer(unsafe.SliceData(batch.body))),
		empty: memory.NewBufferBytes(make([]byte, 4)),
	}
	cols := make([]arrow.Array, 0, schema.NumFields())
	release := func() {
		for _, c := range cols {
			c.Release()
		}
	}
	for i := range schema.NumFields() {
		data, err := l.load(schema.Field(i).Type, batch.rows)
		if err != nil {
			release()
			return nil, fmt.Errorf("column %d %q: %w", i, schema.Field(i).Name, err)
		}
		cols = append(cols, array.MakeFromData(data))
		data.Release()
	}
	if l.node*16 != len(batch.nodes) || l.buf*16 != len(batch.buffers) {
		release()
		return nil, corrupt("record batch has %d nodes and %d buffers, schema uses %d and %d",
			len(batch.nodes)/16, len(batch.buffers)/16, l.node, l.buf)
	}
	rec := array.NewRecord(schema, cols, batch.rows)
	release() // the record holds its own references
	return rec, nil
}

// alignedInput returns b, or a copy of it from mem when b does not start
// on an 8-byte boundary: body buffers are aligned relative to the stream,
// and typed slices over them must be aligned in memory. Kafka clients may
// hand out values that are sub-slices at any offset.
func alignedInput(b []byte, mem memory.Allocator) ([]byte, *memory.Buffer) {
	if len(b) == 0 || uintptr(unsafe.Pointer(unsafe.SliceData(b)))%8 == 0 {
		return b, nil
	}
	buf := memory.NewResizableBuffer(mem)
	buf.Resize(len(b))
	copy(buf.Bytes(), b)
	return buf.Bytes(), buf
}
