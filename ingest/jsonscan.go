package ingest

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"unicode/utf8"
)

// jsonScanner is a validating, allocation-free reader for the flat JSON
// objects flow shippers write. encoding/json with a map or a struct spends
// most of its time in reflection and allocations, and the goflow2 path must
// stay well above a million records a second on one core; this scanner does
// one pass over the bytes, hands back member values as sub-slices of the
// record and leaves interpretation to the caller. It rejects anything that is
// not JSON (RFC 8259 grammar, including the contents of nested values it
// skips) so a truncated or corrupted record is dead-lettered, not half-read.
// Like encoding/json it does not insist on valid UTF-8 inside strings; the
// only free text ingest passes on, Service, is checked where it is made.
// FuzzJSONScanner holds it to encoding/json's verdicts.
type jsonScanner struct {
	b []byte
	i int
	// n counts the members read from the current object, to know whether a
	// comma must come first.
	n int
	// inArray and arrayN track a top-level array of objects (see
	// nextObject).
	inArray bool
	arrayN  int
	// kbuf receives keys that contain escapes; real shippers never escape
	// keys, but JSON allows it and the decoded key must still match.
	kbuf [64]byte
}

type jsonKind uint8

const (
	jsonString jsonKind = iota + 1
	jsonNumber
	jsonTrue
	jsonFalse
	jsonNull
	jsonObject
	jsonArray
)

// jsonVal is one member value. For strings raw is the text between the
// quotes, still escaped when esc is set; for every other kind it is the
// literal text (a whole nested object or array included).
type jsonVal struct {
	raw  []byte
	kind jsonKind
	esc  bool
}

// maxJSONDepth bounds the nesting of skipped values, so a record of a
// million '[' cannot exhaust the stack.
const maxJSONDepth = 64

// jsonSyntaxError says where a record stopped being JSON.
type jsonSyntaxError struct {
	pos int
	msg string
}

func (e *jsonSyntaxError) Error() string { return fmt.Sprintf("json at byte %d: %s", e.pos, e.msg) }
func (e *jsonSyntaxError) Unwrap() error { return ErrSyntax }

func (s *jsonScanner) fail(msg string) error { return &jsonSyntaxError{pos: s.i, msg: msg} }

// strPlain marks bytes that may appear unescaped inside a JSON string and
// need no attention: everything but control characters, '"' and '\\'.
var strPlain = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

func (s *jsonScanner) reset(b []byte) {
	s.b, s.i, s.n, s.inArray, s.arrayN = b, 0, 0, false, 0
}

func (s *jsonScanner) ws() { s.i = skipWS(s.b, s.i) }

// atEnd reports whether only whitespace is left.
func (s *jsonScanner) atEnd() bool {
	s.ws()
	return s.i >= len(s.b)
}

// objBegin consumes the '{' that opens an object.
func (s *jsonScanner) objBegin() error {
	s.ws()
	if s.i >= len(s.b) || s.b[s.i] != '{' {
		return s.fail("want '{'")
	}
	s.i++
	s.n = 0
	return nil
}

