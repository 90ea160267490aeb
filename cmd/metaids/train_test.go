package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/metaids/metaids/features"
	"github.com/metaids/metaids/model"
	"github.com/metaids/metaids/schemas"
	"github.com/metaids/metaids/stream"
)

func TestJoinMultiTrainFlags(t *testing.T) {
	tests := []struct {
		in, want []string
	}{
		{[]string{"-data", "a", "--data=b", "-out", "m", "--data", "c"}, []string{"-data=a,b,c", "-out", "m"}},
		{[]string{"--holdout-family", "DoS Slowloris", "-data=x", "--holdout-family=Web Attack - Brute Force"},
			[]string{"-holdout-family=DoS Slowloris,Web Attack - Brute Force", "-data=x"}},
		{[]string{"-synthetic", "-out", "m"}, []string{"-synthetic", "-out", "m"}},
		{[]string{"-data"}, []string{"-data"}},
		{[]string{"-out", "m", "--", "-data", "x"}, []string{"-out", "m", "--", "-data", "x"}},
	}
	for _, tc := range tests {
		if got := joinMulti(tc.in, "data", "holdout-family"); !slices.Equal(got, tc.want) {
			t.Errorf("joinMulti(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestTrainUsage(t *testing.T) {
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no data", []string{"train", "-out", "m"}, exitUsage, "-data"},
		{"no out", []string{"train", "-synthetic"}, exitUsage, "-out"},
		{"both", []string{"train", "-synthetic", "-data", "x", "-out", "m"}, exitUsage, "not with -synthetic"},
		{"bad setting", []string{"train", "-synthetic", "-out", "m", "-train.window=1", "-train.burn-in=0"}, exitUsage, "-train.window"},
		{"bad fraction", []string{"train", "-synthetic", "-out", "m", "-train-fraction=2"}, exitUsage, "-train-fraction"},
		{"bad baseline", []string{"train", "-synthetic", "-out", "m", "--baseline", "per-host"}, exitUsage, "-baseline: want per-flow"},
		{"check", []string{"train", "-synthetic", "-out", "m", "-config.check"}, exitOK, "configuration OK"},
		{"missing data", []string{"train", "-data", "/nonexistent/*.csv", "-out", filepath.Join(t.TempDir(), "m")}, exitRuntime, "matches no file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			if code := run(t.Context(), tc.args, &stderr); code != tc.code || !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("run(%q) = %d, stderr %q; want %d and %q", tc.args, code, stderr.String(), tc.code, tc.want)
			}
		})
	}
}

// TestTrainSynthetic runs `metaids train --synthetic` on a small scenario
// and checks its outputs: a model file the scorer can load, without the
// held-out family, and a report.
func TestTrainSynthetic(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "demo.model")
	args := []string{"train", "--synthetic", "--out", out,
		"-synthetic-data.hosts=8", "-synthetic-data.duration=6m",
		"-train.hidden=16", "-train.epochs=3", "-train.pretrain-epochs=1", "-train.steps-per-epoch=10", "-progress=on"}
	var stderr bytes.Buffer
	if code := run(t.Context(), args, &stderr); code != exitOK {
		t.Fatalf("run(%q) = %d, stderr:\n%s", args, code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "steps/s") || !strings.Contains(stderr.String(), "ETA") {
		t.Errorf("no progress bar with rate and ETA in %q", stderr.String())
	}
	m, err := model.Load(out, features.Default().Hash())
	if err != nil {
		t.Fatalf("load the trained model: %v", err)
	}
	if slices.Contains(m.Classes(), "dns_tunnel") || m.Classes()[0] != "benign" || m.NumClasses() < 3 {
		t.Errorf("classes = %q, want benign first and the synthetic families without dns_tunnel", m.Classes())
	}
	b, err := os.ReadFile(filepath.Join(dir, "demo.report.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Test struct {
			Classifier struct{ F1 *float64 }
		}
		FewShot []struct{ Family string } `json:"few_shot"`
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("report: %v", err)
	}
	if rep.Test.Classifier.F1 == nil || len(rep.FewShot) == 0 || rep.FewShot[0].Family != "dns_tunnel" {
		t.Errorf("report = %s, want test F1 and few-shot results for dns_tunnel", b)
	}
	pngs, _ := filepath.Glob(filepath.Join(dir, "demo.plots", "*.png"))
	if len(pngs) != 4 {
		t.Errorf("plots = %q, want 4 PNGs", pngs)
	}
}

