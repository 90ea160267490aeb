package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/metaids/metaids/stream"
)

// `metaids replay` is a log shipper for files: it produces their records,
// in their own format, to an input topic for the ingest stage, the way a
// file tailer (rsyslog omkafka, syslog-ng, Filebeat) does. Each non-empty
// line is one message, as those tailers send it: JSON lines (goflow2,
// pmacct, nProbe, Suricata, Zeek JSON, nfdump json-log), Zeek TSV, AWS VPC
// logs and CICFlowMeter CSV alike.
//
// Header context. Zeek TSV (#fields, #separator, ...), VPC and CSV files
// describe their columns in header lines, and the ingest decoders keep that
// header state per topic partition. Replay therefore sends a file's header
// lines as messages of their own, in file order before its rows, and sends
// every line of a file to one partition, one file after another: the stage
// sees each header before the rows it describes, and a new file's header
// replaces the last one's. Unkeyed (the default), file i goes to partition
// i mod the topic's partitions, so a directory of files spreads over the
// partitions; with -replay.key every message carries that key and all files
// go to its partition. Two replays must not write one partition at once, or
// their headers and rows interleave.

// replaySettings are replay's own settings, under "replay".
type replaySettings struct {
	// Topic is the input topic to write, without -kafka.topic-prefix.
	// Required.
	Topic string `yaml:"topic" help:"input topic to write, without the prefix (e.g. flows.zeek)"`
	// Rate is the records per second to send (for line formats one flow
	// per data line); 0 sends as fast as the broker acknowledges. Default 0.
	Rate float64 `yaml:"rate" help:"records (flows) per second; 0 sends as fast as possible"`
	// Key is the key of every message; empty sends them unkeyed, each file
	// pinned to one partition. Default "".
	Key string `yaml:"key" help:"message key; empty sends unkeyed, one partition per file"`
	// Partitions is the partition count used if replay has to create the
	// topic; an existing topic is left as it is. Default 4.
	Partitions int `yaml:"partitions" help:"partitions of the topic if replay creates it"`
}

type replayConfig struct {
	Kafka  stream.Config  `yaml:"kafka"`
	Replay replaySettings `yaml:"replay"`
	Log    LogConfig      `yaml:"log"`
}

func defaultReplayConfig() replayConfig {
	return replayConfig{
		Kafka:  stream.DefaultConfig(),
		Replay: replaySettings{Partitions: 4},
		Log:    LogConfig{Format: "text", Level: "info"},
	}
}

func (c replayConfig) validate() error {
	var errs []error
	errs = append(errs, c.Kafka.Validate())
	if c.Replay.Topic == "" {
		errs = append(errs, errors.New("-replay.topic: required, e.g. flows.zeek"))
	} else if strings.ContainsFunc(c.Replay.Topic, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-')
	}) {
		errs = append(errs, fmt.Errorf("-replay.topic: %q holds characters Kafka does not allow (letters, digits, '.', '_', '-')", c.Replay.Topic))
	}
	if c.Replay.Rate < 0 || math.IsNaN(c.Replay.Rate) || math.IsInf(c.Replay.Rate, 0) {
		errs = append(errs, fmt.Errorf("-replay.rate: must be a non-negative number, got %v", c.Replay.Rate))
	}
	if c.Replay.Partitions < 1 {
		errs = append(errs, fmt.Errorf("-replay.partitions: must be at least 1, got %d", c.Replay.Partitions))
	}
	return errors.Join(errs...)
}

