package ingest

import (
	"bytes"
	"sync"

	"github.com/metaids/metaids/schemas"
)

// zeekTSVDecoder reads Zeek's native TSV conn.log. The '#' header lines
// (#separator, #set_separator, #empty_field, #unset_field, #path, #fields,
// #types, #open, #close) set the layout of the lines after them on the same
// topic partition: a file tailer sends each line as its own Kafka record, so
// the header and the rows arrive in different records. A record may also be a
// chunk of many lines, headers included. Header-only records are skipped
// (SkipHeader).
//
// Without a #fields header the standard conn.log column order is assumed,
// and separator, unset and empty markers have Zeek's defaults. Columns ingest
// does not read (uid, tunnel_parents, the label columns of labelled datasets)
// are ignored, however they are separated: Stratosphere's labelled files
// sometimes join their trailing label columns with spaces instead of the
// separator. No field ingest reads is a set, so #set_separator changes
// nothing. Rows of a log whose #path is not conn are skipped as non-flow.
//
// Known limit: the layout is not rebuilt after a restart or rebalance that
// resumes a partition past its header; rows then fall back to the standard
// layout, which is what Zeek writes unless reconfigured.
type zeekTSVDecoder struct {
	streams streams[zeekTSVState]
}

type zeekTSVState struct {
	mu      sync.Mutex
	sep     []byte
	unset   []byte
	empty   []byte
	cols    []int8 // column → zeekConn index, -1 for columns not read
	nonConn bool
}

// zeekStandardFields is the column order of conn.log in Zeek 3 to 7 without
// policy scripts that add columns.
var zeekStandardFields = []string{
	"ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto",
	"service", "duration", "orig_bytes", "resp_bytes", "conn_state",
	"local_orig", "local_resp", "missed_bytes", "history", "orig_pkts",
	"orig_ip_bytes", "resp_pkts", "resp_ip_bytes", "tunnel_parents",
}

func newZeekTSVDecoder() *zeekTSVDecoder { return &zeekTSVDecoder{} }

func newZeekTSVState() *zeekTSVState {
	st := &zeekTSVState{sep: []byte{'\t'}, unset: []byte("-"), empty: []byte("(empty)")}
	for _, name := range zeekStandardFields {
		st.cols = append(st.cols, int8(zeekField([]byte(name))))
	}
	return st
}

func (d *zeekTSVDecoder) Decode(dst []schemas.Flow, rec []byte, src schemas.Coord) ([]schemas.Flow, error) {
	st := d.streams.get(src, newZeekTSVState)
	st.mu.Lock()
	defer st.mu.Unlock()
	n0 := len(dst)
	var headers, nonFlow bool
	for rest, lineNo := rec, 1; len(rest) > 0; lineNo++ {
		var line []byte
		line, rest = nextLine(rest)
		if isBlank(line) {
			continue
		}
		if line[0] == '#' {
			st.header(line)
			headers = true
			continue
		}
		if st.nonConn {
			nonFlow = true
			continue
		}
		dst = append(dst, schemas.Flow{})
		f := &dst[len(dst)-1]
		if err := st.row(line, f); err != nil {
			return dst[:n0], atLine(err, lineNo)
		}
		f.Source = src
		f.Source.Index = int32(len(dst) - 1 - n0)
	}
	return lineOutcome(dst, n0, headers, nonFlow, false)
}

// lineOutcome finishes a line-oriented record: flows if any, else the skip
// that says why there were none.
func lineOutcome(dst []schemas.Flow, n0 int, headers, nonFlow, noData bool) ([]schemas.Flow, error) {
	switch {
	case len(dst) > n0:
		return dst, nil
	case noData:
		return dst, skipNoData
	case nonFlow:
		return dst, skipNonFlow
	case headers:
		return dst, skipHeader
	}
	return dst, skipEmpty
}

// atLine records the failing line of a multi-line record in its error.
func atLine(err error, line int) error {
	if re, ok := err.(*RecordError); ok {
		re.Line = line
	}
	return err
}

func (st *zeekTSVState) header(line []byte) {
	if v, ok := bytes.CutPrefix(line, []byte("#separator")); ok {
		// The separator line itself is always space-separated: the
		// separator is not known until it has been read.
		if sep := unescapeZeek(bytes.TrimLeft(v, " \t")); len(sep) > 0 {
			st.sep = sep
		}
		return
	}
	name, value := cutZeek(line, st.sep)
	switch string(name) {
	case "#unset_field":
		st.unset = bytes.Clone(value)
	case "#empty_field":
		st.empty = bytes.Clone(value)
	case "#path":
		st.nonConn = !bytes.HasPrefix(value, []byte("conn"))
	case "#fields":
		st.cols = st.cols[:0]
		for rest := value; ; {
			var col []byte
			col, rest, _ = bytes.Cut(rest, st.sep)
			st.cols = append(st.cols, int8(zeekField(col)))
			if rest == nil {
				break
			}
		}
	}
}

// cutZeek splits a header line into its name and value: at the separator, or
// at the first blank for headers written by hand.
func cutZeek(line, sep []byte) (name, value []byte) {
	if name, value, ok := bytes.Cut(line, sep); ok {
		return name, value
	}
	if i := bytes.IndexAny(line, " \t"); i >= 0 {
		return line[:i], bytes.TrimLeft(line[i:], " \t")
	}
	return line, nil
}

// unescapeZeek decodes the \xHH escapes Zeek uses in #separator.
func unescapeZeek(b []byte) []byte {
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		if b[i] == '\\' && i+3 < len(b) && b[i+1] == 'x' && isHex(b[i+2]) && isHex(b[i+3]) {
			r, _ := hex4([]byte{'0', '0', b[i+2], b[i+3]})
			out = append(out, byte(r))
			i += 3
			continue
		}
		out = append(out, b[i])
	}
	return out
}

func (st *zeekTSVState) row(line []byte, f *schemas.Flow) error {
	var c zeekConn
	for col, rest := 0, line; ; col++ {
		var v []byte
		var more bool
		if len(st.sep) == 1 {
			if i := bytes.IndexByte(rest, st.sep[0]); i >= 0 {
				v, rest, more = rest[:i], rest[i+1:], true
			} else {
				v = rest
			}
		} else {
			v, rest, more = bytes.Cut(rest, st.sep)
		}
		if col < len(st.cols) && st.cols[col] >= 0 && !bytes.Equal(v, st.unset) && !bytes.Equal(v, st.empty) {
			c[st.cols[col]] = v
		}
		if !more || col >= len(st.cols) {
			break
		}
	}
	return c.flow(f)
}
