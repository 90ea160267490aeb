package model

import (
	"math"
	"testing"
)

func TestFastMath(t *testing.T) {
	tests := []struct {
		name   string
		fast   func(float32) float32
		ref    func(float64) float64
		lo, hi float64
		rel    bool // relative rather than absolute error
		tol    float64
	}{
		{"exp", expf, math.Exp, -87, 88, true, 3e-7},
		{"sigmoid", sigmoidf, func(x float64) float64 { return 1 / (1 + math.Exp(-x)) }, -100, 100, false, 3e-7},
		{"tanh", tanhf, math.Tanh, -50, 50, false, 3e-7},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			const n = 200001
			worst, at := 0.0, 0.0
			for i := range n {
				x := tc.lo + (tc.hi-tc.lo)*float64(i)/(n-1)
				x = float64(float32(x))
				got := float64(tc.fast(float32(x)))
				want := tc.ref(x)
				err := math.Abs(got - want)
				if tc.rel {
					err /= want
				}
				if !(err <= worst) {
					worst, at = err, x
				}
			}
			if !(worst <= tc.tol) {
				t.Errorf("%s: worst error %g at x=%g, want <= %g", tc.name, worst, at, tc.tol)
			}
		})
	}
}

func TestFastMathSaturates(t *testing.T) {
	for _, x := range []float32{-1e30, -1000, 1000, 1e30, float32(math.Inf(1)), float32(math.Inf(-1))} {
		s, th := sigmoidf(x), tanhf(x)
		if !finite32(s) || s < 0 || s > 1 {
			t.Errorf("sigmoidf(%g) = %g, want in [0,1]", x, s)
		}
		if !finite32(th) || th < -1 || th > 1 {
			t.Errorf("tanhf(%g) = %g, want in [-1,1]", x, th)
		}
	}
}