func runReplay(ctx context.Context, args []string, stderr io.Writer) int {
	cfg := defaultReplayConfig()
	fs := flag.NewFlagSet("metaids replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: metaids replay -replay.topic TOPIC [flags] FILE|DIR|GLOB ...\n\nFiles may be gzip-compressed. Flags:")
		fs.PrintDefaults()
	}
	b := bind(fs, &cfg)
	if err := b.load(args); err != nil {
		if err == flag.ErrHelp {
			return exitOK
		}
		fmt.Fprintf(stderr, "metaids replay: %v\n", err)
		return exitUsage
	}
	log, err := newLogger(stderr, cfg.Log)
	if err != nil {
		fmt.Fprintf(stderr, "metaids replay: %v\n", err)
		return exitUsage
	}
	if err := cfg.validate(); err != nil {
		fmt.Fprintf(stderr, "metaids replay: invalid configuration:\n%v\n", err)
		return exitUsage
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "metaids replay: no files given")
		return exitUsage
	}
	files, err := expandFiles(fs.Args())
	if err != nil {
		fmt.Fprintf(stderr, "metaids replay: %v\n", err)
		return exitUsage
	}
	if b.check {
		fmt.Fprintf(stderr, "metaids replay: configuration OK (%d files)\n", len(files))
		return exitOK
	}
	st, err := replay(ctx, cfg.Kafka, cfg.Replay, files, log)
	if err != nil {
		log.Error("replay failed", "err", err, "records", st.Records, "files", st.Files)
		return exitRuntime
	}
	log.Info("replayed", "topic", cfg.Kafka.Topic(cfg.Replay.Topic), "files", st.Files, "records", st.Records,
		"bytes", st.Bytes, "seconds", st.Elapsed.Seconds(), "records_per_second", st.rate(), "interrupted", ctx.Err() != nil)
	return exitOK
}

// replayStats says what a replay sent.
type replayStats struct {
	Files   int
	Records int
	Bytes   int64
	Elapsed time.Duration
}

func (s replayStats) rate() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Records) / s.Elapsed.Seconds()
}

// replay produces the lines of files to set.Topic and returns once all of
// them are acknowledged, or when ctx is cancelled (without error).
func replay(ctx context.Context, kcfg stream.Config, set replaySettings, files []string, log *slog.Logger) (replayStats, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	start := time.Now()
	topic := kcfg.Topic(set.Topic)
	if err := stream.EnsureTopics(ctx, kcfg, []stream.TopicSpec{{Name: topic, Partitions: set.Partitions}}); err != nil {
		return replayStats{}, fmt.Errorf("create topic: %w", err)
	}
	p, err := stream.NewProducer(kcfg, log, nil)
	if err != nil {
		return replayStats{}, err
	}
	defer p.Close()
	parts, err := p.Partitions(ctx, topic)
	if err != nil {
		return replayStats{}, err
	}

	// One chunk is one Produce call. Unpaced, a few writer batches per
	// call keep the broker busy without waiting on -kafka.writer.batch-
	// timeout; paced, about twenty calls a second keep the rate smooth.
	chunk := 4 * kcfg.Writer.BatchSize
	if set.Rate > 0 {
		chunk = max(1, min(chunk, int(set.Rate/20)))
	}
	// Reading and gunzipping overlap with producing: the reader runs one
	// chunk ahead.
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	chunks := make(chan []kafka.Message, 2)
	readErr := make(chan error, 1)
	var stats replayStats
	go func() {
		defer close(chunks)
		r := lineReader{
			topic:   topic,
			key:     set.Key,
			maxLine: int(kcfg.Writer.BatchBytes) - 1024,
			chunk:   chunk,
			out:     chunks,
		}
		for i, f := range files {
			part := -1
			if set.Key == "" {
				part = i % parts
			}
			if err := r.file(rctx, f, part); err != nil {
				readErr <- err
				return
			}
			log.Debug("file read", "file", f, "partition", part)
		}
		if err := r.flush(rctx); err != nil {
			readErr <- err
		}
		stats.Files = len(files)
		stats.Bytes = r.bytes
	}()

	pace := pacer{rate: set.Rate, start: time.Now()}
	for c := range chunks {
		if err := pace.wait(ctx, len(c)); err != nil {
			break // cancelled
		}
		if err := p.Produce(ctx, c...); err != nil {
			if ctx.Err() != nil {
				break
			}
			cancel()
			for range chunks {
			}
			return stats, fmt.Errorf("produce to %s: %w", topic, err)
		}
		stats.Records += len(c)
	}
	cancel()
	for range chunks {
	}
	stats.Elapsed = time.Since(start)
	select {
	case err := <-readErr:
		if ctx.Err() == nil {
			return stats, err
		}
	default:
	}
	return stats, nil
}

// lineReader turns files into chunks of messages, one per non-empty line.
type lineReader struct {
	topic   string
	key     string
	maxLine int
	chunk   int
	out     chan<- []kafka.Message

	cur   []kafka.Message
	arena []byte // the current chunk's line bytes, so a chunk is two allocations
	bytes int64
}

