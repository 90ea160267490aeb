package model

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"testing"
)

// golden is testdata/golden.json, written by testdata/golden.py with
// PyTorch (the file records which version).
type golden struct {
	Generator string               `json:"generator"`
	Torch     string               `json:"torch"`
	Features  int                  `json:"features"`
	Hidden    int                  `json:"hidden"`
	Classes   []string             `json:"classes"`
	NormMean  []float32            `json:"norm_mean"`
	NormStd   []float32            `json:"norm_std"`
	Params    map[string][]float32 `json:"params"`
	Step      struct {
		B                               int
		H, C, X                         []float32
		Anomaly, HOut, COut, Emb, Probs []float32
	} `json:"step"`
	Clip struct {
		MaxNorm float64              `json:"max_norm"`
		Norm    float64              `json:"norm"`
		Grads   map[string][]float32 `json:"grads"`
	} `json:"clip"`
	AdamW struct {
		LR          float32              `json:"lr"`
		WeightDecay float32              `json:"weight_decay"`
		Steps       int                  `json:"steps"`
		Params      map[string][]float32 `json:"params"`
	} `json:"adamw"`
	Window struct {
		S, T                   int
		X, H0, C0              []float32
		Labels                 []int
		Emb, Logits, Pred      []float32
		PredictLoss, ClassLoss float64
		Grads                  map[string][]float32
		DX                     []float32
	} `json:"window"`
}

func loadGolden(t testing.TB) (*golden, *Model) {
	t.Helper()
	raw, err := os.ReadFile("testdata/golden.json")
	if err != nil {
		t.Fatal(err)
	}
	// The fixture's keys are snake_case; map them onto the struct's fields.
	var aux map[string]json.RawMessage
	if err := json.Unmarshal(raw, &aux); err != nil {
		t.Fatal(err)
	}
	var g golden
	if err := json.Unmarshal(raw, &g); err != nil {
		t.Fatal(err)
	}
	if err := unmarshalSnake(aux["step"], &g.Step); err != nil {
		t.Fatal(err)
	}
	if err := unmarshalSnake(aux["window"], &g.Window); err != nil {
		t.Fatal(err)
	}
	st, w := &g.Step, &g.Window
	k := g.Hidden + g.Features
	for _, v := range []struct {
		name    string
		n, want int
	}{
		{"step.h", len(st.H), st.B * g.Hidden}, {"step.x", len(st.X), st.B * g.Features},
		{"step.h_out", len(st.HOut), st.B * g.Hidden}, {"step.c_out", len(st.COut), st.B * g.Hidden},
		{"step.anomaly", len(st.Anomaly), st.B}, {"step.emb", len(st.Emb), st.B * k},
		{"step.probs", len(st.Probs), st.B * len(g.Classes)},
		{"window.x", len(w.X), w.S * w.T * g.Features}, {"window.emb", len(w.Emb), w.S * w.T * k},
		{"window.dx", len(w.DX), len(w.X)}, {"window.grads", len(w.Grads), 8},
	} {
		if v.n != v.want || v.n == 0 {
			t.Fatalf("fixture %s has %d values, want %d", v.name, v.n, v.want)
		}
	}
	cfg := DefaultConfig()
	cfg.Features, cfg.Hidden, cfg.Classes = g.Features, g.Hidden, g.Classes
	m, err := New(cfg, rand.New(rand.NewPCG(1, 0)))
	if err != nil {
		t.Fatal(err)
	}
	for _, ts := range m.Tensors() {
		v, ok := g.Params[ts.Name]
		if !ok || len(v) != len(ts.Data) {
			t.Fatalf("fixture tensor %s: %d values, want %d", ts.Name, len(v), len(ts.Data))
		}
		copy(ts.Data, v)
	}
	if err := m.SetNorm(g.NormMean, g.NormStd); err != nil {
		t.Fatal(err)
	}
	return &g, m
}

// unmarshalSnake decodes a JSON object whose keys are snake_case into a
// struct whose fields are the CamelCase of those keys.
func unmarshalSnake(raw json.RawMessage, v any) error {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return err
	}
	camel := make(map[string]json.RawMessage, len(obj))
	for k, val := range obj {
		out, up := []byte{}, true
		for _, r := range []byte(k) {
			switch {
			case r == '_':
				up = true
			case up:
				out = append(out, r-'a'+'A')
				up = false
			default:
				out = append(out, r)
			}
		}
		camel[string(out)] = val
	}
	b, err := json.Marshal(camel)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// near reports the first element where got and want differ by more than tol
// relative to max(1, |want|).
func near(got, want []float32, tol float64) error {
	if len(got) != len(want) {
		return fmt.Errorf("%d values, want %d", len(got), len(want))
	}
	for i := range got {
		w := float64(want[i])
		if d := math.Abs(float64(got[i]) - w); !(d <= tol*max(1, math.Abs(w))) {
			return fmt.Errorf("[%d] = %g, want %g (diff %g)", i, got[i], want[i], d)
		}
	}
	return nil
}

