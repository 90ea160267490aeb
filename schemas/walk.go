package schemas

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// goavro sizes a decoded array or map from the block count before it reads a
// single item, so a 5-byte body claiming 2^31 floats makes it allocate 32 GiB
// and the runtime dies with an error no recover can catch. It also lets a
// varint overflow silently. Every body is therefore walked against its schema
// first (without allocating), and goavro only decodes bodies whose every
// length and count fits in the bytes that remain and whose every varint is
// well formed.

// avroType is the kind of an Avro schema node.
type avroType uint8

const (
	tNull avroType = iota
	tBoolean
	tInt
	tLong
	tFloat
	tDouble
	tBytes
	tString
	tRecord
	tEnum
	tArray
	tMap
	tUnion
	tFixed
)

// shape is a parsed Avro schema node, holding only what the walk needs.
type shape struct {
	typ      avroType
	fields   []field  // record
	symbols  int      // enum
	size     int      // fixed
	items    *shape   // array items, map values
	branches []*shape // union
	min      int      // fewest bytes any value of this shape encodes to
}

type field struct {
	name  string
	shape *shape
}

// parseShape parses an Avro schema (JSON) into a shape.
func parseShape(schema string) (*shape, error) {
	var v any
	if err := json.Unmarshal([]byte(schema), &v); err != nil {
		return nil, fmt.Errorf("parse schema: %w", err)
	}
	p := shapeParser{named: map[string]*shape{}}
	return p.parse(v, "")
}

type shapeParser struct {
	named map[string]*shape // by full name and by short name
}

// primitive returns the shape of a primitive type name, or nil.
func primitive(name string) *shape {
	switch name {
	case "null":
		return &shape{typ: tNull, min: 0}
	case "boolean":
		return &shape{typ: tBoolean, min: 1}
	case "int":
		return &shape{typ: tInt, min: 1}
	case "long":
		return &shape{typ: tLong, min: 1}
	case "float":
		return &shape{typ: tFloat, min: 4}
	case "double":
		return &shape{typ: tDouble, min: 8}
	case "bytes":
		return &shape{typ: tBytes, min: 1}
	case "string":
		return &shape{typ: tString, min: 1}
	}
	return nil
}

func (p *shapeParser) parse(v any, ns string) (*shape, error) {
	switch v := v.(type) {
	case string:
		if s := primitive(v); s != nil {
			return s, nil
		}
		if s, ok := p.named[v]; ok {
			return s, nil
		}
		if s, ok := p.named[ns+"."+v]; ok {
			return s, nil
		}
		return nil, fmt.Errorf("unknown type %q", v)
	case []any:
		s := &shape{typ: tUnion, min: 1}
		least := -1
		for _, b := range v {
			bs, err := p.parse(b, ns)
			if err != nil {
				return nil, err
			}
			s.branches = append(s.branches, bs)
			if least < 0 || bs.min < least {
				least = bs.min
			}
		}
		if len(s.branches) == 0 {
			return nil, fmt.Errorf("empty union")
		}
		s.min += least
		return s, nil
	case map[string]any:
		return p.parseComplex(v, ns)
	default:
		return nil, fmt.Errorf("schema node of type %T", v)
	}
}

