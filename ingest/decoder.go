package ingest

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/metaids/metaids/schemas"
)

// Decoder turns one input record (a Kafka message value) into flows.
//
// Decode appends the record's flows to dst and returns the extended slice;
// flow i of the record gets Source = src with Index i. A record is all or
// nothing: on failure Decode returns dst with its original length and a
// *RecordError, or a *Skip when the record is understood but holds no flow
// (a header line, a non-flow event). On success it has appended at least one
// flow. It never keeps rec after returning and never panics.
//
// Every Decoder returned by NewDecoders is safe for concurrent use. Formats
// with per-stream state (Zeek TSV, VPC and CICFlowMeter headers) keep it per
// topic and partition, so the records of one partition must be decoded in
// offset order.
type Decoder interface {
	Decode(dst []schemas.Flow, rec []byte, src schemas.Coord) ([]schemas.Flow, error)
}

// Format names, as used in DecoderConfig.Formats and as keys of the map
// returned by NewDecoders.
const (
	FormatGoflow2  = "goflow2"   // goflow2 v2 -format json
	FormatPmacct   = "pmacct"    // pmacct nfacctd/sfacctd/pmacctd kafka plugin JSON
	FormatNprobe   = "nprobe"    // nProbe JSON, NetFlow v9 template names or ids
	FormatZeek     = "zeek"      // Zeek conn.log, JSON or TSV, told apart per record
	FormatZeekJSON = "zeek-json" // Zeek conn.log JSON lines
	FormatZeekTSV  = "zeek-tsv"  // Zeek conn.log TSV with # headers
	FormatSuricata = "suricata"  // Suricata EVE JSON flow and netflow events
	FormatVPC      = "vpc"       // AWS VPC Flow Logs text, default or custom format
	FormatCIC      = "cic"       // CICFlowMeter CSV (CIC-IDS2017/2018 and the improved release)
	FormatNfdump   = "nfdump"    // nfdump -o json
	FormatAvro     = "avro"      // schemas Flow, Avro with Confluent framing
	FormatAuto     = "auto"      // sniffed per record
)

// Formats lists every format name NewDecoders knows.
func Formats() []string {
	return []string{
		FormatGoflow2, FormatPmacct, FormatNprobe, FormatZeek, FormatZeekJSON,
		FormatZeekTSV, FormatSuricata, FormatVPC, FormatCIC, FormatNfdump,
		FormatAvro, FormatAuto,
	}
}

func knownFormat(name string) bool {
	for _, f := range Formats() {
		if f == name {
			return true
		}
	}
	return false
}

// DecoderConfig configures the decoders built by NewDecoders.
type DecoderConfig struct {
	// Formats maps an input topic to the name of the format it carries.
	// A topic not listed here uses FormatFor's rule. Default: empty.
	Formats map[string]string `yaml:"formats"`
	// MaxRecordBytes is the largest record decoded; a larger one is
	// dead-lettered as too_large without being parsed, so one runaway
	// tailer chunk cannot stall the stage. Default: 1 MiB.
	MaxRecordBytes int `yaml:"max-record-bytes"`
	// TimeZone is the IANA zone name for timestamps written without a zone:
	// CICFlowMeter's Timestamp, nfdump's first/last and pmacct's stamp_*
	// and non-epoch timestamps. Default: "UTC".
	TimeZone string `yaml:"time-zone"`
}

// DefaultDecoderConfig returns the defaults documented on DecoderConfig.
func DefaultDecoderConfig() DecoderConfig {
	return DecoderConfig{MaxRecordBytes: 1 << 20, TimeZone: "UTC"}
}

// Validate reports every problem with the configuration.
func (c DecoderConfig) Validate() error {
	var errs []error
	topics := make([]string, 0, len(c.Formats))
	for t := range c.Formats {
		topics = append(topics, t)
	}
	sort.Strings(topics)
	for _, t := range topics {
		if !knownFormat(c.Formats[t]) {
			errs = append(errs, fmt.Errorf("-ingest.formats: topic %q: %w %q (want one of %s)",
				t, ErrUnknownFormat, c.Formats[t], strings.Join(Formats(), ", ")))
		}
	}
	if c.MaxRecordBytes < 1 {
		errs = append(errs, fmt.Errorf("-ingest.max-record-bytes: must be at least 1, got %d", c.MaxRecordBytes))
	}
	if _, err := time.LoadLocation(c.TimeZone); err != nil || c.TimeZone == "" {
		errs = append(errs, fmt.Errorf("-ingest.time-zone: unknown zone %q", c.TimeZone))
	}
	return errors.Join(errs...)
}

// FormatFor names the format of topic: the entry in Formats if there is one;
// otherwise, for the conventional topic name "flows.<format>" (such as
// flows.goflow2), that format; otherwise "auto".
func (c DecoderConfig) FormatFor(topic string) string {
	if f, ok := c.Formats[topic]; ok {
		return f
	}
	if i := strings.LastIndexByte(topic, '.'); i >= 0 && knownFormat(topic[i+1:]) {
		return topic[i+1:]
	}
	return FormatAuto
}

