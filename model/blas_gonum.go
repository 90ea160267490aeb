//go:build !netlib || !cgo

package model

import (
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
)

// portableBLAS backs the portable kernel. Build with -tags netlib (and cgo)
// to use OpenBLAS instead.
var portableBLAS blas.Float32Level3 = gonum.Implementation{}