func (p *shapeParser) parseComplex(v map[string]any, ns string) (*shape, error) {
	typ, _ := v["type"].(string)
	if s := primitive(typ); s != nil {
		return s, nil
	}
	switch typ {
	case "record", "error":
		s := &shape{typ: tRecord}
		ns = p.register(v, ns, s)
		fs, _ := v["fields"].([]any)
		for _, f := range fs {
			fm, _ := f.(map[string]any)
			name, _ := fm["name"].(string)
			fsh, err := p.parse(fm["type"], ns)
			if err != nil {
				return nil, fmt.Errorf("field %s: %w", name, err)
			}
			s.fields = append(s.fields, field{name: name, shape: fsh})
			s.min += fsh.min
		}
		return s, nil
	case "enum":
		syms, _ := v["symbols"].([]any)
		s := &shape{typ: tEnum, symbols: len(syms), min: 1}
		p.register(v, ns, s)
		return s, nil
	case "fixed":
		size, _ := v["size"].(float64)
		s := &shape{typ: tFixed, size: int(size), min: int(size)}
		p.register(v, ns, s)
		return s, nil
	case "array", "map":
		key := "items"
		s := &shape{typ: tArray, min: 1}
		if typ == "map" {
			key, s.typ = "values", tMap
		}
		items, err := p.parse(v[key], ns)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", typ, err)
		}
		s.items = items
		return s, nil
	default:
		// A nested type such as {"type": {"type": "array", ...}}.
		if inner, ok := v["type"].(map[string]any); ok {
			return p.parseComplex(inner, ns)
		}
		return nil, fmt.Errorf("unsupported type %v", v["type"])
	}
}

// register records a named type under its full and short names and returns
// the namespace its fields live in.
func (p *shapeParser) register(v map[string]any, ns string, s *shape) string {
	name, _ := v["name"].(string)
	if n, ok := v["namespace"].(string); ok && n != "" {
		ns = n
	}
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		ns, name = name[:i], name[i+1:]
	}
	p.named[name] = s
	p.named[ns+"."+name] = s
	return ns
}

// walkError is a failure deep inside a body. The path is collected in reverse
// while the error climbs out of nested records, so the happy path never
// builds it.
type walkError struct {
	kind   error // ErrTruncated or ErrMalformed
	detail string
	path   []string // innermost first
}

func (e *walkError) finish(bodyLen int) error {
	slices.Reverse(e.path)
	where := strings.Join(e.path, ".")
	if e.kind == ErrTruncated {
		return fmt.Errorf("%w: %d-byte body %s in field %s", ErrTruncated, bodyLen, e.detail, where)
	}
	return fmt.Errorf("%w: %s in field %s", ErrMalformed, e.detail, where)
}

// walker steps through an Avro body without decoding it.
type walker struct {
	b   []byte
	pos int
}

// checkBody reports whether body is exactly one well-formed value of s whose
// lengths and counts are all backed by bytes.
func checkBody(s *shape, body []byte) error {
	w := walker{b: body}
	if err := w.walk(s); err != nil {
		return err.finish(len(body))
	}
	if w.pos != len(body) {
		return fmt.Errorf("%w: %d trailing bytes after the %d-byte record", ErrMalformed, len(body)-w.pos, w.pos)
	}
	return nil
}

// short reports that need bytes are wanted at the current position.
func (w *walker) short(need int64) *walkError {
	return &walkError{kind: ErrTruncated, detail: fmt.Sprintf("needs %d more bytes", need-int64(len(w.b)-w.pos))}
}

func malformed(format string, args ...any) *walkError {
	return &walkError{kind: ErrMalformed, detail: fmt.Sprintf(format, args...)}
}

// varint reads a zig-zag varint of at most maxBytes bytes: 5 for an int, 10
// for a long. The last byte may only carry the bits left (4 or 1), so the
// value always fits in 32 or 64 bits.
func (w *walker) varint(maxBytes int) (int64, *walkError) {
	var u uint64
	for i := 0; i < maxBytes; i++ {
		if w.pos >= len(w.b) {
			return 0, w.short(1)
		}
		c := w.b[w.pos]
		w.pos++
		if i == maxBytes-1 {
			limit, bits := byte(0x0f), 32
			if maxBytes == 10 {
				limit, bits = 0x01, 64
			}
			if c > limit {
				return 0, malformed("varint overflows %d bits", bits)
			}
		}
		u |= uint64(c&0x7f) << (7 * i)
		if c&0x80 == 0 {
			return int64(u>>1) ^ -int64(u&1), nil
		}
	}
	return 0, malformed("varint longer than %d bytes", maxBytes)
}

func (w *walker) skip(n int) *walkError {
	if n > len(w.b)-w.pos {
		return w.short(int64(n))
	}
	w.pos += n
	return nil
}

