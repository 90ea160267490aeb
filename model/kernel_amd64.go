//go:build amd64 && !purego

package model

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/cpu"
)

//go:generate go run ./internal/asmgen -out kernel_amd64.s

// Generated kernels (kernel_amd64.s). Strides named ld* are in elements for
// gemm and in bytes for lstm.

//go:noescape
func gemmAVX2_6x16(k int, a *float32, lda int, b *float32, bias *float32, c *float32, ldc int, panels int)

//go:noescape
func gemmAVX512_12x32(k int, a *float32, lda int, b *float32, bias *float32, c *float32, ldc int, panels int)

//go:noescape
func gemmAVX512_12x16(k int, a *float32, lda int, b *float32, bias *float32, c *float32, ldc int, panels int)

//go:noescape
func lstmAVX2(rows, h int, gates *float32, ldg int, c, hout, z *float32, ldz int, consts *float32)

//go:noescape
func lstmAVX512(rows, h int, gates *float32, ldg int, c, hout, z *float32, ldz int, consts *float32)

//go:noescape
func expAVX2(n int, x *float32, consts *float32)

//go:noescape
func expAVX512(n int, x *float32, consts *float32)

//go:noescape
func normAVX2(rows, f int, x, mean, inv, a *float32, lda int) int

//go:noescape
func normAVX512(rows, f int, x, mean, inv, a *float32, lda int) int

//go:noescape
func sqerrAVX2(rows, f int, p *float32, ldp int, q *float32, ldq int, out *float32)

//go:noescape
func sqerrAVX512(rows, f int, p *float32, ldp int, q *float32, ldq int, out *float32)

// lstmConsts are expf's constants in the order the generated code indexes
// them (see asmgen), and lstmConsts8 the same, each repeated across a YMM
// register for AVX2's memory operands.
var (
	lstmConsts  = [14]float32{expLo, expHi, log2e, ln2Hi, ln2Lo, expP0, expP1, expP2, expP3, expP4, expP5, 1, 2, -1}
	lstmConsts8 = func() (c [14 * 8]float32) {
		for i, v := range lstmConsts {
			for j := range 8 {
				c[i*8+j] = v
			}
		}
		return c
	}()
)

// bestKernel picks AVX-512 where the CPU and OS support it, else AVX2 with
// FMA, else the portable kernel. On this project's reference machine
// (BenchmarkStep, 4096 hosts, one core) AVX-512 is the fastest; see doc.go.
func bestKernel() *kernel {
	if k := asmKernels(); len(k) > 0 {
		return k[len(k)-1]
	}
	return portableKernel(portableBLAS)
}

// asmKernels lists the assembly kernels this CPU can run, slowest first.
func asmKernels() []*kernel {
	var ks []*kernel
	if cpu.X86.HasAVX2 && cpu.X86.HasFMA {
		ks = append(ks, avx2Kernel)
	}
	if cpu.X86.HasAVX512F && cpu.X86.HasAVX512VL && cpu.X86.HasAVX2 && cpu.X86.HasFMA {
		ks = append(ks, avx512Kernel)
	}
	return ks
}

var avx2Kernel = &kernel{
	name: "avx2",
	mr:   6,
	nr:   16,
	pack: func(dst, w []float32, k, n int) { packPanels(dst, w, k, n, n, 16) },
	gemm: func(m, n, k int, a []float32, lda int, w, bias, c []float32, ldc int) {
		checkGemm(m, n, k, a, lda, w, bias, c, ldc, 6, 16)
		for p := 0; p < n; p += 16 { // panel by panel, as for AVX-512
			for i := 0; i < m; i += 6 {
				gemmAVX2_6x16(k, &a[i*lda], lda, &w[k*p], &bias[p], &c[i*ldc+p], ldc, 1)
			}
		}
	},
	lstm: func(rows, h int, g []float32, ldg int, c, hout, z []float32, ldz int) {
		lstmAsm(lstmAVX2, 8, &lstmConsts8[0], rows, h, g, ldg, c, hout, z, ldz)
	},
	exp: func(x []float32) { expAsm(expAVX2, 8, &lstmConsts8[0], x) },
	norm: func(rows, f int, x, mean, inv, a []float32, lda int) int {
		return normAsm(normAVX2, 8, rows, f, x, mean, inv, a, lda)
	},
	sqerr: func(rows, f int, p []float32, ldp int, q []float32, ldq int, out []float32) {
		sqerrAsm(sqerrAVX2, 8, rows, f, p, ldp, q, ldq, out)
	},
}

