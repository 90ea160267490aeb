package ingest

import (
	"github.com/metaids/metaids/schemas"
)

// goflow2Decoder reads goflow2 v2's default JSON output (-format json): one
// flat object per flow and direction, times in ns since the epoch, bytes
// counted at the IP layer, proto as a name ("TCP") or, from older versions
// and protojson, a number.
//
// Required: src_addr, dst_addr, proto and a time (time_flow_start_ns, or
// time_received_ns when the exporter sent no flow times). goflow2 renders an
// address it could not decode as "" (seen with pmacctd's sFlow); that is a
// bad_address, never a flow from nowhere.
//
// goflow2 records are unidirectional, so only the Out counters are set.
// Counters are reported as sampled: sampling_rate is not applied, because
// per-flow features of a sampled flow are what the sample saw.
type goflow2Decoder struct{}

func (d *goflow2Decoder) Decode(dst []schemas.Flow, rec []byte, src schemas.Coord) ([]schemas.Flow, error) {
	return decodeJSON(d, dst, rec, src)
}

func (d *goflow2Decoder) object(rec []byte, i int, f *schemas.Flow) (int, *Skip, error) {
	s := jsonScanner{b: rec, i: i}
	if err := s.objBegin(); err != nil {
		return 0, nil, malformed(err)
	}
	var (
		start, end, recv int64
		haveSrc, haveDst bool
		haveProto        bool
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
		case "time_flow_start_ns":
			start, _, err = jInt64(v, "time_flow_start_ns")
		case "time_flow_end_ns":
			end, _, err = jInt64(v, "time_flow_end_ns")
		case "time_received_ns":
			recv, _, err = jInt64(v, "time_received_ns")
		case "src_addr":
			f.SrcAddr, haveSrc, err = jAddr(v, "src_addr")
		case "dst_addr":
			f.DstAddr, haveDst, err = jAddr(v, "dst_addr")
		case "src_port":
			f.SrcPort, _, err = jPort(v, "src_port")
		case "dst_port":
			f.DstPort, _, err = jPort(v, "dst_port")
		case "proto":
			f.Proto, haveProto, err = jProto(v, "proto")
		case "bytes":
			f.BytesOut, _, err = jCount(v, "bytes")
		case "packets":
			f.PktsOut, _, err = jCount(v, "packets")
		case "tcp_flags":
			f.TCPFlags, err = jFlags(v, "tcp_flags")
		}
		if err != nil {
			return 0, nil, err
		}
	}
	switch {
	case !haveSrc:
		return 0, nil, missing("src_addr")
	case !haveDst:
		return 0, nil, missing("dst_addr")
	case !haveProto:
		return 0, nil, missing("proto")
	}
	// Zero flow times mean the exporter sent none (sFlow sets them to the
	// receive time; a NetFlow template without FIRST/LAST_SWITCHED leaves 0).
	if start == 0 {
		start = recv
	}
	if start == 0 {
		return 0, nil, missing("time_flow_start_ns")
	}
	if end == 0 {
		end = start
	}
	f.StartNs, f.EndNs = start, end
	return s.i, nil, nil
}
