package features

import (
	"bytes"
	"fmt"
	"math"
	"strconv"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/ipc"
	"github.com/apache/arrow/go/v15/arrow/memory"
)

// Encode appends rec to dst as one Arrow IPC stream: the schema message, one
// record batch message and the end-of-stream marker. That is the value of
// one Kafka message, self-describing so that any Arrow reader (pyarrow in a
// notebook, say) can open it. Encode works for features and scores records.
func Encode(dst []byte, rec arrow.Record) ([]byte, error) {
	buf := bytes.NewBuffer(dst)
	w := ipc.NewWriter(buf, ipc.WithSchema(rec.Schema()))
	if err := w.Write(rec); err != nil {
		w.Close()
		return dst, fmt.Errorf("encode arrow record: %w", err)
	}
	if err := w.Close(); err != nil {
		return dst, fmt.Errorf("encode arrow record: %w", err)
	}
	return buf.Bytes(), nil
}

// View is a decoded features batch. Its columns alias the bytes given to
// Decode: the caller must not modify them while the View is in use. Strings
// returned by Host and Peer alias them too; clone one (strings.Clone) to keep
// it after Release, for instance as a map key.
type View struct {
	rec     arrow.Record
	copied  *memory.Buffer // the input, when it had to be copied to align it
	flowID  []uint64
	host    *array.String
	peer    *array.String
	srcPort []uint16
	dstPort []uint16
	proto   []uint8
	startNs []int64
	endNs   []int64
	feats   [NumFeatures][]float32
}

// Decode reads a features batch written by Encode. The feature columns are
// not copied: View.Feature returns slices over b (unless b is misaligned,
// when b is copied once into memory from mem).
//
// The bytes are untrusted. Decode returns an error wrapping ErrCorrupt when
// they are not one well-formed stream of one batch or hold a feature value
// that is not finite, ErrSpecMismatch when the
// batch was built with another feature spec, and ErrSchemaMismatch when its
// columns differ from Schema; the message names the offending column. It
// does not panic, and it allocates only a small, fixed amount beyond b.
func Decode(b []byte, mem memory.Allocator) (v *View, err error) {
	// The reader is written not to panic, and FuzzDecode checks that; the
	// recover keeps a bug in it from taking down a stage all the same.
	defer func() {
		if r := recover(); r != nil {
			v, err = nil, fmt.Errorf("decode features: %w: internal error: %v", ErrCorrupt, r)
		}
	}()
	b, copied := alignedInput(b, mem)
	v, err = decode(b)
	if err != nil {
		if copied != nil {
			copied.Release()
		}
		return nil, fmt.Errorf("decode features: %w", err)
	}
	v.copied = copied
	return v, nil
}

func decode(b []byte) (*View, error) {
	want := Schema()
	sch, batch, err := readIPC(b, want.NumFields())
	if err != nil {
		return nil, err
	}
	// The hash comes first: with another spec the columns are expected to
	// differ, and "spec mismatch" tells the operator why.
	spec := Default()
	hash, ok := sch.meta[MetaSpecHash]
	if !ok {
		return nil, fmt.Errorf("%w: no %s in the schema metadata", ErrSchemaMismatch, MetaSpecHash)
	}
	if hash != spec.Hash() || sch.meta[MetaSpecVersion] != strconv.Itoa(spec.Version()) {
		return nil, fmt.Errorf("%w: batch has spec %s version %q, this build has %s version %d",
			ErrSpecMismatch, hash, sch.meta[MetaSpecVersion], spec.Hash(), spec.Version())
	}
	if err := checkColumns(sch, want); err != nil {
		return nil, err
	}
	rec, err := loadRecord(batch, want)
	if err != nil {
		return nil, err
	}
	v := &View{
		rec:     rec,
		flowID:  rec.Column(colFlowID).(*array.Uint64).Uint64Values(),
		host:    rec.Column(colHost).(*array.String),
		peer:    rec.Column(colPeer).(*array.String),
		srcPort: rec.Column(colSrcPort).(*array.Uint16).Uint16Values(),
		dstPort: rec.Column(colDstPort).(*array.Uint16).Uint16Values(),
		proto:   rec.Column(colProto).(*array.Uint8).Uint8Values(),
		startNs: rec.Column(colStartNs).(*array.Int64).Int64Values(),
		endNs:   rec.Column(colEndNs).(*array.Int64).Int64Values(),
	}
	for j := range v.feats {
		v.feats[j] = rec.Column(FirstFeatureColumn + j).(*array.Float32).Float32Values()
		// A NaN fed to a host's LSTM would stay in its state for good, so a
		// batch that carries one is refused whole. Vector never makes one.
		if i := firstNonFinite(v.feats[j]); i >= 0 {
			rec.Release()
			return nil, fmt.Errorf("%w: %w: feature %q row %d is %v", ErrCorrupt, ErrNonFinite, Default().Feature(j).Name, i, v.feats[j][i])
		}
	}
	return v, nil
}

// firstNonFinite returns the index of the first NaN or infinity in x, or -1.
func firstNonFinite(x []float32) int {
	for i, f := range x {
		if math.Float32bits(f)&0x7f800000 == 0x7f800000 {
			return i
		}
	}
	return -1
}

// Len returns the number of rows (flows).
func (v *View) Len() int { return len(v.flowID) }

// FlowID returns row i's flow id.
func (v *View) FlowID(i int) uint64 { return v.flowID[i] }

// Host returns row i's host key (see Host). The string aliases the batch.
func (v *View) Host(i int) string { return v.host.Value(i) }

// Peer returns row i's responder address. The string aliases the batch.
func (v *View) Peer(i int) string { return v.peer.Value(i) }

// SrcPort returns row i's source port.
func (v *View) SrcPort(i int) uint16 { return v.srcPort[i] }

// DstPort returns row i's destination port.
func (v *View) DstPort(i int) uint16 { return v.dstPort[i] }

// Proto returns row i's IANA protocol number.
func (v *View) Proto(i int) uint8 { return v.proto[i] }

// StartNs returns row i's first-packet time, ns since the Unix epoch.
func (v *View) StartNs(i int) int64 { return v.startNs[i] }

// EndNs returns row i's last-packet time, ns since the Unix epoch.
func (v *View) EndNs(i int) int64 { return v.endNs[i] }

// Feature returns the column of feature j, one value per row, without
// copying. The slice aliases the batch; do not modify it.
func (v *View) Feature(j int) []float32 { return v.feats[j] }

// Vector appends row i's feature vector to dst, gathered from the columns.
// The scorer then sets the per-host slots (IdxDeltaT, IdxDstRepeat,
// IdxDeltaDst) of the appended vector.
func (v *View) Vector(dst []float32, i int) []float32 {
	for j := range v.feats {
		dst = append(dst, v.feats[j][i])
	}
	return dst
}

// Record returns the batch as an Arrow record, valid until Release. Retain
// it to keep it longer.
func (v *View) Record() arrow.Record { return v.rec }

// Release frees the View. Slices and strings obtained from it must not be
// used afterwards.
func (v *View) Release() {
	if v.rec != nil {
		v.rec.Release()
		v.rec = nil
	}
	if v.copied != nil {
		v.copied.Release()
		v.copied = nil
	}
}