// member reads the next member of the object opened by objBegin. At the
// closing '}' it returns done.
//
// This is the hot loop of every JSON decoder, so the common case — an
// unescaped key and a plain string or integer value, no whitespace — runs on
// local copies of the scanner's fields; anything else falls back to str and
// value.
func (s *jsonScanner) member() (key []byte, v jsonVal, done bool, err error) {
	b, i := s.b, skipWS(s.b, s.i)
	if i >= len(b) {
		s.i = i
		return nil, v, false, s.fail("unexpected end in object")
	}
	if b[i] == '}' {
		s.i = i + 1
		return nil, v, true, nil
	}
	if s.n > 0 {
		if b[i] != ',' {
			s.i = i
			return nil, v, false, s.fail("want ',' or '}'")
		}
		i = skipWS(b, i+1)
	}
	if i >= len(b) || b[i] != '"' {
		s.i = i
		return nil, v, false, s.fail("want string")
	}
	// scanPlain, written out: this is the single hottest loop, and the
	// function is just too big for the inliner.
	j := i + 1
	for j+8 <= len(b) {
		const lo, hi = 0x0101010101010101, 0x8080808080808080
		x := binary.LittleEndian.Uint64(b[j:])
		q, e := x^(lo*'"'), x^(lo*'\\')
		if t := (((q - lo) &^ q) | ((e - lo) &^ e) | ((x - lo*0x20) &^ x)) & hi; t != 0 {
			j += bits.TrailingZeros64(t) / 8
			goto keyEnd
		}
		j += 8
	}
	for j < len(b) && strPlain[b[j]] {
		j++
	}
keyEnd:
	if j < len(b) && b[j] == '"' {
		key, i = b[i+1:j], j+1
	} else {
		s.i = i
		raw, esc, err := s.str()
		if err != nil {
			return nil, v, false, err
		}
		key, i = raw, s.i
		if esc {
			k, ok := appendUnescaped(s.kbuf[:0], raw)
			if !ok {
				return nil, v, false, s.fail("bad escape in key")
			}
			key = k
		}
	}
	i = skipWS(b, i)
	if i >= len(b) || b[i] != ':' {
		s.i = i
		return nil, v, false, s.fail("want ':'")
	}
	i = skipWS(b, i+1)
	if i < len(b) {
		switch c := b[i]; {
		case c == '"':
			j := scanPlain(b, i+1)
			if j < len(b) && b[j] == '"' {
				s.i = j + 1
				s.n++
				return key, jsonVal{raw: b[i+1 : j], kind: jsonString}, false, nil
			}
		case '0' <= c && c <= '9':
			// A plain integer; fractions, exponents and leading zeros
			// take the full path.
			j := i + 1
			if c != '0' {
				j = skipDigits(b, j)
			}
			if j >= len(b) || b[j] != '.' && b[j] != 'e' && b[j] != 'E' && (b[j] < '0' || b[j] > '9') {
				s.i = j
				s.n++
				return key, jsonVal{raw: b[i:j], kind: jsonNumber}, false, nil
			}
		case c == '[' && i+1 < len(b) && b[i+1] == ']':
			// goflow2 writes a dozen empty arrays per record.
			s.i = i + 2
			s.n++
			return key, jsonVal{raw: b[i : i+2], kind: jsonArray}, false, nil
		}
	}
	s.i = i
	if v, err = s.value(0); err != nil {
		return nil, v, false, err
	}
	s.n++
	return key, v, false, nil
}

// scanPlain returns the index of the first byte at or after j that ends or
// escapes a JSON string, or is a control character: '"', '\\' or below
// 0x20. It tests eight bytes per step with the classic has-zero-byte bit
// trick: keys and values are mostly 5–20 bytes, where a byte loop costs
// more than the rest of the member.
func scanPlain(b []byte, j int) int {
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	for j+8 <= len(b) {
		x := binary.LittleEndian.Uint64(b[j:])
		q := x ^ (lo * '"')
		e := x ^ (lo * '\\')
		// For each test the lowest flagged byte is exact (borrows only
		// run upwards from a flagged byte), so the lowest bit of the union
		// is the first byte that needs attention.
		t := ((q - lo) &^ q) | ((e - lo) &^ e) | ((x - lo*0x20) &^ x)
		if t &= hi; t != 0 {
			return j + bits.TrailingZeros64(t)/8
		}
		j += 8
	}
	for j < len(b) && strPlain[b[j]] {
		j++
	}
	return j
}

// skipWS returns the index of the first non-whitespace byte at or after i.
func skipWS(b []byte, i int) int {
	for i < len(b) {
		if c := b[i]; c > ' ' || c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			return i
		}
		i++
	}
	return i
}

// str reads a string starting at the opening quote and returns its raw
// content.
func (s *jsonScanner) str() (raw []byte, esc bool, err error) {
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return nil, false, s.fail("want string")
	}
	s.i++
	start := s.i
	b := s.b
	for {
		i := scanPlain(b, s.i)
		s.i = i
		if i >= len(b) {
			return nil, false, s.fail("unterminated string")
		}
		switch b[i] {
		case '"':
			s.i++
			return b[start:i], esc, nil
		case '\\':
			esc = true
			i++
			if i >= len(b) {
				s.i = i
				return nil, false, s.fail("unterminated escape")
			}
			switch b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i++
			case 'u':
				if i+4 >= len(b) || !isHex(b[i+1]) || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) {
					s.i = i
					return nil, false, s.fail("bad \\u escape")
				}
				i += 5
			default:
				s.i = i
				return nil, false, s.fail("bad escape")
			}
			s.i = i
		default:
			return nil, false, s.fail("control character in string")
		}
	}
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func (s *jsonScanner) value(depth int) (jsonVal, error) {
	if s.i >= len(s.b) {
		return jsonVal{}, s.fail("want value")
	}
	start := s.i
	switch c := s.b[s.i]; c {
	case '"':
		raw, esc, err := s.str()
		return jsonVal{raw: raw, kind: jsonString, esc: esc}, err
	case '{', '[':
		if err := s.skipComposite(depth + 1); err != nil {
			return jsonVal{}, err
		}
		k := jsonObject
		if c == '[' {
			k = jsonArray
		}
		return jsonVal{raw: s.b[start:s.i], kind: k}, nil
	case 't':
		return s.literal("true", jsonTrue)
	case 'f':
		return s.literal("false", jsonFalse)
	case 'n':
		return s.literal("null", jsonNull)
	default:
		if c == '-' || '0' <= c && c <= '9' {
			return s.number()
		}
		return jsonVal{}, s.fail("want value")
	}
}

