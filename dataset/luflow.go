package dataset

import (
	"bytes"
	"fmt"
	"math"
	"net/netip"
	"strconv"

	"github.com/metaids/metaids/schemas"
)

// LUFlow columns the reader needs.
var luflowCols = []string{
	"bytes_in", "bytes_out", "dest_ip", "dest_port", "num_pkts_out", "num_pkts_in",
	"proto", "src_ip", "src_port", "time_end", "time_start", "label",
}

const (
	luBytesIn = iota
	luBytesOut
	luDstIP
	luDstPort
	luPktsOut
	luPktsIn
	luProto
	luSrcIP
	luSrcPort
	luTimeEnd
	luTimeStart
	luLabel
)

// readLUFlow reads LUFlow's Cisco Joy CSV (16 columns, found by name), which
// is not a shipper format and so has no ingest decoder.
//
// Direction follows the dataset's README: bytes_in and num_pkts_in count
// source → destination (our Out), bytes_out and num_pkts_out destination →
// source (our In). Times are µs since the epoch; values that lost trailing
// zeros (fewer than 16 digits) are right-padded to 16 digits, which the
// README found consistent with time_end − duration for all of them. Empty
// ports (ICMP and other portless protocols) are 0. There are no TCP flags.
//
// Addresses are AS numbers, not hosts. Each maps to a stable synthetic
// address so that per-"host" state is per AS, as the README warns: an AS in
// Config.LUFlowLocalAS becomes fd00::<AS> (a unique-local address, which the
// features count as internal), any other AS 2001:db8::<AS> (documentation
// prefix, external). The mapping is one-to-one for every 32-bit AS number.
//
// Labels: benign is Benign, malicious is the family "malicious" (LUFlow has
// no families), outlier is Unlabelled (neither benign nor confirmed
// malicious, so it trains only the next-flow predictor).
func (l *Loader) readLUFlow(ls *lines, topic string) ([]Record, error) {
	header, _, _ := ls.line()
	idx := make([]int, len(luflowCols))
	for i := range idx {
		idx[i] = -1
	}
	names := splitCSV(nil, header)
	for i, n := range names {
		for j, want := range luflowCols {
			if string(n) == want {
				idx[j] = i
			}
		}
	}
	for j, i := range idx {
		if i < 0 {
			return nil, fmt.Errorf("%w: LUFlow header has no %s column", ErrBadRow, luflowCols[j])
		}
	}
	var (
		out  []Record
		cols [][]byte
	)
	for {
		row, n, ok := ls.line()
		if !ok {
			break
		}
		if len(bytes.TrimSpace(row)) == 0 {
			continue
		}
		l.Stats.Rows++
		cols = splitCSV(cols[:0], row)
		if len(cols) != len(names) {
			l.Stats.reject("dead_lettered:malformed")
			continue
		}
		get := func(k int) []byte { return cols[idx[k]] }
		r := Record{Format: FormatLUFlow}
		f := &r.Flow
		f.Source = schemas.Coord{Topic: topic, Offset: int64(n)}
		var err error
		src, err1 := l.asAddr(get(luSrcIP))
		dst, err2 := l.asAddr(get(luDstIP))
		if err1 != nil || err2 != nil {
			l.Stats.reject("dead_lettered:bad_address")
			continue
		}
		f.SrcAddr, f.DstAddr = src, dst
		var proto, sp, dp uint64
		if proto, err = luUint(get(luProto), 255); err != nil {
			l.Stats.reject("dead_lettered:malformed")
			continue
		}
		f.Proto = uint8(proto)
		sp, err1 = luUint(get(luSrcPort), 65535)
		dp, err2 = luUint(get(luDstPort), 65535)
		if err1 != nil || err2 != nil {
			l.Stats.reject("dead_lettered:bad_port")
			continue
		}
		f.SrcPort, f.DstPort = uint16(sp), uint16(dp)
		var c [4]uint64
		bad := false
		for i, k := range [...]int{luBytesIn, luBytesOut, luPktsIn, luPktsOut} {
			if c[i], err = luUint(get(k), 1<<53); err != nil {
				bad = true
			}
		}
		if bad {
			l.Stats.reject("dead_lettered:bad_counter")
			continue
		}
		f.BytesOut, f.BytesIn, f.PktsOut, f.PktsIn = c[0], c[1], c[2], c[3]
		start, err1 := luTime(get(luTimeStart))
		end, err2 := luTime(get(luTimeEnd))
		if err1 != nil || err2 != nil {
			l.Stats.reject("dead_lettered:missing_field")
			continue
		}
		if end < start {
			l.Stats.reject("dead_lettered:end_before_start")
			continue
		}
		f.StartNs, f.EndNs = start, end
		raw := string(get(luLabel))
		r.RawLabel = raw
		switch raw {
		case "benign":
			r.Label = Benign
		case "outlier", "":
			r.Label = Unlabelled
		default:
			r.Label = raw
		}
		out = append(out, r)
	}
	if err := ls.err(); err != nil {
		return nil, err
	}
	return out, nil
}

