package scorer

import (
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/metaids/metaids/features"
	"github.com/metaids/metaids/model"
	"github.com/metaids/metaids/schemas"
)

// TestVerifyUpdates runs every kind of update the scorer must refuse, and
// the ones it must take, through the verifier.
func TestVerifyUpdates(t *testing.T) {
	key := newKeyPair(t, 1)
	other := newKeyPair(t, 2)
	base := newTestModel(t, 1, 8, "benign", "scan")
	cur := &served{m: base, encoder: 1}
	vf := &verifier{name: "metaids", keys: key.keys(), specHash: base.SpecHash}

	// next returns a copy of base at version v, changed by edit.
	next := func(v int64, edit func(m *model.Model)) *model.Model {
		m := base.Clone()
		m.Version = v
		if edit != nil {
			edit(m)
		}
		return m
	}
	for _, tc := range []struct {
		name        string
		update      func() *schemas.ModelUpdate
		cur         *served
		wantReason  string // "" for accepted
		wantEncoder uint64
	}{
		{
			name: "unsigned",
			update: func() *schemas.ModelUpdate {
				u, _ := next(2, nil).Update(schemas.UpdateFull)
				return u
			},
			cur: cur, wantReason: reasonUnsigned,
		},
		{
			name:   "signed by an unknown key",
			update: func() *schemas.ModelUpdate { return signed(t, next(2, nil), schemas.UpdateFull, other) },
			cur:    cur, wantReason: reasonUnknownKey,
		},
		{
			name: "altered after signing",
			update: func() *schemas.ModelUpdate {
				u := signed(t, next(2, nil), schemas.UpdateFull, key)
				u.AnomalyThreshold *= 2
				return u
			},
			cur: cur, wantReason: reasonBadSignature,
		},
		{
			name: "NaN weights",
			update: func() *schemas.ModelUpdate {
				return signed(t, next(2, func(m *model.Model) { m.P.WeightHH[3] = float32(math.NaN()) }), schemas.UpdateFull, key)
			},
			cur: cur, wantReason: reasonNonFinite,
		},
		{
			name: "wrong shape",
			update: func() *schemas.ModelUpdate {
				u, _ := next(2, nil).Update(schemas.UpdateFull)
				for i := range u.Tensors {
					if u.Tensors[i].Name == model.TensorClsW {
						u.Tensors[i].Rows++
						u.Tensors[i].Data = append(u.Tensors[i].Data, make([]float32, u.Tensors[i].Cols)...)
					}
				}
				if err := schemas.SignModelUpdate(u, key.id, key.priv); err != nil {
					t.Fatal(err)
				}
				return u
			},
			cur: cur, wantReason: reasonShape,
		},
		{
			name: "another feature spec",
			update: func() *schemas.ModelUpdate {
				return signed(t, next(2, func(m *model.Model) { m.SpecHash = "0123456789abcdef" }), schemas.UpdateFull, key)
			},
			cur: cur, wantReason: reasonSpec,
		},
		{
			name:   "not newer",
			update: func() *schemas.ModelUpdate { return signed(t, next(1, nil), schemas.UpdateFull, key) },
			cur:    cur, wantReason: reasonStale,
		},
		{
			name:   "head with nothing to apply it to",
			update: func() *schemas.ModelUpdate { return signed(t, next(2, nil), schemas.UpdateHead, key) },
			cur:    nil, wantReason: reasonNoBase,
		},
		{
			name: "for another model",
			update: func() *schemas.ModelUpdate {
				return signed(t, next(2, func(m *model.Model) { m.Name = "other" }), schemas.UpdateFull, key)
			},
			cur: cur, wantReason: reasonInvalid,
		},
		{
			name:   "first model",
			update: func() *schemas.ModelUpdate { return signed(t, next(1, nil), schemas.UpdateFull, key) },
			cur:    nil, wantEncoder: 1,
		},
		{
			name: "head keeps the encoder",
			update: func() *schemas.ModelUpdate {
				return signed(t, next(2, func(m *model.Model) {
					if _, err := m.AddClass("exfil", make([]float32, m.EmbeddingDim()), 0.7); err != nil {
						t.Fatal(err)
					}
				}), schemas.UpdateHead, key)
			},
			cur: cur, wantEncoder: 1,
		},
		{
			name: "full update with the same encoder keeps it",
			update: func() *schemas.ModelUpdate {
				return signed(t, next(2, func(m *model.Model) { m.P.ClsB[0] += 1 }), schemas.UpdateFull, key)
			},
			cur: cur, wantEncoder: 1,
		},
		{
			name: "full update with a new encoder",
			update: func() *schemas.ModelUpdate {
				return signed(t, next(2, func(m *model.Model) { m.P.WeightIH[0] += 1 }), schemas.UpdateFull, key)
			},
			cur: cur, wantEncoder: 2,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := tc.update()
			sv, err := vf.accept(u, tc.cur)
			if tc.wantReason != "" {
				var rej *RejectError
				if !errors.As(err, &rej) || rej.Reason != tc.wantReason || !errors.Is(err, ErrModelRejected) {
					t.Fatalf("accept = %v, want a rejection for %s", err, tc.wantReason)
				}
				return
			}
			if err != nil {
				t.Fatalf("accept = %v, want the update served", err)
			}
			if sv.m.Version != u.Version || sv.encoder != tc.wantEncoder || !slices.Equal(sv.m.Classes(), u.Classes) {
				t.Errorf("served version %d encoder %d classes %v, want %d, %d, %v", sv.m.Version, sv.encoder, sv.m.Classes(), u.Version, tc.wantEncoder, u.Classes)
			}
		})
	}
}

