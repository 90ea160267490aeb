package scorer

import (
	"bytes"
	"crypto/ed25519"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/apache/arrow/go/v15/arrow/memory"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/metaids/metaids/features"
	"github.com/metaids/metaids/model"
	"github.com/metaids/metaids/schemas"
)

// testLog is quiet unless METAIDS_TEST_LOG is set.
func testLog(t testing.TB) *slog.Logger {
	t.Helper()
	if os.Getenv("METAIDS_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
}

// keyPair is an Ed25519 signing key with its id and public key file.
type keyPair struct {
	pub  ed25519.PublicKey
	priv ed25519.PrivateKey
	id   string
	file string // PEM public key in t.TempDir()
}

// newKeyPair makes a deterministic key from seed.
func newKeyPair(t testing.TB, seed byte) keyPair {
	t.Helper()
	pubPEM, privPEM, err := schemas.GenerateKey(bytes.NewReader(bytes.Repeat([]byte{seed}, 64)))
	if err != nil {
		t.Fatal(err)
	}
	priv, err := schemas.ParsePrivateKeyPEM(privPEM)
	if err != nil {
		t.Fatal(err)
	}
	pub := priv.Public().(ed25519.PublicKey)
	file := filepath.Join(t.TempDir(), "key.pub")
	if err := os.WriteFile(file, pubPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return keyPair{pub: pub, priv: priv, id: schemas.KeyID(pub), file: file}
}

func (k keyPair) keys() map[string]ed25519.PublicKey {
	return map[string]ed25519.PublicKey{k.id: k.pub}
}

// newTestModel returns a seeded model for this build's feature spec, named
// and versioned as the scorer expects.
func newTestModel(t testing.TB, seed uint64, hidden int, classes ...string) *model.Model {
	t.Helper()
	cfg := model.DefaultConfig()
	cfg.Features = features.NumFeatures
	cfg.Hidden = hidden
	cfg.Classes = classes
	cfg.SpecHash = features.Default().Hash()
	m, err := model.New(cfg, rand.New(rand.NewPCG(seed, 0)))
	if err != nil {
		t.Fatal(err)
	}
	m.Name, m.Version = "metaids", 1
	return m
}

// signed returns m as a signed update of kind.
func signed(t testing.TB, m *model.Model, kind schemas.UpdateKind, k keyPair) *schemas.ModelUpdate {
	t.Helper()
	u, err := m.Update(kind)
	if err != nil {
		t.Fatal(err)
	}
	if err := schemas.SignModelUpdate(u, k.id, k.priv); err != nil {
		t.Fatal(err)
	}
	return u
}

// detectorModel returns a model whose head flags class 1 ("scan") exactly
// for flows with a SYN and no response, by hand-set weights on those two
// features: a prototype-free head that tests can reason about.
func detectorModel(t testing.TB, seed uint64, hidden int) *model.Model {
	t.Helper()
	m := newTestModel(t, seed, hidden, "benign", "scan")
	spec := features.Default()
	syn, _ := spec.Index("tcp_syn")
	noResp, _ := spec.Index("no_response")
	d := m.EmbeddingDim()
	clear(m.P.ClsW)
	clear(m.P.ClsB)
	m.P.ClsW[1*d+hidden+syn] = 10
	m.P.ClsW[1*d+hidden+noResp] = 10
	m.P.ClsB[1] = -15 // both features on: logit +5; one or none: −5 or less
	m.Thresholds = []float32{0, 0.9}
	m.AnomalyThreshold = 0 // class alerts only, unless a test sets it
	m.WeightsChanged()
	return m
}

// testSettings are defaults with a key (unused by newCore, which takes the
// key map directly).
func testSettings() Settings {
	s := DefaultSettings()
	s.Model.Keys = []string{"unused.pub"}
	return s
}

// newCore returns a Stage without Kafka clients, serving m, for driving the
// scoring core directly. Its clock is fixed at now until the test moves it.
func newCore(t testing.TB, set Settings, m *model.Model, keys map[string]ed25519.PublicKey) (*Stage, *prometheus.Registry, *fakeClock) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Scorer = set
	reg := prometheus.NewRegistry()
	s, err := newStage(cfg, keys, testLog(t), reg)
	if err != nil {
		t.Fatal(err)
	}
	mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
	s.mem = mem
	clk := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	s.now = clk.now
	t.Cleanup(func() {
		s.release()
		mem.AssertSize(t, 0)
	})
	if m != nil {
		s.serve(&served{m: m, encoder: 1}, "test")
	}
	return s, reg, clk
}

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

// score runs messages (values for partition part) through the core as one
// batch and returns what it emitted.
func score(t testing.TB, s *Stage, part int, values ...[]byte) []kafka.Message {
	t.Helper()
	batch := make([]kafka.Message, len(values))
	for i, v := range values {
		batch[i] = kafka.Message{Topic: s.featuresTopic, Partition: part, Offset: int64(i), Key: []byte("k"), Value: v}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.em.reset()
	s.scoreBatch(batch, &s.em)
	return append([]kafka.Message(nil), s.em.msgs...)
}

// flush runs the stage's housekeeping and returns what it emitted.
func flushCore(t testing.TB, s *Stage) []kafka.Message {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.em.reset()
	for _, p := range s.parts {
		s.housekeep(p, s.now(), &s.em)
	}
	return append([]kafka.Message(nil), s.em.msgs...)
}

// byTopic splits messages by topic.
func byTopic(msgs []kafka.Message) map[string][]kafka.Message {
	out := map[string][]kafka.Message{}
	for _, m := range msgs {
		out[m.Topic] = append(out[m.Topic], m)
	}
	return out
}

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()

// flowOf makes a flow of host at start ns. A scan flow is a lone SYN with
// no answer; a benign one an answered HTTPS exchange.
func flowOf(host string, start int64, offset int64, scan bool, rng *rand.Rand) schemas.Flow {
	f := schemas.Flow{
		StartNs: start,
		EndNs:   start + int64(rng.IntN(50_000_000)),
		SrcAddr: netip.MustParseAddr(host),
		DstAddr: netip.AddrFrom4([4]byte{10, 9, byte(rng.IntN(256)), byte(1 + rng.IntN(250))}),
		SrcPort: uint16(32768 + rng.IntN(20000)),
		DstPort: 443,
		Proto:   6,
		Source:  schemas.Coord{Topic: "flows.test", Partition: 0, Offset: offset},
	}
	if scan {
		f.DstPort = uint16(1 + rng.IntN(1024))
		f.PktsOut, f.BytesOut, f.TCPFlags = 1, 60, 0x02
	} else {
		f.PktsOut, f.PktsIn = uint64(2+rng.IntN(20)), uint64(2+rng.IntN(30))
		f.BytesOut, f.BytesIn = f.PktsOut*uint64(60+rng.IntN(900)), f.PktsIn*uint64(60+rng.IntN(1400))
		f.TCPFlags = 0x1b
	}
	return f
}

// encodeFlows builds one features message value from flows.
func encodeFlows(t testing.TB, flows []schemas.Flow) []byte {
	t.Helper()
	mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
	defer mem.AssertSize(t, 0)
	b := features.NewBuilder(mem)
	defer b.Release()
	for i := range flows {
		b.Append(&flows[i])
	}
	rec := b.NewRecord()
	defer rec.Release()
	val, err := features.Encode(nil, rec)
	if err != nil {
		t.Fatal(err)
	}
	return val
}

// scores decodes every scores message in msgs, in order.
func scores(t testing.TB, s *Stage, msgs []kafka.Message) []features.Score {
	t.Helper()
	var out []features.Score
	for _, m := range msgs {
		if m.Topic != s.scoresTopic {
			continue
		}
		v, err := features.DecodeScores(m.Value, memory.DefaultAllocator)
		if err != nil {
			t.Fatalf("DecodeScores: %v", err)
		}
		for i := range v.Len() {
			out = append(out, features.Score{
				FlowID: v.FlowID(i), Host: string([]byte(v.Host(i))), TimeNs: v.TimeNs(i),
				Anomaly: v.Anomaly(i), ModelVersion: v.ModelVersion(i),
				Probs:     append([]float32(nil), v.Probs(i)...),
				Embedding: append([]float32(nil), v.Embedding(i)...),
			})
		}
		v.Release()
	}
	return out
}

// alerts decodes the Avro alerts in msgs.
func alerts(t testing.TB, s *Stage, msgs []kafka.Message) []schemas.Alert {
	t.Helper()
	var out []schemas.Alert
	for _, m := range msgs {
		if m.Topic != s.cfg.Topic("alerts") {
			continue
		}
		a, err := s.codecs.DecodeAlert(m.Value)
		if err != nil {
			t.Fatalf("DecodeAlert: %v", err)
		}
		out = append(out, a)
	}
	return out
}

// actions decodes the Avro actions in msgs.
func actions(t testing.TB, s *Stage, msgs []kafka.Message) []schemas.Action {
	t.Helper()
	var out []schemas.Action
	for _, m := range msgs {
		if m.Topic != s.actionsTopic {
			continue
		}
		a, err := s.codecs.DecodeAction(m.Value)
		if err != nil {
			t.Fatalf("DecodeAction: %v", err)
		}
		out = append(out, a)
	}
	return out
}

// hostState returns a copy of host's state in partition part.
func hostState(s *Stage, part int, host string) (h, c []float32, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.parts[part]
	if p == nil {
		return nil, nil, false
	}
	slot, ok := p.st.index[host]
	if !ok {
		return nil, nil, false
	}
	hs, cs := p.st.state(slot)
	return append([]float32(nil), hs...), append([]float32(nil), cs...), true
}

// eventually polls fn until it returns nil or timeout passes.
func eventually(t testing.TB, timeout time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", timeout, err)
		}
		time.Sleep(10 * time.Millisecond) // poll interval, not a wait for an event
	}
}

// histSum returns the sum of the samples of the histogram name in reg.
func histSum(t testing.TB, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetHistogram().GetSampleSum()
		}
	}
	t.Fatalf("no histogram %s", name)
	return 0
}

// campaignModel is detectorModel with a dormant class slow_scan and a
// campaign naming 10.6.6.6's alerts by it: labelled at t0 and t0+1s, ended
// by a pause of a minute.
func campaignModel(t testing.TB) *model.Model {
	t.Helper()
	m := detectorModel(t, 1, 8)
	k, err := m.AddDormantClass("slow_scan", 0.5)
	if err != nil {
		t.Fatal(err)
	}
	m.Campaigns = []model.Campaign{{Host: "10.6.6.6", Class: k, FirstNs: t0, LastNs: t0 + 1e9, IdleNs: int64(time.Minute)}}
	return m
}
