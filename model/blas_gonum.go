package model

import (
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
)

// portableBLAS backs the portable kernel. It is gonum's pure-Go BLAS: an
// OpenBLAS build (gonum.org/v1/netlib) was not faster than the assembly
// kernels for the step's shapes, so none is offered; any
// blas.Float32Level3 would do here.
var portableBLAS blas.Float32Level3 = gonum.Implementation{}
