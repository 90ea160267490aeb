package features

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/ipc"
	"github.com/apache/arrow/go/v15/arrow/memory"

	"github.com/metaids/metaids/schemas"
)

// randomFlows returns n varied flows over a few dozen hosts, IPv4 and IPv6.
func randomFlows(seed uint64, n int) []schemas.Flow {
	rng := rand.New(rand.NewPCG(seed, 0))
	protos := []uint8{6, 6, 6, 17, 17, 1, 58, 47}
	flows := make([]schemas.Flow, n)
	for i := range flows {
		h := rng.IntN(40)
		src := netip.AddrFrom4([4]byte{10, 0, byte(h), 1})
		if h%5 == 0 {
			src = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(h)})
		}
		start := t0 + int64(i)*1_000_000
		flows[i] = schemas.Flow{
			StartNs: start, EndNs: start + rng.Int64N(10_000_000_000),
			SrcAddr: src, DstAddr: netip.AddrFrom4([4]byte{byte(rng.IntN(256)), 2, 3, 4}),
			SrcPort: uint16(rng.Uint32()), DstPort: uint16(rng.IntN(1100)), Proto: protos[rng.IntN(len(protos))],
			BytesOut: rng.Uint64N(1 << 30), BytesIn: rng.Uint64N(1<<30) * uint64(rng.IntN(2)),
			PktsOut: rng.Uint64N(1000), PktsIn: rng.Uint64N(1000), TCPFlags: uint8(rng.Uint32()),
			Source: schemas.Coord{Topic: "flows.goflow2", Partition: int32(rng.IntN(4)), Offset: int64(i), Index: int32(rng.IntN(3))},
		}
	}
	return flows
}

// encodeFlows builds one batch of flows and encodes it.
func encodeFlows(t testing.TB, mem memory.Allocator, flows []schemas.Flow) []byte {
	t.Helper()
	b := NewBuilder(mem)
	defer b.Release()
	for i := range flows {
		b.Append(&flows[i])
	}
	rec := b.NewRecord()
	defer rec.Release()
	out, err := Encode(nil, rec)
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	return out
}

// checkView compares a decoded batch with the flows it was built from: the
// vectors bit for bit, and every identity column.
func checkView(t *testing.T, v *View, flows []schemas.Flow) {
	t.Helper()
	if v.Len() != len(flows) {
		t.Fatalf("Len() = %d, want %d", v.Len(), len(flows))
	}
	var got, want []float32
	for i := range flows {
		f := &flows[i]
		want = Vector(want[:0], f)
		got = v.Vector(got[:0], i)
		for j := range want {
			if math.Float32bits(got[j]) != math.Float32bits(want[j]) {
				t.Fatalf("row %d %s = %v, want %v", i, Default().Feature(j).Name, got[j], want[j])
			}
			if x := v.Feature(j)[i]; math.Float32bits(x) != math.Float32bits(want[j]) {
				t.Fatalf("Feature(%d)[%d] = %v, want %v", j, i, x, want[j])
			}
		}
		if v.FlowID(i) != f.ID() || v.Host(i) != Host(f) || v.Peer(i) != string(AppendPeer(nil, f)) ||
			v.SrcPort(i) != f.SrcPort || v.DstPort(i) != f.DstPort || v.Proto(i) != f.Proto ||
			v.StartNs(i) != f.StartNs || v.EndNs(i) != f.EndNs {
			t.Fatalf("row %d identity = %x %s %s %d %d %d %d %d, want %x %s %s %d %d %d %d %d", i,
				v.FlowID(i), v.Host(i), v.Peer(i), v.SrcPort(i), v.DstPort(i), v.Proto(i), v.StartNs(i), v.EndNs(i),
				f.ID(), Host(f), f.DstAddr, f.SrcPort, f.DstPort, f.Proto, f.StartNs, f.EndNs)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, 3, 1000} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
			defer mem.AssertSize(t, 0)
			flows := randomFlows(uint64(n), n)
			b := encodeFlows(t, mem, flows)
			v, err := Decode(b, mem)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			defer v.Release()
			checkView(t, v, flows)
			if got := v.Record().Schema(); !got.Equal(Schema()) {
				t.Errorf("decoded schema = %v, want %v", got, Schema())
			}
		})
	}
}

