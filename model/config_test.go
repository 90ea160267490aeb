package model

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantErr []string // substrings; none means valid
	}{
		{"default", func(*Config) {}, nil},
		{"zero features", func(c *Config) { c.Features = 0 }, []string{"features: must be between 1 and 4096, got 0"}},
		{"every problem", func(c *Config) { c.Hidden, c.Classes = -1, []string{"benign", ""} },
			[]string{"hidden: must be between", "classes: class 1 has an empty name"}},
		{"duplicate class", func(c *Config) { c.Classes = []string{"benign", "scan", "scan"} }, []string{`class "scan" appears twice`}},
		{"no classes", func(c *Config) { c.Classes = nil }, []string{"classes: need between 1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tc.mutate(&cfg)
			err := cfg.Validate()
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				if _, err := New(cfg, rand.New(rand.NewPCG(1, 0))); err != nil {
					t.Fatalf("New = %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want errors %q", tc.wantErr)
			}
			for _, want := range tc.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Validate() = %q, want it to contain %q", err, want)
				}
			}
			if _, err := New(cfg, rand.New(rand.NewPCG(1, 0))); err == nil {
				t.Errorf("New accepted an invalid config")
			}
		})
	}
}

func TestNewInitialisation(t *testing.T) {
	cfg := DefaultConfig()
	a, _ := New(cfg, rand.New(rand.NewPCG(9, 0)))
	b, _ := New(cfg, rand.New(rand.NewPCG(9, 0)))
	c, _ := New(cfg, rand.New(rand.NewPCG(10, 0)))
	sameBits(t, "same seed", a.P.WeightHH, b.P.WeightHH)
	if a.P.WeightHH[0] == c.P.WeightHH[0] {
		t.Errorf("different seeds gave the same first weight")
	}
	// PyTorch's bounds: ±1/√H for the LSTM, ±1/√fan_in for the Linears.
	for _, ts := range a.Tensors() {
		bound := 1 / math.Sqrt(float64(cfg.Hidden))
		if ts.Name == TensorClsW || ts.Name == TensorClsB {
			bound = 1 / math.Sqrt(float64(cfg.Hidden+cfg.Features))
		}
		for _, v := range ts.Data {
			if math.Abs(float64(v)) > bound {
				t.Fatalf("%s has %g outside ±%g", ts.Name, v, bound)
			}
		}
	}
}

func TestAdamWConfigValidate(t *testing.T) {
	if err := DefaultAdamW().Validate(); err != nil {
		t.Fatalf("DefaultAdamW().Validate() = %v", err)
	}
	bad := AdamWConfig{LR: 0, Beta1: 1, Beta2: -0.1, Eps: 0, WeightDecay: float32(math.NaN())}
	err := bad.Validate()
	for _, want := range []string{"lr:", "beta1:", "beta2:", "eps:", "weight_decay:"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to name %q", err, want)
		}
	}
	if _, err := NewAdamW(bad); err == nil {
		t.Errorf("NewAdamW accepted an invalid config")
	}
}

func TestEarlyStopping(t *testing.T) {
	m := newTestModel(t, 2, 2, []string{"benign"})
	es := EarlyStopping{Patience: 2, MinDelta: 0.01}
	steps := []struct {
		loss           float64
		improved, stop bool
	}{
		{1.0, true, false},
		{0.995, false, false}, // within MinDelta
		{0.5, true, false},
		{0.6, false, false},
		{0.7, false, false},
		{0.8, false, true},
	}
	for i, s := range steps {
		m.P.ClsB[0] = float32(i)
		improved, stop := es.Observe(s.loss, m)
		if improved != s.improved || stop != s.stop {
			t.Errorf("epoch %d: Observe(%g) = %v, %v, want %v, %v", i, s.loss, improved, stop, s.improved, s.stop)
		}
	}
	best, metric := es.Best()
	if metric != 0.5 || best.P.ClsB[0] != 2 {
		t.Errorf("Best() = model of epoch %g, %g, want epoch 2, 0.5", best.P.ClsB[0], metric)
	}
}

func TestFineTuneHeadRejectsBadInput(t *testing.T) {
	m := newTestModel(t, 2, 2, []string{"benign", "scan"})
	d := m.EmbeddingDim()
	rng := rand.New(rand.NewPCG(1, 0))
	good := make([]float32, 2*d)
	tests := []struct {
		name   string
		emb    []float32
		labels []int
		want   string
	}{
		{"length", good[:d+1], []int{0, 1}, "wrong shape"},
		{"label", good, []int{0, 2}, "label 2 of row 1"},
		{"NaN", append(make([]float32, d), float32(math.NaN()), 0, 0, 0), []int{0, 1}, "non-finite"},
		{"empty", nil, nil, "wrong shape"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := m.FineTuneHead(tc.emb, tc.labels, DefaultFineTune(), rng)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("FineTuneHead = %v, want an error containing %q", err, tc.want)
			}
		})
	}
	if _, err := m.AddClass("scan", make([]float32, d), 0.5); err == nil {
		t.Errorf("AddClass accepted a duplicate name")
	}
	if _, err := m.AddClass("new", make([]float32, d-1), 0.5); err == nil {
		t.Errorf("AddClass accepted a short prototype")
	}
}
