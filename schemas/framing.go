package schemas

import (
	"encoding/binary"
	"fmt"
)

// HeaderLen is the length of the Confluent frame header: the magic byte and
// the 4-byte schema id.
const HeaderLen = 5

// magic is the Confluent wire format's version byte.
const magic = 0

// AppendHeader appends a Confluent frame header for schema id to dst.
func AppendHeader(dst []byte, id int32) []byte {
	dst = append(dst, magic)
	return binary.BigEndian.AppendUint32(dst, uint32(id))
}

// SplitFrame splits a Confluent-framed record into its schema id and Avro
// body. The body aliases b.
func SplitFrame(b []byte) (id int32, body []byte, err error) {
	if len(b) == 0 {
		return 0, nil, fmt.Errorf("%w: empty record, want at least %d header bytes", ErrTruncated, HeaderLen)
	}
	if b[0] != magic {
		return 0, nil, fmt.Errorf("%w 0x%02x, want 0x%02x", ErrBadMagic, b[0], magic)
	}
	if len(b) < HeaderLen {
		return 0, nil, fmt.Errorf("%w: %d-byte record, want at least %d header bytes", ErrTruncated, len(b), HeaderLen)
	}
	return int32(binary.BigEndian.Uint32(b[1:HeaderLen])), b[HeaderLen:], nil
}
