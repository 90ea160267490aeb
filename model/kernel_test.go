package model

// testKernels returns every kernel this machine can run, the portable one
// first, so each is checked against the same references.
func testKernels() []*kernel {
	return append([]*kernel{portableKernel(portableBLAS)}, asmKernels()...)
}
