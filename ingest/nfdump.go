package ingest

import (
	"net/netip"
	"time"

	"github.com/metaids/metaids/schemas"
)

// nfdumpDecoder reads nfdump's JSON output (nfdump -o json or -o json-log,
// relayed by kcat or a tailer): first and last are local-time strings
// without a zone ("2026-11-22T08:15:25.918"), read in
// DecoderConfig.TimeZone; tcp_flags is nfdump's letter string ("...A.R..",
// CEUAPRSF); addresses are src4_addr/dst4_addr or src6_addr/dst6_addr.
//
// in_bytes and in_packets are the exporter's input counters of a
// unidirectional flow, so they are the Out counters; out_bytes and
// out_packets, present for bidirectional NSEL/biflow records, are the In
// counters. Records whose type is not FLOW are skipped. Required: an address
// pair, proto and first.
type nfdumpDecoder struct {
	loc *time.Location
}

func (d *nfdumpDecoder) Decode(dst []schemas.Flow, rec []byte, src schemas.Coord) ([]schemas.Flow, error) {
	return decodeJSON(d, dst, rec, src)
}

func (d *nfdumpDecoder) object(rec []byte, i int, f *schemas.Flow) (int, *Skip, error) {
	s := jsonScanner{b: rec, i: i}
	if err := s.objBegin(); err != nil {
		return 0, nil, malformed(err)
	}
	var (
		src4, dst4, src6, dst6 netip.Addr
		haveProto, nonFlow     bool
		first, last            int64
	)
	for {
		key, v, done, err := s.member()
		if err != nil {
			return 0, nil, malformed(err)
		}
		if done {
			break
		}
		switch string(key) {
		case "type":
			t, _ := jString(v)
			nonFlow = string(t) != "FLOW"
		case "src4_addr":
			src4, _, err = jAddr(v, "src4_addr")
		case "dst4_addr":
			dst4, _, err = jAddr(v, "dst4_addr")
		case "src6_addr":
			src6, _, err = jAddr(v, "src6_addr")
		case "dst6_addr":
			dst6, _, err = jAddr(v, "dst6_addr")
		case "src_port":
			f.SrcPort, _, err = jPort(v, "src_port")
		case "dst_port":
			f.DstPort, _, err = jPort(v, "dst_port")
		case "proto":
			f.Proto, haveProto, err = jProto(v, "proto")
		case "in_bytes":
			f.BytesOut, _, err = jCount(v, "in_bytes")
		case "in_packets":
			f.PktsOut, _, err = jCount(v, "in_packets")
		case "out_bytes":
			f.BytesIn, _, err = jCount(v, "out_bytes")
		case "out_packets":
			f.PktsIn, _, err = jCount(v, "out_packets")
		case "tcp_flags":
			f.TCPFlags, err = nfdumpFlags(v)
		case "first":
			first, err = d.time(v, "first")
		case "last":
			last, err = d.time(v, "last")
		}
		if err != nil {
			return 0, nil, err
		}
	}
	if nonFlow {
		return s.i, skipNonFlow, nil
	}
	f.SrcAddr, f.DstAddr = src4, dst4
	if src6.IsValid() {
		f.SrcAddr = src6
	}
	if dst6.IsValid() {
		f.DstAddr = dst6
	}
	switch {
	case !f.SrcAddr.IsValid():
		return 0, nil, missing("src4_addr")
	case !f.DstAddr.IsValid():
		return 0, nil, missing("dst4_addr")
	case !haveProto:
		return 0, nil, missing("proto")
	case first == 0:
		return 0, nil, missing("first")
	}
	f.StartNs, f.EndNs = first, last
	if last == 0 {
		f.EndNs = first
	}
	return s.i, nil, nil
}

func (d *nfdumpDecoder) time(v jsonVal, field string) (int64, error) {
	b, ok := jString(v)
	if !ok {
		if v.kind == jsonNull {
			return 0, nil
		}
		return 0, recErr(ReasonMalformed, field, errNotTime)
	}
	ns, err := parseISOTime(b, d.loc)
	if err != nil {
		return 0, timeErr(field, err)
	}
	return ns, nil
}

// nfdumpFlags reads "...A.R.." (one letter per flag, '.' for unset; older
// versions print six positions) or a number.
func nfdumpFlags(v jsonVal) (uint8, error) {
	if v.kind == jsonNumber {
		return jFlags(v, "tcp_flags")
	}
	b, ok := jString(v)
	if !ok {
		return 0, recErr(ReasonBadCounter, "tcp_flags", errNotNumber)
	}
	var fl uint8
	for _, c := range b {
		switch c {
		case 'C':
			fl |= flagCWR
		case 'E':
			fl |= flagECE
		case 'U':
			fl |= flagURG
		case 'A':
			fl |= flagACK
		case 'P':
			fl |= flagPSH
		case 'R':
			fl |= flagRST
		case 'S':
			fl |= flagSYN
		case 'F':
			fl |= flagFIN
		case '.':
		default:
			if n, err := parseFlags(b); err == nil {
				return n, nil
			}
			return 0, recErr(ReasonBadCounter, "tcp_flags", errNotNumber)
		}
	}
	return fl, nil
}
