package adapter

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/metaids/metaids/features"
	"github.com/metaids/metaids/model"
	"github.com/metaids/metaids/schemas"
)

// Test embeddings are synthesised: each family is a Gaussian cluster around
// its own centre in the embedding space, as the encoder's meta-training
// (prototypical loss) aims to make them. Benign traffic is one broad
// cluster. The head of the starting model is trained on these clusters
// for the known families only.

const (
	testHidden = 64
	testDim    = testHidden + features.NumFeatures
)

// knownFamilies are the classes of the starting model: benign plus seven
// families, eight classes in all, as in the benchmark of the issue.
var knownFamilies = []string{"benign", "portscan", "ssh_bruteforce", "ddos", "c2_beacon", "exfiltration", "dns_tunnel", "smb_worm"}

// world generates embeddings of families, seeded.
type world struct {
	rng     *rand.Rand
	centres map[string][]float32
}

func newWorld(seed uint64) *world {
	return &world{rng: rand.New(rand.NewPCG(seed, 0x776f726c64)), centres: map[string][]float32{}}
}

// centre returns the family's cluster centre, drawing it on first use.
func (w *world) centre(family string) []float32 {
	c, ok := w.centres[family]
	if !ok {
		c = make([]float32, testDim)
		for j := range c {
			c[j] = float32(w.rng.NormFloat64() * 0.6)
		}
		w.centres[family] = c
	}
	return c
}

// sample returns n embeddings of family.
func (w *world) sample(family string, n int) [][]float32 {
	c := w.centre(family)
	out := make([][]float32, n)
	for i := range out {
		e := make([]float32, testDim)
		for j := range e {
			e[j] = c[j] + float32(w.rng.NormFloat64()*0.45)
		}
		out[i] = e
	}
	return out
}

// near returns n embeddings between family's centre and other's, at
// fraction t of the way to other: flows that look like family to a model
// that has never seen other.
func (w *world) near(family, other string, t float64, n int) [][]float32 {
	a, b := w.centre(family), w.centre(other)
	out := w.sample(family, n)
	for _, e := range out {
		for j := range e {
			e[j] += float32(t) * (b[j] - a[j])
		}
	}
	return out
}

// baseModel returns a model whose head knows knownFamilies, trained on
// w's clusters, with exemplarsPerClass exemplars per class, at version 1.
func baseModel(t testing.TB, w *world, exemplarsPerClass int) *model.Model {
	t.Helper()
	cfg := model.DefaultConfig()
	cfg.Features = features.NumFeatures
	cfg.Hidden = testHidden
	cfg.Classes = knownFamilies
	cfg.SpecHash = features.Default().Hash()
	m, err := model.New(cfg, rand.New(rand.NewPCG(1, 2)))
	if err != nil {
		t.Fatalf("model.New: %v", err)
	}
	var emb []float32
	var ys []int
	for k, fam := range knownFamilies {
		for _, e := range w.sample(fam, 200) {
			emb = append(emb, e...)
			ys = append(ys, k)
		}
		for _, e := range w.sample(fam, exemplarsPerClass) {
			m.Exemplars = append(m.Exemplars, schemas.Exemplar{Class: int32(k), Embedding: e})
		}
	}
	ft := model.DefaultFineTune()
	if _, err := m.FineTuneHead(emb, ys, ft, rand.New(rand.NewPCG(3, 4))); err != nil {
		t.Fatalf("FineTuneHead: %v", err)
	}
	m.Version = 1
	return m
}

// recall returns the share of embs that m reports as class, by the
// scorer's rule (see predict).
func recall(m *model.Model, embs [][]float32, class string) float64 {
	k, ok := m.ClassIndex(class)
	if !ok {
		return 0
	}
	benign, _ := m.ClassIndex(schemas.VerdictBenign)
	rows := make([]row, len(embs))
	for i, e := range embs {
		rows[i] = row{class: k, emb: e}
	}
	hit := 0
	for _, p := range predict(m, rows, benign) {
		if p == k {
			hit++
		}
	}
	return float64(hit) / float64(len(embs))
}

// samples labels embs with verdict.
func samples(verdict string, embs [][]float32) []sample {
	out := make([]sample, len(embs))
	for i, e := range embs {
		out[i] = sample{verdict: verdict, emb: e}
	}
	return out
}

// testLog is quiet unless METAIDS_TEST_LOG is set.
func testLog(t testing.TB) *slog.Logger {
	t.Helper()
	if os.Getenv("METAIDS_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
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

var _ = fmt.Sprint
