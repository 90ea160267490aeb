package model

import (
	"bytes"
	"errors"
	"hash/crc32"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/metaids/metaids/schemas"
)

// newTrainedLike returns a model with non-trivial everything: normalisation,
// thresholds, exemplars and metadata.
func newTrainedLike(t testing.TB) *Model {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Features, cfg.Hidden = 8, 16
	cfg.Classes = []string{"benign", "scan", "beacon"}
	cfg.SpecHash = "spec-v1"
	m, err := New(cfg, rand.New(rand.NewPCG(11, 0)))
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(12, 0))
	mean, std := make([]float32, 8), make([]float32, 8)
	for i := range mean {
		mean[i], std[i] = float32(rng.NormFloat64()), float32(0.5+rng.Float64())
	}
	if err := m.SetNorm(mean, std); err != nil {
		t.Fatal(err)
	}
	m.Version, m.ParentVersion, m.CreatedNs = 7, 6, 1700000000000000000
	m.Thresholds = []float32{0, 0.8, 0.65}
	m.AnomalyThreshold = 2.5
	m.Exemplars = []schemas.Exemplar{{Class: 1, Embedding: randSlice(rng, m.EmbeddingDim(), 1)}}
	m.GateBenign = randSlice(rng, 3*m.EmbeddingDim(), 1)
	m.GateKnown = []schemas.Exemplar{{Class: 2, Embedding: randSlice(rng, m.EmbeddingDim(), 1)}, {Class: 1, Embedding: randSlice(rng, m.EmbeddingDim(), 1)}}
	return m
}

// stepOutputs runs a few steps of random flows for 5 hosts and returns
// everything the step produced, for bit-for-bit comparison.
func stepOutputs(m *Model) []float32 {
	rng := rand.New(rand.NewPCG(13, 0))
	const b = 5
	ws := NewWorkspace(m, b)
	h, c := make([]float32, b*m.Hidden()), make([]float32, b*m.Hidden())
	var out StepOut
	var all []float32
	for range 3 {
		m.Step(ws, h, c, randSlice(rng, b*m.Features(), 2), &out)
		all = append(all, out.Probs...)
		all = append(all, out.Anomaly...)
		all = append(all, out.Emb...)
		all = append(all, h...)
		all = append(all, c...)
	}
	return all
}

func sameBits(t *testing.T, what string, got, want []float32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range got {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("%s[%d] = %g, want %g bit for bit", what, i, got[i], want[i])
		}
	}
}

func TestSaveLoadBitIdentical(t *testing.T) {
	m := newTrainedLike(t)
	path := filepath.Join(t.TempDir(), "model.bin")
	if err := m.Save(path); err != nil {
		t.Fatal(err)
	}
	got, err := Load(path, "spec-v1")
	if err != nil {
		t.Fatal(err)
	}
	sameBits(t, "step outputs", stepOutputs(got), stepOutputs(m))
	for i, ts := range got.Tensors() {
		sameBits(t, ts.Name, ts.Data, m.Tensors()[i].Data)
	}
	if got.Version != 7 || got.ParentVersion != 6 || got.CreatedNs != m.CreatedNs || got.SpecHash != "spec-v1" ||
		got.AnomalyThreshold != 2.5 || strings.Join(got.Classes(), ",") != "benign,scan,beacon" || got.Name != m.Name {
		t.Errorf("Load metadata = %+v, want that of %+v", got, m)
	}
	sameBits(t, "thresholds", got.Thresholds, m.Thresholds)
	sameBits(t, "exemplar", got.Exemplars[0].Embedding, m.Exemplars[0].Embedding)
	sameBits(t, "gate benign", got.GateBenign, m.GateBenign)
	sameGateKnown(t, got.GateKnown, m.GateKnown)
	gm, gs := got.Norm()
	mm, ms := m.Norm()
	sameBits(t, "norm mean", gm, mm)
	sameBits(t, "norm std", gs, ms)
}