// TestHotSwap checks what a swap does to scoring: rejected updates leave
// the old model serving; a head update changes the version on scores while
// host states carry on; a new encoder resets them.
func TestHotSwap(t *testing.T) {
	key := newKeyPair(t, 1)
	m1 := detectorModel(t, 1, 8)
	s, _, _ := newCore(t, testSettings(), m1, key.keys())
	rng := rand.New(rand.NewPCG(9, 0))
	flow := func(i int) []byte {
		return encodeFlows(t, []schemas.Flow{flowOf("10.3.3.3", t0+int64(i)*int64(time.Second), int64(i), false, rng)})
	}
	score(t, s, 0, flow(0))
	h1, _, _ := hostState(s, 0, "10.3.3.3")

	bad := m1.Clone()
	bad.Version = 5
	bad.P.ClsB[0] = float32(math.Inf(1))
	if err := s.offer(signed(t, bad, schemas.UpdateFull, key), "test"); !errors.Is(err, ErrModelRejected) {
		t.Fatalf("offer(infinite bias) = %v, want a rejection", err)
	}
	if got := scores(t, s, score(t, s, 0, flow(1))); got[0].ModelVersion != 1 {
		t.Errorf("after a rejected update scores carry version %d, want 1", got[0].ModelVersion)
	}
	if got := testutil.ToFloat64(s.met.modelUpdates.WithLabelValues(reasonNonFinite)); got != 1 {
		t.Errorf("rejections counted as non_finite = %v, want 1", got)
	}

	// A head-only update: states carry on from where they were.
	m2 := m1.Clone()
	m2.Version = 2
	m2.P.ClsB[1] += 0.5
	m2.WeightsChanged()
	if err := s.offer(signed(t, m2, schemas.UpdateHead, key), "test"); err != nil {
		t.Fatalf("offer(head update) = %v", err)
	}
	h2before, _, _ := hostState(s, 0, "10.3.3.3")
	if slices.Equal(h1, h2before) {
		t.Fatal("the second flow did not move the state")
	}
	if got := scores(t, s, score(t, s, 0, flow(2))); got[0].ModelVersion != 2 {
		t.Errorf("after the head update scores carry version %d, want 2", got[0].ModelVersion)
	}
	if got := testutil.ToFloat64(s.met.statesReset); got != 0 {
		t.Errorf("states reset %v times by a head update, want 0", got)
	}
	if got := s.State().Hosts; got != 1 {
		t.Errorf("hosts held after a head update = %d, want 1", got)
	}

	// A new encoder: the next flow starts from a zero state, as a first
	// flow does (dt_prev 0).
	m3 := m1.Clone()
	m3.Version = 3
	m3.P.WeightIH[0] += 1
	m3.WeightsChanged()
	if err := s.offer(signed(t, m3, schemas.UpdateFull, key), "test"); err != nil {
		t.Fatalf("offer(new encoder) = %v", err)
	}
	got := scores(t, s, score(t, s, 0, flow(3)))
	if got[0].ModelVersion != 3 || got[0].Embedding[m3.Hidden()+features.IdxDeltaT] != 0 {
		t.Errorf("after the new encoder: version %d, dt_prev %v, want 3 and 0 (a fresh state)", got[0].ModelVersion, got[0].Embedding[m3.Hidden()+features.IdxDeltaT])
	}
	if got := testutil.ToFloat64(s.met.statesReset); got != 1 {
		t.Errorf("states reset %v times, want 1", got)
	}
	if v := s.ModelVersion(); v != 3 {
		t.Errorf("ModelVersion() = %d, want 3", v)
	}
}