func (s *jsonScanner) literal(lit string, k jsonKind) (jsonVal, error) {
	if len(s.b)-s.i < len(lit) || string(s.b[s.i:s.i+len(lit)]) != lit {
		return jsonVal{}, s.fail("bad literal")
	}
	v := jsonVal{raw: s.b[s.i : s.i+len(lit)], kind: k}
	s.i += len(lit)
	return v, nil
}

func (s *jsonScanner) number() (jsonVal, error) {
	b, i := s.b, s.i
	start := i
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && '1' <= b[i] && b[i] <= '9':
		i = skipDigits(b, i)
	default:
		s.i = i
		return jsonVal{}, s.fail("bad number")
	}
	if i < len(b) && b[i] == '.' {
		j := skipDigits(b, i+1)
		if j == i+1 {
			s.i = j
			return jsonVal{}, s.fail("bad fraction")
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := skipDigits(b, i)
		if j == i {
			s.i = j
			return jsonVal{}, s.fail("bad exponent")
		}
		i = j
	}
	s.i = i
	return jsonVal{raw: b[start:i], kind: jsonNumber}, nil
}

func skipDigits(b []byte, i int) int {
	for i < len(b) && '0' <= b[i] && b[i] <= '9' {
		i++
	}
	return i
}

// skipComposite validates and skips the object or array at s.i.
func (s *jsonScanner) skipComposite(depth int) error {
	if depth > maxJSONDepth {
		return s.fail("nesting too deep")
	}
	open := s.b[s.i]
	s.i++
	s.ws()
	closer := byte('}')
	if open == '[' {
		closer = ']'
	}
	if s.i < len(s.b) && s.b[s.i] == closer {
		s.i++
		return nil
	}
	for {
		s.ws()
		if open == '{' {
			if _, _, err := s.str(); err != nil {
				return err
			}
			s.ws()
			if s.i >= len(s.b) || s.b[s.i] != ':' {
				return s.fail("want ':'")
			}
			s.i++
			s.ws()
		}
		if _, err := s.value(depth); err != nil {
			return err
		}
		s.ws()
		if s.i >= len(s.b) {
			return s.fail("unexpected end")
		}
		switch s.b[s.i] {
		case ',':
			s.i++
		case closer:
			s.i++
			return nil
		default:
			return s.fail("want ',' or closing bracket")
		}
	}
}

// appendUnescaped decodes the escapes of a raw JSON string. Lone surrogates
// become U+FFFD, as encoding/json does.
func appendUnescaped(dst, raw []byte) ([]byte, bool) {
	for i := 0; i < len(raw); {
		c := raw[i]
		if c != '\\' {
			dst = append(dst, c)
			i++
			continue
		}
		if i+1 >= len(raw) {
			return dst, false
		}
		switch raw[i+1] {
		case '"', '\\', '/':
			dst = append(dst, raw[i+1])
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r, ok := hex4(raw[i+2:])
			if !ok {
				return dst, false
			}
			i += 6
			if 0xD800 <= r && r < 0xDC00 {
				// A high surrogate pairs with a following \uDC00–\uDFFF.
				if i+1 < len(raw) && raw[i] == '\\' && raw[i+1] == 'u' {
					if r2, ok := hex4(raw[i+2:]); ok && 0xDC00 <= r2 && r2 < 0xE000 {
						dst = utf8.AppendRune(dst, (r-0xD800)<<10|(r2-0xDC00)+0x10000)
						i += 6
						continue
					}
				}
				r = utf8.RuneError
			} else if 0xDC00 <= r && r < 0xE000 {
				r = utf8.RuneError
			}
			dst = utf8.AppendRune(dst, r)
			continue
		default:
			return dst, false
		}
		i += 2
	}
	return dst, true
}

func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		r <<= 4
		switch {
		case '0' <= c && c <= '9':
			r |= rune(c - '0')
		case 'a' <= c && c <= 'f':
			r |= rune(c - 'a' + 10)
		case 'A' <= c && c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			return 0, false
		}
	}
	return r, true
}
