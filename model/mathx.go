package model

import "math"

// Fast float32 exponential and the gate nonlinearities built on it. The
// standard library's math.Exp and math.Tanh work in float64 and were three
// quarters of a straightforward step's time; these take a handful of float32
// operations, no branches the compiler keeps, and are accurate to about 2e-7
// relative (exp) and 2e-7 absolute (sigmoid, tanh), far below the 1e-5 the
// golden tests against PyTorch allow. The assembly kernels use the same
// algorithm, so the pure-Go fallback and the vector paths agree.

const (
	expHi   = 88.0  // e^88 < MaxFloat32; above this exp saturates
	expLo   = -87.0 // e^-87 is still a normal float32
	log2e   = 1.44269504088896341
	ln2Hi   = 0.693359375 // ln 2 split so n·ln2Hi is exact (Cody–Waite)
	ln2Lo   = -2.12194440e-4
	rounder = 12582912 // 1.5·2^23: adding it rounds a float32 to an integer

	// Cephes expf's minimax polynomial for e^r on |r| ≤ ln2/2.
	expP0 = 1.9875691500e-4
	expP1 = 1.3981999507e-3
	expP2 = 8.3334519073e-3
	expP3 = 4.1665795894e-2
	expP4 = 1.6666665459e-1
	expP5 = 5.0000001201e-1
)

// expf returns e^x, with x clamped to [-87, 88].
func expf(x float32) float32 {
	x = min(max(x, expLo), expHi)
	// Round x·log2(e) to the nearest integer n by adding 1.5·2^23: the sum's
	// low mantissa bits are then n, and subtracting gives n as a float.
	t := x*log2e + rounder
	n := t - rounder
	r := x - n*ln2Hi - n*ln2Lo
	p := float32(expP0)
	p = p*r + expP1
	p = p*r + expP2
	p = p*r + expP3
	p = p*r + expP4
	p = p*r + expP5
	y := p*r*r + r + 1
	// Multiply by 2^n by adding n to the exponent field.
	ni := int32(math.Float32bits(t)) - 0x4b400000
	return math.Float32frombits(uint32(int32(math.Float32bits(y)) + ni<<23))
}

// sigmoidf returns 1/(1+e^-x).
func sigmoidf(x float32) float32 { return 1 / (1 + expf(-x)) }

// tanhf returns tanh x as 1 − 2/(1+e^2x), which saturates cleanly at ±1.
func tanhf(x float32) float32 { return 1 - 2/(1+expf(2*x)) }