// TestDecodeZeroCopy checks that feature columns are slices of the input,
// not copies.
func TestDecodeZeroCopy(t *testing.T) {
	flows := randomFlows(4, 10)
	b := encodeFlows(t, memory.DefaultAllocator, flows)
	v, err := Decode(b, memory.DefaultAllocator)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	defer v.Release()
	col := v.Feature(0)
	if !inside(b, col) {
		t.Fatalf("Feature(0) does not alias the input")
	}
}

func unsafePointer[T any](s []T) unsafe.Pointer { return unsafe.Pointer(unsafe.SliceData(s)) }

func inside(b []byte, col []float32) bool {
	lo := uintptr(unsafePointer(b))
	p := uintptr(unsafePointer(col))
	return p >= lo && p < lo+uintptr(len(b))
}

// TestDecodeMisaligned decodes from an odd address, as a Kafka client that
// slices values out of a larger buffer may hand over: Decode must copy into
// aligned memory, and free it on Release.
func TestDecodeMisaligned(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	flows := randomFlows(5, 50)
	b := encodeFlows(t, mem, flows)
	odd := append(make([]byte, 1, len(b)+1), b...)[1:]
	v, err := Decode(odd, mem)
	if err != nil {
		t.Fatalf("Decode(misaligned): %v", err)
	}
	checkView(t, v, flows)
	if mem.CurrentAlloc() == 0 {
		t.Errorf("misaligned input was not copied")
	}
	v.Release()
}

// TestEncodeIsStandard reads Encode's output with arrow's own reader, so
// other Arrow implementations can read the features topic.
func TestEncodeIsStandard(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	flows := randomFlows(6, 20)
	b := encodeFlows(t, mem, flows)
	r, err := ipc.NewReader(bytes.NewReader(b), ipc.WithAllocator(mem))
	if err != nil {
		t.Fatalf("ipc.NewReader: %v", err)
	}
	defer r.Release()
	if !r.Schema().Equal(Schema()) {
		t.Errorf("schema = %v, want %v", r.Schema(), Schema())
	}
	n := 0
	for r.Next() {
		n++
		if got := r.Record().NumRows(); got != int64(len(flows)) {
			t.Errorf("rows = %d, want %d", got, len(flows))
		}
	}
	if r.Err() != nil || n != 1 {
		t.Errorf("batches = %d, err %v; want 1, nil", n, r.Err())
	}
}

// encodeWith encodes a one-row record of an arbitrary schema, to build
// well-formed streams that are not ours.
func encodeWith(t *testing.T, schema *arrow.Schema, fill func(rb *array.RecordBuilder)) []byte {
	t.Helper()
	rb := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer rb.Release()
	fill(rb)
	rec := rb.NewRecord()
	defer rec.Release()
	b, err := Encode(nil, rec)
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	return b
}

// variant returns the features schema with one change applied, and a
// builder filler that appends one row of zero values for any column type.
func variant(change func(fields []arrow.Field, md map[string]string) []arrow.Field) *arrow.Schema {
	fields := append([]arrow.Field(nil), Schema().Fields()...)
	md := map[string]string{}
	m := Schema().Metadata()
	for i, k := range m.Keys() {
		md[k] = m.Values()[i]
	}
	fields = change(fields, md)
	meta := arrow.MetadataFrom(md)
	return arrow.NewSchema(fields, &meta)
}

func appendZeroRow(rb *array.RecordBuilder) {
	for _, b := range rb.Fields() {
		b.AppendEmptyValue()
	}
}