// count reads one block count of an array or map and checks that its items,
// at least itemMin bytes each, fit in what remains. It returns 0 at the end
// of the blocks.
func (w *walker) count(itemMin int) (int64, *walkError) {
	n, err := w.varint(10)
	if err != nil {
		return 0, err
	}
	if n < 0 {
		// A negative count is followed by the block's size in bytes.
		if n == -n {
			return 0, malformed("block count %d", n)
		}
		n = -n
		size, err := w.varint(10)
		if err != nil {
			return 0, err
		}
		if size < 0 || size > int64(len(w.b)-w.pos) {
			return 0, &walkError{kind: ErrTruncated, detail: fmt.Sprintf("has %d bytes left for a %d-byte block", len(w.b)-w.pos, size)}
		}
	}
	if itemMin < 1 {
		itemMin = 1 // a zero-size item type still may not claim more items than bytes
	}
	if rem := int64(len(w.b) - w.pos); n > rem/int64(itemMin) {
		return 0, &walkError{kind: ErrTruncated, detail: fmt.Sprintf("has %d bytes left for %d items", rem, n)}
	}
	return n, nil
}

// bytes skips a length-prefixed bytes or string value, returning its content.
func (w *walker) bytes() ([]byte, *walkError) {
	n, err := w.varint(10)
	if err != nil {
		return nil, err
	}
	if n < 0 {
		return nil, malformed("negative length %d", n)
	}
	if n > int64(len(w.b)-w.pos) {
		return nil, w.short(n)
	}
	w.pos += int(n)
	return w.b[w.pos-int(n) : w.pos], nil
}

// str skips a string value, which must be UTF-8. goavro does not check, but
// the JSON renderings and the SIEMs downstream would silently rewrite invalid
// bytes, so a record would not say the same thing everywhere.
func (w *walker) str() *walkError {
	s, err := w.bytes()
	if err != nil {
		return err
	}
	if !utf8.Valid(s) {
		return malformed("string is not valid UTF-8")
	}
	return nil
}

func (w *walker) walk(s *shape) *walkError {
	switch s.typ {
	case tNull:
		return nil
	case tBoolean:
		if w.pos >= len(w.b) {
			return w.short(1)
		}
		if c := w.b[w.pos]; c > 1 {
			return malformed("boolean byte 0x%02x", c)
		}
		w.pos++
		return nil
	case tInt:
		_, err := w.varint(5)
		return err
	case tLong:
		_, err := w.varint(10)
		return err
	case tFloat:
		return w.skip(4)
	case tDouble:
		return w.skip(8)
	case tFixed:
		return w.skip(s.size)
	case tBytes:
		_, err := w.bytes()
		return err
	case tString:
		return w.str()
	case tEnum:
		i, err := w.varint(10)
		if err != nil {
			return err
		}
		if i < 0 || i >= int64(s.symbols) {
			return malformed("enum index %d not in 0..%d", i, s.symbols-1)
		}
		return nil
	case tUnion:
		i, err := w.varint(10)
		if err != nil {
			return err
		}
		if i < 0 || i >= int64(len(s.branches)) {
			return malformed("union index %d not in 0..%d", i, len(s.branches)-1)
		}
		return w.walk(s.branches[i])
	case tRecord:
		for _, f := range s.fields {
			if err := w.walk(f.shape); err != nil {
				err.path = append(err.path, f.name)
				return err
			}
		}
		return nil
	case tArray, tMap:
		itemMin := s.items.min
		if s.typ == tMap {
			itemMin++ // the key is a string of at least one byte
		}
		for {
			n, err := w.count(itemMin)
			if err != nil {
				return err
			}
			if n == 0 {
				return nil
			}
			for range n {
				if s.typ == tMap {
					if err := w.str(); err != nil {
						return err
					}
				}
				if err := w.walk(s.items); err != nil {
					return err
				}
			}
		}
	default:
		return malformed("unsupported schema type %d", s.typ)
	}
}
