package dataset

import (
	"bytes"
	"fmt"

	"github.com/metaids/metaids/ingest"
	"github.com/metaids/metaids/schemas"
)

// readCIC reads CICFlowMeter CSV: the flow through the ingest cic decoder,
// the label from the Label column (CIC-IDS2017 writes " Label"). BENIGN
// becomes Benign; every other value is a family name, kept as written
// ("DoS Slowloris", "Web Attack - Brute Force").
func (l *Loader) readCIC(ls *lines, name, topic string) ([]Record, error) {
	dec := l.dec[ingest.FormatCIC]
	header, _, _ := ls.line()
	labelCol := -1
	for i, col := range bytes.Split(header, []byte{','}) {
		if string(bytes.ToLower(bytes.TrimSpace(col))) == "label" {
			labelCol = i
		}
	}
	if labelCol < 0 {
		return nil, fmt.Errorf("%w: CICFlowMeter header has no Label column", ErrBadRow)
	}
	src := schemas.Coord{Topic: topic}
	if _, err := dec.Decode(nil, header, src); err != nil {
		if out, _ := ingest.Outcome(err); out != "skipped" {
			return nil, fmt.Errorf("CICFlowMeter header: %w", err)
		}
	}
	var (
		out []Record
		buf []schemas.Flow
	)
	for {
		row, n, ok := ls.line()
		if !ok {
			break
		}
		if len(bytes.Trim(row, ", \t")) == 0 {
			continue // rows of commas only, as ingest skips them
		}
		l.Stats.Rows++
		// The 2017 CSVs repeat their header in the middle of some files.
		if bytes.Contains(bytes.ToLower(row), []byte("flow duration")) {
			l.Stats.Rows--
			dec.Decode(nil, row, src)
			continue
		}
		label, ok := csvField(row, labelCol)
		if !ok {
			l.Stats.reject("label:missing")
			continue
		}
		src.Offset = int64(n)
		var reason string
		if buf, reason = decodeRow(dec, buf, row, src); reason != "" {
			l.Stats.reject(reason)
			continue
		}
		raw := string(bytes.TrimSpace(label))
		out = append(out, Record{Flow: buf[0], Label: canonicalLabel(raw), RawLabel: raw, Format: FormatCIC})
	}
	if err := ls.err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return out, nil
}

// csvField returns column i of an unquoted CSV row (CICFlowMeter never
// quotes).
func csvField(row []byte, i int) ([]byte, bool) {
	for n := 0; ; n++ {
		col, rest, more := bytes.Cut(row, []byte{','})
		if n == i {
			return col, true
		}
		if !more {
			return nil, false
		}
		row = rest
	}
}
