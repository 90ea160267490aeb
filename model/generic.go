package model

import (
	"math"
	"unsafe"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
)

// float is the element type of the training math. Models hold float32; the
// same code instantiated at float64 is what the gradient checks test, so
// finite differences are not drowned by float32 rounding.
type float interface{ ~float32 | ~float64 }

// gparams is Params at element type T; at float32 its slices alias a Model's.
type gparams[T float] struct {
	wih, whh, bih, bhh, pw, pb, cw, cb []T
}

func (p *gparams[T]) slots() []*[]T {
	return []*[]T{&p.wih, &p.whh, &p.bih, &p.bhh, &p.pw, &p.pb, &p.cw, &p.cb}
}

func aliasParams(p *Params) gparams[float32] {
	return gparams[float32]{p.WeightIH, p.WeightHH, p.BiasIH, p.BiasHH, p.PredW, p.PredB, p.ClsW, p.ClsB}
}

// gemm is C = alpha·op(A)·op(B) + beta·C through gonum's BLAS at either
// precision. Training is not the hot path, so gonum's own implementation is
// used whatever the step's kernel.
func gemm[T float](tA, tB bool, m, n, k int, alpha T, a []T, lda int, b []T, ldb int, beta T, c []T, ldc int) {
	if m == 0 || n == 0 {
		return
	}
	ta, tb := blas.NoTrans, blas.NoTrans
	if tA {
		ta = blas.Trans
	}
	if tB {
		tb = blas.Trans
	}
	switch a := any(a).(type) {
	case []float32:
		gonum.Implementation{}.Sgemm(ta, tb, m, n, k, float32(alpha), a, lda, any(b).([]float32), ldb, float32(beta), any(c).([]float32), ldc)
	case []float64:
		gonum.Implementation{}.Dgemm(ta, tb, m, n, k, float64(alpha), a, lda, any(b).([]float64), ldb, float64(beta), any(c).([]float64), ldc)
	}
}

// sigmoid and tanh for training: at float32 the step's fast functions (the
// standard library's float64 ones were a fifth of a training step), at
// float64, for the gradient checks, the exact ones.
func sigmoid[T float](x T) T {
	if unsafe.Sizeof(x) == 4 {
		return T(sigmoidf(float32(x)))
	}
	return T(1 / (1 + math.Exp(-float64(x))))
}

func tanh[T float](x T) T {
	if unsafe.Sizeof(x) == 4 {
		return T(tanhf(float32(x)))
	}
	return T(math.Tanh(float64(x)))
}

// colSum adds the column sums of the rows×cols matrix a to dst.
func colSum[T float](dst, a []T, rows, cols int) {
	for r := range rows {
		for j, v := range a[r*cols : (r+1)*cols] {
			dst[j] += v
		}
	}
}