var avx512Kernel = &kernel{
	name: "avx512",
	mr:   12,
	nr:   16,
	// Panels are 32 wide (two registers per row of a tile), with one
	// 16-wide panel at the end when n is an odd multiple of 16.
	pack: func(dst, w []float32, k, n int) {
		n32 := n / 32 * 32
		packPanels(dst, w, k, n32, n, 32)
		if n32 < n {
			for l := range k {
				copy(dst[k*n32+l*16:k*n32+(l+1)*16], w[l*n+n32:l*n+n])
			}
		}
	},
	gemm: func(m, n, k int, a []float32, lda int, w, bias, c []float32, ldc int) {
		checkGemm(m, n, k, a, lda, w, bias, c, ldc, 12, 16)
		n32 := n / 32 * 32
		// Panel by panel, each over all row tiles: a 32-column panel of the
		// weights (12 KB for K = 96) then stays in L1 while the chunk's
		// rows stream past it, which measured 10–15% faster than tile by tile.
		{
			for p := 0; p < n32; p += 32 {
				for i := 0; i < m; i += 12 {
					gemmAVX512_12x32(k, &a[i*lda], lda, &w[k*p], &bias[p], &c[i*ldc+p], ldc, 1)
				}
			}
			if n32 < n {
				for i := 0; i < m; i += 12 {
					gemmAVX512_12x16(k, &a[i*lda], lda, &w[k*n32], &bias[n32], &c[i*ldc+n32], ldc, 1)
				}
			}
		}
	},
	lstm: func(rows, h int, g []float32, ldg int, c, hout, z []float32, ldz int) {
		lstmAsm(lstmAVX512, 16, &lstmConsts[0], rows, h, g, ldg, c, hout, z, ldz)
	},
	exp: func(x []float32) { expAsm(expAVX512, 16, &lstmConsts[0], x) },
	norm: func(rows, f int, x, mean, inv, a []float32, lda int) int {
		return normAsm(normAVX512, 16, rows, f, x, mean, inv, a, lda)
	},
	sqerr: func(rows, f int, p []float32, ldp int, q []float32, ldq int, out []float32) {
		sqerrAsm(sqerrAVX512, 16, rows, f, p, ldp, q, ldq, out)
	},
}

// packPanels copies the first n columns of w (k rows, stride ldw) into dst as
// n/nr panels, each k rows of nr consecutive columns, so the micro-kernel
// streams one panel linearly.
func packPanels(dst, w []float32, k, n, ldw, nr int) {
	for p := 0; p < n/nr; p++ {
		panel := dst[p*k*nr : (p+1)*k*nr]
		for l := range k {
			copy(panel[l*nr:(l+1)*nr], w[l*ldw+p*nr:l*ldw+(p+1)*nr])
		}
	}
}

// checkGemm guards the assembly against out-of-bounds access: a mistake in
// sizing is a bug in this package and must panic, not corrupt memory.
func checkGemm(m, n, k int, a []float32, lda int, w, bias, c []float32, ldc, mr, nr int) {
	if m <= 0 || n <= 0 || k <= 0 || m%mr != 0 || n%nr != 0 || lda < k || ldc < n ||
		len(a) < (m-1)*lda+k || len(w) < k*n || len(bias) < n || len(c) < (m-1)*ldc+n {
		panic(fmt.Sprintf("model: gemm shape m=%d n=%d k=%d lda=%d ldc=%d len(a,w,bias,c)=%d,%d,%d,%d tile %d×%d",
			m, n, k, lda, ldc, len(a), len(w), len(bias), len(c), mr, nr))
	}
}

