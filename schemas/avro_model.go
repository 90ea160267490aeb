package schemas

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
)

// A ModelUpdate's body must be the same bytes every time it is encoded, since
// its signature covers them. goavro writes a map's entries in Go's random
// iteration order, so the body is assembled in two parts: goavro encodes the
// record with gate, key_id and signature empty, which ends the body with the
// three zero bytes those empty values encode to; those bytes are cut off and
// the three last fields appended by hand, the gate as one block with its keys
// in ascending byte order. The result is still plain Avro that any decoder
// reads; it is simply the one encoding of the record whose map keys are
// sorted. That is why gate, key_id and signature must stay the last three
// fields of modelupdate.avsc.

// AppendModelUpdate appends u, Confluent-framed, to dst. The body is
// canonical (see SignModelUpdate), so equal updates encode to equal bytes.
func (c *Codecs) AppendModelUpdate(dst []byte, u *ModelUpdate) ([]byte, error) {
	n := len(dst)
	dst = AppendHeader(dst, c.update.id)
	out, err := appendModelBody(c.update, dst, u, u.Signature)
	if err != nil {
		return dst[:n], fmt.Errorf("encode %s: %w", c.update.subject, err)
	}
	return out, nil
}

// appendModelBody appends the canonical Avro body of u, with sig in place of
// u.Signature, to dst.
func appendModelBody(rc *recordCodec, dst []byte, u *ModelUpdate, sig []byte) ([]byte, error) {
	if err := validateModelUpdate(u); err != nil {
		return dst, err
	}
	tensors := make([]any, len(u.Tensors))
	for i, t := range u.Tensors {
		tensors[i] = map[string]any{"name": t.Name, "rows": t.Rows, "cols": t.Cols, "data": appendFloats(nil, t.Data)}
	}
	exemplars := make([]any, len(u.Exemplars))
	for i, e := range u.Exemplars {
		exemplars[i] = map[string]any{"class": e.Class, "embedding": appendFloats(nil, e.Embedding)}
	}
	start := len(dst)
	out, err := rc.codec.BinaryFromNative(dst, map[string]any{
		"name":              u.Name,
		"version":           u.Version,
		"parent_version":    u.ParentVersion,
		"kind":              string(u.Kind),
		"spec_hash":         u.SpecHash,
		"features":          u.Features,
		"hidden":            u.Hidden,
		"created_ns":        u.CreatedNs,
		"classes":           stringsNative(u.Classes),
		"thresholds":        floatsNative(u.Thresholds),
		"anomaly_threshold": u.AnomalyThreshold,
		"norm_mean":         floatsNative(u.NormMean),
		"norm_std":          floatsNative(u.NormStd),
		"tensors":           tensors,
		"exemplars":         exemplars,
		"gate":              map[string]any{},
		"key_id":            "",
		"signature":         []byte{},
	})
	if err != nil {
		return dst, err
	}
	tail := []byte{0, 0, 0} // empty map, empty string, empty bytes
	if !bytes.HasSuffix(out[start:], tail) {
		return dst, fmt.Errorf("model update body does not end with the empty gate, key_id and signature: the schema's last fields changed")
	}
	out = out[:len(out)-len(tail)]
	out = appendGate(out, u.Gate)
	out = appendAvroBytes(out, []byte(u.KeyID))
	out = appendAvroBytes(out, sig)
	if err := checkEncoded(rc.shape, out[start:]); err != nil {
		return dst, err
	}
	return out, nil
}

// appendGate appends gate as an Avro map<double> with its keys sorted.
func appendGate(dst []byte, gate map[string]float64) []byte {
	if len(gate) > 0 {
		keys := make([]string, 0, len(gate))
		for k := range gate {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		dst = appendAvroLong(dst, int64(len(keys)))
		for _, k := range keys {
			dst = appendAvroBytes(dst, []byte(k))
			dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(gate[k]))
		}
	}
	return appendAvroLong(dst, 0)
}

func appendAvroLong(dst []byte, v int64) []byte {
	return binary.AppendUvarint(dst, uint64(v<<1)^uint64(v>>63))
}

func appendAvroBytes(dst, b []byte) []byte {
	return append(appendAvroLong(dst, int64(len(b))), b...)
}

// appendFloats appends f as little-endian float32, the layout of Tensor.data
// and Exemplar.embedding.
func appendFloats(dst []byte, f []float32) []byte {
	dst = slices.Grow(dst, 4*len(f))
	for _, v := range f {
		dst = binary.LittleEndian.AppendUint32(dst, math.Float32bits(v))
	}
	return dst
}

