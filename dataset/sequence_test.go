package dataset

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/metaids/metaids/ingest"
	"github.com/metaids/metaids/integration"
	"github.com/metaids/metaids/schemas"
)

// smallSequence is a sequence scenario small enough for unit tests, with
// every family and routine in it.
func smallSequence() integration.SequenceConfig {
	return integration.SequenceConfig{Seed: 3, Hosts: 24, Duration: 40 * time.Minute, Infected: 2, Rate: 0.03, Sessions: 2}
}

func writeEvents(t *testing.T, path, format string, evs []integration.Event) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := integration.NewWriter(f, format)
	if err != nil {
		t.Fatal(err)
	}
	for i := range evs {
		if err := w.Write(&evs[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// sameFlow compares what a flow file carries: everything but the source
// coordinates and the service (the writers leave it out), times to within
// slack.
func sameFlow(got, want *schemas.Flow, slack int64) error {
	g, w := *got, *want
	if d := g.StartNs - w.StartNs; d < -slack || d > slack {
		return fmt.Errorf("start %d, want %d", g.StartNs, w.StartNs)
	}
	if d := (g.EndNs - g.StartNs) - (w.EndNs - w.StartNs); d < -slack || d > slack {
		return fmt.Errorf("duration %d, want %d", g.EndNs-g.StartNs, w.EndNs-w.StartNs)
	}
	g.StartNs, g.EndNs, w.StartNs, w.EndNs = 0, 0, 0, 0
	g.Source, w.Source = schemas.Coord{}, schemas.Coord{}
	g.Service, w.Service = "", ""
	if g != w {
		return fmt.Errorf("%+v, want %+v", g, w)
	}
	return nil
}

// TestGeneratedFilesReadBack writes both parts of the sequence scenario,
// and the default scenario, in each labelled format and reads them back
// with the dataset readers: every row must come back as the flow and the
// label it was written with.
func TestGeneratedFilesReadBack(t *testing.T) {
	type input struct {
		name  string
		evs   []integration.Event
		slack int64 // ns: the default scenario's times are not cut to µs
	}
	var inputs []input
	for _, part := range []integration.Part{integration.PartTrain, integration.PartTest} {
		sc, err := integration.SequenceScenario(smallSequence(), part)
		if err != nil {
			t.Fatal(err)
		}
		inputs = append(inputs, input{name: "sequence-" + string(part), evs: sc.Events()})
	}
	def, err := SyntheticEvents(SyntheticConfig{Seed: 2, Hosts: 5, Duration: 3 * time.Minute, Waves: 1})
	if err != nil {
		t.Fatal(err)
	}
	inputs = append(inputs, input{name: "default", evs: def, slack: 1000})

	for _, in := range inputs {
		fams := map[string]int{}
		for _, ev := range in.evs {
			fams[ev.Label]++
		}
		if in.name != "default" {
			for _, fam := range integration.SequenceFamilies {
				if fams[fam] == 0 {
					t.Fatalf("%s: no %s flow in %d: %v", in.name, fam, len(in.evs), fams)
				}
			}
		}
		for _, format := range []string{integration.OutZeek, integration.OutCIC} {
			t.Run(in.name+"/"+format, func(t *testing.T) {
				path := filepath.Join(t.TempDir(), in.name+integration.Ext(format))
				writeEvents(t, path, format, in.evs)
				recs, st, err := Load([]string{path}, DefaultConfig())
				if err != nil {
					t.Fatal(err)
				}
				if len(st.Rejected) != 0 {
					t.Errorf("rejected rows: %v", st.Rejected)
				}
				if st.Rows != len(in.evs) || len(recs) != len(in.evs) {
					t.Fatalf("read %d rows, %d records, want %d", st.Rows, len(recs), len(in.evs))
				}
				wantFormat := FormatZeek
				if format == integration.OutCIC {
					wantFormat = FormatCIC
				}
				got := map[string]int{}
				for i, r := range recs {
					ev := &in.evs[i]
					if want := canonicalLabel(ev.Label); r.Label != want {
						t.Fatalf("row %d: label %q (raw %q), want %q", i, r.Label, r.RawLabel, want)
					}
					if err := sameFlow(&r.Flow, &ev.Flow, in.slack); err != nil {
						t.Fatalf("row %d (%s): %v", i, ev.Kind, err)
					}
					if r.Format != wantFormat {
						t.Fatalf("row %d: format %s, want %s", i, r.Format, wantFormat)
					}
					got[r.Label]++
				}
				for fam, n := range fams {
					if got[canonicalLabel(fam)] != n {
						t.Errorf("%s rows = %d, want %d", fam, got[canonicalLabel(fam)], n)
					}
				}
			})
		}
	}
}

// TestGeneratedFilesDecode runs every line of every output format through
// the ingest decoder of that format and the auto-detecting one, and the
// validator in replay mode, as `metaids replay` then ingest would: no line
// may be dead-lettered, every data line is one flow, every header line is
// skipped.
func TestGeneratedFilesDecode(t *testing.T) {
	sc, err := integration.SequenceScenario(smallSequence(), integration.PartTest)
	if err != nil {
		t.Fatal(err)
	}
	evs := sc.Events()
	decoderOf := map[string]string{
		integration.OutZeek:     ingest.FormatZeekTSV,
		integration.OutCIC:      ingest.FormatCIC,
		integration.OutGoflow2:  ingest.FormatGoflow2,
		integration.OutNProbe:   ingest.FormatNprobe,
		integration.OutZeekJSON: ingest.FormatZeekJSON,
	}
	for _, format := range integration.OutFormats {
		var buf bytes.Buffer
		w, err := integration.NewWriter(&buf, format)
		if err != nil {
			t.Fatal(err)
		}
		for i := range evs {
			if err := w.Write(&evs[i]); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		for _, dec := range []string{decoderOf[format], ingest.FormatAuto} {
			t.Run(format+"/"+dec, func(t *testing.T) {
				decs, err := ingest.NewDecoders(ingest.DefaultDecoderConfig(), nil)
				if err != nil {
					t.Fatal(err)
				}
				vcfg := ingest.DefaultValidatorConfig()
				vcfg.Replay = true
				val, err := ingest.NewValidator(vcfg, nil)
				if err != nil {
					t.Fatal(err)
				}
				outcomes := map[string]int{}
				var flows []schemas.Flow
				n := 0
				sc := bufio.NewScanner(bytes.NewReader(buf.Bytes()))
				sc.Buffer(nil, 1<<20)
				for line := int64(0); sc.Scan(); line++ {
					src := schemas.Coord{Topic: "flows.generated", Offset: line}
					var err error
					flows, err = decs[dec].Decode(flows[:0], sc.Bytes(), src)
					if err == nil {
						err = val.Check(flows)
						if len(flows) != 1 {
							t.Fatalf("line %d: %d flows, want 1: %.80s", line, len(flows), sc.Text())
						}
						if flows[0].Proto == 6 && format != integration.OutGoflow2 && flows[0].TCPFlags != evs[n].Flow.TCPFlags {
							t.Fatalf("line %d: TCP flags %#x, want %#x", line, flows[0].TCPFlags, evs[n].Flow.TCPFlags)
						}
						n++
					}
					outcome, reason := ingest.Outcome(err)
					outcomes[outcome]++
					if outcome == "dead_lettered" {
						t.Errorf("line %d dead-lettered (%s): %v: %.80s", line, reason, err, sc.Text())
					}
				}
				if n != len(evs) {
					t.Errorf("decoded %d flows, want %d (outcomes %v)", n, len(evs), outcomes)
				}
			})
		}
	}
}

// TestSequenceRecords checks the Go view of the scenario that the files
// stand for: labels canonical, routines marked in RawLabel, and the two
// parts apart in hosts and time.
func TestSequenceRecords(t *testing.T) {
	train, err := Sequence(smallSequence(), integration.PartTrain)
	if err != nil {
		t.Fatal(err)
	}
	test, err := Sequence(smallSequence(), integration.PartTest)
	if err != nil {
		t.Fatal(err)
	}
	hosts := map[string]bool{}
	var trainEnd int64
	for _, r := range train {
		hosts[r.Flow.SrcAddr.String()] = true
		trainEnd = max(trainEnd, r.Flow.StartNs)
	}
	routines := 0
	for _, r := range test {
		if hosts[r.Flow.SrcAddr.String()] {
			t.Fatalf("host %s is in both parts", r.Flow.SrcAddr)
		}
		if r.Flow.StartNs <= trainEnd {
			t.Fatalf("test flow at %d, not after the train part's last at %d", r.Flow.StartNs, trainEnd)
		}
		if r.Label == Benign && r.RawLabel != integration.FamilyBenign {
			routines++
		}
	}
	if routines == 0 {
		t.Error("no benign routine flow is marked in RawLabel")
	}
	if _, err := Sequence(smallSequence(), "validation"); err == nil {
		t.Error("Sequence accepted an unknown part")
	}
}
