package ingest

import (
	"bytes"
	"time"

	"github.com/metaids/metaids/schemas"
)

// Zeek conn.log, as JSON lines (LogAscii::use_json) or as Zeek's TSV. Both
// fill a zeekConn with the text of the fields ingest reads and share the
// conversion in flow.
//
// Mapping: ts is the start, ts+duration the end (duration is unset for
// S0 attempts: end = start). Bytes are the IP-layer orig_ip_bytes and
// resp_ip_bytes, like the NetFlow-family formats count them; orig_bytes and
// resp_bytes (payload only) stand in when the IP-level columns are absent.
// Zeek's originator is Src. TCP flags are derived from history and
// conn_state (see zeekFlags). Required: ts, id.orig_h, id.resp_h, proto.

// Indexes of the conn.log fields ingest reads.
const (
	zTS = iota
	zOrigH
	zOrigP
	zRespH
	zRespP
	zProto
	zService
	zDuration
	zOrigBytes
	zRespBytes
	zConnState
	zHistory
	zOrigPkts
	zOrigIPBytes
	zRespPkts
	zRespIPBytes
	zNumFields
)

var zeekFieldNames = [zNumFields]string{
	zTS: "ts", zOrigH: "id.orig_h", zOrigP: "id.orig_p", zRespH: "id.resp_h",
	zRespP: "id.resp_p", zProto: "proto", zService: "service", zDuration: "duration",
	zOrigBytes: "orig_bytes", zRespBytes: "resp_bytes", zConnState: "conn_state",
	zHistory: "history", zOrigPkts: "orig_pkts", zOrigIPBytes: "orig_ip_bytes",
	zRespPkts: "resp_pkts", zRespIPBytes: "resp_ip_bytes",
}

// zeekField maps a conn.log field name to its index, or -1.
func zeekField(name []byte) int {
	switch string(name) {
	case "ts":
		return zTS
	case "id.orig_h":
		return zOrigH
	case "id.orig_p":
		return zOrigP
	case "id.resp_h":
		return zRespH
	case "id.resp_p":
		return zRespP
	case "proto":
		return zProto
	case "service":
		return zService
	case "duration":
		return zDuration
	case "orig_bytes":
		return zOrigBytes
	case "resp_bytes":
		return zRespBytes
	case "conn_state":
		return zConnState
	case "history":
		return zHistory
	case "orig_pkts":
		return zOrigPkts
	case "orig_ip_bytes":
		return zOrigIPBytes
	case "resp_pkts":
		return zRespPkts
	case "resp_ip_bytes":
		return zRespIPBytes
	}
	return -1
}

// zeekConn holds the text of one conn record's fields; nil means unset.
type zeekConn [zNumFields][]byte

// flow converts c into f.
func (c *zeekConn) flow(f *schemas.Flow) error {
	var err error
	for _, k := range [...]int{zTS, zOrigH, zRespH, zProto} {
		if c[k] == nil {
			return missing(zeekFieldNames[k])
		}
	}
	if ts := c[zTS]; len(ts) > 4 && ts[4] == '-' {
		// JSON::TS_ISO8601 output.
		f.StartNs, err = parseISOTime(ts, time.UTC)
	} else {
		f.StartNs, err = parseEpoch(ts, 1e9)
	}
	if err != nil {
		return timeErr("ts", err)
	}
	f.EndNs = f.StartNs
	if d := c[zDuration]; d != nil {
		dur, err := parseEpoch(d, 1e9)
		if err != nil {
			return timeErr("duration", err)
		}
		f.EndNs += dur
	}
	if f.SrcAddr, err = parseAddr(c[zOrigH]); err != nil {
		return recErr(ReasonBadAddress, "id.orig_h", err)
	}
	if f.DstAddr, err = parseAddr(c[zRespH]); err != nil {
		return recErr(ReasonBadAddress, "id.resp_h", err)
	}
	if f.Proto, err = parseProto(c[zProto]); err != nil {
		return recErr(ReasonMalformed, "proto", err)
	}
	// For ICMP Zeek puts the type and code in the port fields; Flow keeps
	// them there too.
	for _, p := range [...]struct {
		k   int
		dst *uint16
	}{{zOrigP, &f.SrcPort}, {zRespP, &f.DstPort}} {
		if c[p.k] == nil {
			continue
		}
		if *p.dst, err = parsePort(c[p.k]); err != nil {
			return recErr(ReasonBadPort, zeekFieldNames[p.k], err)
		}
	}
	for _, n := range [...]struct {
		k, alt int
		dst    *uint64
	}{
		{zOrigIPBytes, zOrigBytes, &f.BytesOut},
		{zRespIPBytes, zRespBytes, &f.BytesIn},
		{zOrigPkts, -1, &f.PktsOut},
		{zRespPkts, -1, &f.PktsIn},
	} {
		k := n.k
		if c[k] == nil && n.alt >= 0 {
			k = n.alt
		}
		if c[k] == nil {
			continue
		}
		if *n.dst, err = parseCount(c[k]); err != nil {
			return recErr(ReasonBadCounter, zeekFieldNames[k], err)
		}
	}
	if svc := c[zService]; svc != nil {
		f.Service = internService(svc)
	}
	if f.Proto == 6 {
		f.TCPFlags = zeekFlags(c[zHistory], c[zConnState])
	}
	return nil
}