func TestHeadUpdate(t *testing.T) {
	base := newTrainedLike(t)
	tuned := base.Clone()
	rng := rand.New(rand.NewPCG(14, 0))
	mu := randSlice(rng, base.EmbeddingDim(), 1)
	if _, err := tuned.AddClass("exfil", mu, 0.7); err != nil {
		t.Fatal(err)
	}
	tuned.Version, tuned.ParentVersion = 8, 7
	u, err := tuned.Update(schemas.UpdateHead)
	if err != nil {
		t.Fatal(err)
	}
	if u.NormMean != nil || len(u.Tensors) != 2 {
		t.Fatalf("head update carries %d tensors and norm %v, want the 2 classifier tensors only", len(u.Tensors), u.NormMean)
	}
	// Through the file format too, as the adapter may store it.
	u, err = UnmarshalUpdate(MarshalUpdate(u))
	if err != nil {
		t.Fatal(err)
	}
	got, err := base.ApplyHead(u)
	if err != nil {
		t.Fatal(err)
	}
	if got.NumClasses() != 4 || got.Version != 8 || base.NumClasses() != 3 {
		t.Fatalf("ApplyHead: %d classes, version %d (base now %d classes), want 4, 8 (and 3)", got.NumClasses(), got.Version, base.NumClasses())
	}
	sameBits(t, "step outputs", stepOutputs(got), stepOutputs(tuned))
	// The gate set belongs to the encoder, which a head update keeps.
	sameBits(t, "gate benign", got.GateBenign, base.GateBenign)
	sameGateKnown(t, got.GateKnown, base.GateKnown)
}

func sameGateKnown(t *testing.T, got, want []schemas.Exemplar) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("gate known: %d rows, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].Class != want[i].Class {
			t.Errorf("gate known row %d: class %d, want %d", i, got[i].Class, want[i].Class)
		}
		sameBits(t, "gate known", got[i].Embedding, want[i].Embedding)
	}
}