func TestGoldenStep(t *testing.T) {
	for _, kern := range testKernels() {
		t.Run(kern.name, func(t *testing.T) {
			g, m := loadGolden(t)
			t.Logf("fixture by %s, torch %s", g.Generator, g.Torch)
			for _, maxB := range []int{g.Step.B, 7, 200} {
				ws := newWorkspace(m, maxB, kern)
				h := append([]float32(nil), g.Step.H...)
				c := append([]float32(nil), g.Step.C...)
				var out StepOut
				// Step in batches of at most maxB hosts, as the scorer does.
				hid, f := m.Hidden(), m.Features()
				var anomaly, emb, probs []float32
				for r := 0; r < g.Step.B; r += maxB {
					e := min(g.Step.B, r+maxB)
					m.Step(ws, h[r*hid:e*hid], c[r*hid:e*hid], g.Step.X[r*f:e*f], &out)
					anomaly = append(anomaly, out.Anomaly...)
					emb = append(emb, out.Emb...)
					probs = append(probs, out.Probs...)
				}
				for _, cmp := range []struct {
					name      string
					got, want []float32
				}{
					{"h", h, g.Step.HOut},
					{"c", c, g.Step.COut},
					{"anomaly", anomaly, g.Step.Anomaly},
					{"emb", emb, g.Step.Emb},
					{"probs", probs, g.Step.Probs},
				} {
					if err := near(cmp.got, cmp.want, 1e-5); err != nil {
						t.Errorf("maxB=%d: Step %s%v", maxB, cmp.name, err)
					}
				}
			}
		})
	}
}

func TestGoldenWindow(t *testing.T) {
	g, m := loadGolden(t)
	w := g.Window
	tp := NewTape(m, w.S, w.T)
	tp.Forward(m, w.X, w.S, ForwardOptions{H0: w.H0, C0: w.C0})
	var emb, logits, pred []float32
	for s := range w.S {
		for t := range w.T {
			emb = append(emb, tp.Emb(s, t)...)
			logits = append(logits, tp.Logits(s, t)...)
			pred = append(pred, tp.Pred(s, t)...)
		}
	}
	for _, cmp := range []struct {
		name      string
		got, want []float32
	}{
		{"emb", emb, w.Emb}, {"logits", logits, w.Logits}, {"pred", pred, w.Pred},
	} {
		if err := near(cmp.got, cmp.want, 1e-5); err != nil {
			t.Errorf("window %s%v", cmp.name, err)
		}
	}
	pl := tp.PredictLoss(1, 0)
	cl, _, _ := tp.ClassLoss(w.Labels, 1)
	if math.Abs(pl-w.PredictLoss) > 1e-5*max(1, w.PredictLoss) {
		t.Errorf("PredictLoss = %g, want %g", pl, w.PredictLoss)
	}
	if math.Abs(cl-w.ClassLoss) > 1e-5*max(1, w.ClassLoss) {
		t.Errorf("ClassLoss = %g, want %g", cl, w.ClassLoss)
	}
	grads := m.NewGrads()
	dx := make([]float32, len(w.X))
	tp.Backward(grads, dx)
	for _, ts := range grads.tensors(m.Features(), m.Hidden(), m.NumClasses()) {
		if err := near(ts.Data, w.Grads[ts.Name], 1e-5); err != nil {
			t.Errorf("gradient of %s%v", ts.Name, err)
		}
	}
	if err := near(dx, w.DX, 1e-5); err != nil {
		t.Errorf("input gradient%v", err)
	}
}

// goldenGrads returns the fixture's window gradients as a Params.
func goldenGrads(t *testing.T, g *golden, m *Model) *Params {
	t.Helper()
	p := m.NewGrads()
	for _, ts := range p.tensors(m.Features(), m.Hidden(), m.NumClasses()) {
		if len(g.Window.Grads[ts.Name]) != len(ts.Data) {
			t.Fatalf("fixture gradient %s has %d values, want %d", ts.Name, len(g.Window.Grads[ts.Name]), len(ts.Data))
		}
		copy(ts.Data, g.Window.Grads[ts.Name])
	}
	return p
}

func TestGoldenClipGradNorm(t *testing.T) {
	g, m := loadGolden(t)
	p := goldenGrads(t, g, m)
	norm := ClipGradNorm(p, g.Clip.MaxNorm)
	if math.Abs(norm-g.Clip.Norm) > 1e-5*g.Clip.Norm {
		t.Errorf("ClipGradNorm = %g, want %g", norm, g.Clip.Norm)
	}
	for _, ts := range p.tensors(m.Features(), m.Hidden(), m.NumClasses()) {
		if err := near(ts.Data, g.Clip.Grads[ts.Name], 1e-6); err != nil {
			t.Errorf("clipped %s%v", ts.Name, err)
		}
	}
}

func TestGoldenAdamW(t *testing.T) {
	g, m := loadGolden(t)
	grad := goldenGrads(t, g, m)
	cfg := DefaultAdamW()
	cfg.LR, cfg.WeightDecay = g.AdamW.LR, g.AdamW.WeightDecay
	opt, err := NewAdamW(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for step := range g.AdamW.Steps {
		scaled := m.NewGrads()
		for i, s := range scaled.slots() {
			for j, v := range *grad.slots()[i] {
				(*s)[j] = v * float32(1+step)
			}
		}
		opt.Step(m, scaled)
	}
	for _, ts := range m.Tensors() {
		if err := near(ts.Data, g.AdamW.Params[ts.Name], 1e-6); err != nil {
			t.Errorf("after AdamW, %s%v", ts.Name, err)
		}
	}
}