// asAddr maps an AS number to its synthetic address (see readLUFlow).
func (l *Loader) asAddr(b []byte) (netip.Addr, error) {
	as, err := luUint(b, math.MaxUint32)
	if err != nil || len(b) == 0 {
		return netip.Addr{}, fmt.Errorf("AS number %q", b)
	}
	var a [16]byte
	if l.local[uint32(as)] {
		a[0] = 0xfd
	} else {
		a[0], a[1], a[2], a[3] = 0x20, 0x01, 0x0d, 0xb8
	}
	a[12], a[13], a[14], a[15] = byte(as>>24), byte(as>>16), byte(as>>8), byte(as)
	return netip.AddrFrom16(a), nil
}

// luUint parses a non-negative integer that may be written as a float
// ("6.0", "5E2"); empty is 0.
func luUint(b []byte, limit uint64) (uint64, error) {
	if len(b) == 0 {
		return 0, nil
	}
	if v, err := strconv.ParseUint(string(b), 10, 64); err == nil {
		if v > limit {
			return 0, fmt.Errorf("%d out of range", v)
		}
		return v, nil
	}
	v, err := strconv.ParseFloat(string(b), 64)
	if err != nil || v < 0 || v != math.Trunc(v) || v > float64(limit) {
		return 0, fmt.Errorf("not a count: %q", b)
	}
	return uint64(v), nil
}

// luTime parses µs since the epoch, right-padding a value of fewer than 16
// digits (trailing zeros lost upstream) to 16 digits, and returns ns.
func luTime(b []byte) (int64, error) {
	if len(b) == 0 {
		return 0, fmt.Errorf("timestamp %q", b)
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			// Written as a float: only trailing zeros could be lost in the
			// digits, and the exponent restores them.
			v, err := strconv.ParseFloat(string(b), 64)
			if err != nil || v < 1e14 || v >= 1e16 {
				return 0, fmt.Errorf("timestamp %q", b)
			}
			return int64(v) * 1000, nil
		}
	}
	if len(b) > 16 {
		return 0, fmt.Errorf("timestamp %q", b)
	}
	var buf [16]byte
	n := copy(buf[:], b)
	for i := n; i < 16; i++ {
		buf[i] = '0'
	}
	us, err := strconv.ParseInt(string(buf[:]), 10, 64)
	if err != nil {
		return 0, err
	}
	return us * 1000, nil
}

// splitCSV splits a CSV row whose fields hold no commas, removing the
// quotes around quoted fields ("" is empty).
func splitCSV(dst [][]byte, row []byte) [][]byte {
	for {
		col, rest, more := bytes.Cut(row, []byte{','})
		col = bytes.TrimSpace(col)
		if len(col) >= 2 && col[0] == '"' && col[len(col)-1] == '"' {
			col = col[1 : len(col)-1]
		}
		dst = append(dst, col)
		if !more {
			return dst
		}
		row = rest
	}
}
