package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/metaids/metaids/schemas"
)

// The fuzz targets check one property for every decoder, as kfake's and
// Prometheus's fuzzers do: no panic, and either flows or a RecordError or
// Skip — never an error of another type, never flows together with an
// error, never a flow without addresses. Seeds are every fixture under
// testdata (each line, and each whole file as one record) and the records of
// the table tests. Run one at a time, e.g.
//
//	go test ./ingest -run XXX -fuzz FuzzDecodeGoflow2 -fuzztime 2m -parallel 1

var fuzzCodecs = sync.OnceValues(func() (*schemas.Codecs, error) { return schemas.NewCodecs(nil) })

func fuzzSeed(f *testing.F, format string, files ...string) {
	f.Helper()
	for _, file := range files {
		b, err := os.ReadFile(filepath.Join("testdata", file))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		for _, rec := range splitRecords(b, false) {
			f.Add(rec)
		}
	}
	for _, tc := range decodeCases() {
		if tc.format == format {
			f.Add([]byte(strings.Join(append(slices.Clone(tc.before), tc.rec), "\n")))
		}
	}
}

func fuzzDecode(f *testing.F, format string) {
	codecs, err := fuzzCodecs()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, rec []byte) {
		// Fresh decoders per input, so a failure reproduces from its input
		// alone, whatever header state earlier inputs left.
		decs, err := NewDecoders(DefaultDecoderConfig(), codecs)
		if err != nil {
			t.Fatal(err)
		}
		src := schemas.Coord{Topic: "flows.fuzz", Partition: 1, Offset: 42}
		flows, err := decs[format].Decode(nil, rec, src)
		checkDecodeResult(t, rec, flows, err, src)
		// Validation must cope with whatever the decoders let through.
		v, _ := NewValidator(DefaultValidatorConfig(), fixedClock)
		if verr := v.Check(flows); verr != nil {
			var re *RecordError
			if !errors.As(verr, &re) {
				t.Fatalf("Check = %T %v, want *RecordError", verr, verr)
			}
		}
		// Decoding is deterministic.
		again, err2 := mustDecodersNoT(codecs)[format].Decode(nil, rec, src)
		if errString(err) != errString(err2) || !slices.Equal(flows, again) {
			t.Fatalf("second decode differs: %v / %v", err, err2)
		}
	})
}

func mustDecodersNoT(codecs *schemas.Codecs) map[string]Decoder {
	decs, err := NewDecoders(DefaultDecoderConfig(), codecs)
	if err != nil {
		panic(err)
	}
	return decs
}

func checkDecodeResult(t *testing.T, rec []byte, flows []schemas.Flow, err error, src schemas.Coord) {
	t.Helper()
	if err != nil {
		var re *RecordError
		var sk *Skip
		switch {
		case errors.As(err, &re):
			if !slices.Contains(Reasons(), re.Reason) || re.Reason == ReasonInternal {
				t.Fatalf("Decode(%q) reason %q is not a decoder reason", rec, re.Reason)
			}
		case errors.As(err, &sk):
			if !slices.Contains(SkipReasons(), sk.Reason) {
				t.Fatalf("Decode(%q) skip reason %q unknown", rec, sk.Reason)
			}
		default:
			t.Fatalf("Decode(%q) = %T %v, want *RecordError or *Skip", rec, err, err)
		}
		if len(flows) != 0 {
			t.Fatalf("Decode(%q) = %d flows with error %v", rec, len(flows), err)
		}
		return
	}
	if len(flows) == 0 {
		t.Fatalf("Decode(%q) = no flows and no error", rec)
	}
	for i, fl := range flows {
		want := src
		want.Index = int32(i)
		if fl.Source != want || !fl.SrcAddr.IsValid() || !fl.DstAddr.IsValid() || fl.SrcAddr.Zone() != "" ||
			!utf8.ValidString(fl.Service) || len(fl.Service) > maxService {
			t.Fatalf("Decode(%q) flow %d = %+v", rec, i, fl)
		}
	}
}

func FuzzDecodeGoflow2(f *testing.F) {
	fuzzSeed(f, FormatGoflow2, "goflow2/flows.jsonl", "goflow2/quirks.jsonl")
	fuzzDecode(f, FormatGoflow2)
}

func FuzzDecodePmacct(f *testing.F) {
	fuzzSeed(f, FormatPmacct, "pmacct/flows.jsonl", "pmacct/quirks.jsonl")
	fuzzDecode(f, FormatPmacct)
}

func FuzzDecodeNprobe(f *testing.F) {
	fuzzSeed(f, FormatNprobe, "nprobe/flows.jsonl", "nprobe/quirks.jsonl")
	fuzzDecode(f, FormatNprobe)
}

func FuzzDecodeZeekJSON(f *testing.F) {
	fuzzSeed(f, FormatZeekJSON, "zeek/conn.json.log")
	fuzzDecode(f, FormatZeekJSON)
}