type lstmFunc func(rows, h int, g *float32, ldg int, c, hout, z *float32, ldz int, consts *float32)

// lstmAsm runs an assembly gate kernel when h is a multiple of its vector
// width, and the Go gate math otherwise.
func lstmAsm(fn lstmFunc, lanes int, consts *float32, rows, h int, g []float32, ldg int, c, hout, z []float32, ldz int) {
	if rows <= 0 {
		return
	}
	if h%lanes != 0 {
		lstmGo(rows, h, g, ldg, c, hout, z, ldz)
		return
	}
	if len(g) < (rows-1)*ldg+4*h || len(c) < rows*h || len(hout) < rows*h || len(z) < (rows-1)*ldz+h || ldg < 4*h || ldz < h {
		panic(fmt.Sprintf("model: lstm shape rows=%d h=%d ldg=%d ldz=%d len(g,c,hout,z)=%d,%d,%d,%d",
			rows, h, ldg, ldz, len(g), len(c), len(hout), len(z)))
	}
	const f32 = int(unsafe.Sizeof(float32(0)))
	fn(rows, h, &g[0], ldg*f32, &c[0], &hout[0], &z[0], ldz*f32, consts)
}

// expAsm exponentiates x in place: whole vectors in assembly, the rest in Go.
func expAsm(fn func(n int, x *float32, consts *float32), lanes int, consts *float32, x []float32) {
	n := len(x) / lanes * lanes
	if n > 0 {
		fn(n, &x[0], consts)
	}
	for i := n; i < len(x); i++ {
		x[i] = expf(x[i])
	}
}

// normAsm runs an assembly normalisation when f is a multiple of its vector
// width, and the Go one otherwise.
func normAsm(fn func(rows, f int, x, mean, inv, a *float32, lda int) int, lanes, rows, f int, x, mean, inv, a []float32, lda int) int {
	if rows <= 0 {
		return 0
	}
	if f%lanes != 0 {
		return normGo(rows, f, x, mean, inv, a, lda)
	}
	if len(x) < rows*f || len(mean) < f || len(inv) < f || lda < f || len(a) < (rows-1)*lda+f {
		panic(fmt.Sprintf("model: norm shape rows=%d f=%d lda=%d len(x,mean,inv,a)=%d,%d,%d,%d", rows, f, lda, len(x), len(mean), len(inv), len(a)))
	}
	const f32 = int(unsafe.Sizeof(float32(0)))
	return rows*f - fn(rows, f, &x[0], &mean[0], &inv[0], &a[0], lda*f32)
}

// sqerrAsm runs an assembly squared error when f is a multiple of its
// vector width, and the Go one otherwise.
func sqerrAsm(fn func(rows, f int, p *float32, ldp int, q *float32, ldq int, out *float32), lanes, rows, f int, p []float32, ldp int, q []float32, ldq int, out []float32) {
	if rows <= 0 {
		return
	}
	if f%lanes != 0 {
		sqerrGo(rows, f, p, ldp, q, ldq, out)
		return
	}
	if ldp < f || ldq < f || len(p) < (rows-1)*ldp+f || len(q) < (rows-1)*ldq+f || len(out) < rows {
		panic(fmt.Sprintf("model: sqerr shape rows=%d f=%d ldp=%d ldq=%d len(p,q,out)=%d,%d,%d", rows, f, ldp, ldq, len(p), len(q), len(out)))
	}
	const f32 = int(unsafe.Sizeof(float32(0)))
	fn(rows, f, &p[0], ldp*f32, &q[0], ldq*f32, &out[0])
}