func TestModelFile(t *testing.T) {
	key := newKeyPair(t, 1)
	m := newTestModel(t, 1, 8, "benign", "scan")
	codecs, err := schemas.NewCodecs(nil)
	if err != nil {
		t.Fatal(err)
	}
	write := func(u *schemas.ModelUpdate) string {
		b, err := codecs.AppendModelUpdate(nil, u)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "model.avro")
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	unsigned, _ := m.Update(schemas.UpdateFull)
	garbage := filepath.Join(t.TempDir(), "garbage")
	if err := os.WriteFile(garbage, []byte("not a model"), 0o600); err != nil {
		t.Fatal(err)
	}
	vf := &verifier{name: "metaids", keys: key.keys(), specHash: m.SpecHash}
	for _, tc := range []struct {
		name       string
		path       string
		wantReason string
	}{
		{"signed", write(signed(t, m, schemas.UpdateFull, key)), ""},
		{"unsigned", write(unsigned), reasonUnsigned},
		{"not a model update", garbage, reasonMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sv, err := vf.loadModelFile(codecs, tc.path)
			if tc.wantReason == "" {
				if err != nil || sv.m.Version != 1 {
					t.Fatalf("loadModelFile = %v, %v, want version 1", sv, err)
				}
				return
			}
			var rej *RejectError
			if !errors.As(err, &rej) || rej.Reason != tc.wantReason {
				t.Fatalf("loadModelFile = %v, want a rejection for %s", err, tc.wantReason)
			}
		})
	}
	if _, err := vf.loadModelFile(codecs, filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("loadModelFile(missing file) succeeded")
	}
}

// TestNew checks what New refuses before any broker is contacted.
func TestNew(t *testing.T) {
	key := newKeyPair(t, 1)
	m := newTestModel(t, 1, 8, "benign", "scan")
	codecs, err := schemas.NewCodecs(nil)
	if err != nil {
		t.Fatal(err)
	}
	writeModel := func(u *schemas.ModelUpdate) string {
		b, err := codecs.AppendModelUpdate(nil, u)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "model.avro")
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	unsigned, _ := m.Update(schemas.UpdateFull)
	for _, tc := range []struct {
		name    string
		edit    func(c *Config)
		wantErr string
		wantIs  error
		wantVer int64
	}{
		{name: "without a model file", edit: func(c *Config) {}},
		{name: "with a signed model file", edit: func(c *Config) { c.Scorer.Model.File = writeModel(signed(t, m, schemas.UpdateFull, key)) }, wantVer: 1},
		{name: "with an unsigned model file", edit: func(c *Config) { c.Scorer.Model.File = writeModel(unsigned) }, wantIs: ErrModelRejected},
		{name: "with a missing key file", edit: func(c *Config) { c.Scorer.Model.Keys = []string{filepath.Join(t.TempDir(), "none.pub")} }, wantErr: "-scorer.model.keys"},
		{name: "with a bad setting", edit: func(c *Config) { c.Scorer.Batch.MaxFlows = 0 }, wantErr: "scorer config: -scorer.batch.max-flows"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Brokers = []string{"127.0.0.1:9"}
			cfg.Scorer.Model.Keys = []string{key.file}
			tc.edit(&cfg)
			s, err := New(cfg, testLog(t), prometheus.NewRegistry())
			switch {
			case tc.wantErr != "" || tc.wantIs != nil:
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || (tc.wantIs != nil && !errors.Is(err, tc.wantIs)) {
					t.Fatalf("New = %v, want an error containing %q (is %v)", err, tc.wantErr, tc.wantIs)
				}
			case err != nil:
				t.Fatalf("New = %v", err)
			default:
				if v := s.ModelVersion(); v != tc.wantVer {
					t.Errorf("ModelVersion() = %d, want %d", v, tc.wantVer)
				}
				if s.Ready() {
					t.Error("Ready() = true before Run, want false")
				}
				s.out.Close()
			}
		})
	}
}
