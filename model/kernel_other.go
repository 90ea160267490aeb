//go:build !amd64 || purego

package model

// bestKernel returns the portable kernel: no assembly for this GOARCH (or the
// purego tag asked for none).
func bestKernel() *kernel { return portableKernel(portableBLAS) }

// asmKernels lists no assembly kernels: there are none for this build.
func asmKernels() []*kernel { return nil }
