package model

import (
	"gonum.org/v1/gonum/blas"
)

// kernel is one implementation of the step's two hot loops: the matrix
// product that computes every gate (and the next-flow prediction) for a tile
// of hosts, and the fused element-wise LSTM update. The portable kernel goes
// through gonum's BLAS interface; the amd64 kernels are AVX2 and AVX-512
// assembly (kernel_amd64.go). Each is checked against the portable one.
type kernel struct {
	name string
	mr   int // rows per GEMM tile: gemm's m is always a multiple
	nr   int // columns per packed panel: packed widths are multiples

	// pack lays out w (k×n, row-major, n a multiple of nr) the way gemm
	// reads it, into dst (len k·n).
	pack func(dst, w []float32, k, n int)
	// gemm sets c[i·ldc+j] = bias[j] + Σ_l a[i·lda+l]·W[l,j] for i < m,
	// j < n, where W (k×n) was packed by pack.
	gemm func(m, n, k int, a []float32, lda int, w, bias, c []float32, ldc int)
	// lstm advances rows hosts: g holds each host's pre-activations (stride
	// ldg; blocks i, f, g, o of h units), c its cell state (stride h, updated
	// in place); h_t goes to hout (stride h) and z (stride ldz).
	lstm func(rows, h int, g []float32, ldg int, c, hout, z []float32, ldz int)
	// exp replaces each element of x by its exponential (expf).
	exp func(x []float32)
	// norm writes a[r·lda+j] = (x[r·f+j] − mean[j])·inv[j] for rows rows,
	// a non-finite result becoming 0, and returns how many became 0.
	norm func(rows, f int, x, mean, inv, a []float32, lda int) int
	// sqerr writes out[r] = Σ_j (p[r·ldp+j] − q[r·ldq+j])² for j < f.
	sqerr func(rows, f int, p []float32, ldp int, q []float32, ldq int, out []float32)
}

// portableKernel is the kernel for any GOARCH: a BLAS (gonum's by default)
// and Go gate math.
func portableKernel(impl blas.Float32Level3) *kernel {
	return &kernel{
		name: "go",
		mr:   1,
		nr:   1,
		pack: func(dst, w []float32, k, n int) { copy(dst, w[:k*n]) },
		gemm: func(m, n, k int, a []float32, lda int, w, bias, c []float32, ldc int) {
			for i := range m {
				copy(c[i*ldc:i*ldc+n], bias[:n])
			}
			// gonum's Sgemm hands products of four or more 64×64 blocks to
			// goroutines, which allocates; slabs of at most 3 keep it serial.
			const slab = 3 * 64
			for i := 0; i < m; i += 64 {
				mi := min(64, m-i)
				for j := 0; j < n; j += slab {
					nj := min(slab, n-j)
					impl.Sgemm(blas.NoTrans, blas.NoTrans, mi, nj, k, 1,
						a[i*lda:], lda, w[j:], n, 1, c[i*ldc+j:], ldc)
				}
			}
		},
		lstm:  lstmGo,
		exp:   expGo,
		norm:  normGo,
		sqerr: sqerrGo,
	}
}

// lstmGo is the gate math of torch.nn.LSTMCell:
//
//	i, f, o = σ(·), g = tanh(·); c' = f·c + i·g; h' = o·tanh(c')
func lstmGo(rows, h int, g []float32, ldg int, c, hout, z []float32, ldz int) {
	for r := range rows {
		gr := g[r*ldg : r*ldg+4*h]
		gi, gf, gg, gO := gr[:h], gr[h:2*h], gr[2*h:3*h], gr[3*h:4*h]
		cr := c[r*h : (r+1)*h]
		hr := hout[r*h : (r+1)*h]
		zr := z[r*ldz : r*ldz+h]
		for j := range cr {
			cn := sigmoidf(gf[j])*cr[j] + sigmoidf(gi[j])*tanhf(gg[j])
			hn := sigmoidf(gO[j]) * tanhf(cn)
			cr[j], hr[j], zr[j] = cn, hn, hn
		}
	}
}

func expGo(x []float32) {
	for i, v := range x {
		x[i] = expf(v)
	}
}

func normGo(rows, f int, x, mean, inv, a []float32, lda int) int {
	bad := 0
	mean, inv = mean[:f], inv[:f]
	for r := range rows {
		dst := a[r*lda : r*lda+f]
		for j, v := range x[r*f : (r+1)*f] {
			// A NaN or infinite input makes the result non-finite too (and
			// so does a finite one too large to normalise): one check does.
			d := (v - mean[j]) * inv[j]
			if d-d != 0 {
				d = 0
				bad++
			}
			dst[j] = d
		}
	}
	return bad
}

func sqerrGo(rows, f int, p []float32, ldp int, q []float32, ldq int, out []float32) {
	for r := range rows {
		pr, qr := p[r*ldp:r*ldp+f], q[r*ldq:r*ldq+f]
		var s float32
		for j, v := range pr {
			d := v - qr[j]
			s += d * d
		}
		out[r] = s
	}
}
