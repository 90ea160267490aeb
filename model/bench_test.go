package model

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// benchState is a model of the production shape (F=32, H=64, 8 classes) and
// B hosts with random state and flows.
type benchState struct {
	m       *Model
	ws      *Workspace
	h, c, x []float32
	out     StepOut
}

func newBenchState(tb testing.TB, hosts int, seed uint64, kern *kernel) *benchState {
	tb.Helper()
	rng := rand.New(rand.NewPCG(seed, 0))
	cfg := DefaultConfig()
	cfg.Classes = []string{"benign", "scan", "bruteforce", "beacon", "exfil", "dos", "lateral", "miner"}
	m, err := New(cfg, rng)
	if err != nil {
		tb.Fatal(err)
	}
	st := &benchState{
		m:  m,
		ws: newWorkspace(m, hosts, kern),
		h:  make([]float32, hosts*cfg.Hidden),
		c:  make([]float32, hosts*cfg.Hidden),
		x:  make([]float32, hosts*cfg.Features),
	}
	for i := range st.x {
		st.x[i] = float32(rng.NormFloat64())
	}
	return st
}

func (st *benchState) step() { st.m.Step(st.ws, st.h, st.c, st.x, &st.out) }

// BenchmarkStep measures the scorer's hot path: one flow for each of B hosts
// through the encoder and both heads, with the fastest kernel for this CPU.
// Compare with OPENBLAS_NUM_THREADS=1 /usr/bin/python3
// ../../shared/bench/torch_lstm.py --mode step --threads 1, at GOMAXPROCS=1.
func BenchmarkStep(b *testing.B) {
	for _, kern := range append(testKernels(), bestKernel()) {
		for _, hosts := range []int{64, 1024, 4096} {
			name := fmt.Sprintf("kernel=%s/hosts=%d", kern.name, hosts)
			if kern == testKernels()[0] || kern.name == bestKernel().name {
				// The best kernel is listed twice; name the default one.
			}
			b.Run(name, func(b *testing.B) {
				st := newBenchState(b, hosts, 1, kern)
				st.step()
				b.ReportAllocs()
				n := 0
				for b.Loop() {
					st.step()
					n += hosts
				}
				b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "flows/s")
			})
		}
	}
}
