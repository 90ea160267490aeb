package integration_test

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/metaids/metaids/adapter"
	"github.com/metaids/metaids/schemas"
	"github.com/metaids/metaids/scorer"
	"github.com/metaids/metaids/stream"
)

// signer is a model-signing key pair on disk, as operators keep them.
type signer struct {
	name             string
	id               string
	priv             ed25519.PrivateKey
	privPath, pubPem string
}

func newSigner(t *testing.T, name string, seed uint64) signer {
	t.Helper()
	pubPEM, privPEM, err := schemas.GenerateKey(rand.NewChaCha8([32]byte{byte(seed)}))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	s := signer{name: name, privPath: filepath.Join(dir, name+".pem"), pubPem: filepath.Join(dir, name+".pub")}
	if err := os.WriteFile(s.privPath, privPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.pubPem, pubPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if s.priv, err = schemas.LoadPrivateKey(s.privPath); err != nil {
		t.Fatal(err)
	}
	s.id = schemas.KeyID(s.priv.Public().(ed25519.PublicKey))
	return s
}

// TestModelSupplyChain publishes model updates to the models topic over
// the embedded broker and checks which ones running scorers and adapters
// serve: only updates signed by a key each was configured to trust, never
// a tampered one, never an older version replayed; and, when a key is
// rotated out (a second scorer and adapter configured without it, reading
// the topic from its start), nothing that key signed, before or after.
func TestModelSupplyChain(t *testing.T) {
	if testing.Short() {
		t.Skip("supply chain: runs scorers and adapters over the embedded broker")
	}
	a, b, c := newSigner(t, "A", 1), newSigner(t, "B", 2), newSigner(t, "C", 3)
	e, err := stream.StartEmbedded(stream.EmbeddedConfig{Partitions: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	kc := e.Config()
	kc.RetryBackoff, kc.RetryBackoffMax = 50*time.Millisecond, 500*time.Millisecond
	kc.Writer.BatchTimeout = 5 * time.Millisecond
	kc.Reader.MaxWait = 100 * time.Millisecond
	kc.Group.SessionTimeout, kc.Group.HeartbeatInterval = 3*time.Second, 300*time.Millisecond
	names := stream.TopicNames{Features: "features", Scores: "scores", Alerts: "alerts", Actions: "actions", Labels: "labels", Models: "models"}
	if err := stream.EnsureTopics(t.Context(), kc, stream.PipelineTopics("", names, 2, 1)); err != nil {
		t.Fatal(err)
	}
	prod, err := stream.NewProducer(kc, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	codecs, err := schemas.NewCodecs(nil)
	if err != nil {
		t.Fatal(err)
	}

	base := harnessModelV1(t, 16)
	// update returns version v of the model, a full update signed by k;
	// tamper changes one weight after signing, as a man in the middle or
	// a corrupted disk would.
	update := func(v int64, k signer, tamper bool) []byte {
		m := base.Clone()
		m.Version, m.CreatedNs = v, int64(v)*1e9
		u, err := m.Update(schemas.UpdateFull)
		if err != nil {
			t.Fatal(err)
		}
		if err := schemas.SignModelUpdate(u, k.id, k.priv); err != nil {
			t.Fatal(err)
		}
		if tamper {
			u.Tensors[0].Data[0] += 0.5
		}
		b, err := codecs.AppendModelUpdate(nil, u)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	v1 := update(1, a, false)

	// The stages: scorer s1 trusts A and B; adapter a1 signs with A and
	// trusts B. After A is rotated out, s2 trusts B only, and a2 signs
	// with B and trusts nothing else.
	type stage struct {
		name    string
		version func() int64
		reg     *prometheus.Registry
		metric  string
		col     int // the column of steps that holds its results
		stop    func()
	}
	start := func(name string, col int, build func(reg *prometheus.Registry) (runner, func() int64, error), metric string) *stage {
		reg := prometheus.NewRegistry()
		st, version, err := build(reg)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- st.Run(ctx) }()
		s := &stage{name: name, version: version, reg: reg, metric: metric, col: col}
		s.stop = func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("%s: %v", name, err)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("%s did not stop", name)
			}
		}
		t.Cleanup(s.stop)
		return s
	}
	newScorer := func(name string, col int, keys ...signer) *stage {
		return start(name, col, func(reg *prometheus.Registry) (runner, func() int64, error) {
			cfg := scorer.DefaultConfig()
			cfg.Config = kc
			cfg.Scorer.Group = "supplychain-" + name
			cfg.Scorer.Model.Name = harnessModel
			for _, k := range keys {
				cfg.Scorer.Model.Keys = append(cfg.Scorer.Model.Keys, k.pubPem)
			}
			s, err := scorer.New(cfg, nil, reg)
			if err != nil {
				return nil, nil, err
			}
			return s, s.ModelVersion, nil
		}, "metaids_scorer_model_updates_total")
	}
	newAdapter := func(name string, col int, signing signer, trusted ...signer) *stage {
		return start(name, col, func(reg *prometheus.Registry) (runner, func() int64, error) {
			cfg := adapter.DefaultConfig()
			cfg.Config = kc
			cfg.Adapter.Group = "supplychain-" + name
			cfg.Adapter.Model = harnessModel
			cfg.Adapter.SigningKey = signing.privPath
			for _, k := range trusted {
				cfg.Adapter.TrustedKeys = append(cfg.Adapter.TrustedKeys, k.pubPem)
			}
			s, err := adapter.New(cfg, nil, reg)
			if err != nil {
				return nil, nil, err
			}
			return s, s.Version, nil
		}, "metaids_adapter_model_updates_total")
	}

	// Each step publishes one record to the models topic; the columns say
	// what each stage must make of it: the scorer's result label, the
	// adapter's, and the version each then serves.
	steps := []struct {
		desc    string
		v       int64 // the version it carries
		value   []byte
		results [4]string // s1, a1, s2, a2
	}{
		{"v1 signed by A", 1, v1, [4]string{"applied", "loaded", "unknown_key", "rejected"}},
		{"v2 signed by C, trusted by no one", 2, update(2, c, false), [4]string{"unknown_key", "rejected", "unknown_key", "rejected"}},
		{"v3 signed by B", 3, update(3, b, false), [4]string{"applied", "loaded", "applied", "loaded"}},
		{"v1 replayed, byte for byte", 1, v1, [4]string{"stale", "ignored", "unknown_key", "rejected"}},
		{"v4 signed by A, then tampered with", 4, update(4, a, true), [4]string{"bad_signature", "rejected", "unknown_key", "rejected"}},
		// A is rotated out here: s2 and a2 start, reading from the start.
		{"v5 signed by A", 5, update(5, a, false), [4]string{"applied", "loaded", "unknown_key", "rejected"}},
		{"v6 signed by B", 6, update(6, b, false), [4]string{"applied", "loaded", "applied", "loaded"}},
	}
	const rotateAt = 5

	var stages []*stage
	for i, st := range steps {
		if i == 0 {
			stages = append(stages, newScorer("s1", 0, a, b), newAdapter("a1", 1, a, b))
		}
		if i == rotateAt {
			stages = append(stages, newScorer("s2", 2, b), newAdapter("a2", 3, b))
		}
		if err := prod.Produce(t.Context(), kafka.Message{Topic: schemas.Topics{}.Models(), Key: []byte(harnessModel), Value: st.value}); err != nil {
			t.Fatal(err)
		}
		for _, s := range stages {
			want := map[string]float64{}
			var version int64
			for j := range i + 1 {
				r := steps[j].results[s.col]
				want[r]++
				if r == "applied" || r == "loaded" {
					version = steps[j].v
				}
			}
			eventually(t, 20*time.Second, func() error {
				got := byLabel(s.reg, s.metric, "result")
				if !maps.Equal(got, want) {
					return fmt.Errorf("after %q, %s counts model updates %v, want %v", st.desc, s.name, got, want)
				}
				return nil
			})
			if got := s.version(); got != version {
				t.Errorf("after %q, %s serves v%d, want v%d", st.desc, s.name, got, version)
			}
		}
		t.Logf("%s: s1 v%d, a1 v%d%s", st.desc, stages[0].version(), stages[1].version(), func() string {
			if len(stages) > 2 {
				return fmt.Sprintf(", s2 v%d, a2 v%d", stages[2].version(), stages[3].version())
			}
			return ""
		}())
	}
}

// byLabel sums a counter family by the value of one label.
func byLabel(reg prometheus.Gatherer, name, label string) map[string]float64 {
	out := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		return out
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && m.GetCounter().GetValue() > 0 {
					out[l.GetValue()] += m.GetCounter().GetValue()
				}
			}
		}
	}
	return out
}
