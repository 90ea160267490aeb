package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/metaids/metaids/dataset"
	"github.com/metaids/metaids/integration"
)

func TestEvalJoinMulti(t *testing.T) {
	names := []string{"data", "train", "new-family"}
	for _, tc := range []struct {
		in, want []string
	}{
		{[]string{"-data", "a", "b", "c", "-shots", "10"}, []string{"-data=a,b,c", "-shots", "10"}},
		{[]string{"--data=a", "--new-family", "DoS Slowloris", "--data", "b", "--new-family=Web Attack - Brute Force"},
			[]string{"-data=a,b", "-new-family=DoS Slowloris,Web Attack - Brute Force"}},
		{[]string{"-offline", "-out", "r.json"}, []string{"-offline", "-out", "r.json"}},
		{[]string{"-data"}, []string{"-data"}},
		{[]string{"-train", "t1", "-data", "d", "--", "-data", "x"}, []string{"-train=t1", "-data=d", "--", "-data", "x"}},
	} {
		if got := joinMulti(tc.in, names...); !slices.Equal(got, tc.want) {
			t.Errorf("joinMulti(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestEvalUsage(t *testing.T) {
	out := filepath.Join(t.TempDir(), "r.json")
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no data", []string{"eval", "-new-family", "x", "-out", out}, exitUsage, "-data"},
		{"bad family", []string{"eval", "-data", "d", "-out", out, "-new-family", "BENIGN"}, exitUsage, "-new-family"},
		{"no out", []string{"eval", "-data", "d", "-new-family", "x"}, exitUsage, "-out"},
		{"bad shots", []string{"eval", "-data", "d", "-new-family", "x", "-out", out, "-shots", "0"}, exitUsage, "-shots"},
		{"bad adapter setting", []string{"eval", "-data", "d", "-new-family", "x", "-out", out, "-adapter.gate.holdout=3"}, exitUsage, "-adapter.gate.holdout"},
		{"model and train", []string{"eval", "-data", "d", "-new-family", "x", "-out", out, "-model", "m", "-train", "t"}, exitUsage, "not with -train"},
		{"bad baseline", []string{"eval", "-data", "d", "-new-family", "x", "-out", out, "--baseline", "lstm"}, exitUsage, "-baseline: want per-flow"},
		{"baseline check", []string{"eval", "-data", "d", "-new-family", "x", "-out", out, "--baseline", "per-flow", "-fixed-fpr", "0.02", "-config.check"}, exitOK, "configuration OK"},
		{"check", []string{"eval", "-data", "d", "e", "-new-family", "x", "-out", out, "-config.check"}, exitOK, "configuration OK"},
		{"missing data", []string{"eval", "-data", "/nonexistent/*.csv", "-new-family", "x", "-out", out, "-offline"}, exitRuntime, "matches no file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			if code := run(t.Context(), tc.args, &stderr); code != tc.code || !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("run(%q) = %d with %q, want %d with %q", tc.args, code, stderr.String(), tc.code, tc.want)
			}
		})
	}
}

// TestEvalCommandOffline runs `metaids eval -offline` on synthetic traffic
// written as a labelled Zeek conn.log: report, table and plots.
func TestEvalCommandOffline(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a model")
	}
	dir := t.TempDir()
	data := filepath.Join(dir, "synthetic.conn.log.labeled")
	writeLabelledZeek(t, data)
	out := filepath.Join(dir, "out", "report.json")
	args := []string{"-data", data, "-new-family", integration.FamilyDNSTunnel, "-shots", "10", "-offline", "-out", out,
		"-trainer.hidden=16", "-trainer.pretrain-epochs=1", "-trainer.epochs=2", "-trainer.steps-per-epoch=20", "-trainer.adv.eval-steps=1",
		"-log.level=warn"}
	var stdout, stderr bytes.Buffer
	if code := runEvalTo(t.Context(), args, &stdout, &stderr); code != exitOK {
		t.Fatalf("runEvalTo = %d, want %d; stderr:\n%s", code, exitOK, stderr.String())
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Flows       int                        `json:"flows"`
		Mode        string                     `json:"mode"`
		Binary      map[string]any             `json:"binary"`
		NewFamilies map[string]json.RawMessage `json:"new_families"`
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("report: %v", err)
	}
	if rep.Flows == 0 || rep.Mode != "offline" || rep.Binary["f1"] == nil || rep.NewFamilies[integration.FamilyDNSTunnel] == nil {
		t.Errorf("report = %s, want flows, mode offline, binary.f1 and new_families.%s", b, integration.FamilyDNSTunnel)
	}
	if s := stdout.String(); !strings.Contains(s, "binary") || !strings.Contains(s, integration.FamilyDNSTunnel) {
		t.Errorf("table = %q, want the binary line and the new family", s)
	}
	for _, f := range []string{"roc.png", "pr.png", "recall_" + integration.FamilyDNSTunnel + ".png"} {
		if st, err := os.Stat(filepath.Join(dir, "out", "report.plots", f)); err != nil || st.Size() == 0 {
			t.Errorf("plot %s: %v", f, err)
		}
	}
}

// writeLabelledZeek writes synthetic traffic as a Zeek conn.log with
// Stratosphere's label columns.
func writeLabelledZeek(t *testing.T, path string) {
	t.Helper()
	recs, err := dataset.Synthetic(dataset.SyntheticConfig{Seed: 2, Hosts: 12, Duration: 20 * time.Minute, Waves: 2})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	b.WriteString("#separator \\x09\n#path\tconn\n")
	b.WriteString("#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tservice\tduration\torig_bytes\tresp_bytes\tconn_state\tlocal_orig\tlocal_resp\tmissed_bytes\thistory\torig_pkts\torig_ip_bytes\tresp_pkts\tresp_ip_bytes\ttunnel_parents\tlabel\tdetailed-label\n")
	for i, r := range recs {
		f := r.Flow
		proto := map[uint8]string{6: "tcp", 17: "udp"}[f.Proto]
		if proto == "" {
			continue
		}
		label, detail := "Benign", "-"
		if r.Label != dataset.Benign {
			label, detail = "Malicious", r.Label
		}
		fmt.Fprintf(&b, "%.6f\tC%d\t%s\t%d\t%s\t%d\t%s\t-\t%.6f\t%d\t%d\tSF\tT\tF\t0\tShADadFf\t%d\t%d\t%d\t%d\t(empty)\t%s\t%s\n",
			float64(f.StartNs)/1e9, i, f.SrcAddr, f.SrcPort, f.DstAddr, f.DstPort, proto, float64(f.EndNs-f.StartNs)/1e9,
			f.BytesOut, f.BytesIn, f.PktsOut, f.BytesOut, f.PktsIn, f.BytesIn, label, detail)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}
