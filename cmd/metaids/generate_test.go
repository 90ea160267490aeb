package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/metaids/metaids/dataset"
	"github.com/metaids/metaids/integration"
)

func TestGenerateUsage(t *testing.T) {
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no out", []string{"generate"}, exitUsage, "-out"},
		{"bad format", []string{"generate", "-out", "x", "-format", "pcap"}, exitUsage, "-format"},
		{"bad part", []string{"generate", "-out", "x", "-part", "val"}, exitUsage, "-part"},
		{"part of default", []string{"generate", "-out", "x", "-scenario", "default", "-part", "test"}, exitUsage, "-part"},
		{"bad scenario", []string{"generate", "-out", "x", "-scenario", "mixed"}, exitUsage, "-scenario"},
		{"bad sequence", []string{"generate", "-out", "x", "-sequence.infected", "100"}, exitUsage, "-sequence.infected"},
		{"check", []string{"generate", "-out", "x", "-config.check"}, exitOK, "configuration OK"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			if code := run(t.Context(), tc.args, &stderr); code != tc.code || !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("run(%q) = %d, %q; want %d and %q", tc.args, code, stderr.String(), tc.code, tc.want)
			}
		})
	}
}

// TestGenerateWritesTheScenario writes the test part as the documented
// interface does and reads the file back as `metaids eval -data` would: the
// same flows and labels as dataset.Sequence returns.
func TestGenerateWritesTheScenario(t *testing.T) {
	small := []string{"-sequence.hosts", "24", "-sequence.duration", "40m", "-sequence.infected", "2", "-sequence.seed", "5"}
	for _, format := range []string{integration.OutZeek, integration.OutCIC} {
		t.Run(format, func(t *testing.T) {
			dir := t.TempDir()
			var stderr bytes.Buffer
			args := append([]string{"generate", "-scenario", "sequence", "-part", "test", "-format", format, "-out", dir, "-log.level", "warn"}, small...)
			if code := run(t.Context(), args, &stderr); code != exitOK {
				t.Fatalf("run(%q) = %d: %s", args, code, stderr.String())
			}
			if _, err := os.Stat(filepath.Join(dir, "sequence-test"+integration.Ext(format))); err != nil {
				t.Fatal(err)
			}
			got, _, err := dataset.Load([]string{dir}, dataset.DefaultConfig())
			if err != nil {
				t.Fatal(err)
			}
			cfg := integration.DefaultSequenceConfig()
			cfg.Seed, cfg.Hosts, cfg.Duration, cfg.Infected = 5, 24, 40*time.Minute, 2
			want, err := dataset.Sequence(cfg, integration.PartTest)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(want) {
				t.Fatalf("read %d records, want %d", len(got), len(want))
			}
			for i := range got {
				if got[i].Label != want[i].Label || got[i].Flow.StartNs != want[i].Flow.StartNs || got[i].Flow.SrcAddr != want[i].Flow.SrcAddr {
					t.Fatalf("record %d = %s %d %s, want %s %d %s", i, got[i].Label, got[i].Flow.StartNs, got[i].Flow.SrcAddr,
						want[i].Label, want[i].Flow.StartNs, want[i].Flow.SrcAddr)
				}
			}
		})
	}
}