// zeekFlags derives the union of TCP flags seen from Zeek's history string
// (upper case: originator, lower case: responder) and conn_state, which
// still tells something when history is off or empty. Zeek counts packets
// with payload ('D'/'d') rather than PSH; they are mapped to PSH|ACK, what a
// data segment of an established connection carries.
func zeekFlags(history, state []byte) uint8 {
	var fl uint8
	for _, c := range history {
		switch c {
		case 'S', 's':
			fl |= flagSYN
		case 'H', 'h':
			fl |= flagSYN | flagACK
		case 'A', 'a':
			fl |= flagACK
		case 'D', 'd':
			fl |= flagPSH | flagACK
		case 'F', 'f':
			fl |= flagFIN
		case 'R', 'r':
			fl |= flagRST
		}
	}
	switch string(state) {
	case "S0":
		fl |= flagSYN
	case "S1":
		fl |= flagSYN | flagACK
	case "SF", "S2", "S3":
		fl |= flagSYN | flagACK | flagFIN
	case "REJ", "RSTOS0":
		fl |= flagSYN | flagRST
	case "RSTO", "RSTR", "RSTRH":
		fl |= flagSYN | flagACK | flagRST
	case "SH":
		fl |= flagSYN | flagFIN
	case "SHR":
		fl |= flagSYN | flagACK | flagFIN
	}
	return fl
}

// zeekJSONDecoder reads conn.log JSON lines, as shipped by file tailers
// (rsyslog omkafka, syslog-ng, Filebeat) or Zeek's Kafka writer.
type zeekJSONDecoder struct{}

func (d *zeekJSONDecoder) Decode(dst []schemas.Flow, rec []byte, src schemas.Coord) ([]schemas.Flow, error) {
	return decodeJSON(d, dst, rec, src)
}

func (d *zeekJSONDecoder) object(rec []byte, i int, f *schemas.Flow) (int, *Skip, error) {
	s := jsonScanner{b: rec, i: i}
	if err := s.objBegin(); err != nil {
		return 0, nil, malformed(err)
	}
	var c zeekConn
	for {
		key, v, done, err := s.member()
		if err != nil {
			return 0, nil, malformed(err)
		}
		if done {
			break
		}
		k := zeekField(key)
		if k < 0 || v.kind == jsonNull {
			continue
		}
		switch v.kind {
		case jsonString:
			c[k] = v.raw
			if v.esc {
				c[k], _ = appendUnescaped(nil, v.raw)
			}
		case jsonNumber:
			c[k] = v.raw
		default:
			// Zeek writes sets as arrays, but none of the fields read here.
			return 0, nil, recErr(ReasonMalformed, zeekFieldNames[k], ErrSyntax)
		}
		if c[k] == nil {
			c[k] = []byte{}
		}
	}
	if err := c.flow(f); err != nil {
		return 0, nil, err
	}
	return s.i, nil, nil
}

// zeekDecoder serves topics that carry Zeek in either encoding: a record
// starting with '{' or '[' is JSON, anything else TSV.
type zeekDecoder struct {
	json *zeekJSONDecoder
	tsv  *zeekTSVDecoder
}

func (d *zeekDecoder) Decode(dst []schemas.Flow, rec []byte, src schemas.Coord) ([]schemas.Flow, error) {
	if t := bytes.TrimLeft(rec, " \t\r\n"); len(t) > 0 && (t[0] == '{' || t[0] == '[') {
		return d.json.Decode(dst, rec, src)
	}
	return d.tsv.Decode(dst, rec, src)
}
