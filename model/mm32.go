package model

// mm32 computes general float32 products C = op(A)·op(B) + beta·C on the
// step's micro-kernels, for training: it copies op(B) into the kernel's
// panel layout and, when it must, op(A) into a tile-padded row-major block,
// then runs the kernel into a scratch C and merges. The copies cost
// O(mk + kn + mn) against the product's O(mnk), which is why the tape makes
// its products window-wide.
type mm32 struct {
	kern               *kernel
	a, bt, bp, c, bias []float32
}

// newMM32 returns nil where there is no assembly kernel: gonum is then as
// fast as copying into panels for the portable kernel would be.
func newMM32() *mm32 {
	ks := asmKernels()
	if len(ks) == 0 {
		return nil
	}
	return &mm32{kern: ks[len(ks)-1]}
}

// pack lays out op(B) (k×n; B has row stride ldb) for gemmPacked, in dst
// reused if large enough.
func (f *mm32) pack(dst []float32, tB bool, k, n int, b []float32, ldb int) []float32 {
	np := roundUp(n, f.kern.nr)
	f.bt = grow(f.bt, k*np)
	for l := range k {
		row := f.bt[l*np : (l+1)*np]
		if tB {
			for j := range n {
				row[j] = b[j*ldb+l]
			}
		} else {
			copy(row[:n], b[l*ldb:l*ldb+n])
		}
		clear(row[n:])
	}
	dst = grow(dst, k*np)
	f.kern.pack(dst, f.bt, k, np)
	return dst
}

func (f *mm32) gemm(tA, tB bool, m, n, k int, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if m == 0 || n == 0 {
		return
	}
	f.bp = f.pack(f.bp, tB, k, n, b, ldb)
	f.gemmPacked(tA, m, n, k, a, lda, f.bp, beta, c, ldc)
}

// gemmPacked is gemm with op(B) already packed by pack.
func (f *mm32) gemmPacked(tA bool, m, n, k int, a []float32, lda int, bp []float32, beta float32, c []float32, ldc int) {
	if m == 0 || n == 0 {
		return
	}
	kern := f.kern
	mp, np := roundUp(m, kern.mr), roundUp(n, kern.nr)
	aa, la := a, lda
	if tA || mp != m {
		f.a = grow(f.a, mp*k)
		if tA {
			// A plain column walk: tiling it measured no faster (tiles
			// of 16 slower, their rows 4 KiB apart sharing cache sets).
			for i := range m {
				row := f.a[i*k : (i+1)*k]
				for l := range row {
					row[l] = a[l*lda+i]
				}
			}
		} else {
			for i := range m {
				copy(f.a[i*k:(i+1)*k], a[i*lda:i*lda+k])
			}
		}
		clear(f.a[m*k:])
		aa, la = f.a, k
	}
	f.bias = grow(f.bias, np)
	clear(f.bias)
	f.c = grow(f.c, mp*np)
	kern.gemm(mp, np, k, aa, la, bp, f.bias, f.c, np)
	for i := range m {
		src, dst := f.c[i*np:i*np+n], c[i*ldc:i*ldc+n]
		if beta == 0 {
			copy(dst, src)
			continue
		}
		for j, v := range src {
			dst[j] = beta*dst[j] + v
		}
	}
}
