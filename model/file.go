package model

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"

	"github.com/metaids/metaids/schemas"
)

// The model file (`metaids train --out FILE`) is a ModelUpdate record in a
// small versioned little-endian format, so a model is the same thing on disk
// and on the models topic, and reading one needs no schema registry:
//
//	magic    8 bytes  "METAIDSM"
//	version  uint32   FileVersion
//	length   uint64   payload bytes
//	payload           the fields of schemas.ModelUpdate in declaration order
//	crc      uint32   CRC-32C (Castagnoli) of the payload
//
// In the payload, an integer is little-endian of its Go size; a float32 is
// its IEEE 754 bits (so weights round-trip bit for bit); a string or byte
// slice is a uint32 length and the bytes; a []float32 a uint32 count and the
// values; a list (classes, tensors, exemplars) a uint32 count and the
// elements; Tensor is name, rows, cols, data; Exemplar is class, embedding;
// Gate is a uint32 count and (key string, float64) pairs in key order.
const (
	fileMagic = "METAIDSM"
	// FileVersion is the model file format version this package writes.
	FileVersion = 1
	// maxFileBytes bounds what Read will accept, far above any real model.
	maxFileBytes = 1 << 30
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// MarshalUpdate encodes u in the model file format.
func MarshalUpdate(u *schemas.ModelUpdate) []byte {
	var p enc
	p.str(u.Name)
	p.u64(uint64(u.Version))
	p.u64(uint64(u.ParentVersion))
	p.str(string(u.Kind))
	p.str(u.SpecHash)
	p.u32(uint32(u.Features))
	p.u32(uint32(u.Hidden))
	p.u64(uint64(u.CreatedNs))
	p.u32(uint32(len(u.Classes)))
	for _, c := range u.Classes {
		p.str(c)
	}
	p.f32s(u.Thresholds)
	p.u32(math.Float32bits(u.AnomalyThreshold))
	p.f32s(u.NormMean)
	p.f32s(u.NormStd)
	p.u32(uint32(len(u.Tensors)))
	for _, t := range u.Tensors {
		p.str(t.Name)
		p.u32(uint32(t.Rows))
		p.u32(uint32(t.Cols))
		p.f32s(t.Data)
	}
	p.u32(uint32(len(u.Exemplars)))
	for _, e := range u.Exemplars {
		p.u32(uint32(e.Class))
		p.f32s(e.Embedding)
	}
	keys := make([]string, 0, len(u.Gate))
	for k := range u.Gate {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	p.u32(uint32(len(keys)))
	for _, k := range keys {
		p.str(k)
		p.u64(math.Float64bits(u.Gate[k]))
	}
	p.str(u.KeyID)
	p.str(string(u.Signature))

	var out enc
	out.b = append(out.b, fileMagic...)
	out.u32(FileVersion)
	out.u64(uint64(len(p.b)))
	out.b = append(out.b, p.b...)
	out.u32(crc32.Checksum(p.b, castagnoli))
	return out.b
}

// UnmarshalUpdate decodes a record written by MarshalUpdate. Truncation, a
// bad magic number, an unknown version or a checksum mismatch is an error
// wrapping ErrCorrupt; the record's contents are checked by FromUpdate.
func UnmarshalUpdate(b []byte) (*schemas.ModelUpdate, error) {
	if len(b) < len(fileMagic)+4+8+4 {
		return nil, fmt.Errorf("model file: %w: %d bytes is too short for a header", ErrCorrupt, len(b))
	}
	if string(b[:8]) != fileMagic {
		return nil, fmt.Errorf("model file: %w: bad magic %q", ErrCorrupt, b[:8])
	}
	if v := binary.LittleEndian.Uint32(b[8:]); v != FileVersion {
		return nil, fmt.Errorf("model file: %w: format version %d, this build reads %d", ErrCorrupt, v, FileVersion)
	}
	n := binary.LittleEndian.Uint64(b[12:])
	if n != uint64(len(b)-24) {
		return nil, fmt.Errorf("model file: %w: payload of %d bytes declared, %d present (truncated or padded)", ErrCorrupt, n, len(b)-24)
	}
	payload := b[20 : 20+n]
	if got, want := crc32.Checksum(payload, castagnoli), binary.LittleEndian.Uint32(b[20+n:]); got != want {
		return nil, fmt.Errorf("model file: %w: checksum %08x, want %08x", ErrCorrupt, got, want)
	}
	d := dec{b: payload}
	u := &schemas.ModelUpdate{}
	u.Name = d.str()
	u.Version = int64(d.u64())
	u.ParentVersion = int64(d.u64())
	u.Kind = schemas.UpdateKind(d.str())
	u.SpecHash = d.str()
	u.Features = int32(d.u32())
	u.Hidden = int32(d.u32())
	u.CreatedNs = int64(d.u64())
	if nc := d.count(4); nc > 0 {
		u.Classes = make([]string, nc)
		for i := range u.Classes {
			u.Classes[i] = d.str()
		}
	}
	u.Thresholds = d.f32s()
	u.AnomalyThreshold = math.Float32frombits(d.u32())
	u.NormMean = d.f32s()
	u.NormStd = d.f32s()
	if nt := d.count(16); nt > 0 {
		u.Tensors = make([]schemas.Tensor, nt)
		for i := range u.Tensors {
			t := &u.Tensors[i]
			t.Name = d.str()
			t.Rows = int32(d.u32())
			t.Cols = int32(d.u32())
			t.Data = d.f32s()
		}
	}
	if ne := d.count(8); ne > 0 {
		u.Exemplars = make([]schemas.Exemplar, ne)
		for i := range u.Exemplars {
			u.Exemplars[i].Class = int32(d.u32())
			u.Exemplars[i].Embedding = d.f32s()
		}
	}
	if ng := d.count(12); ng > 0 {
		u.Gate = make(map[string]float64, ng)
		for range ng {
			k := d.str()
			u.Gate[k] = math.Float64frombits(d.u64())
		}
	}
	u.KeyID = d.str()
	if s := d.str(); s != "" {
		u.Signature = []byte(s)
	}
	if d.err != nil {
		return nil, fmt.Errorf("model file: %w: %w", ErrCorrupt, d.err)
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("model file: %w: %d bytes after the record", ErrCorrupt, len(d.b))
	}
	return u, nil
}

// WriteTo writes m as a full update in the model file format.
func (m *Model) WriteTo(w io.Writer) (int64, error) {
	u, err := m.Update(schemas.UpdateFull)
	if err != nil {
		return 0, err
	}
	n, err := w.Write(MarshalUpdate(u))
	return int64(n), err
}

// Read reads a model file and builds the model with FromUpdate's checks; a
// non-empty specHash must match the model's.
func Read(r io.Reader, specHash string) (*Model, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read model file: %w", err)
	}
	if len(b) > maxFileBytes {
		return nil, fmt.Errorf("model file: %w: larger than %d bytes", ErrCorrupt, maxFileBytes)
	}
	u, err := UnmarshalUpdate(b)
	if err != nil {
		return nil, err
	}
	return FromUpdate(u, specHash)
}

// Save writes m to path atomically: a reader sees the old file or the whole
// new one, never a partial write.
func (m *Model) Save(path string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("save model: %w", err)
	}
	_, werr := m.WriteTo(tmp)
	serr := tmp.Sync()
	cerr := tmp.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("save model %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("save model: %w", err)
	}
	return nil
}

