package dataset

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/metaids/metaids/ingest"
	"github.com/metaids/metaids/schemas"
)

// Errors.
var (
	// ErrUnknownFormat means a file is none of the formats in Format.
	ErrUnknownFormat = errors.New("unknown dataset format")
	// ErrNoData means the patterns matched no file, or the files held no
	// flow.
	ErrNoData = errors.New("no data")
	// ErrBadRow means a row could not be read; rows the ingest decoders
	// reject are counted in Stats instead, as ingest would dead-letter them.
	ErrBadRow = errors.New("bad row")
)

// maxLine bounds one input line; CICFlowMeter rows are about 1.5 KB.
const maxLine = 1 << 20

// Stats counts what a Loader read.
type Stats struct {
	Files int
	Rows  int // data rows, header lines excluded
	Flows int // rows that became records
	// Rejected counts rows the ingest decoders rejected, by reason (what
	// ingest would dead-letter), and rows whose label could not be read.
	Rejected map[string]int
	// Labels counts records by raw label, for the report.
	Labels map[string]int
}

func (s *Stats) reject(reason string) {
	if s.Rejected == nil {
		s.Rejected = map[string]int{}
	}
	s.Rejected[reason]++
}

func (s *Stats) add(recs []Record) {
	if s.Labels == nil {
		s.Labels = map[string]int{}
	}
	for i := range recs {
		s.Labels[recs[i].RawLabel]++
	}
	s.Flows += len(recs)
}

// Loader reads dataset files through the ingest decoders. It is not safe
// for concurrent use.
type Loader struct {
	cfg   Config
	local map[uint32]bool
	dec   map[string]ingest.Decoder
	Stats Stats
}

// NewLoader returns a loader; cfg supplies the LUFlow settings.
func NewLoader(cfg Config) (*Loader, error) {
	local, err := cfg.localAS()
	if err != nil {
		return nil, fmt.Errorf("dataset: %w", err)
	}
	dc := ingest.DefaultDecoderConfig()
	// Dataset rows are checked whole by the line cap below, not per record.
	dc.MaxRecordBytes = maxLine
	dec, err := ingest.NewDecoders(dc, nil)
	if err != nil {
		return nil, fmt.Errorf("dataset: %w", err)
	}
	return &Loader{cfg: cfg, local: local, dec: dec}, nil
}

// Load expands patterns (files, directories or globs; see Expand) and reads
// every file with a new Loader.
func Load(patterns []string, cfg Config) ([]Record, Stats, error) {
	files, err := Expand(patterns)
	if err != nil {
		return nil, Stats{}, err
	}
	l, err := NewLoader(cfg)
	if err != nil {
		return nil, Stats{}, err
	}
	var out []Record
	for _, f := range files {
		recs, err := l.ReadFile(f)
		if err != nil {
			return nil, l.Stats, err
		}
		out = append(out, recs...)
	}
	if len(out) == 0 {
		return nil, l.Stats, fmt.Errorf("dataset %s: %w: no flow in %d files", strings.Join(patterns, ","), ErrNoData, len(files))
	}
	return out, l.Stats, nil
}

// Expand resolves patterns to a sorted, de-duplicated list of files. A
// pattern is a file, a directory (its regular files, recursively, except
// README*, *.md and dot files) or a glob (filepath.Match syntax). A pattern
// that matches nothing is an error, so a typo is not silently an empty
// training set.
func Expand(patterns []string) ([]string, error) {
	seen := map[string]bool{}
	var files []string
	add := func(p string) {
		if !seen[p] {
			seen[p] = true
			files = append(files, p)
		}
	}
	for _, p := range patterns {
		matches := []string{p}
		if strings.ContainsAny(p, "*?[") {
			m, err := filepath.Glob(p)
			if err != nil {
				return nil, fmt.Errorf("dataset pattern %q: %w", p, err)
			}
			matches = m
		}
		if len(matches) == 0 {
			return nil, fmt.Errorf("dataset pattern %q: %w: matches no file", p, ErrNoData)
		}
		for _, m := range matches {
			st, err := os.Stat(m)
			if err != nil {
				return nil, fmt.Errorf("dataset: %w", err)
			}
			if !st.IsDir() {
				add(m)
				continue
			}
			err = filepath.WalkDir(m, func(path string, d fs.DirEntry, err error) error {
				if err != nil {
					return err
				}
				name := d.Name()
				if d.IsDir() {
					if path != m && strings.HasPrefix(name, ".") {
						return filepath.SkipDir
					}
					return nil
				}
				if strings.HasPrefix(name, ".") || strings.HasPrefix(strings.ToUpper(name), "README") || strings.HasSuffix(name, ".md") {
					return nil
				}
				if d.Type().IsRegular() {
					add(path)
				}
				return nil
			})
			if err != nil {
				return nil, fmt.Errorf("dataset directory %s: %w", m, err)
			}
		}
	}
	sort.Strings(files)
	return files, nil
}

