package ingest

import (
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/metaids/metaids/schemas"
)

func flowAt(start, end time.Time, partition int32) schemas.Flow {
	return schemas.Flow{
		StartNs: start.UnixNano(), EndNs: end.UnixNano(),
		SrcAddr: netip.MustParseAddr("10.1.2.3"), DstAddr: netip.MustParseAddr("2001:db8::1"),
		Proto:  6,
		Source: schemas.Coord{Topic: "flows.test", Partition: partition},
	}
}

func TestValidatorLive(t *testing.T) {
	now := testNow
	ok := flowAt(now.Add(-time.Minute), now.Add(-30*time.Second), 0)
	noSrc := ok
	noSrc.SrcAddr = netip.Addr{}
	noDst := ok
	noDst.DstAddr = netip.Addr{}
	for _, tc := range []struct {
		name  string
		flows []schemas.Flow
		want  Reason
	}{
		{"recent", []schemas.Flow{ok}, ""},
		{"none", nil, ""},
		{"six days old", []schemas.Flow{flowAt(now.Add(-6*24*time.Hour), now.Add(-6*24*time.Hour), 0)}, ""},
		{"long flow ending now", []schemas.Flow{flowAt(now.Add(-30*24*time.Hour), now, 0)}, ""},
		{"clock skew inside tolerance", []schemas.Flow{flowAt(now.Add(5*time.Minute), now.Add(9*time.Minute), 0)}, ""},
		{"eight days old", []schemas.Flow{flowAt(now.Add(-8*24*time.Hour), now.Add(-8*24*time.Hour), 0)}, ReasonTimeOutOfWindow},
		{"softflowd 49.7 days ahead", []schemas.Flow{flowAt(now.Add(4294967*time.Second), now.Add(4294967*time.Second), 0)}, ReasonTimeOutOfWindow},
		{"11 minutes ahead", []schemas.Flow{flowAt(now, now.Add(11*time.Minute), 0)}, ReasonTimeOutOfWindow},
		{"epoch zero", []schemas.Flow{{SrcAddr: ok.SrcAddr, DstAddr: ok.DstAddr}}, ReasonTimeOutOfWindow},
		{"end before start", []schemas.Flow{flowAt(now.Add(-time.Second), now.Add(-2*time.Second), 0)}, ReasonEndBeforeStart},
		{"no src", []schemas.Flow{noSrc}, ReasonBadAddress},
		{"no dst", []schemas.Flow{noDst}, ReasonBadAddress},
		{"second flow of record bad", []schemas.Flow{ok, noDst}, ReasonBadAddress},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := mustValidator(t, false).Check(tc.flows)
			checkReason(t, err, tc.want)
		})
	}
}

func checkReason(t *testing.T, err error, want Reason) {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Fatalf("Check = %v, want nil", err)
		}
		return
	}
	var re *RecordError
	if !errors.As(err, &re) || re.Reason != want {
		t.Fatalf("Check = %v, want %s", err, want)
	}
}

// TestValidatorReplay feeds a dataset from 2017 through replay mode: old
// flows pass, flows far behind their partition's latest do not, partitions
// are judged separately, and the future bound still holds.
func TestValidatorReplay(t *testing.T) {
	v := mustValidator(t, true)
	day := time.Date(2017, 7, 5, 12, 0, 0, 0, time.UTC)
	steps := []struct {
		name string
		f    schemas.Flow
		want Reason
	}{
		{"first flow sets the reference", flowAt(day, day.Add(time.Second), 0), ""},
		{"two days earlier, random sample order", flowAt(day.Add(-48*time.Hour), day.Add(-48*time.Hour), 0), ""},
		{"later flow moves the reference", flowAt(day.Add(10*24*time.Hour), day.Add(10*24*time.Hour), 0), ""},
		{"now eight days behind", flowAt(day.Add(time.Hour), day.Add(time.Hour), 0), ReasonTimeOutOfWindow},
		{"other partition has its own reference", flowAt(day, day, 1), ""},
		{"before 1990", flowAt(time.Unix(1000, 0), time.Unix(1000, 0), 2), ReasonTimeOutOfWindow},
		{"future", flowAt(testNow.Add(time.Hour), testNow.Add(time.Hour), 3), ReasonTimeOutOfWindow},
	}
	for _, s := range steps {
		err := v.Check([]schemas.Flow{s.f})
		if s.want == "" && err != nil || s.want != "" && !strings.Contains(errString(err), string(s.want)) {
			t.Errorf("%s: Check = %v, want %q", s.name, err, s.want)
		}
	}
}

