package eval

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/metaids/metaids/dataset"
	"github.com/metaids/metaids/ingest"
	"github.com/metaids/metaids/schemas"
)

// inputTopic returns the input topic (without prefix) and ingest format a
// record of format f is replayed on. CICFlowMeter CSV and Zeek TSV go as
// the lines of their files, as a file tailer ships them. No shipper writes
// LUFlow's Cisco Joy CSV, and ingest has no decoder for it, so its flows go
// as the project's own Avro schemas.Flow, the format any custom shipper
// would be pointed at.
func inputTopic(f dataset.Format) (topic, format string) {
	switch f {
	case dataset.FormatCIC:
		return "flows.cic", ingest.FormatCIC
	case dataset.FormatZeek:
		return "flows.zeek", ingest.FormatZeekTSV
	}
	return "flows.avro", ingest.FormatAvro
}

// admit drops the evaluated rows ingest's validator would dead-letter,
// judging them as ingest does in replay mode (each against the latest flow
// of its input partition) in replay order, and returns the count dropped
// by reason. Both modes evaluate the same rows: live, ingest would
// dead-letter them; offline they would be scored though no scorer ever
// sees them.
func admit(es *evalSet) (map[string]int, error) {
	vc := ingest.DefaultValidatorConfig()
	vc.Replay = true
	v, err := ingest.NewValidator(vc, nil)
	if err != nil {
		return nil, err
	}
	dropped := map[string]int{}
	kept := es.rows[:0]
	for _, i := range es.rows {
		r := &es.d.Records[i]
		f := r.Flow
		topic, _ := inputTopic(r.Format)
		f.Source = schemas.Coord{Topic: topic}
		if err := v.Check([]schemas.Flow{f}); err != nil {
			_, reason := ingest.Outcome(err)
			dropped[reason]++
			continue
		}
		kept = append(kept, i)
	}
	es.rows = kept
	return dropped, nil
}

// message is one record of the replay.
type message struct {
	topic string // without prefix
	value []byte
	row   int // the evaluated row it carries; −1 for a header line
}

// replayPlan is the replay: every record in the order it is produced, all
// to partition 0 of their topic, and the flow id ingest gives each
// evaluated row (it derives ids from the record's topic, partition and
// offset, and the topics start empty).
type replayPlan struct {
	msgs    []message
	formats map[string]string // topic → ingest format
	flowID  []uint64          // per evaluated row
	rows    int               // messages carrying a row
}

// buildReplay lays out the replay of es's evaluated rows in time order.
// Line formats send the header their file gave the row (the CSV header,
// the block of Zeek '#' lines) before it whenever it differs from the last
// header sent on that topic, since ingest keeps the header state of each
// input partition: every file's first row brings its header, as a tailer
// starting on the file would send it.
func buildReplay(es *evalSet, prefix string) (*replayPlan, error) {
	files := map[string]*lineFile{}
	byBase := map[string]string{}
	for _, p := range es.files {
		b := filepath.Base(p)
		if q, dup := byBase[b]; dup {
			return nil, fmt.Errorf("replay: files %s and %s share a name, which the records' coordinates cannot tell apart", q, p)
		}
		byBase[b] = p
	}
	codecs, err := schemas.NewCodecs(nil)
	if err != nil {
		return nil, err
	}
	plan := &replayPlan{formats: map[string]string{}, flowID: make([]uint64, len(es.rows))}
	lastHeader := map[string][]byte{}
	offset := map[string]int64{}
	add := func(topic string, value []byte, row int) {
		if row >= 0 {
			plan.flowID[row] = schemas.FlowID(schemas.Coord{Topic: prefix + topic, Offset: offset[topic]})
			plan.rows++
		}
		plan.msgs = append(plan.msgs, message{topic: topic, value: value, row: row})
		offset[topic]++
	}
	for j := range es.rows {
		r := &es.d.Records[es.rows[j]]
		topic, format := inputTopic(r.Format)
		plan.formats[topic] = format
		if format == ingest.FormatAvro {
			f := r.Flow
			f.Source = schemas.Coord{}
			b, err := codecs.AppendFlow(nil, &f)
			if err != nil {
				return nil, fmt.Errorf("replay: encode flow of %s line %d: %w", r.Flow.Source.Topic, r.Flow.Source.Offset, err)
			}
			add(topic, b, j)
			continue
		}
		base := r.Flow.Source.Topic
		lf := files[base]
		if lf == nil {
			path, ok := byBase[base]
			if !ok {
				return nil, fmt.Errorf("replay: no file %s among the data", base)
			}
			if lf, err = readLines(path, r.Format); err != nil {
				return nil, err
			}
			files[base] = lf
		}
		n := int(r.Flow.Source.Offset) - 1
		if n < 0 || n >= len(lf.lines) {
			return nil, fmt.Errorf("replay: %s has no line %d", base, n+1)
		}
		if h := lf.header[n]; h >= 0 {
			hdr := lf.blocks[h]
			if joined := bytes.Join(hdr, []byte{'\n'}); !bytes.Equal(joined, lastHeader[topic]) {
				for _, l := range hdr {
					add(topic, l, -1)
				}
				lastHeader[topic] = joined
			}
		}
		add(topic, lf.lines[n], j)
	}
	return plan, nil
}

// lineFile is a dataset file's lines with, for each, the header block that
// describes it.
type lineFile struct {
	lines  [][]byte
	header []int      // per line: index into blocks, −1 for none
	blocks [][][]byte // header blocks: their lines
}

// readLines reads a gzipped or plain file. Header lines are, for Zeek, every
// run of '#' lines; for CICFlowMeter, every line naming the "Flow Duration"
// column (the 2017 files repeat their header mid-file).
func readLines(path string, f dataset.Format) (*lineFile, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("replay: %w", err)
	}
	defer fh.Close()
	br := bufio.NewReaderSize(fh, 1<<16)
	var r io.Reader = br
	if magic, err := br.Peek(2); err == nil && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("replay %s: %w", path, err)
		}
		defer zr.Close()
		r = zr
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1<<16), 1<<20)
	lf := &lineFile{}
	cur, inBlock := -1, false
	for sc.Scan() {
		l := bytes.Clone(bytes.TrimRight(sc.Bytes(), "\r"))
		isHeader := false
		switch f {
		case dataset.FormatZeek:
			isHeader = len(l) > 0 && l[0] == '#'
		case dataset.FormatCIC:
			isHeader = bytes.Contains(bytes.ToLower(l), []byte("flow duration"))
		}
		if isHeader {
			if !inBlock {
				lf.blocks = append(lf.blocks, nil)
				cur = len(lf.blocks) - 1
			}
			lf.blocks[cur] = append(lf.blocks[cur], l)
		}
		inBlock = isHeader && f == dataset.FormatZeek
		lf.lines = append(lf.lines, l)
		lf.header = append(lf.header, cur)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("replay %s: %w", path, err)
	}
	return lf, nil
}