// floatsFrom reads little-endian float32 values; len(b) must be a multiple of 4.
func floatsFrom(b []byte) []float32 {
	if len(b) == 0 {
		return nil
	}
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}

func validateModelUpdate(u *ModelUpdate) error {
	switch {
	case u.Name == "":
		return fmt.Errorf("%w: name is empty", ErrInvalid)
	case u.Kind != UpdateFull && u.Kind != UpdateHead:
		return fmt.Errorf("%w: kind %q is not FULL or HEAD", ErrInvalid, u.Kind)
	case u.Features < 0:
		return fmt.Errorf("%w: features %d is negative", ErrInvalid, u.Features)
	case u.Hidden < 0:
		return fmt.Errorf("%w: hidden %d is negative", ErrInvalid, u.Hidden)
	}
	for i, t := range u.Tensors {
		if t.Rows < 0 || t.Cols < 0 {
			return fmt.Errorf("%w: tensor %d (%s) has shape %dx%d", ErrInvalid, i, t.Name, t.Rows, t.Cols)
		}
		if want := int64(t.Rows) * int64(t.Cols); int64(len(t.Data)) != want {
			return fmt.Errorf("%w: tensor %d (%s) of shape %dx%d holds %d values, want %d", ErrInvalid, i, t.Name, t.Rows, t.Cols, len(t.Data), want)
		}
	}
	for i, e := range u.Exemplars {
		if e.Class < 0 {
			return fmt.Errorf("%w: exemplar %d has class %d", ErrInvalid, i, e.Class)
		}
	}
	return nil
}

// DecodeModelUpdate decodes a Confluent-framed ModelUpdate and checks its
// shape: each tensor's data holds exactly rows×cols float32 values, each
// embedding a whole number of them. It does not check the signature; call
// VerifyModelUpdate before trusting the result.
func (c *Codecs) DecodeModelUpdate(b []byte) (ModelUpdate, error) {
	u, err := c.decodeModelUpdate(b)
	if err != nil {
		return ModelUpdate{}, fmt.Errorf("decode %s: %w", c.update.subject, err)
	}
	return u, nil
}

func (c *Codecs) decodeModelUpdate(b []byte) (ModelUpdate, error) {
	r, err := c.decode(c.update, b)
	if err != nil {
		return ModelUpdate{}, err
	}
	u := ModelUpdate{
		Name:             r.str("name"),
		Version:          r.long("version"),
		ParentVersion:    r.long("parent_version"),
		Kind:             UpdateKind(r.str("kind")),
		SpecHash:         r.str("spec_hash"),
		Features:         r.int("features"),
		Hidden:           r.int("hidden"),
		CreatedNs:        r.long("created_ns"),
		Classes:          r.strings("classes"),
		Thresholds:       r.floats("thresholds"),
		AnomalyThreshold: r.float("anomaly_threshold"),
		NormMean:         r.floats("norm_mean"),
		NormStd:          r.floats("norm_std"),
		KeyID:            r.str("key_id"),
		Signature:        r.bytes("signature"),
	}
	for i, it := range r.array("tensors") {
		t := r.sub("tensors", it)
		name, rows, cols, data := t.str("name"), t.int("rows"), t.int("cols"), t.bytes("data")
		r.join(t)
		if len(data)%4 != 0 {
			return ModelUpdate{}, fmt.Errorf("%w: tensor %d (%s) data is %d bytes, not whole float32s", ErrInvalid, i, name, len(data))
		}
		u.Tensors = append(u.Tensors, Tensor{Name: name, Rows: rows, Cols: cols, Data: floatsFrom(data)})
	}
	for i, it := range r.array("exemplars") {
		e := r.sub("exemplars", it)
		class, emb := e.int("class"), e.bytes("embedding")
		r.join(e)
		if len(emb)%4 != 0 {
			return ModelUpdate{}, fmt.Errorf("%w: exemplar %d embedding is %d bytes, not whole float32s", ErrInvalid, i, len(emb))
		}
		u.Exemplars = append(u.Exemplars, Exemplar{Class: class, Embedding: floatsFrom(emb)})
	}
	if gate, ok := r.m["gate"].(map[string]any); ok && len(gate) > 0 {
		u.Gate = make(map[string]float64, len(gate))
		for k, v := range gate {
			f, ok := v.(float64)
			if !ok {
				r.fail("gate", v, "double")
				break
			}
			u.Gate[k] = f
		}
	} else if !ok {
		r.fail("gate", r.m["gate"], "map")
	}
	if r.err != nil {
		return ModelUpdate{}, r.err
	}
	if err := validateModelUpdate(&u); err != nil {
		return ModelUpdate{}, err
	}
	return u, nil
}
