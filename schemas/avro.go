package schemas

import (
	"fmt"

	"github.com/linkedin/goavro/v2"
)

// Codecs encodes the records into Confluent-framed Avro and decodes them
// back. Build it once with NewCodecs and share it: it is immutable and safe
// for concurrent use.
//
// Each record type has a pair of methods: AppendX appends the framed encoding
// of a record to a caller-owned buffer, so a hot loop can reuse one, and
// DecodeX decodes a framed record, returning an error (never panicking) for
// any input it cannot vouch for. Encoding validates as decoding does, so
// whatever AppendX writes, DecodeX reads back.
type Codecs struct {
	flow, alert, label, update, dead, action *recordCodec
}

// recordCodec is one record type's schema id, goavro codec and shape.
type recordCodec struct {
	subject string
	id      int32
	codec   *goavro.Codec
	shape   *shape
}

// NewCodecs compiles the embedded schemas and takes their ids from reg. A nil
// reg means the FixedRegistry. It fails if reg lacks a subject, or holds a
// schema for it whose canonical form differs from the embedded one: the
// codecs cannot read records written with another schema.
func NewCodecs(reg Registry) (*Codecs, error) {
	if reg == nil {
		fixed, err := NewFixedRegistry()
		if err != nil {
			return nil, err
		}
		reg = fixed
	}
	c := &Codecs{}
	slots := map[string]**recordCodec{
		SubjectFlow: &c.flow, SubjectAlert: &c.alert, SubjectLabel: &c.label,
		SubjectModelUpdate: &c.update, SubjectDeadLetter: &c.dead, SubjectAction: &c.action,
	}
	seen := map[int32]string{}
	for _, subject := range Subjects() {
		rc, err := newRecordCodec(subject)
		if err != nil {
			return nil, err
		}
		if rc.id, err = reg.IDFor(subject); err != nil {
			return nil, fmt.Errorf("schema id for %s: %w", subject, err)
		}
		if other, dup := seen[rc.id]; dup {
			return nil, fmt.Errorf("schema id %d names both %s and %s", rc.id, other, subject)
		}
		seen[rc.id] = subject
		registered, err := reg.SchemaFor(rc.id)
		if err != nil {
			return nil, fmt.Errorf("schema %d for %s: %w", rc.id, subject, err)
		}
		rcodec, err := goavro.NewCodec(registered)
		if err != nil {
			return nil, fmt.Errorf("compile registered schema %d for %s: %w", rc.id, subject, err)
		}
		if rcodec.CanonicalSchema() != rc.codec.CanonicalSchema() {
			return nil, fmt.Errorf("registered schema %d for %s differs from the embedded one", rc.id, subject)
		}
		*slots[subject] = rc
	}
	return c, nil
}

// newRecordCodec compiles the embedded schema of subject.
func newRecordCodec(subject string) (*recordCodec, error) {
	text, err := Schema(subject)
	if err != nil {
		return nil, err
	}
	codec, err := goavro.NewCodec(text)
	if err != nil {
		return nil, fmt.Errorf("compile schema %s: %w", subject, err)
	}
	sh, err := parseShape(text)
	if err != nil {
		return nil, fmt.Errorf("schema %s: %w", subject, err)
	}
	return &recordCodec{subject: subject, codec: codec, shape: sh}, nil
}

// ID returns the schema id the codecs frame subject's records with.
func (c *Codecs) ID(subject string) (int32, error) {
	for _, rc := range c.all() {
		if rc.subject == subject {
			return rc.id, nil
		}
	}
	return 0, fmt.Errorf("%w %q", ErrUnknownSubject, subject)
}

// Subject returns the subject of a framed record, so a consumer of a mixed
// topic can choose the decoder. It checks only the frame header.
func (c *Codecs) Subject(b []byte) (string, error) {
	id, _, err := SplitFrame(b)
	if err != nil {
		return "", err
	}
	for _, rc := range c.all() {
		if rc.id == id {
			return rc.subject, nil
		}
	}
	return "", fmt.Errorf("%w %d", ErrUnknownSchemaID, id)
}

func (c *Codecs) all() [6]*recordCodec {
	return [...]*recordCodec{c.flow, c.alert, c.label, c.update, c.dead, c.action}
}

// encode appends the framed encoding of native.
func (c *Codecs) encode(rc *recordCodec, dst []byte, native map[string]any) ([]byte, error) {
	n := len(dst)
	dst = AppendHeader(dst, rc.id)
	out, err := rc.codec.BinaryFromNative(dst, native)
	if err != nil {
		return dst[:n], fmt.Errorf("encode %s: %w", rc.subject, err)
	}
	if err := checkEncoded(rc.shape, out[n+HeaderLen:]); err != nil {
		return dst[:n], fmt.Errorf("encode %s: %w", rc.subject, err)
	}
	return out, nil
}