func TestDecodeWrongSchema(t *testing.T) {
	tests := []struct {
		name    string
		schema  *arrow.Schema
		wantErr error
		wantMsg string
	}{
		{"other spec hash", variant(func(f []arrow.Field, md map[string]string) []arrow.Field {
			md[MetaSpecHash] = "0000000000000000"
			return f
		}), ErrSpecMismatch, "0000000000000000"},
		{"other spec version", variant(func(f []arrow.Field, md map[string]string) []arrow.Field {
			md[MetaSpecVersion] = "99"
			return f
		}), ErrSpecMismatch, `"99"`},
		{"no hash", variant(func(f []arrow.Field, md map[string]string) []arrow.Field {
			delete(md, MetaSpecHash)
			return f
		}), ErrSchemaMismatch, MetaSpecHash},
		{"renamed column", variant(func(f []arrow.Field, _ map[string]string) []arrow.Field {
			f[FirstFeatureColumn+2].Name = "pkts"
			return f
		}), ErrSchemaMismatch, `column 10 is "pkts", want "log_pkts_out"`},
		{"float64 feature", variant(func(f []arrow.Field, _ map[string]string) []arrow.Field {
			f[FirstFeatureColumn].Type = arrow.PrimitiveTypes.Float64
			return f
		}), ErrSchemaMismatch, `"log_bytes_out" has float64, want float32`},
		{"signed flow id", variant(func(f []arrow.Field, _ map[string]string) []arrow.Field {
			f[colFlowID].Type = arrow.PrimitiveTypes.Int64
			return f
		}), ErrSchemaMismatch, `"flow_id" has int64, want uint64`},
		{"binary host", variant(func(f []arrow.Field, _ map[string]string) []arrow.Field {
			f[colHost].Type = arrow.BinaryTypes.Binary
			return f
		}), ErrSchemaMismatch, `"host" has binary, want utf8`},
		{"bool column", variant(func(f []arrow.Field, _ map[string]string) []arrow.Field {
			f[colProto].Type = arrow.FixedWidthTypes.Boolean
			return f
		}), ErrSchemaMismatch, `"proto" has type id 6`},
		{"missing column", variant(func(f []arrow.Field, _ map[string]string) []arrow.Field {
			return f[:len(f)-1]
		}), ErrSchemaMismatch, "43 columns, want 44"},
		{"extra column", variant(func(f []arrow.Field, _ map[string]string) []arrow.Field {
			return append(f, arrow.Field{Name: "x", Type: arrow.PrimitiveTypes.Float32})
		}), ErrSchemaMismatch, "45 columns, want 44"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
			defer mem.AssertSize(t, 0)
			b := encodeWith(t, tc.schema, appendZeroRow)
			v, err := Decode(b, mem)
			if err == nil {
				v.Release()
				t.Fatalf("Decode = nil error, want %v", tc.wantErr)
			}
			if !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("Decode error = %v, want %v containing %q", err, tc.wantErr, tc.wantMsg)
			}
		})
	}
}

// TestDecodeCorrupt feeds garbage, every truncation of a valid batch and
// targeted edits of its length fields: each must be ErrCorrupt, never a
// panic, never a huge allocation.
func TestDecodeCorrupt(t *testing.T) {
	valid := encodeFlows(t, memory.DefaultAllocator, randomFlows(7, 5))
	le32 := func(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }
	tests := []struct {
		name string
		in   []byte
	}{
		{"nil", nil},
		{"empty", []byte{}},
		{"text", []byte("not an arrow stream at all")},
		{"eos only", append(le32(ipcContinuation), le32(0)...)},
		{"huge metadata length", append(le32(ipcContinuation), le32(0x7fffffff)...)},
		{"negative metadata length", append(append(le32(ipcContinuation), le32(0x80000000)...), make([]byte, 64)...)},
		{"legacy prefix", append(le32(64), make([]byte, 64)...)},
		{"zero metadata", append(append(le32(ipcContinuation), le32(16)...), make([]byte, 16)...)},
		{"two batches", func() []byte {
			// Drop the end marker and repeat the batch message.
			s, _, _, _ := splitStream(t, valid)
			return append(append([]byte(nil), valid[:len(valid)-8]...), valid[s:len(valid)-8]...)
		}()},
		{"schema only", func() []byte {
			s, _, _, _ := splitStream(t, valid)
			return append(append([]byte(nil), valid[:s]...), le32(ipcContinuation)...)
		}()},
		{"trailing garbage", append(append([]byte(nil), valid...), 1, 2, 3)},
	}
	for cut := 0; cut < len(valid)-8; cut += 1 + cut/64 {
		tests = append(tests, struct {
			name string
			in   []byte
		}{"truncated at " + strconv.Itoa(cut), valid[:cut]})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
			defer mem.AssertSize(t, 0)
			v, err := Decode(tc.in, mem)
			if err == nil {
				v.Release()
				t.Fatalf("Decode = nil error, want ErrCorrupt")
			}
			t.Log(err)
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrSchemaMismatch) {
				t.Errorf("Decode error = %v, want ErrCorrupt", err)
			}
			if strings.Contains(err.Error(), "internal error") {
				t.Errorf("Decode panicked inside: %v", err)
			}
		})
	}
}