func TestUpdateRejected(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(u *schemas.ModelUpdate)
		spec    string
		wantErr error
		wantSub string
	}{
		{"spec hash", func(u *schemas.ModelUpdate) {}, "spec-v2", ErrSpecMismatch, `"spec-v1"`},
		{"tensor shape", func(u *schemas.ModelUpdate) { u.Tensors[1].Rows = 3 }, "", ErrShape, TensorWeightHH},
		{"tensor data", func(u *schemas.ModelUpdate) { u.Tensors[4].Data = u.Tensors[4].Data[1:] }, "", ErrShape, TensorPredW},
		{"NaN weight", func(u *schemas.ModelUpdate) { u.Tensors[0].Data[5] = float32(math.NaN()) }, "", ErrNonFinite, TensorWeightIH},
		{"Inf bias", func(u *schemas.ModelUpdate) { u.Tensors[7].Data[0] = float32(math.Inf(1)) }, "", ErrNonFinite, TensorClsB},
		{"missing tensor", func(u *schemas.ModelUpdate) { u.Tensors = u.Tensors[:7] }, "", ErrInvalid, TensorClsB},
		{"unknown tensor", func(u *schemas.ModelUpdate) { u.Tensors[2].Name = "lstm.bias" }, "", ErrInvalid, "lstm.bias"},
		{"norm std", func(u *schemas.ModelUpdate) { u.NormStd = u.NormStd[:3] }, "", ErrShape, "norm_std"},
		{"NaN mean", func(u *schemas.ModelUpdate) { u.NormMean[0] = float32(math.NaN()) }, "", ErrNonFinite, "norm_mean"},
		{"thresholds", func(u *schemas.ModelUpdate) { u.Thresholds = u.Thresholds[:1] }, "", ErrShape, "thresholds"},
		{"anomaly threshold", func(u *schemas.ModelUpdate) { u.AnomalyThreshold = float32(math.Inf(1)) }, "", ErrNonFinite, "anomaly_threshold"},
		{"duplicate class", func(u *schemas.ModelUpdate) { u.Classes[2] = "scan" }, "", ErrInvalid, "twice"},
		{"exemplar", func(u *schemas.ModelUpdate) { u.Exemplars[0].Embedding = nil }, "", ErrShape, "exemplar 0"},
		{"exemplar class", func(u *schemas.ModelUpdate) { u.Exemplars[0].Class = 9 }, "", ErrInvalid, "exemplar 0"},
		{"kind", func(u *schemas.ModelUpdate) { u.Kind = schemas.UpdateHead }, "", ErrInvalid, "kind"},
		{"dimensions", func(u *schemas.ModelUpdate) { u.Hidden = 1 << 20 }, "", ErrShape, "hidden"},
		{"gate set width", func(u *schemas.ModelUpdate) { gateOf(u).Cols-- }, "", ErrShape, TensorGateBenign},
		{"gate set rows", func(u *schemas.ModelUpdate) { gateOf(u).Rows = MaxGateBenign + 1 }, "", ErrShape, TensorGateBenign},
		{"gate set NaN", func(u *schemas.ModelUpdate) { gateOf(u).Data[4] = float32(math.NaN()) }, "", ErrNonFinite, TensorGateBenign},
		{"gate set twice", func(u *schemas.ModelUpdate) { u.Tensors = append(u.Tensors, *gateOf(u)) }, "", ErrInvalid, TensorGateBenign},
		{"known gate set width", func(u *schemas.ModelUpdate) { tensorOf(u, TensorGateKnown).Cols-- }, "", ErrShape, TensorGateKnown},
		{"known gate set rows", func(u *schemas.ModelUpdate) { tensorOf(u, TensorGateKnown).Rows = MaxGateKnown + 1 }, "", ErrShape, TensorGateKnown},
		{"known gate set NaN", func(u *schemas.ModelUpdate) { tensorOf(u, TensorGateKnown).Data[3] = float32(math.NaN()) }, "", ErrNonFinite, TensorGateKnown},
		{"known gate set benign class", func(u *schemas.ModelUpdate) { tensorOf(u, TensorGateKnown).Data[0] = 0 }, "", ErrInvalid, TensorGateKnown},
		{"known gate set class past the last", func(u *schemas.ModelUpdate) { tensorOf(u, TensorGateKnown).Data[0] = 3 }, "", ErrInvalid, TensorGateKnown},
		{"known gate set fractional class", func(u *schemas.ModelUpdate) { tensorOf(u, TensorGateKnown).Data[0] = 1.5 }, "", ErrInvalid, TensorGateKnown},
		{"known gate set NaN class", func(u *schemas.ModelUpdate) { tensorOf(u, TensorGateKnown).Data[0] = float32(math.NaN()) }, "", ErrInvalid, TensorGateKnown},
		{"known gate set twice", func(u *schemas.ModelUpdate) { u.Tensors = append(u.Tensors, *tensorOf(u, TensorGateKnown)) }, "", ErrInvalid, TensorGateKnown},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u, err := newTrainedLike(t).Update(schemas.UpdateFull)
			if err != nil {
				t.Fatal(err)
			}
			tc.mutate(u)
			_, err = FromUpdate(u, tc.spec)
			if !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), tc.wantSub) {
				t.Errorf("FromUpdate = %v, want %v mentioning %q", err, tc.wantErr, tc.wantSub)
			}
		})
	}
}

// gateOf returns u's benign gate set tensor.
func gateOf(u *schemas.ModelUpdate) *schemas.Tensor { return tensorOf(u, TensorGateBenign) }

// tensorOf returns u's tensor of the name.
func tensorOf(u *schemas.ModelUpdate, name string) *schemas.Tensor {
	for i := range u.Tensors {
		if u.Tensors[i].Name == name {
			return &u.Tensors[i]
		}
	}
	panic("no " + name + " in the update")
}

