//go:build amd64 && !purego

package model

func bestKernel() *kernel   { return portableKernel(portableBLAS) }
func asmKernels() []*kernel { return nil }