func (r *lineReader) file(ctx context.Context, path string, partition int) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	in, err := decompressed(f)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), r.maxLine+2)
	var key []byte
	if r.key != "" {
		key = []byte(r.key)
	}
	line := 0
	for sc.Scan() {
		line++
		b := sc.Bytes() // without "\n" or "\r\n", as tailers ship lines
		if len(b) == 0 {
			continue
		}
		if len(b) > r.maxLine {
			return fmt.Errorf("%s:%d: line of %d bytes is larger than -kafka.writer.batch-bytes allows", path, line, len(b))
		}
		r.bytes += int64(len(b))
		if len(r.arena)+len(b) > cap(r.arena) {
			r.arena = make([]byte, 0, max(1<<20, len(b)))
		}
		start := len(r.arena)
		r.arena = append(r.arena, b...)
		m := kafka.Message{Topic: r.topic, Key: key, Value: r.arena[start:len(r.arena):len(r.arena)]}
		if partition >= 0 {
			m = stream.AtPartition(m, partition)
		}
		r.cur = append(r.cur, m)
		if len(r.cur) >= r.chunk {
			if err := r.flush(ctx); err != nil {
				return err
			}
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return fmt.Errorf("%s:%d: line longer than %d bytes (-kafka.writer.batch-bytes)", path, line+1, r.maxLine)
		}
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

func (r *lineReader) flush(ctx context.Context) error {
	if len(r.cur) == 0 {
		return nil
	}
	select {
	case r.out <- r.cur:
	case <-ctx.Done():
		return ctx.Err()
	}
	r.cur = make([]kafka.Message, 0, r.chunk)
	return nil
}

// decompressed returns r itself, or its gzip stream when it starts with
// gzip's magic number: names lie more often than magic numbers.
func decompressed(r io.Reader) (io.Reader, error) {
	br := bufio.NewReaderSize(r, 256<<10)
	magic, err := br.Peek(2)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if bytes.Equal(magic, []byte{0x1f, 0x8b}) {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		return zr, nil
	}
	return br, nil
}

// pacer spaces chunks so that records go out at rate per second on
// average, measured from start; rate 0 does not wait.
type pacer struct {
	rate  float64
	start time.Time
	sent  int
}

func (p *pacer) wait(ctx context.Context, n int) error {
	defer func() { p.sent += n }()
	if p.rate <= 0 {
		return ctx.Err()
	}
	due := p.start.Add(time.Duration(float64(p.sent) / p.rate * float64(time.Second)))
	d := time.Until(due)
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// expandFiles resolves files, directories (their regular files,
// recursively, but not dot files, README* or *.md) and globs to a list in
// the order given, each group sorted, without duplicates. A pattern that
// matches nothing is an error: a typo must not replay nothing quietly.
func expandFiles(patterns []string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	add := func(p string) {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	for _, pat := range patterns {
		matches := []string{pat}
		if _, err := os.Stat(pat); err != nil {
			m, gerr := filepath.Glob(pat)
			if gerr != nil {
				return nil, fmt.Errorf("%s: %w", pat, gerr)
			}
			if len(m) == 0 {
				return nil, fmt.Errorf("%s: no such file, directory or match", pat)
			}
			matches = m
		}
		for _, m := range matches {
			fi, err := os.Stat(m)
			if err != nil {
				return nil, err
			}
			if !fi.IsDir() {
				add(m)
				continue
			}
			var inDir []string
			err = filepath.WalkDir(m, func(p string, d fs.DirEntry, err error) error {
				if err != nil {
					return err
				}
				name := d.Name()
				if p != m && strings.HasPrefix(name, ".") {
					if d.IsDir() {
						return filepath.SkipDir
					}
					return nil
				}
				if d.Type().IsRegular() && !strings.HasPrefix(name, "README") && !strings.HasSuffix(name, ".md") {
					inDir = append(inDir, p)
				}
				return nil
			})
			if err != nil {
				return nil, err
			}
			if len(inDir) == 0 {
				return nil, fmt.Errorf("%s: no files in directory", m)
			}
			slices.Sort(inDir)
			for _, p := range inDir {
				add(p)
			}
		}
	}
	return out, nil
}