func TestApplyHeadRejected(t *testing.T) {
	base := newTrainedLike(t)
	tests := []struct {
		name    string
		mutate  func(u *schemas.ModelUpdate)
		wantErr error
	}{
		{"spec hash", func(u *schemas.ModelUpdate) { u.SpecHash = "other" }, ErrSpecMismatch},
		{"hidden", func(u *schemas.ModelUpdate) { u.Hidden = 32 }, ErrShape},
		{"head rows", func(u *schemas.ModelUpdate) { u.Classes = append(u.Classes, "new") }, ErrShape},
		{"NaN", func(u *schemas.ModelUpdate) { u.Tensors[0].Data[0] = float32(math.NaN()) }, ErrNonFinite},
		{"encoder tensor in head", func(u *schemas.ModelUpdate) {
			u.Tensors = append(u.Tensors, schemas.Tensor{Name: TensorPredB, Rows: 8, Cols: 1, Data: make([]float32, 8)})
		}, ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u, err := base.Update(schemas.UpdateHead)
			if err != nil {
				t.Fatal(err)
			}
			tc.mutate(u)
			if _, err := base.ApplyHead(u); !errors.Is(err, tc.wantErr) {
				t.Errorf("ApplyHead = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func TestCorruptFileRejected(t *testing.T) {
	var buf bytes.Buffer
	if _, err := newTrainedLike(t).WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	good := buf.Bytes()
	tests := []struct {
		name    string
		corrupt func([]byte) []byte
		wantSub string
	}{
		{"flipped weight bit", func(b []byte) []byte { b[len(b)/2] ^= 0x10; return b }, "checksum"},
		{"truncated", func(b []byte) []byte { return b[:len(b)-100] }, "truncated"},
		{"empty", func(b []byte) []byte { return nil }, "too short"},
		{"magic", func(b []byte) []byte { b[0] = 'X'; return b }, "magic"},
		{"version", func(b []byte) []byte { b[8] = 9; return b }, "version"},
		{"trailing", func(b []byte) []byte { return append(b, 0) }, "declared"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.corrupt(bytes.Clone(good))
			_, err := Read(bytes.NewReader(b), "")
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tc.wantSub) {
				t.Errorf("Read = %v, want %v mentioning %q", err, ErrCorrupt, tc.wantSub)
			}
		})
	}
	if _, err := Read(bytes.NewReader(good), "spec-v1"); err != nil {
		t.Errorf("Read(uncorrupted) = %v", err)
	}
}

// FuzzReadModel: whatever the bytes, Read returns a model or an error, and
// never panics or allocates without bound.
func FuzzReadModel(f *testing.F) {
	var buf bytes.Buffer
	if _, err := newTrainedLike(f).WriteTo(&buf); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Add([]byte(fileMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Read(bytes.NewReader(b), "")
		if (m == nil) == (err == nil) {
			t.Fatalf("Read = %v, %v: want exactly one", m, err)
		}
		if m != nil {
			stepOutputs(m)
		}
	})
}

// FuzzModelPayload frames arbitrary payloads with a valid header and
// checksum, so the fuzzer reaches the field decoder and FromUpdate's checks
// that the checksum otherwise shields: whatever the payload, no panic, and a
// model that loads can step.
func FuzzModelPayload(f *testing.F) {
	u, err := newTrainedLike(f).Update(schemas.UpdateFull)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(MarshalUpdate(u)[20 : len(MarshalUpdate(u))-4])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, payload []byte) {
		var e enc
		e.b = append(e.b, fileMagic...)
		e.u32(FileVersion)
		e.u64(uint64(len(payload)))
		e.b = append(e.b, payload...)
		e.u32(crc32.Checksum(payload, castagnoli))
		u, err := UnmarshalUpdate(e.b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("UnmarshalUpdate = %v, want ErrCorrupt", err)
			}
			return
		}
		m, err := FromUpdate(u, "")
		if err != nil {
			return
		}
		if m.Features() > 64 || m.Hidden() > 64 {
			return // valid but slow to step
		}
		stepOutputs(m)
	})
}
