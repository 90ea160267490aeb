package ingest

import (
	"bytes"
	"fmt"
	"sync"
	"time"

	"github.com/metaids/metaids/schemas"
)

// cicDecoder reads CICFlowMeter CSV rows: the CIC-IDS2017 and CSE-CIC-IDS2018
// releases and the corrected ("improved") CIC-IDS2017 of Engelen et al. Their
// column names differ (" Source IP" with a leading space, "Src IP", "Total
// Fwd Packets", "Total Fwd Packet", "Tot Fwd Pkts", "CWE Flag Count" for
// CWR), so columns are found through a normalised name: lower case, letters
// and digits only, with known synonyms folded (see cicColumn).
//
// The header row sets the column layout of the rows after it on the same
// topic partition and is skipped; a data row before any header is
// dead-lettered as no_header, since no column order can be assumed. The
// label columns and the ~75 statistics are ignored. "Infinity" and "NaN"
// appear only in rate columns, which are not read.
//
// Mapping: Src IP/Port is the flow initiator (Src); Timestamp is the start,
// read in DecoderConfig.TimeZone; Flow Duration (µs) gives the end. Bytes are
// CICFlowMeter's "Total Length of … Packets", which count payload only: the
// per-direction header totals are unreliable (negative in some rows).
// TCPFlags has a bit set for each "… Flag Count" above zero. Required: Src
// IP, Dst IP, Protocol, Timestamp. Rows of commas only (the CIC-IDS2017
// Thursday file has thousands) are skipped as empty.
//
// Timestamps come as "2017-07-03 08:55:58.123456" (improved release), as
// "3/7/2017 8:55" or "3/7/2017 8:55:58" (CIC-IDS2017, day first, a 12-hour
// clock without AM/PM, so afternoon flows read as morning: a known flaw of
// that release that ingest cannot undo), or "14/02/2018 08:31:01"
// (CSE-CIC-IDS2018), optionally with " AM"/" PM".
type cicDecoder struct {
	loc     *time.Location
	streams streams[cicState]
}

const (
	cSrcIP = iota
	cDstIP
	cSrcPort
	cDstPort
	cProto
	cTimestamp
	cDuration
	cFwdPkts
	cBwdPkts
	cFwdBytes
	cBwdBytes
	cFIN
	cSYN
	cRST
	cPSH
	cACK
	cURG
	cCWR
	cECE
	cNumFields
)

var cicFieldNames = [cNumFields]string{
	cSrcIP: "Src IP", cDstIP: "Dst IP", cSrcPort: "Src Port", cDstPort: "Dst Port",
	cProto: "Protocol", cTimestamp: "Timestamp", cDuration: "Flow Duration",
	cFwdPkts: "Total Fwd Packets", cBwdPkts: "Total Backward Packets",
	cFwdBytes: "Total Length of Fwd Packets", cBwdBytes: "Total Length of Bwd Packets",
	cFIN: "FIN Flag Count", cSYN: "SYN Flag Count", cRST: "RST Flag Count",
	cPSH: "PSH Flag Count", cACK: "ACK Flag Count", cURG: "URG Flag Count",
	cCWR: "CWR Flag Count", cECE: "ECE Flag Count",
}

var cicFlagBits = [...]struct {
	col int
	bit uint8
}{
	{cFIN, flagFIN}, {cSYN, flagSYN}, {cRST, flagRST}, {cPSH, flagPSH},
	{cACK, flagACK}, {cURG, flagURG}, {cCWR, flagCWR}, {cECE, flagECE},
}

