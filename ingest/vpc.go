package ingest

import (
	"bytes"
	"fmt"
	"net/netip"
	"sync"

	"github.com/metaids/metaids/schemas"
)

// vpcDecoder reads AWS VPC Flow Logs records as text lines (CloudWatch Logs
// subscriptions, S3 objects or Firehose relayed line by line): fields
// separated by single spaces, "-" for a field with no value, start and end in
// seconds since the epoch, protocol as an IANA number.
//
// The default format is version 2's fourteen fields:
//
//	version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status
//
// A custom format announces itself with a header line of its field names
// (what S3 delivery writes at the top of each object, with or without the
// ${} of the format string); the header sets the field order for the lines
// after it on the same topic partition and is skipped. A line whose field
// count matches neither the header in force nor the default format is
// dead-lettered as no_header.
//
// NODATA and SKIPDATA lines (log-status) report intervals without captured
// traffic and are skipped. VPC records are unidirectional (one per direction
// and interface), so only Out counters are set. When pkt-srcaddr or
// pkt-dstaddr are in the format they win over srcaddr/dstaddr: behind a NAT
// gateway or a load balancer they carry the real peer, and srcaddr the
// interface. Required: srcaddr, dstaddr, protocol and start.
type vpcDecoder struct {
	streams streams[vpcState]
}

const (
	vSrcAddr = iota
	vDstAddr
	vSrcPort
	vDstPort
	vProto
	vPackets
	vBytes
	vStart
	vEnd
	vTCPFlags
	vLogStatus
	vPktSrcAddr
	vPktDstAddr
	vNumFields
)

var vpcFieldNames = [vNumFields]string{
	vSrcAddr: "srcaddr", vDstAddr: "dstaddr", vSrcPort: "srcport", vDstPort: "dstport",
	vProto: "protocol", vPackets: "packets", vBytes: "bytes", vStart: "start", vEnd: "end",
	vTCPFlags: "tcp-flags", vLogStatus: "log-status", vPktSrcAddr: "pkt-srcaddr",
	vPktDstAddr: "pkt-dstaddr",
}

func vpcField(name []byte) int {
	for i, n := range vpcFieldNames {
		if string(name) == n {
			return i
		}
	}
	return -1
}

// vpcDefaultFields is the version 2 default format.
var vpcDefaultFields = []string{
	"version", "account-id", "interface-id", "srcaddr", "dstaddr", "srcport",
	"dstport", "protocol", "packets", "bytes", "start", "end", "action", "log-status",
}

type vpcState struct {
	mu     sync.Mutex
	cols   []int8 // column → field index, -1 for columns not read
	custom bool   // cols came from a header line
}

func newVPCDecoder() *vpcDecoder { return &vpcDecoder{} }

func newVPCState() *vpcState {
	st := &vpcState{}
	st.setCols(vpcDefaultFields)
	return st
}

func (st *vpcState) setCols(names []string) {
	st.cols = st.cols[:0]
	for _, n := range names {
		st.cols = append(st.cols, int8(vpcField([]byte(n))))
	}
}

func (d *vpcDecoder) Decode(dst []schemas.Flow, rec []byte, src schemas.Coord) ([]schemas.Flow, error) {
	st := d.streams.get(src, newVPCState)
	st.mu.Lock()
	defer st.mu.Unlock()
	n0 := len(dst)
	var headers, noData bool
	for rest, lineNo := rec, 1; len(rest) > 0; lineNo++ {
		var line []byte
		line, rest = nextLine(rest)
		if isBlank(line) {
			continue
		}
		if vpcIsHeader(line) {
			st.header(line)
			headers = true
			continue
		}
		dst = append(dst, schemas.Flow{})
		f := &dst[len(dst)-1]
		skip, err := st.row(line, f)
		if err != nil {
			return dst[:n0], atLine(err, lineNo)
		}
		if skip {
			dst = dst[:len(dst)-1]
			noData = true
			continue
		}
		f.Source = src
		f.Source.Index = int32(len(dst) - 1 - n0)
	}
	return lineOutcome(dst, n0, headers, false, noData)
}