// ReadFile reads one file, gunzipping it when it starts with the gzip magic.
func (l *Loader) ReadFile(path string) ([]Record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("dataset: %w", err)
	}
	defer f.Close()
	recs, err := l.Read(f, filepath.Base(path))
	if err != nil {
		return nil, fmt.Errorf("dataset %s: %w", path, err)
	}
	return recs, nil
}

// Read reads one file's content, gzipped or not, sniffing its format from
// the first line. name becomes the Topic of the flows' Coord (the Offset is
// the 1-based line number), so flow ids are stable across runs.
func (l *Loader) Read(r io.Reader, name string) ([]Record, error) {
	br := bufio.NewReaderSize(r, 1<<16)
	if magic, err := br.Peek(2); err == nil && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, err
		}
		defer zr.Close()
		br = bufio.NewReaderSize(zr, 1<<16)
	}
	lines := newLines(br)
	first, ok := lines.peek()
	if !ok {
		if err := lines.err(); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%w: empty file", ErrNoData)
	}
	l.Stats.Files++
	// The file name is the topic: decoder header state is per stream, and
	// every format read through a decoder starts with its header, so a
	// second file of the same name starts afresh.
	topic := name
	var (
		recs []Record
		err  error
	)
	switch sniff(first) {
	case FormatCIC:
		recs, err = l.readCIC(lines, name, topic)
	case FormatZeek:
		recs, err = l.readZeek(lines, name, topic)
	case FormatLUFlow:
		recs, err = l.readLUFlow(lines, topic)
	default:
		return nil, fmt.Errorf("%w: first line %.60q", ErrUnknownFormat, first)
	}
	if err != nil {
		return nil, err
	}
	l.Stats.add(recs)
	return recs, nil
}

// sniff names the format whose header starts a file.
func sniff(first []byte) Format {
	switch {
	case len(first) > 0 && first[0] == '#':
		return FormatZeek
	case bytes.Contains(first, []byte("avg_ipt")) && bytes.Contains(first, []byte("time_start")):
		return FormatLUFlow
	case bytes.Contains(bytes.ToLower(first), []byte("flow duration")):
		return FormatCIC
	}
	return ""
}

// lines reads a file line by line with a one-line look-ahead, counting lines
// from 1.
type lines struct {
	sc     *bufio.Scanner
	next   []byte
	have   bool
	lineNo int
}

func newLines(r io.Reader) *lines {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1<<16), maxLine)
	return &lines{sc: sc}
}

func (l *lines) peek() ([]byte, bool) {
	if !l.have {
		if !l.sc.Scan() {
			return nil, false
		}
		l.next, l.have = bytes.TrimRight(l.sc.Bytes(), "\r"), true
	}
	return l.next, true
}

// line returns the next line (valid until the following call) and its number.
func (l *lines) line() ([]byte, int, bool) {
	b, ok := l.peek()
	if !ok {
		return nil, l.lineNo, false
	}
	l.have = false
	l.lineNo++
	return b, l.lineNo, true
}

func (l *lines) err() error { return l.sc.Err() }

// decodeRow runs one row through an ingest decoder and returns the single
// flow it yields, or the outcome reason for the stats.
func decodeRow(dec ingest.Decoder, buf []schemas.Flow, row []byte, src schemas.Coord) ([]schemas.Flow, string) {
	buf, err := dec.Decode(buf[:0], row, src)
	if err != nil {
		outcome, reason := ingest.Outcome(err)
		return buf, outcome + ":" + reason
	}
	if len(buf) != 1 {
		return buf, "rows:" + fmt.Sprint(len(buf))
	}
	return buf, ""
}
