package ingest

import (
	"time"

	"github.com/metaids/metaids/schemas"
)

// suricataDecoder reads Suricata EVE JSON. Bidirectional "flow" events give
// one flow each: src_ip/src_port is the side that sent the first packet (the
// originator), flow.bytes_toserver and pkts_toserver are its Out counters and
// the *_toclient ones the In counters (Suricata counts whole packets). Times
// come from flow.start and flow.end. TCP flags come from tcp.tcp_flags (hex)
// or, failing that, the tcp.syn/fin/... booleans. app_proto becomes Service
// ("failed" means detection failed and is dropped).
//
// Unidirectional "netflow" events (outputs.eve-log.types.netflow) fill the
// Out counters from netflow.{bytes,pkts,start,end}. Every other event type
// (alert, dns, http, stats, …) shares the eve.json stream and is skipped as
// non-flow, not dead-lettered.
//
// Required: event_type, src_ip, dest_ip, proto and a start time
// (flow.start, netflow.start or timestamp).
type suricataDecoder struct{}

func (d *suricataDecoder) Decode(dst []schemas.Flow, rec []byte, src schemas.Coord) ([]schemas.Flow, error) {
	return decodeJSON(d, dst, rec, src)
}

func (d *suricataDecoder) object(rec []byte, i int, f *schemas.Flow) (int, *Skip, error) {
	s := jsonScanner{b: rec, i: i}
	if err := s.objBegin(); err != nil {
		return 0, nil, malformed(err)
	}
	var (
		event, ts, appProto       []byte
		flow, nflow, tcp          jsonVal
		haveSrc, haveDst, haveEvt bool
		haveProto                 bool
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
		case "event_type":
			event, haveEvt = jString(v)
		case "timestamp":
			ts, _ = jString(v)
		case "src_ip":
			f.SrcAddr, haveSrc, err = jAddr(v, "src_ip")
		case "dest_ip":
			f.DstAddr, haveDst, err = jAddr(v, "dest_ip")
		case "src_port":
			f.SrcPort, _, err = jPort(v, "src_port")
		case "dest_port":
			f.DstPort, _, err = jPort(v, "dest_port")
		case "proto":
			f.Proto, haveProto, err = jProto(v, "proto")
		case "app_proto":
			appProto, _ = jString(v)
		case "flow":
			flow = v
		case "netflow":
			nflow = v
		case "tcp":
			tcp = v
		}
		if err != nil {
			return 0, nil, err
		}
	}
	if !haveEvt {
		return 0, nil, missing("event_type")
	}
	netflow := false
	switch string(event) {
	case "flow":
	case "netflow":
		flow, netflow = nflow, true
	default:
		return s.i, skipNonFlow, nil
	}
	switch {
	case !haveSrc:
		return 0, nil, missing("src_ip")
	case !haveDst:
		return 0, nil, missing("dest_ip")
	case !haveProto:
		return 0, nil, missing("proto")
	}
	if len(appProto) > 0 {
		f.Service = internService(appProto)
	}
	if flow.kind != jsonObject {
		if netflow {
			return 0, nil, missing("netflow")
		}
		return 0, nil, missing("flow")
	}
	if err := d.counters(flow, netflow, f); err != nil {
		return 0, nil, err
	}
	if f.StartNs == 0 {
		if ts == nil {
			return 0, nil, missing("flow.start")
		}
		t, err := parseISOTime(ts, time.UTC)
		if err != nil {
			return 0, nil, timeErr("timestamp", err)
		}
		f.StartNs = t
	}
	if f.EndNs == 0 {
		f.EndNs = f.StartNs
	}
	if tcp.kind == jsonObject {
		fl, err := suricataTCPFlags(tcp)
		if err != nil {
			return 0, nil, err
		}
		f.TCPFlags = fl
	}
	return s.i, nil, nil
}

// counters reads the flow or netflow sub-object.
func (d *suricataDecoder) counters(v jsonVal, netflow bool, f *schemas.Flow) error {
	s := jsonScanner{b: v.raw}
	if err := s.objBegin(); err != nil {
		return malformed(err)
	}
	for {
		key, v, done, err := s.member()
		if err != nil {
			return malformed(err)
		}
		if done {
			return nil
		}
		switch string(key) {
		case "pkts_toserver":
			if !netflow {
				f.PktsOut, _, err = jCount(v, "flow.pkts_toserver")
			}
		case "bytes_toserver":
			if !netflow {
				f.BytesOut, _, err = jCount(v, "flow.bytes_toserver")
			}
		case "pkts_toclient":
			if !netflow {
				f.PktsIn, _, err = jCount(v, "flow.pkts_toclient")
			}
		case "bytes_toclient":
			if !netflow {
				f.BytesIn, _, err = jCount(v, "flow.bytes_toclient")
			}
		case "pkts":
			if netflow {
				f.PktsOut, _, err = jCount(v, "netflow.pkts")
			}
		case "bytes":
			if netflow {
				f.BytesOut, _, err = jCount(v, "netflow.bytes")
			}
		case "start", "end":
			field := "flow.start"
			if key[0] == 'e' {
				field = "flow.end"
			}
			b, ok := jString(v)
			if !ok {
				return recErr(ReasonMalformed, field, errNotTime)
			}
			t, terr := parseISOTime(b, time.UTC)
			if terr != nil {
				return timeErr(field, terr)
			}
			if key[0] == 's' {
				f.StartNs = t
			} else {
				f.EndNs = t
			}
		}
		if err != nil {
			return err
		}
	}
}

// suricataTCPFlags reads the tcp sub-object: tcp_flags is the union of both
// directions' flags in hex ("1b"); the named booleans are the fallback.
func suricataTCPFlags(v jsonVal) (uint8, error) {
	s := jsonScanner{b: v.raw}
	if err := s.objBegin(); err != nil {
		return 0, malformed(err)
	}
	var hexFlags, named uint8
	haveHex := false
	for {
		key, v, done, err := s.member()
		if err != nil {
			return 0, malformed(err)
		}
		if done {
			break
		}
		if string(key) == "tcp_flags" {
			b, ok := jString(v)
			n, herr := parseHexByte(b)
			if !ok || herr != nil {
				return 0, recErr(ReasonBadCounter, "tcp.tcp_flags", errNotNumber)
			}
			hexFlags, haveHex = n, true
			continue
		}
		if v.kind != jsonTrue {
			continue
		}
		switch string(key) {
		case "fin":
			named |= flagFIN
		case "syn":
			named |= flagSYN
		case "rst":
			named |= flagRST
		case "psh":
			named |= flagPSH
		case "ack":
			named |= flagACK
		case "urg":
			named |= flagURG
		case "ecn":
			named |= flagECE
		case "cwr":
			named |= flagCWR
		}
	}
	if haveHex {
		return hexFlags, nil
	}
	return named, nil
}

func parseHexByte(b []byte) (uint8, error) {
	if len(b) == 0 || len(b) > 2 {
		return 0, errNotNumber
	}
	var n uint8
	for _, c := range b {
		r, ok := hex4([]byte{'0', '0', '0', c})
		if !ok {
			return 0, errNotNumber
		}
		n = n<<4 | uint8(r)
	}
	return n, nil
}
