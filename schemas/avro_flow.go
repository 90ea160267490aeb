package schemas

import (
	"fmt"
	"math"
	"net/netip"

	"github.com/linkedin/goavro/v2"
)

// AppendFlow appends f, Confluent-framed, to dst. Addresses travel as text
// (netip.Addr.String), so the one string field holds IPv4 and IPv6 alike, and
// an empty Service travels as null. It fails, leaving dst as it was, for a
// flow DecodeFlow would reject: an unset address, a counter above
// math.MaxInt64 (Avro has no unsigned long), or negative coordinates.
func (c *Codecs) AppendFlow(dst []byte, f *Flow) ([]byte, error) {
	if err := validateFlow(f); err != nil {
		return dst, fmt.Errorf("encode %s: %w", c.flow.subject, err)
	}
	var service any
	if f.Service != "" {
		service = goavro.Union("string", f.Service)
	}
	return c.encode(c.flow, dst, map[string]any{
		"start_ns":  f.StartNs,
		"end_ns":    f.EndNs,
		"src_addr":  f.SrcAddr.String(),
		"dst_addr":  f.DstAddr.String(),
		"src_port":  int32(f.SrcPort),
		"dst_port":  int32(f.DstPort),
		"proto":     int32(f.Proto),
		"bytes_out": int64(f.BytesOut),
		"bytes_in":  int64(f.BytesIn),
		"pkts_out":  int64(f.PktsOut),
		"pkts_in":   int64(f.PktsIn),
		"tcp_flags": int32(f.TCPFlags),
		"service":   service,
		"source": map[string]any{
			"topic":     f.Source.Topic,
			"partition": f.Source.Partition,
			"offset":    f.Source.Offset,
			"index":     f.Source.Index,
		},
	})
}

func validateFlow(f *Flow) error {
	switch {
	case !f.SrcAddr.IsValid():
		return fmt.Errorf("%w: src_addr unset", ErrInvalid)
	case !f.DstAddr.IsValid():
		return fmt.Errorf("%w: dst_addr unset", ErrInvalid)
	}
	for _, c := range [...]struct {
		name string
		v    uint64
	}{{"bytes_out", f.BytesOut}, {"bytes_in", f.BytesIn}, {"pkts_out", f.PktsOut}, {"pkts_in", f.PktsIn}} {
		if c.v > math.MaxInt64 {
			return fmt.Errorf("%w: %s %d above %d", ErrInvalid, c.name, c.v, int64(math.MaxInt64))
		}
	}
	return validateCoord(f.Source)
}

func validateCoord(c Coord) error {
	switch {
	case c.Partition < 0:
		return fmt.Errorf("%w: source.partition %d is negative", ErrInvalid, c.Partition)
	case c.Offset < 0:
		return fmt.Errorf("%w: source.offset %d is negative", ErrInvalid, c.Offset)
	case c.Index < 0:
		return fmt.Errorf("%w: source.index %d is negative", ErrInvalid, c.Index)
	}
	return nil
}

// DecodeFlow decodes a Confluent-framed Flow. Beyond the framing and the Avro
// body it checks what the Go type cannot hold: addresses must parse, ports
// lie in 0..65535, proto and tcp_flags in 0..255, and counters and source
// coordinates are not negative.
func (c *Codecs) DecodeFlow(b []byte) (Flow, error) {
	f, err := c.decodeFlow(b)
	if err != nil {
		return Flow{}, fmt.Errorf("decode %s: %w", c.flow.subject, err)
	}
	return f, nil
}

func (c *Codecs) decodeFlow(b []byte) (Flow, error) {
	r, err := c.decode(c.flow, b)
	if err != nil {
		return Flow{}, err
	}
	var f Flow
	f.StartNs = r.long("start_ns")
	f.EndNs = r.long("end_ns")
	if f.SrcAddr, err = parseAddr("src_addr", r.str("src_addr")); err != nil {
		return Flow{}, err
	}
	if f.DstAddr, err = parseAddr("dst_addr", r.str("dst_addr")); err != nil {
		return Flow{}, err
	}
	ints := [...]struct {
		name string
		v    int32
		max  int64
	}{
		{"src_port", r.int("src_port"), math.MaxUint16},
		{"dst_port", r.int("dst_port"), math.MaxUint16},
		{"proto", r.int("proto"), math.MaxUint8},
		{"tcp_flags", r.int("tcp_flags"), math.MaxUint8},
	}
	for _, x := range ints {
		if err := checkRange(x.name, int64(x.v), 0, x.max); err != nil {
			return Flow{}, err
		}
	}
	f.SrcPort, f.DstPort = uint16(ints[0].v), uint16(ints[1].v)
	f.Proto, f.TCPFlags = uint8(ints[2].v), uint8(ints[3].v)
	for _, c := range [...]struct {
		name string
		dst  *uint64
	}{{"bytes_out", &f.BytesOut}, {"bytes_in", &f.BytesIn}, {"pkts_out", &f.PktsOut}, {"pkts_in", &f.PktsIn}} {
		v := r.long(c.name)
		if v < 0 {
			return Flow{}, fmt.Errorf("%w: %s %d is negative", ErrInvalid, c.name, v)
		}
		*c.dst = uint64(v)
	}
	if v, set := r.optional("service", "string"); set {
		f.Service, _ = v.(string)
	}
	src := r.sub("source", r.m["source"])
	f.Source = Coord{
		Topic:     src.str("topic"),
		Partition: src.int("partition"),
		Offset:    src.long("offset"),
		Index:     src.int("index"),
	}
	r.join(src)
	if r.err != nil {
		return Flow{}, r.err
	}
	if err := validateCoord(f.Source); err != nil {
		return Flow{}, err
	}
	return f, nil
}

func parseAddr(name, s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%w: %s: %v", ErrInvalid, name, err)
	}
	return a, nil
}

// checkRange reports an ErrInvalid unless lo <= v <= hi.
func checkRange(name string, v, lo, hi int64) error {
	if v < lo || v > hi {
		return fmt.Errorf("%w: %s %d not in %d..%d", ErrInvalid, name, v, lo, hi)
	}
	return nil
}
