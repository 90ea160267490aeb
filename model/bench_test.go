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
// through the encoder and both heads, per kernel (the last listed is the one
// NewWorkspace picks). Compare at GOMAXPROCS=1 with
//
//	OPENBLAS_NUM_THREADS=1 /usr/bin/python3 shared/bench/torch_lstm.py --mode step --threads 1
//
// which computes the same step and classifier (without the predictor).
func BenchmarkStep(b *testing.B) {
	for _, kern := range testKernels() {
		for _, hosts := range []int{64, 1024, 4096} {
			b.Run(fmt.Sprintf("kernel=%s/hosts=%d", kern.name, hosts), func(b *testing.B) {
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

// BenchmarkGemm measures each kernel's gate product alone, [h x̂]·W for 4080
// hosts (K = 96, N = 256), in GFLOP/s: the number to hold against other BLAS
// implementations.
func BenchmarkGemm(b *testing.B) {
	const m, n, k = 4080, 256, 96 // m divisible by every kernel's tile rows
	rng := rand.New(rand.NewPCG(1, 0))
	a, w, bias := randSlice(rng, m*k, 1), randSlice(rng, k*n, 1), randSlice(rng, n, 1)
	c := make([]float32, m*n)
	for _, kern := range testKernels() {
		b.Run("kernel="+kern.name, func(b *testing.B) {
			packed := make([]float32, k*n)
			kern.pack(packed, w, k, n)
			flops := 0
			for b.Loop() {
				kern.gemm(m, n, k, a, k, packed, bias, c, n)
				flops += 2 * m * n * k
			}
			b.ReportMetric(float64(flops)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

// BenchmarkTape measures a training step's forward and backward pass over
// windows (64 sequences × 16 flows, the production shape), in flows/s.
func BenchmarkTape(b *testing.B) {
	const seqs, steps = 64, 16
	st := newBenchState(b, 1, 1, testKernels()[0])
	m := st.m
	rng := rand.New(rand.NewPCG(2, 0))
	x := randSlice(rng, seqs*steps*m.Features(), 1)
	labels := make([]int, seqs*steps)
	for i := range labels {
		labels[i] = rng.IntN(m.NumClasses())
	}
	tp := NewTape(m, seqs, steps)
	g := m.NewGrads()
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		tp.Forward(m, x, seqs, ForwardOptions{})
		tp.PredictLoss(1, 1)
		tp.ClassLoss(labels, 1)
		g.Zero()
		tp.Backward(g, nil)
		n += seqs * steps
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "flows/s")
}