// vpcIsHeader tells a header line from a record: records never hold the
// field names srcaddr or dstaddr as values.
func vpcIsHeader(line []byte) bool {
	for rest := line; len(rest) > 0; {
		var tok []byte
		tok, rest = nextField(rest)
		switch string(trimVPCName(tok)) {
		case "srcaddr", "dstaddr", "pkt-srcaddr", "pkt-dstaddr":
			return true
		}
	}
	return false
}

func trimVPCName(tok []byte) []byte {
	tok = bytes.TrimPrefix(tok, []byte("${"))
	return bytes.TrimSuffix(tok, []byte("}"))
}

// nextField cuts the next space-separated field; runs of blanks count as one
// separator, so a hand-aligned file reads as well.
func nextField(b []byte) (field, rest []byte) {
	i := 0
	for i < len(b) && (b[i] == ' ' || b[i] == '\t') {
		i++
	}
	j := i
	for j < len(b) && b[j] != ' ' && b[j] != '\t' {
		j++
	}
	return b[i:j], b[j:]
}

func (st *vpcState) header(line []byte) {
	st.cols = st.cols[:0]
	for rest := line; ; {
		var tok []byte
		tok, rest = nextField(rest)
		if len(tok) == 0 {
			break
		}
		st.cols = append(st.cols, int8(vpcField(trimVPCName(tok))))
	}
	st.custom = true
}

func (st *vpcState) row(line []byte, f *schemas.Flow) (skip bool, err error) {
	var v [vNumFields][]byte
	n := 0
	for rest := line; ; n++ {
		var tok []byte
		tok, rest = nextField(rest)
		if len(tok) == 0 {
			break
		}
		if n < len(st.cols) && st.cols[n] >= 0 && string(tok) != "-" {
			v[st.cols[n]] = tok
		}
	}
	if n != len(st.cols) {
		if !st.custom {
			return false, recErr(ReasonNoHeader, "", fmt.Errorf("%w: %d fields, and the default format has %d", ErrNoHeader, n, len(st.cols)))
		}
		return false, recErr(ReasonMalformed, "", fmt.Errorf("%w: %d fields, header has %d", ErrSyntax, n, len(st.cols)))
	}
	switch string(v[vLogStatus]) {
	case "NODATA", "SKIPDATA":
		return true, nil
	}
	for _, k := range [...]int{vSrcAddr, vDstAddr, vProto, vStart} {
		if v[k] == nil {
			return false, missing(vpcFieldNames[k])
		}
	}
	for _, a := range [...]struct {
		k, pkt int
		dst    *netip.Addr
	}{{vSrcAddr, vPktSrcAddr, &f.SrcAddr}, {vDstAddr, vPktDstAddr, &f.DstAddr}} {
		k := a.k
		if v[a.pkt] != nil {
			k = a.pkt
		}
		if *a.dst, err = parseAddr(v[k]); err != nil {
			return false, recErr(ReasonBadAddress, vpcFieldNames[k], err)
		}
	}
	for _, p := range [...]struct {
		k   int
		dst *uint16
	}{{vSrcPort, &f.SrcPort}, {vDstPort, &f.DstPort}} {
		if v[p.k] == nil {
			continue
		}
		if *p.dst, err = parsePort(v[p.k]); err != nil {
			return false, recErr(ReasonBadPort, vpcFieldNames[p.k], err)
		}
	}
	if f.Proto, err = parseProto(v[vProto]); err != nil {
		return false, recErr(ReasonMalformed, "protocol", err)
	}
	for _, c := range [...]struct {
		k   int
		dst *uint64
	}{{vPackets, &f.PktsOut}, {vBytes, &f.BytesOut}} {
		if v[c.k] == nil {
			continue
		}
		if *c.dst, err = parseCount(v[c.k]); err != nil {
			return false, recErr(ReasonBadCounter, vpcFieldNames[c.k], err)
		}
	}
	if t := v[vTCPFlags]; t != nil {
		if f.TCPFlags, err = parseFlags(t); err != nil {
			return false, recErr(ReasonBadCounter, "tcp-flags", err)
		}
	}
	if f.StartNs, err = parseEpoch(v[vStart], 1e9); err != nil {
		return false, timeErr("start", err)
	}
	f.EndNs = f.StartNs
	if e := v[vEnd]; e != nil {
		if f.EndNs, err = parseEpoch(e, 1e9); err != nil {
			return false, timeErr("end", err)
		}
	}
	return false, nil
}
