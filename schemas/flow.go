package schemas

import (
	"fmt"
	"net/netip"
	"strconv"
)

// Coord locates the input record a flow came from. Flow ids derive from it, so
// a redelivered record yields the same flow id and the same alert ids.
type Coord struct {
	Topic     string
	Partition int32
	Offset    int64
	// Index is the flow's position inside the record, for formats that pack
	// several flows into one Kafka message (a TSV file chunk, a JSON array).
	Index int32
}

// Flow is the normalized flow record every ingest decoder produces. Direction
// is from the originator (Src) to the responder (Dst); unidirectional formats
// leave the In counters at zero.
type Flow struct {
	StartNs  int64 // first packet, ns since the Unix epoch
	EndNs    int64 // last packet, ns since the Unix epoch
	SrcAddr  netip.Addr
	DstAddr  netip.Addr
	SrcPort  uint16
	DstPort  uint16
	Proto    uint8  // IANA protocol number
	BytesOut uint64 // originator → responder
	BytesIn  uint64 // responder → originator
	PktsOut  uint64
	PktsIn   uint64
	TCPFlags uint8  // union of TCP flags seen (FIN=0x01 … CWR=0x80)
	Service  string // application/service name when the shipper knows it; "" otherwise
	Source   Coord
}

// ID is the flow's deterministic 64-bit id: FNV-1a over its source
// coordinates. The same input record always yields the same id.
func (f *Flow) ID() uint64 { return FlowID(f.Source) }

// FlowID hashes source coordinates into a flow id.
func FlowID(c Coord) uint64 {
	var buf [96]byte
	b := append(buf[:0], c.Topic...)
	b = append(b, 0)
	b = strconv.AppendInt(b, int64(c.Partition), 10)
	b = append(b, '/')
	b = strconv.AppendInt(b, c.Offset, 10)
	b = append(b, '/')
	b = strconv.AppendInt(b, int64(c.Index), 10)
	// FNV-1a inline: hash/fnv would put the hasher on the heap on this hot path.
	h := uint64(14695981039346656037)
	for _, x := range b {
		h ^= uint64(x)
		h *= 1099511628211
	}
	return h
}

// FormatID renders a flow id as the 16-hex-digit string used in alerts,
// labels and logs.
func FormatID(id uint64) string { return fmt.Sprintf("%016x", id) }

// ParseID parses a flow id written by FormatID.
func ParseID(s string) (uint64, error) {
	id, err := strconv.ParseUint(s, 16, 64)
	if err != nil || len(s) != 16 {
		return 0, fmt.Errorf("flow id %q: want 16 hex digits", s)
	}
	return id, nil
}
