package ingest

import (
	"bytes"
	"net/netip"

	"github.com/metaids/metaids/schemas"
)

// nprobeDecoder reads nProbe's JSON export (Kafka or ZMQ relays), keyed by
// NetFlow v9/IPFIX template names (--json-labels) or by their element ids
// ("8" for IPV4_SRC_ADDR), both handled.
//
// Direction: nProbe is a biflow probe and its IN_* counters count the
// client→server (src→dst) direction, OUT_* the reverse — the names speak
// from the probe's point of view of the flow, not of an interface. So
// IN_BYTES/IN_PKTS map to BytesOut/PktsOut (originator → responder) and
// OUT_BYTES/OUT_PKTS to BytesIn/PktsIn.
//
// Times: FLOW_START/END_MILLISECONDS (ms since the epoch) when present, else
// FIRST/LAST_SWITCHED (nProbe writes seconds since the epoch in JSON) or
// FLOW_START/END_SEC; a missing end is the start plus
// FLOW_DURATION_MILLISECONDS. Required: source and destination address (v4
// or v6), PROTOCOL and a start time. L7_PROTO_NAME's master protocol ("TLS"
// of "TLS.Google") becomes Service.
type nprobeDecoder struct{}

func (d *nprobeDecoder) Decode(dst []schemas.Flow, rec []byte, src schemas.Coord) ([]schemas.Flow, error) {
	return decodeJSON(d, dst, rec, src)
}

func (d *nprobeDecoder) object(rec []byte, i int, f *schemas.Flow) (int, *Skip, error) {
	s := jsonScanner{b: rec, i: i}
	if err := s.objBegin(); err != nil {
		return 0, nil, malformed(err)
	}
	var (
		src4, dst4, src6, dst6      netip.Addr
		startMs, endMs, first, last int64
		startSec, endSec, durMs     int64
		haveProto                   bool
		flags, cflags, sflags       uint8
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
		case "IPV4_SRC_ADDR", "8":
			src4, _, err = jAddr(v, "IPV4_SRC_ADDR")
		case "IPV4_DST_ADDR", "12":
			dst4, _, err = jAddr(v, "IPV4_DST_ADDR")
		case "IPV6_SRC_ADDR", "27":
			src6, _, err = jAddr(v, "IPV6_SRC_ADDR")
		case "IPV6_DST_ADDR", "28":
			dst6, _, err = jAddr(v, "IPV6_DST_ADDR")
		case "L4_SRC_PORT", "7":
			f.SrcPort, _, err = jPort(v, "L4_SRC_PORT")
		case "L4_DST_PORT", "11":
			f.DstPort, _, err = jPort(v, "L4_DST_PORT")
		case "PROTOCOL", "4":
			f.Proto, haveProto, err = jProto(v, "PROTOCOL")
		case "IN_BYTES", "1":
			f.BytesOut, _, err = jCount(v, "IN_BYTES")
		case "OUT_BYTES", "23":
			f.BytesIn, _, err = jCount(v, "OUT_BYTES")
		case "IN_PKTS", "2":
			f.PktsOut, _, err = jCount(v, "IN_PKTS")
		case "OUT_PKTS", "24":
			f.PktsIn, _, err = jCount(v, "OUT_PKTS")
		case "TCP_FLAGS", "6":
			flags, err = jFlags(v, "TCP_FLAGS")
		case "CLIENT_TCP_FLAGS":
			cflags, err = jFlags(v, "CLIENT_TCP_FLAGS")
		case "SERVER_TCP_FLAGS":
			sflags, err = jFlags(v, "SERVER_TCP_FLAGS")
		case "FLOW_START_MILLISECONDS", "152":
			startMs, _, err = jEpoch(v, "FLOW_START_MILLISECONDS", 1e6)
		case "FLOW_END_MILLISECONDS", "153":
			endMs, _, err = jEpoch(v, "FLOW_END_MILLISECONDS", 1e6)
		case "FIRST_SWITCHED", "22":
			first, _, err = jEpoch(v, "FIRST_SWITCHED", 1e9)
		case "LAST_SWITCHED", "21":
			last, _, err = jEpoch(v, "LAST_SWITCHED", 1e9)
		case "FLOW_START_SEC", "150":
			startSec, _, err = jEpoch(v, "FLOW_START_SEC", 1e9)
		case "FLOW_END_SEC", "151":
			endSec, _, err = jEpoch(v, "FLOW_END_SEC", 1e9)
		case "FLOW_DURATION_MILLISECONDS":
			durMs, _, err = jEpoch(v, "FLOW_DURATION_MILLISECONDS", 1e6)
		case "L7_PROTO_NAME":
			if name, ok := jString(v); ok {
				if j := bytes.IndexByte(name, '.'); j >= 0 {
					name = name[:j]
				}
				f.Service = internService(name)
			}
		}
		if err != nil {
			return 0, nil, err
		}
	}
	// A template with both address families fills the unused one with
	// 0.0.0.0 or ::, so a specified IPv6 address wins.
	f.SrcAddr, f.DstAddr = src4, dst4
	if src6.IsValid() && !src6.IsUnspecified() || !src4.IsValid() {
		f.SrcAddr = src6
	}
	if dst6.IsValid() && !dst6.IsUnspecified() || !dst4.IsValid() {
		f.DstAddr = dst6
	}
	switch {
	case !f.SrcAddr.IsValid():
		return 0, nil, missing("IPV4_SRC_ADDR")
	case !f.DstAddr.IsValid():
		return 0, nil, missing("IPV4_DST_ADDR")
	case !haveProto:
		return 0, nil, missing("PROTOCOL")
	}
	f.TCPFlags = flags | cflags | sflags
	f.StartNs = firstNonZero(startMs, first, startSec)
	if f.StartNs == 0 {
		return 0, nil, missing("FLOW_START_MILLISECONDS")
	}
	f.EndNs = firstNonZero(endMs, last, endSec)
	if f.EndNs == 0 {
		f.EndNs = f.StartNs + durMs
	}
	return s.i, nil, nil
}

func firstNonZero(v ...int64) int64 {
	for _, x := range v {
		if x != 0 {
			return x
		}
	}
	return 0
}