// NewDecoders builds one Decoder per format name in Formats. Each enforces
// cfg.MaxRecordBytes before parsing. codecs decodes the avro format; nil
// means schemas.NewCodecs(nil), the fixed schema ids.
func NewDecoders(cfg DecoderConfig, codecs *schemas.Codecs) (map[string]Decoder, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("ingest decoder config: %w", err)
	}
	if codecs == nil {
		var err error
		if codecs, err = schemas.NewCodecs(nil); err != nil {
			return nil, fmt.Errorf("ingest avro codecs: %w", err)
		}
	}
	loc, _ := time.LoadLocation(cfg.TimeZone)
	zeekJSON := &zeekJSONDecoder{}
	zeekTSV := newZeekTSVDecoder()
	inner := map[string]Decoder{
		FormatGoflow2:  &goflow2Decoder{},
		FormatPmacct:   &pmacctDecoder{loc: loc},
		FormatNprobe:   &nprobeDecoder{},
		FormatZeekJSON: zeekJSON,
		FormatZeekTSV:  zeekTSV,
		FormatZeek:     &zeekDecoder{json: zeekJSON, tsv: zeekTSV},
		FormatSuricata: &suricataDecoder{},
		FormatVPC:      newVPCDecoder(),
		FormatCIC:      newCICDecoder(loc),
		FormatNfdump:   &nfdumpDecoder{loc: loc},
		FormatAvro:     &avroDecoder{codecs: codecs},
	}
	inner[FormatAuto] = &autoDecoder{by: inner}
	out := make(map[string]Decoder, len(inner))
	for name, d := range inner {
		out[name] = limited{max: cfg.MaxRecordBytes, dec: d}
	}
	return out, nil
}

// limited dead-letters records larger than max before any parsing.
type limited struct {
	max int
	dec Decoder
}

func (l limited) Decode(dst []schemas.Flow, rec []byte, src schemas.Coord) ([]schemas.Flow, error) {
	if len(rec) > l.max {
		return dst, recErr(ReasonTooLarge, "", fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(rec), l.max))
	}
	return l.dec.Decode(dst, rec, src)
}

// objectDecoder decodes one JSON object of a record. It gets the record and
// the index of the object's '{' rather than a scanner so that the scanner
// stays on its caller's stack: an interface call would move it to the heap.
type objectDecoder interface {
	// object decodes the object at rec[i] into f and returns the index just
	// past it, or a non-nil Skip for an object that is not a flow.
	object(rec []byte, i int, f *schemas.Flow) (int, *Skip, error)
}

// decodeJSON runs od over every object of rec: a single object (the common
// case), an array of objects, or several objects separated by whitespace (a
// tailer's chunk of JSON lines).
func decodeJSON(od objectDecoder, dst []schemas.Flow, rec []byte, src schemas.Coord) ([]schemas.Flow, error) {
	n0 := len(dst)
	var (
		s    jsonScanner
		skip *Skip
	)
	s.reset(rec)
	for {
		more, err := s.nextObject()
		if err != nil {
			return dst[:n0], recErr(ReasonMalformed, "", err)
		}
		if !more {
			break
		}
		dst = append(dst, schemas.Flow{})
		f := &dst[len(dst)-1]
		end, sk, err := od.object(rec, s.i, f)
		if err != nil {
			return dst[:n0], err
		}
		s.i = end
		if sk != nil {
			dst = dst[:len(dst)-1]
			skip = sk
			continue
		}
		f.Source = src
		f.Source.Index = int32(len(dst) - 1 - n0)
	}
	if len(dst) > n0 {
		return dst, nil
	}
	if skip != nil {
		return dst, skip
	}
	return dst, skipEmpty
}

// nextObject moves to the next top-level object of a record and reports
// whether there is one.
func (s *jsonScanner) nextObject() (bool, error) {
	for {
		s.ws()
		if s.inArray {
			if s.i >= len(s.b) {
				return false, s.fail("unterminated array")
			}
			c := s.b[s.i]
			if c == ']' {
				s.i++
				s.inArray = false
				continue
			}
			if s.arrayN > 0 {
				if c != ',' {
					return false, s.fail("want ',' or ']'")
				}
				s.i++
				s.ws()
			}
			if s.i >= len(s.b) || s.b[s.i] != '{' {
				return false, s.fail("array element is not an object")
			}
			s.arrayN++
			return true, nil
		}
		if s.i >= len(s.b) {
			return false, nil
		}
		switch s.b[s.i] {
		case '{':
			return true, nil
		case '[':
			s.i++
			s.inArray, s.arrayN = true, 0
		default:
			return false, s.fail("want '{' or '['")
		}
	}
}

// streamKey names one input stream: header lines apply to the records after
// them on the same partition.
type streamKey struct {
	topic     string
	partition int32
}

// streams holds per-stream decoder state, created on first use.
type streams[T any] struct {
	mu sync.Mutex
	m  map[streamKey]*T
}

func (s *streams[T]) get(c schemas.Coord, init func() *T) *T {
	k := streamKey{c.Topic, c.Partition}
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.m[k]
	if !ok {
		if s.m == nil {
			s.m = make(map[streamKey]*T)
		}
		st = init()
		s.m[k] = st
	}
	return st
}

// nextLine cuts the first line off b, without its "\n" or "\r\n".
func nextLine(b []byte) (line, rest []byte) {
	line = b
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		line, rest = b[:i], b[i+1:]
	}
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, rest
}

func isBlank(b []byte) bool {
	for _, c := range b {
		if c != ' ' && c != '\t' && c != '\r' && c != '\n' {
			return false
		}
	}
	return true
}