// TestValidatorReference checks the committed form of a partition's replay
// reference: a Validator that loads what another saved judges the next
// flow as that one would have, and one that loads nothing, garbage or
// another partition's accepts any age, as a fresh one does.
func TestValidatorReference(t *testing.T) {
	day := time.Date(2017, 7, 5, 12, 0, 0, 0, time.UTC)
	first := mustValidator(t, true)
	if err := first.Check([]schemas.Flow{flowAt(day, day.Add(time.Second), 0)}); err != nil {
		t.Fatal(err)
	}
	saved := first.SaveReference("flows.test", 0)
	if saved == "" {
		t.Fatal("SaveReference after an accepted flow = \"\", want the reference")
	}
	if got := first.SaveReference("flows.test", 1); got != "" {
		t.Errorf("SaveReference of an unread partition = %q, want \"\"", got)
	}
	old := []schemas.Flow{flowAt(day.Add(-8*24*time.Hour), day.Add(-8*24*time.Hour), 0)}
	for _, tc := range []struct {
		name, saved string
		want        Reason
	}{
		{"saved reference", saved, ReasonTimeOutOfWindow},
		{"nothing committed", "", ""},
		{"garbage", "replay_ref_ns=soon", ""},
		{"foreign metadata", "12345", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := mustValidator(t, true)
			// A reference already held is replaced, not kept.
			v.LoadReference("flows.test", 0, saved)
			v.LoadReference("flows.test", 0, tc.saved)
			checkReason(t, v.Check(old), tc.want)
		})
	}
	live := mustValidator(t, false)
	live.LoadReference("flows.test", 0, saved)
	if got := live.SaveReference("flows.test", 0); got != "" {
		t.Errorf("SaveReference out of replay mode = %q, want \"\"", got)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestValidatorConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  ValidatorConfig
		want []string
	}{
		{"default", DefaultValidatorConfig(), nil},
		{"zero age", ValidatorConfig{MaxAge: 0, MaxFuture: time.Minute}, []string{"-ingest.max-age"}},
		{"both bad", ValidatorConfig{MaxAge: -1, MaxFuture: -1}, []string{"-ingest.max-age", "-ingest.max-future"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if len(tc.want) == 0 && err != nil {
				t.Fatalf("Validate() = %v, want nil", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(errString(err), w) {
					t.Errorf("Validate() = %v, want it to name %s", err, w)
				}
			}
			if _, nerr := NewValidator(tc.cfg, nil); (nerr == nil) != (len(tc.want) == 0) {
				t.Errorf("NewValidator error = %v", nerr)
			}
		})
	}
}

func TestDecoderConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  DecoderConfig
		want []string
	}{
		{"default", DefaultDecoderConfig(), nil},
		{"formats", DecoderConfig{Formats: map[string]string{"flows.edge": "goflow2", "flows.dc": "zeek"}, MaxRecordBytes: 10, TimeZone: "Europe/Prague"}, nil},
		{"unknown format", DecoderConfig{Formats: map[string]string{"flows.a": "sflow"}, MaxRecordBytes: 10, TimeZone: "UTC"}, []string{`-ingest.formats: topic "flows.a": unknown format "sflow"`}},
		{"everything wrong", DecoderConfig{Formats: map[string]string{"a": "x", "b": "y"}, MaxRecordBytes: 0, TimeZone: "Mars/Olympus"}, []string{`"a"`, `"b"`, "-ingest.max-record-bytes", "-ingest.time-zone"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if len(tc.want) == 0 && err != nil {
				t.Fatalf("Validate() = %v, want nil", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(errString(err), w) {
					t.Errorf("Validate() = %v, want it to contain %s", err, w)
				}
			}
			if len(tc.want) > 0 && !errors.Is(err, ErrUnknownFormat) && strings.Contains(tc.want[0], "unknown format") {
				t.Errorf("Validate() = %v, want errors.Is ErrUnknownFormat", err)
			}
			decs, nerr := NewDecoders(tc.cfg, nil)
			if (nerr == nil) != (len(tc.want) == 0) {
				t.Fatalf("NewDecoders error = %v", nerr)
			}
			if nerr == nil && len(decs) != len(Formats()) {
				t.Errorf("NewDecoders built %d decoders, want %d", len(decs), len(Formats()))
			}
		})
	}
}

func TestFormatFor(t *testing.T) {
	cfg := DecoderConfig{Formats: map[string]string{"netflow-edge": FormatGoflow2, "flows.zeek": FormatZeekJSON}}
	for topic, want := range map[string]string{
		"netflow-edge":         FormatGoflow2,
		"flows.zeek":           FormatZeekJSON, // configured beats the name
		"flows.suricata":       FormatSuricata,
		"prod.flows.vpc":       FormatVPC,
		"flows.something-else": FormatAuto,
		"raw":                  FormatAuto,
	} {
		if got := cfg.FormatFor(topic); got != want {
			t.Errorf("FormatFor(%q) = %q, want %q", topic, got, want)
		}
	}
}

// TestConcurrentUse decodes and validates on several partitions at once, as
// a stage with concurrent partition handlers would; run it with -race.
func TestConcurrentUse(t *testing.T) {
	decs := mustDecoders(t, DefaultDecoderConfig())
	v := mustValidator(t, true)
	lines := strings.Split(strings.TrimSpace(ztOK+"\n"+ztOK), "\n")
	var wg sync.WaitGroup
	for p := range int32(4) {
		wg.Go(func() {
			var flows []schemas.Flow
			for i := range 200 {
				src := schemas.Coord{Topic: "flows.zeek", Partition: p, Offset: int64(i)}
				for _, format := range []string{FormatZeekTSV, FormatAuto} {
					var err error
					flows, err = decs[format].Decode(flows[:0], []byte(lines[i%len(lines)]), src)
					if err == nil {
						err = v.Check(flows)
					}
					if err != nil {
						t.Errorf("partition %d offset %d: %v", p, i, err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
}