// Load reads the model file at path; see Read.
func Load(path, specHash string) (*Model, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load model: %w", err)
	}
	defer f.Close()
	m, err := Read(f, specHash)
	if err != nil {
		return nil, fmt.Errorf("load model %s: %w", path, err)
	}
	return m, nil
}

type enc struct{ b []byte }

func (e *enc) u32(v uint32) { e.b = binary.LittleEndian.AppendUint32(e.b, v) }
func (e *enc) u64(v uint64) { e.b = binary.LittleEndian.AppendUint64(e.b, v) }
func (e *enc) str(s string) { e.u32(uint32(len(s))); e.b = append(e.b, s...) }
func (e *enc) f32s(v []float32) {
	e.u32(uint32(len(v)))
	for _, x := range v {
		e.u32(math.Float32bits(x))
	}
}

// dec reads the payload; after the first error every read returns zero, so
// the decoder checks once at the end.
type dec struct {
	b   []byte
	err error
}

func (d *dec) take(n uint64) []byte {
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.err = fmt.Errorf("truncated: need %d bytes, %d left", n, len(d.b))
		return nil
	}
	out := d.b[:n]
	d.b = d.b[n:]
	return out
}

func (d *dec) u32() uint32 {
	if b := d.take(4); b != nil {
		return binary.LittleEndian.Uint32(b)
	}
	return 0
}

func (d *dec) u64() uint64 {
	if b := d.take(8); b != nil {
		return binary.LittleEndian.Uint64(b)
	}
	return 0
}

// count reads a list length, refusing one that the remaining bytes cannot
// hold at minSize bytes per element, so a corrupt length cannot make us
// allocate gigabytes.
func (d *dec) count(minSize int) int {
	n := uint64(d.u32())
	if d.err == nil && n*uint64(minSize) > uint64(len(d.b)) {
		d.err = fmt.Errorf("list of %d elements in %d bytes", n, len(d.b))
		return 0
	}
	return int(n)
}

func (d *dec) str() string {
	n := d.u32()
	return string(d.take(uint64(n)))
}

func (d *dec) f32s() []float32 {
	n := d.count(4)
	b := d.take(uint64(n) * 4)
	if b == nil || n == 0 {
		return nil
	}
	v := make([]float32, n)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v
}