func FuzzDecodeZeekTSV(f *testing.F) {
	fuzzSeed(f, FormatZeekTSV, "zeek/conn.tsv.log", "zeek/labeled.tsv.log", "zeek/custom.tsv.log", "zeek/noheader.tsv.log")
	fuzzDecode(f, FormatZeekTSV)
}

func FuzzDecodeSuricata(f *testing.F) {
	fuzzSeed(f, FormatSuricata, "suricata/eve.json")
	fuzzDecode(f, FormatSuricata)
}

func FuzzDecodeVPC(f *testing.F) {
	fuzzSeed(f, FormatVPC, "vpc/default.txt", "vpc/custom.txt")
	fuzzDecode(f, FormatVPC)
}

func FuzzDecodeCIC(f *testing.F) {
	fuzzSeed(f, FormatCIC, "cic/improved.csv", "cic/cicids2017.csv", "cic/cicids2018.csv")
	fuzzDecode(f, FormatCIC)
}

func FuzzDecodeNfdump(f *testing.F) {
	fuzzSeed(f, FormatNfdump, "nfdump/flows.jsonl", "nfdump/array.json")
	fuzzDecode(f, FormatNfdump)
}

func FuzzDecodeAvro(f *testing.F) {
	codecs, err := fuzzCodecs()
	if err != nil {
		f.Fatal(err)
	}
	fl := flowAt(testNow.Add(-2e9), testNow.Add(-1e9), 0)
	for _, svc := range []string{"", "https"} {
		fl.Service = svc
		rec, err := codecs.AppendFlow(nil, &fl)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(rec)
	}
	fuzzSeed(f, FormatAvro)
	fuzzDecode(f, FormatAvro)
}

func FuzzDecodeAuto(f *testing.F) {
	for _, tc := range goldenCases {
		b, err := os.ReadFile(filepath.Join("testdata", tc.file))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	fuzzSeed(f, FormatAuto)
	fuzzDecode(f, FormatAuto)
}

// FuzzJSONScanner checks the scanner against encoding/json: whatever the
// scanner accepts as a record of objects, encoding/json accepts too, and
// the other way round for records within the scanner's limits.
func FuzzJSONScanner(f *testing.F) {
	for _, s := range []string{gfOK, pmOK, suOK, "[" + gfOK + "]", `{"a":"\u00e9\ud83d\ude00","b":[1,{"c":null}],"d":-0.5e+3}`, `{}`, `[]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, rec []byte) {
		ours := scanRecord(rec)
		theirs, inLimits := stdJSONRecord(rec)
		if ours == nil && !theirs {
			t.Fatalf("scanner accepts %q, encoding/json does not", rec)
		}
		if ours != nil && theirs && inLimits {
			t.Fatalf("scanner rejects %q (%v), encoding/json accepts it", rec, ours)
		}
	})
}

// scanRecord walks every member of every top-level object, as a decoder
// would.
func scanRecord(rec []byte) error {
	var s jsonScanner
	s.reset(rec)
	for {
		more, err := s.nextObject()
		if err != nil || !more {
			return err
		}
		o := jsonScanner{b: rec, i: s.i}
		if err := o.objBegin(); err != nil {
			return err
		}
		for {
			_, v, done, err := o.member()
			if err != nil {
				return err
			}
			if done {
				break
			}
			if v.kind == jsonString && v.esc {
				if _, ok := appendUnescaped(nil, v.raw); !ok {
					return errors.New("unescape failed")
				}
			}
		}
		s.i = o.i
	}
}

// stdJSONRecord reports whether encoding/json reads rec as a sequence of
// values, and whether those are objects or arrays of objects nested no
// deeper than the scanner's limit.
func stdJSONRecord(rec []byte) (valid, inLimits bool) {
	dec := json.NewDecoder(bytes.NewReader(rec))
	inLimits = true
	for {
		var v json.RawMessage
		err := dec.Decode(&v)
		if err == io.EOF {
			return true, inLimits
		}
		if err != nil {
			return false, false
		}
		t := bytes.TrimLeft(v, " \t\r\n")
		switch t[0] {
		case '{':
		case '[':
			var elems []json.RawMessage
			if json.Unmarshal(t, &elems) != nil {
				return false, false
			}
			for _, e := range elems {
				if e = bytes.TrimLeft(e, " \t\r\n"); len(e) == 0 || e[0] != '{' {
					inLimits = false
				}
			}
		default:
			inLimits = false
		}
		if depth(t) > maxJSONDepth-2 {
			inLimits = false
		}
	}
}

// depth is the deepest bracket nesting of a valid JSON text.
func depth(b []byte) int {
	d, m, inStr := 0, 0, false
	for i := 0; i < len(b); i++ {
		switch c := b[i]; {
		case inStr && c == '\\':
			i++
		case c == '"':
			inStr = !inStr
		case !inStr && (c == '{' || c == '['):
			if d++; d > m {
				m = d
			}
		case !inStr && (c == '}' || c == ']'):
			d--
		}
	}
	return m
}