// checkEncoded walks a body just encoded. It catches what the Go types let
// through but decoders refuse, such as a string that is not UTF-8, so that
// whatever an Append method writes, the Decode method reads back.
func checkEncoded(s *shape, body []byte) error {
	if err := checkBody(s, body); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return nil
}

// decode unframes b, checks that it holds exactly one well-formed rc record,
// and decodes it into goavro's native form.
func (c *Codecs) decode(rc *recordCodec, b []byte) (record, error) {
	id, body, err := SplitFrame(b)
	if err != nil {
		return record{}, err
	}
	if id != rc.id {
		for _, other := range c.all() {
			if other.id == id {
				return record{}, fmt.Errorf("%w: schema id %d is %s, want %s (id %d)", ErrSchemaMismatch, id, other.subject, rc.subject, rc.id)
			}
		}
		return record{}, fmt.Errorf("%w %d", ErrUnknownSchemaID, id)
	}
	if err := checkBody(rc.shape, body); err != nil {
		return record{}, err
	}
	v, _, err := rc.codec.NativeFromBinary(body)
	if err != nil {
		return record{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return record{}, fmt.Errorf("%w: decoded %T, want a record", ErrMalformed, v)
	}
	return record{m: m}, nil
}

// record reads fields out of goavro's native form of a record. The schema
// walk has already vouched for the types, so a mismatch is a bug in this
// package; it is reported as ErrMalformed rather than panicking.
type record struct {
	m   map[string]any
	err error
}

func (r *record) fail(name string, v any, want string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: field %s is %T, want %s", ErrMalformed, name, v, want)
	}
}

func (r *record) str(name string) string {
	v, ok := r.m[name].(string)
	if !ok {
		r.fail(name, r.m[name], "string")
	}
	return v
}

func (r *record) int(name string) int32 {
	v, ok := r.m[name].(int32)
	if !ok {
		r.fail(name, r.m[name], "int")
	}
	return v
}

func (r *record) long(name string) int64 {
	v, ok := r.m[name].(int64)
	if !ok {
		r.fail(name, r.m[name], "long")
	}
	return v
}

func (r *record) float(name string) float32 {
	v, ok := r.m[name].(float32)
	if !ok {
		r.fail(name, r.m[name], "float")
	}
	return v
}

func (r *record) boolean(name string) bool {
	v, ok := r.m[name].(bool)
	if !ok {
		r.fail(name, r.m[name], "boolean")
	}
	return v
}

// bytes returns a copy, nil when empty: goavro's decoded bytes alias the
// input buffer, which the caller may reuse.
func (r *record) bytes(name string) []byte {
	v, ok := r.m[name].([]byte)
	if !ok {
		r.fail(name, r.m[name], "bytes")
	}
	if len(v) == 0 {
		return nil
	}
	return append([]byte{}, v...)
}

// optional returns the value of a ["null", T] union and whether it is set.
func (r *record) optional(name, branch string) (any, bool) {
	switch v := r.m[name].(type) {
	case nil:
		return nil, false
	case map[string]any:
		if x, ok := v[branch]; ok {
			return x, true
		}
	}
	r.fail(name, r.m[name], "null or "+branch)
	return nil, false
}

func (r *record) array(name string) []any {
	v, ok := r.m[name].([]any)
	if !ok {
		r.fail(name, r.m[name], "array")
	}
	return v
}

func (r *record) sub(name string, v any) record {
	m, ok := v.(map[string]any)
	if !ok {
		r.fail(name, v, "record")
	}
	return record{m: m}
}

// join folds a nested record's error into r.
func (r *record) join(sub record) {
	if r.err == nil {
		r.err = sub.err
	}
}

// strings returns an array of strings, nil when empty.
func (r *record) strings(name string) []string {
	items := r.array(name)
	if len(items) == 0 {
		return nil
	}
	out := make([]string, 0, len(items))
	for _, it := range items {
		s, ok := it.(string)
		if !ok {
			r.fail(name, it, "string item")
			return nil
		}
		out = append(out, s)
	}
	return out
}

// floats returns an array of floats, nil when empty.
func (r *record) floats(name string) []float32 {
	items := r.array(name)
	if len(items) == 0 {
		return nil
	}
	out := make([]float32, 0, len(items))
	for _, it := range items {
		f, ok := it.(float32)
		if !ok {
			r.fail(name, it, "float item")
			return nil
		}
		out = append(out, f)
	}
	return out
}

func stringsNative(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

func floatsNative(f []float32) []any {
	out := make([]any, len(f))
	for i, v := range f {
		out[i] = v
	}
	return out
}
