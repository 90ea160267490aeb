package model_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"

	"github.com/metaids/metaids/model"
)

// The scorer's loop: load a model, keep each host's (h, c), and step many
// hosts at once through one workspace.
func Example() {
	cfg := model.DefaultConfig()
	cfg.Classes = []string{"benign", "scan", "beacon"}
	cfg.SpecHash = "features-v1"
	trained, err := model.New(cfg, rand.New(rand.NewPCG(1, 0)))
	if err != nil {
		panic(err)
	}
	var file bytes.Buffer // as written by `metaids train --out FILE`
	if _, err := trained.WriteTo(&file); err != nil {
		panic(err)
	}

	m, err := model.Read(&file, "features-v1") // rejects another spec, bad shapes, NaNs
	if err != nil {
		panic(err)
	}
	const hosts = 3
	ws := model.NewWorkspace(m, 4096)
	h := make([]float32, hosts*m.Hidden()) // zeros: the hosts' first flows
	c := make([]float32, hosts*m.Hidden())
	x := make([]float32, hosts*m.Features()) // one new flow per host
	var out model.StepOut
	m.Step(ws, h, c, x, &out)

	for i := range hosts {
		p := out.ProbsOf(i)
		fmt.Printf("host %d: %d probabilities, %d-long embedding, anomaly score >= 0: %v\n",
			i, len(p), len(out.EmbOf(i)), out.Anomaly[i] >= 0)
	}
	// Output:
	// host 0: 3 probabilities, 96-long embedding, anomaly score >= 0: true
	// host 1: 3 probabilities, 96-long embedding, anomaly score >= 0: true
	// host 2: 3 probabilities, 96-long embedding, anomaly score >= 0: true
}

// One training step as `metaids train` composes it: forward over windows,
// the losses it wants, backward through time, clipping, AdamW.
func ExampleTape() {
	rng := rand.New(rand.NewPCG(2, 0))
	cfg := model.DefaultConfig()
	cfg.Features, cfg.Hidden, cfg.Classes = 4, 8, []string{"benign", "scan"}
	m, err := model.New(cfg, rng)
	if err != nil {
		panic(err)
	}
	const seqs, steps = 16, 10
	x := make([]float32, seqs*steps*cfg.Features) // [s][t][f] raw features
	labels := make([]int, seqs*steps)             // class per flow, -1 if unknown
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	for i := range labels {
		labels[i] = i / steps % 2
	}
	tape := model.NewTape(m, seqs, steps)
	opt, err := model.NewAdamW(model.DefaultAdamW())
	if err != nil {
		panic(err)
	}
	grads := m.NewGrads()
	var first, last float64
	for epoch := range 50 {
		tape.Forward(m, x, seqs, model.ForwardOptions{Dropout: 0.1, Rng: rng})
		loss := tape.PredictLoss(0.5, 1) * 0.5
		ce, _, _ := tape.ClassLoss(labels, 1)
		loss += ce
		grads.Zero()
		tape.Backward(grads, nil)
		model.ClipGradNorm(grads, 1)
		opt.Step(m, grads)
		if epoch == 0 {
			first = loss
		}
		last = loss
	}
	fmt.Println("loss went down:", last < first)
	// Output: loss went down: true
}