// cicColumn maps a header name to a field index, or -1.
func cicColumn(name []byte) int {
	var buf [64]byte
	n := buf[:0]
	for _, c := range name {
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
			n = append(n, c)
		case 'A' <= c && c <= 'Z':
			n = append(n, c+'a'-'A')
		}
	}
	n = bytes.TrimSuffix(n, []byte("cnt")) // 2018: "FIN Flag Cnt"
	switch string(n) {
	case "srcip", "sourceip":
		return cSrcIP
	case "dstip", "destinationip":
		return cDstIP
	case "srcport", "sourceport":
		return cSrcPort
	case "dstport", "destinationport":
		return cDstPort
	case "protocol":
		return cProto
	case "timestamp":
		return cTimestamp
	case "flowduration":
		return cDuration
	case "totalfwdpackets", "totalfwdpacket", "totfwdpkts":
		return cFwdPkts
	case "totalbackwardpackets", "totalbwdpackets", "totbwdpkts":
		return cBwdPkts
	case "totallengthoffwdpackets", "totallengthoffwdpacket", "totlenfwdpkts":
		return cFwdBytes
	case "totallengthofbwdpackets", "totallengthofbwdpacket", "totlenbwdpkts":
		return cBwdBytes
	case "finflagcount", "finflag":
		return cFIN
	case "synflagcount", "synflag":
		return cSYN
	case "rstflagcount", "rstflag":
		return cRST
	case "pshflagcount", "pshflag":
		return cPSH
	case "ackflagcount", "ackflag":
		return cACK
	case "urgflagcount", "urgflag":
		return cURG
	case "cwrflagcount", "cweflagcount", "cwrflag", "cweflag":
		return cCWR
	case "eceflagcount", "eceflag":
		return cECE
	}
	return -1
}

type cicState struct {
	mu   sync.Mutex
	cols []int8 // column → field index, -1 for columns not read; nil before a header
}

func newCICDecoder(loc *time.Location) *cicDecoder { return &cicDecoder{loc: loc} }

func (d *cicDecoder) Decode(dst []schemas.Flow, rec []byte, src schemas.Coord) ([]schemas.Flow, error) {
	st := d.streams.get(src, func() *cicState { return &cicState{} })
	st.mu.Lock()
	defer st.mu.Unlock()
	n0 := len(dst)
	var headers bool
	for rest, lineNo := rec, 1; len(rest) > 0; lineNo++ {
		var line []byte
		line, rest = nextLine(rest)
		if onlyCommas(line) {
			continue
		}
		if cicIsHeader(line) {
			st.cols = st.cols[:0]
			for rest := line; ; {
				var col []byte
				var more bool
				col, rest, more = bytes.Cut(rest, []byte{','})
				st.cols = append(st.cols, int8(cicColumn(col)))
				if !more {
					break
				}
			}
			headers = true
			continue
		}
		if st.cols == nil {
			return dst[:n0], atLine(recErr(ReasonNoHeader, "", ErrNoHeader), lineNo)
		}
		dst = append(dst, schemas.Flow{})
		f := &dst[len(dst)-1]
		if err := d.row(st, line, f); err != nil {
			return dst[:n0], atLine(err, lineNo)
		}
		f.Source = src
		f.Source.Index = int32(len(dst) - 1 - n0)
	}
	return lineOutcome(dst, n0, headers, false, false)
}

// cicIsHeader: every CICFlowMeter header has a Flow Duration column, and no
// data row has that text.
func cicIsHeader(line []byte) bool {
	// Data rows are far more common than headers: rule them out without
	// normalising ninety column names.
	if !bytes.Contains(line, []byte("uration")) && !bytes.Contains(line, []byte("URATION")) {
		return false
	}
	for rest := line; ; {
		col, r, more := bytes.Cut(rest, []byte{','})
		if cicColumn(col) == cDuration {
			return true
		}
		if !more {
			return false
		}
		rest = r
	}
}