// TestDecodeHostileLengths edits length fields inside a valid batch: the
// body length, buffer offsets and lengths, row counts, string offsets.
func TestDecodeHostileLengths(t *testing.T) {
	valid := encodeFlows(t, memory.DefaultAllocator, randomFlows(8, 5))
	_, bodyLenAt, bufsAt, nodesAt := splitStream(t, valid)
	type edit struct {
		name string
		at   int
		val  uint64
	}
	edits := []edit{
		{"body length", bodyLenAt, 1 << 40},
		{"body length negative", bodyLenAt, 1 << 63},
		{"first node rows", nodesAt, 1 << 40},
		{"first node nulls", nodesAt + 8, 1},
		{"first buffer offset", bufsAt, 1 << 40},
		{"values buffer length", bufsAt + 16 + 8, 1 << 40},
		{"values buffer short", bufsAt + 16 + 8, 8},
		{"values buffer offset misaligned", bufsAt + 16, 3},
		{"host offsets buffer length", bufsAt + 3*16 + 8, 4},
	}
	for _, e := range edits {
		t.Run(e.name, func(t *testing.T) {
			b := append([]byte(nil), valid...)
			binary.LittleEndian.PutUint64(b[e.at:], e.val)
			v, err := Decode(b, memory.DefaultAllocator)
			if err == nil {
				v.Release()
				t.Fatalf("Decode = nil error, want ErrCorrupt")
			}
			t.Log(err)
			if !errors.Is(err, ErrCorrupt) || strings.Contains(err.Error(), "internal error") {
				t.Errorf("Decode error = %v, want ErrCorrupt without a panic", err)
			}
		})
	}
	t.Run("string offsets decrease", func(t *testing.T) {
		b := append([]byte(nil), valid...)
		// The host column's offsets: third buffer (validity, offsets, …)
		// of column 1, i.e. buffer index 3 overall.
		body := len(valid) - 8 - int(binary.LittleEndian.Uint64(valid[bodyLenAt:]))
		off := int(binary.LittleEndian.Uint64(b[bufsAt+3*16:]))
		binary.LittleEndian.PutUint32(b[body+off+4:], 1<<30)
		v, err := Decode(b, memory.DefaultAllocator)
		if err == nil {
			v.Release()
			t.Fatalf("Decode = nil error, want ErrCorrupt")
		}
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "string offset") {
			t.Errorf("Decode error = %v, want ErrCorrupt about string offsets", err)
		}
	})
}

// splitStream locates, in a stream Encode wrote, the start of the record
// batch message and the positions of its body length, its first Buffer
// struct and its first FieldNode struct, using the strict reader's own
// flatbuffer accessors.
func splitStream(t *testing.T, b []byte) (batchStart, bodyLenAt, bufsAt, nodesAt int) {
	t.Helper()
	_, _, rest, err := readMessage(b, fbHeaderSchema)
	if err != nil {
		t.Fatalf("readMessage(schema): %v", err)
	}
	batchStart = len(b) - len(rest)
	metaLen := int(binary.LittleEndian.Uint32(b[batchStart+4:]))
	meta := b[batchStart+8 : batchStart+8+metaLen]
	msg, err := fbRoot(meta)
	if err != nil {
		t.Fatal(err)
	}
	p, err := msg.field(3, 8)
	if err != nil || p < 0 {
		t.Fatalf("no body length: %v", err)
	}
	bodyLenAt = batchStart + 8 + p
	hdr, _, err := msg.table(2)
	if err != nil {
		t.Fatal(err)
	}
	ns, _, err := hdr.vector(1, 16)
	if err != nil {
		t.Fatal(err)
	}
	bs, _, err := hdr.vector(2, 16)
	if err != nil {
		t.Fatal(err)
	}
	return batchStart, bodyLenAt, batchStart + 8 + bs, batchStart + 8 + ns
}

// TestDecodeNonFinite: a batch from some other producer that carries a NaN
// or infinite feature is refused, naming the feature.
func TestDecodeNonFinite(t *testing.T) {
	for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))} {
		mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
		b := encodeWith(t, Schema(), func(rb *array.RecordBuilder) {
			for i, fb := range rb.Fields() {
				if i == FirstFeatureColumn+idxLogPktsIn {
					fb.(*array.Float32Builder).AppendValues([]float32{1, bad}, nil)
					continue
				}
				fb.AppendEmptyValues(2)
			}
		})
		v, err := Decode(b, mem)
		if err == nil {
			v.Release()
			t.Fatalf("Decode(%v feature) = nil error, want ErrNonFinite", bad)
		}
		if !errors.Is(err, ErrCorrupt) || !errors.Is(err, ErrNonFinite) || !strings.Contains(err.Error(), `"log_pkts_in" row 1`) {
			t.Errorf("Decode(%v feature) error = %v, want ErrCorrupt and ErrNonFinite naming log_pkts_in row 1", bad, err)
		}
		mem.AssertSize(t, 0)
	}
}
