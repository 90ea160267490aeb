package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// testKernels returns every kernel this machine can run, the portable one
// first, so each is checked against the same references.
func testKernels() []*kernel {
	return append([]*kernel{portableKernel(portableBLAS)}, asmKernels()...)
}

func randSlice(rng *rand.Rand, n int, scale float64) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(scale * rng.NormFloat64())
	}
	return s
}

// TestKernelGemm checks each kernel's matrix product against a float64
// reference, across tile and panel remainders.
func TestKernelGemm(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 0))
	for _, kern := range testKernels() {
		for _, sh := range []struct{ m, n, k int }{{1, 16, 1}, {12, 32, 5}, {24, 48, 96}, {36, 288, 96}, {48, 16, 7}, {12, 64, 130}} {
			m, n, k := roundUp(sh.m, kern.mr), roundUp(sh.n, kern.nr), sh.k
			t.Run(fmt.Sprintf("%s/%dx%dx%d", kern.name, m, n, k), func(t *testing.T) {
				lda, ldc := k+3, n+5
				a := randSlice(rng, (m-1)*lda+k, 1)
				w := randSlice(rng, k*n, 1)
				bias := randSlice(rng, n, 1)
				c := randSlice(rng, (m-1)*ldc+n, 1) // overwritten, not accumulated
				packed := make([]float32, k*n)
				kern.pack(packed, w, k, n)
				kern.gemm(m, n, k, a, lda, packed, bias, c, ldc)
				for i := range m {
					for j := range n {
						want := float64(bias[j])
						for l := range k {
							want += float64(a[i*lda+l]) * float64(w[l*n+j])
						}
						if got := float64(c[i*ldc+j]); math.Abs(got-want) > 1e-5*max(1, math.Sqrt(float64(k))) {
							t.Fatalf("c[%d,%d] = %g, want %g", i, j, got, want)
						}
					}
				}
			})
		}
	}
}

// TestKernelLSTM checks each kernel's gate math against float64 math,
// including saturated and extreme pre-activations.
func TestKernelLSTM(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 0))
	sig := func(x float64) float64 { return 1 / (1 + math.Exp(-x)) }
	for _, kern := range testKernels() {
		for _, h := range []int{8, 16, 64, 24, 5} {
			t.Run(fmt.Sprintf("%s/h=%d", kern.name, h), func(t *testing.T) {
				rows, ldg, ldz := 7, 4*h+3, h+2
				g := randSlice(rng, rows*ldg, 3)
				for _, i := range []int{0, 5, 9} {
					g[i] = []float32{-1e30, 1e30, 200}[i%3]
				}
				c := randSlice(rng, rows*h, 2)
				c0 := append([]float32(nil), c...)
				hout := make([]float32, rows*h)
				z := make([]float32, rows*ldz)
				kern.lstm(rows, h, g, ldg, c, hout, z, ldz)
				for r := range rows {
					for j := range h {
						gi, gf := float64(g[r*ldg+j]), float64(g[r*ldg+h+j])
						gg, gO := float64(g[r*ldg+2*h+j]), float64(g[r*ldg+3*h+j])
						wc := sig(gf)*float64(c0[r*h+j]) + sig(gi)*math.Tanh(gg)
						wh := sig(gO) * math.Tanh(wc)
						if d := math.Abs(float64(c[r*h+j]) - wc); !(d < 1e-6*max(1, math.Abs(wc))) {
							t.Fatalf("row %d unit %d: c = %g, want %g", r, j, c[r*h+j], wc)
						}
						if d := math.Abs(float64(hout[r*h+j]) - wh); !(d < 1e-6) {
							t.Fatalf("row %d unit %d: h = %g, want %g", r, j, hout[r*h+j], wh)
						}
						if z[r*ldz+j] != hout[r*h+j] {
							t.Fatalf("row %d unit %d: z = %g, want h = %g", r, j, z[r*ldz+j], hout[r*h+j])
						}
					}
				}
			})
		}
	}
}

// TestKernelNormSqerr checks the normalisation (including its treatment of
// non-finite values) and the squared-error sums of each kernel.
func TestKernelNormSqerr(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 0))
	for _, kern := range testKernels() {
		for _, f := range []int{8, 16, 32, 5} {
			t.Run(fmt.Sprintf("%s/f=%d", kern.name, f), func(t *testing.T) {
				const rows, lda = 7, 41
				x := randSlice(rng, rows*f, 3)
				x[1] = float32(math.NaN())
				x[f+2] = float32(math.Inf(1))
				x[2*f] = 3e38 // finite, but overflows when normalised
				mean, inv := randSlice(rng, f, 1), randSlice(rng, f, 1)
				inv[0] = 10
				a := make([]float32, (rows-1)*lda+f)
				want := make([]float32, len(a))
				bad := kern.norm(rows, f, x, mean, inv, a, lda)
				wantBad := normGo(rows, f, x, mean, inv, want, lda)
				if bad != wantBad || bad != 3 {
					t.Errorf("norm replaced %d values, want %d (Go) and 3", bad, wantBad)
				}
				sameBits(t, "normalised", a, want)

				p, q := randSlice(rng, rows*lda, 1), randSlice(rng, rows*(f+3), 1)
				out := make([]float32, rows)
				kern.sqerr(rows, f, p, lda, q, f+3, out)
				for r := range rows {
					var s float64
					for j := range f {
						d := float64(p[r*lda+j]) - float64(q[r*(f+3)+j])
						s += d * d
					}
					if math.Abs(float64(out[r])-s) > 1e-5*max(1, s) {
						t.Errorf("sqerr row %d = %g, want %g", r, out[r], s)
					}
				}
			})
		}
	}
}

// TestMM32 checks the training products on the fast kernels against gonum,
// for every transpose, beta and ragged size.
func TestMM32(t *testing.T) {
	mm := newMM32()
	if mm == nil {
		t.Skip("no assembly kernel on this CPU")
	}
	rng := rand.New(rand.NewPCG(6, 0))
	for _, sh := range []struct{ m, n, k int }{{1, 1, 1}, {13, 17, 5}, {64, 256, 32}, {256, 32, 1024}, {7, 3, 96}} {
		for _, tA := range []bool{false, true} {
			for _, tB := range []bool{false, true} {
				for _, beta := range []float32{0, 1, 0.5} {
					name := fmt.Sprintf("%dx%dx%d/tA=%v/tB=%v/beta=%g", sh.m, sh.n, sh.k, tA, tB, beta)
					m, n, k := sh.m, sh.n, sh.k
					lda, ldb, ldc := k+1, n+2, n+3
					if tA {
						lda = m + 1
					}
					if tB {
						ldb = k + 2
					}
					rowsA, rowsB := m, k
					if tA {
						rowsA = k
					}
					if tB {
						rowsB = n
					}
					a := randSlice(rng, rowsA*lda, 1)
					b := randSlice(rng, rowsB*ldb, 1)
					c := randSlice(rng, m*ldc, 1)
					want := append([]float32(nil), c...)
					mm.gemm(tA, tB, m, n, k, a, lda, b, ldb, beta, c, ldc)
					gemm(tA, tB, m, n, k, 1, a, lda, b, ldb, beta, want, ldc)
					if err := near(c, want, 1e-5*math.Sqrt(float64(k))); err != nil {
						t.Errorf("%s: C%v", name, err)
					}
				}
			}
		}
	}
}
