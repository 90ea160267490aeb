package ingest

import (
	"bytes"
	"fmt"
	"sync"

	"github.com/metaids/metaids/schemas"
)

// autoDecoder picks a format per record, for topics that mix shippers or
// whose format is not configured. It looks at the first byte and, for JSON,
// at key names each format has and the others lack:
//
//	0x00 magic byte                       avro (Confluent framing)
//	"id.orig_h"                           zeek-json
//	"event_type" with "src_ip"/"dest_ip"  suricata
//	"ip_src"/"ip_dst"                     pmacct
//	"time_flow_start_ns"/"src_addr"       goflow2
//	"IPV4_SRC_ADDR"/…, or numeric keys    nprobe
//	"src4_addr"/"src6_addr"               nfdump
//	"event_type" alone                    suricata (a non-flow event, skipped)
//
// Text is line-oriented and the layout of a line may depend on a header seen
// earlier (a Zeek #separator, a custom VPC format), so the text format of a
// topic partition is remembered: a header line (Zeek '#', a VPC field-name
// line, a CICFlowMeter header) sets it; otherwise the first text record does,
// by its first line — a tab means zeek-tsv, a comma cic, spaces vpc.
type autoDecoder struct {
	by      map[string]Decoder
	streams streams[autoState]
}

type autoState struct {
	mu   sync.Mutex
	text string // the partition's text format once known
}

func (a *autoDecoder) Decode(dst []schemas.Flow, rec []byte, src schemas.Coord) ([]schemas.Flow, error) {
	name := sniffBinaryOrJSON(rec)
	if t := bytes.TrimLeft(rec, " \t\r\n"); name == "" && (len(t) == 0 || t[0] != '{' && t[0] != '[') {
		name = a.textFormat(rec, src)
	}
	if name == "" {
		return dst, recErr(ReasonUnknownFormat, "", fmt.Errorf("%w: record starts %q", ErrUnknownFormat, truncate(rec, 32)))
	}
	return a.by[name].Decode(dst, rec, src)
}

// sniffBinaryOrJSON names the format of an Avro or JSON record, "" for text.
func sniffBinaryOrJSON(rec []byte) string {
	// JSON that matches no rule is reported as unknown_format by the
	// caller, not guessed at.
	if len(rec) >= schemas.HeaderLen && rec[0] == 0 {
		return FormatAvro
	}
	t := bytes.TrimLeft(rec, " \t\r\n")
	if len(t) == 0 || (t[0] != '{' && t[0] != '[') {
		return ""
	}
	if name := sniffJSONKeys(t); name != "" {
		return name
	}
	// The first object does not parse (or names no known key before it
	// breaks): look for the keys anywhere, so a damaged record still reaches
	// its format's decoder and is dead-lettered as malformed, not unknown.
	has := func(keys ...string) bool {
		for _, k := range keys {
			if bytes.Contains(t, []byte(k)) {
				return true
			}
		}
		return false
	}
	switch {
	case has(`"id.orig_h"`):
		return FormatZeekJSON
	case has(`"event_type"`) && has(`"src_ip"`, `"dest_ip"`):
		return FormatSuricata
	case has(`"ip_src"`, `"ip_dst"`):
		return FormatPmacct
	case has(`"time_flow_start_ns"`, `"src_addr"`):
		return FormatGoflow2
	case has(`"IPV4_SRC_ADDR"`, `"IPV6_SRC_ADDR"`, `"L4_SRC_PORT"`, `"IN_BYTES"`) || numericFirstKey(t):
		return FormatNprobe
	case has(`"src4_addr"`, `"src6_addr"`):
		return FormatNfdump
	case has(`"event_type"`):
		return FormatSuricata
	}
	return ""
}

// sniffJSONKeys reads the keys of the record's first object until one
// names a format: one pass, usually over a few keys only.
func sniffJSONKeys(t []byte) string {
	var s jsonScanner
	s.reset(t)
	if ok, err := s.nextObject(); !ok || err != nil || s.objBegin() != nil {
		return ""
	}
	event := false
	for {
		key, _, done, err := s.member()
		if err != nil {
			return ""
		}
		if done {
			break
		}
		switch string(key) {
		case "id.orig_h", "id.resp_h":
			return FormatZeekJSON
		case "src_ip", "dest_ip":
			return FormatSuricata
		case "ip_src", "ip_dst":
			return FormatPmacct
		case "time_flow_start_ns", "src_addr", "dst_addr":
			return FormatGoflow2
		case "IPV4_SRC_ADDR", "IPV6_SRC_ADDR", "IPV4_DST_ADDR", "IPV6_DST_ADDR", "L4_SRC_PORT", "IN_BYTES":
			return FormatNprobe
		case "src4_addr", "src6_addr", "dst4_addr", "dst6_addr":
			return FormatNfdump
		case "event_type":
			event = true
		default:
			if len(key) > 0 && allDigits(key) {
				return FormatNprobe
			}
		}
	}
	if event {
		return FormatSuricata
	}
	return ""
}

// numericFirstKey reports whether the first object's first key is a
// number: nProbe without --json-labels keys fields by element id.
func numericFirstKey(t []byte) bool {
	s := jsonScanner{b: t}
	if ok, err := s.nextObject(); !ok || err != nil || s.objBegin() != nil {
		return false
	}
	s.ws()
	key, _, err := s.str()
	return err == nil && len(key) > 0 && allDigits(key)
}

func (a *autoDecoder) textFormat(rec []byte, src schemas.Coord) string {
	st := a.streams.get(src, func() *autoState { return &autoState{} })
	st.mu.Lock()
	defer st.mu.Unlock()
	t := bytes.TrimLeft(rec, " \t\r\n")
	if len(t) == 0 {
		// Blank: the text decoders skip it as empty.
		return FormatZeekTSV
	}
	line, _ := nextLine(t)
	switch {
	case line[0] == '#':
		st.text = FormatZeekTSV
	case vpcIsHeader(line):
		st.text = FormatVPC
	case cicIsHeader(line):
		st.text = FormatCIC
	case st.text != "":
	case bytes.IndexByte(line, '\t') >= 0:
		st.text = FormatZeekTSV
	case bytes.IndexByte(line, ',') >= 0:
		st.text = FormatCIC
	case bytes.IndexByte(line, ' ') >= 0:
		st.text = FormatVPC
	}
	return st.text
}