func (d *cicDecoder) row(st *cicState, line []byte, f *schemas.Flow) error {
	var v [cNumFields][]byte
	n := 0
	for rest := line; ; n++ {
		col, r, more := bytes.Cut(rest, []byte{','})
		if n < len(st.cols) && st.cols[n] >= 0 && v[st.cols[n]] == nil {
			v[st.cols[n]] = bytes.TrimSpace(col)
		}
		if !more {
			break
		}
		rest = r
	}
	if n+1 != len(st.cols) {
		return recErr(ReasonMalformed, "", fmt.Errorf("%w: %d columns, header has %d", ErrSyntax, n+1, len(st.cols)))
	}
	for _, k := range [...]int{cSrcIP, cDstIP, cProto, cTimestamp} {
		if len(v[k]) == 0 {
			return missing(cicFieldNames[k])
		}
	}
	var err error
	if f.SrcAddr, err = parseAddr(v[cSrcIP]); err != nil {
		return recErr(ReasonBadAddress, cicFieldNames[cSrcIP], err)
	}
	if f.DstAddr, err = parseAddr(v[cDstIP]); err != nil {
		return recErr(ReasonBadAddress, cicFieldNames[cDstIP], err)
	}
	if f.Proto, err = parseProto(v[cProto]); err != nil {
		return recErr(ReasonMalformed, cicFieldNames[cProto], err)
	}
	for _, p := range [...]struct {
		k   int
		dst *uint16
	}{{cSrcPort, &f.SrcPort}, {cDstPort, &f.DstPort}} {
		if len(v[p.k]) == 0 {
			continue
		}
		if *p.dst, err = parsePort(v[p.k]); err != nil {
			return recErr(ReasonBadPort, cicFieldNames[p.k], err)
		}
	}
	for _, c := range [...]struct {
		k   int
		dst *uint64
	}{{cFwdPkts, &f.PktsOut}, {cBwdPkts, &f.PktsIn}, {cFwdBytes, &f.BytesOut}, {cBwdBytes, &f.BytesIn}} {
		if len(v[c.k]) == 0 {
			continue
		}
		if *c.dst, err = parseCount(v[c.k]); err != nil {
			return recErr(ReasonBadCounter, cicFieldNames[c.k], err)
		}
	}
	for _, fb := range cicFlagBits {
		if len(v[fb.col]) == 0 {
			continue
		}
		n, err := parseCount(v[fb.col])
		if err != nil {
			return recErr(ReasonBadCounter, cicFieldNames[fb.col], err)
		}
		if n > 0 {
			f.TCPFlags |= fb.bit
		}
	}
	if f.StartNs, err = parseCICTime(v[cTimestamp], d.loc); err != nil {
		return timeErr(cicFieldNames[cTimestamp], err)
	}
	f.EndNs = f.StartNs
	if dur := v[cDuration]; len(dur) > 0 {
		// CSE-CIC-IDS2018 has rows with negative durations: the flow
		// meter's clock went backwards, and the row says end < start.
		neg := dur[0] == '-'
		if neg {
			dur = dur[1:]
		}
		us, err := parseCount(dur)
		if err != nil || us > 1<<53 {
			return recErr(ReasonMalformed, cicFieldNames[cDuration], errNotNumber)
		}
		if neg {
			return recErr(ReasonEndBeforeStart, cicFieldNames[cDuration], fmt.Errorf("%w: negative duration", ErrRange))
		}
		f.EndNs += int64(us) * 1000
	}
	return nil
}

// parseCICTime reads the Timestamp column in the layouts listed on
// cicDecoder.
func parseCICTime(b []byte, loc *time.Location) (int64, error) {
	if len(b) > 4 && b[4] == '-' {
		return parseISOTime(b, loc)
	}
	// D/M/YYYY H:MM[:SS][ AM|PM]
	date, clock, ok := bytes.Cut(b, []byte{' '})
	if !ok {
		return 0, errNotTime
	}
	ampm := 0
	if c, suffix, ok := bytes.Cut(clock, []byte{' '}); ok {
		switch string(suffix) {
		case "AM", "am":
			ampm = 1
		case "PM", "pm":
			ampm = 2
		default:
			return 0, errNotTime
		}
		clock = c
	}
	dmy := bytes.Split(date, []byte{'/'})
	hms := bytes.Split(clock, []byte{':'})
	if len(dmy) != 3 || len(hms) < 2 || len(hms) > 3 || len(dmy[2]) != 4 {
		return 0, errNotTime
	}
	var nums [6]int
	parts := [...][]byte{dmy[0], dmy[1], dmy[2], hms[0], hms[1], nil}
	if len(hms) == 3 {
		parts[5] = hms[2]
	}
	for i, p := range parts {
		if p == nil {
			continue
		}
		if len(p) > 4 {
			return 0, errNotTime
		}
		n, ok := atoiN(p)
		if !ok {
			return 0, errNotTime
		}
		nums[i] = n
	}
	hour := nums[3]
	switch {
	case ampm != 0 && (hour < 1 || hour > 12):
		return 0, errNotTime
	case ampm == 1 && hour == 12:
		hour = 0
	case ampm == 2 && hour != 12:
		hour += 12
	}
	return dateNs(nums[2], nums[1], nums[0], hour, nums[4], nums[5], 0, loc)
}

// onlyCommas reports whether a row has no value at all.
func onlyCommas(line []byte) bool {
	for _, c := range line {
		if c != ',' && c != ' ' && c != '\t' {
			return false
		}
	}
	return true
}