// TestTrainBaselinePerFlow: `metaids train --baseline per-flow` writes a
// model file that loads as a per-flow model; without the flag, an LSTM.
func TestTrainBaselinePerFlow(t *testing.T) {
	dir := t.TempDir()
	common := []string{"--synthetic", "-synthetic-data.hosts=6", "-synthetic-data.duration=4m",
		"-train.hidden=8", "-train.epochs=1", "-train.pretrain-epochs=1", "-train.steps-per-epoch=4", "-report=none", "-plots=none"}
	for _, tc := range []struct {
		name    string
		args    []string
		perFlow bool
	}{
		{"lstm", nil, false},
		{"per-flow", []string{"--baseline", "per-flow"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(dir, tc.name+".model")
			args := append(append([]string{"train", "--out", out}, common...), tc.args...)
			var stderr bytes.Buffer
			if code := run(t.Context(), args, &stderr); code != exitOK {
				t.Fatalf("run(%q) = %d, stderr:\n%s", args, code, stderr.String())
			}
			m, err := model.Load(out, features.Default().Hash())
			if err != nil {
				t.Fatal(err)
			}
			if m.PerFlow() != tc.perFlow {
				t.Errorf("%s: loaded model PerFlow() = %v, want %v", tc.name, m.PerFlow(), tc.perFlow)
			}
		})
	}
}

// TestTrainPublishes trains a tiny synthetic model and publishes it to an
// embedded broker; the record on the models topic must verify with the
// public key and load as the same model.
func TestTrainPublishes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a broker")
	}
	e, err := stream.StartEmbedded(stream.EmbeddedConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	dir := t.TempDir()
	pubPEM, privPEM, err := schemas.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "train.key")
	if err := os.WriteFile(keyFile, privPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "m.model")
	args := []string{"train", "-synthetic", "-out", out, "-report=none", "-plots=none",
		"-synthetic-data.hosts=5", "-synthetic-data.duration=4m",
		"-train.hidden=8", "-train.epochs=1", "-train.pretrain-epochs=1", "-train.steps-per-epoch=3",
		"-publish", "-signing-key", keyFile, "-kafka.brokers", e.Addr(), "-kafka.topic-prefix", "t1."}
	var stderr bytes.Buffer
	if code := run(t.Context(), args, &stderr); code != exitOK {
		t.Fatalf("run(%q) = %d, stderr:\n%s", args, code, stderr.String())
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{e.Addr()}, Topic: "t1.models", Partition: 0, MaxWait: 100 * time.Millisecond})
	defer r.Close()
	msg, err := r.ReadMessage(ctx)
	if err != nil {
		t.Fatalf("read the models topic: %v", err)
	}
	codecs, err := schemas.NewCodecs(nil)
	if err != nil {
		t.Fatal(err)
	}
	u, err := codecs.DecodeModelUpdate(msg.Value)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := schemas.ParsePublicKeyPEM(pubPEM)
	if err != nil {
		t.Fatal(err)
	}
	if err := schemas.VerifyModelUpdate(&u, map[string]ed25519.PublicKey{schemas.KeyID(pub): pub}); err != nil {
		t.Errorf("published update does not verify: %v", err)
	}
	got, err := model.FromUpdate(&u, features.Default().Hash())
	if err != nil {
		t.Fatalf("published update does not load: %v", err)
	}
	want, err := model.Load(out, features.Default().Hash())
	if err != nil {
		t.Fatal(err)
	}
	if string(msg.Key) != want.Name || !slices.Equal(got.P.WeightIH, want.P.WeightIH) || !slices.Equal(got.Classes(), want.Classes()) {
		t.Errorf("published model (key %q, classes %q) differs from the file's (%q, %q)", msg.Key, got.Classes(), want.Name, want.Classes())
	}
}
