package dataset

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"

	"github.com/metaids/metaids/ingest"
	"github.com/metaids/metaids/schemas"
)

// readZeek reads a Zeek conn.log TSV: the flow through the ingest zeek-tsv
// decoder (which honours #separator, #fields, #unset_field and
// #empty_field), the labels from Stratosphere's label columns, named in
// #fields as label and detailed-label (or detailedlabel, detailed_label).
// Stratosphere's files sometimes join their last columns with spaces instead
// of the separator; both are accepted. A log without label columns reads as
// unlabelled.
//
// Labels: Benign (or Normal) is Benign; Background is Unlabelled, since the
// labeller could not tell; Malicious is the family in detailed-label
// ("External-Attack-to-Device"), or "malicious" when that is empty; any
// other value is taken as the family.
func (l *Loader) readZeek(ls *lines, name, topic string) ([]Record, error) {
	dec := l.dec[ingest.FormatZeekTSV]
	src := schemas.Coord{Topic: topic}
	sep := []byte{'\t'}
	unset, empty := "-", "(empty)"
	var fields []string
	labelCol, detailCol := -1, -1
	var (
		out []Record
		buf []schemas.Flow
	)
	for {
		row, n, ok := ls.line()
		if !ok {
			break
		}
		if len(bytes.TrimSpace(row)) == 0 {
			continue
		}
		src.Offset = int64(n)
		if row[0] == '#' {
			// The decoder keeps its own copy of the layout; the label
			// columns are ours.
			dec.Decode(nil, row, src)
			key, val := zeekHeader(row, sep)
			switch key {
			case "#separator":
				if s := unescapeHex(val); len(s) > 0 {
					sep = []byte(s)
				}
			case "#unset_field":
				unset = val
			case "#empty_field":
				empty = val
			case "#fields":
				fields = splitZeek([]byte(val), sep)
				labelCol, detailCol = -1, -1
				for i, f := range fields {
					switch f {
					case "label":
						labelCol = i
					case "detailed-label", "detailedlabel", "detailed_label":
						detailCol = i
					}
				}
			}
			continue
		}
		l.Stats.Rows++
		var label, detail string
		if labelCol >= 0 {
			// splitZeek also splits columns joined by spaces. Should the count
			// still differ (an empty trailing column lost), the label columns,
			// which Stratosphere appends last, are counted from the end.
			cols := splitZeek(row, sep)
			at := func(i int) (string, bool) {
				if len(cols) != len(fields) {
					i = len(cols) - (len(fields) - i)
				}
				if i < 0 || i >= len(cols) {
					return "", false
				}
				return cols[i], true
			}
			if label, ok = at(labelCol); !ok {
				l.Stats.reject("label:missing")
				continue
			}
			if detailCol >= 0 {
				detail, _ = at(detailCol)
			}
		}
		if label == unset || label == empty {
			label = ""
		}
		if detail == unset || detail == empty {
			detail = ""
		}
		var reason string
		if buf, reason = decodeRow(dec, buf, row, src); reason != "" {
			l.Stats.reject(reason)
			continue
		}
		r := Record{Flow: buf[0], RawLabel: label, Format: FormatZeek}
		r.Label = stratosphereLabel(label, detail)
		if detail != "" {
			r.RawLabel = label + "/" + detail
		}
		out = append(out, r)
	}
	if err := ls.err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return out, nil
}

func stratosphereLabel(label, detail string) string {
	low := strings.ToLower(label)
	switch {
	case label == "":
		return Unlabelled
	case low == "benign" || low == "normal" || strings.HasPrefix(low, "from-normal") || strings.HasPrefix(low, "to-normal"):
		return Benign
	case strings.HasPrefix(low, "background"):
		return Unlabelled
	case low == "malicious":
		if detail != "" {
			return detail
		}
		return "malicious"
	}
	return label
}

// zeekHeader splits a '#' line into its key and value. The #separator line
// is always space-separated.
func zeekHeader(line, sep []byte) (key, value string) {
	s := string(line)
	if strings.HasPrefix(s, "#separator") {
		return "#separator", strings.TrimLeft(s[len("#separator"):], " \t")
	}
	if k, v, ok := strings.Cut(s, string(sep)); ok {
		return k, v
	}
	if i := strings.IndexAny(s, " \t"); i >= 0 {
		return s[:i], strings.TrimLeft(s[i:], " \t")
	}
	return s, ""
}

// splitZeek splits a line at sep; a column that itself holds spaces (the
// joined trailing columns) is split at the spaces too, so #fields and rows
// written either way agree.
func splitZeek(line, sep []byte) []string {
	var out []string
	for _, c := range bytes.Split(line, sep) {
		if bytes.ContainsAny(c, " ") {
			out = append(out, strings.Fields(string(c))...)
			continue
		}
		out = append(out, string(c))
	}
	return out
}

// unescapeHex decodes the \xHH escapes of #separator.
func unescapeHex(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && s[i+1] == 'x' {
			if v, err := strconv.ParseUint(s[i+2:i+4], 16, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
