package model

import "testing"

func TestAlertClass(t *testing.T) {
	thr := []float32{0, 0.9, 0.3, 0}
	cases := []struct {
		name  string
		probs []float32
		want  int
	}{
		{"benign wins nothing", []float32{0.97, 0.01, 0.01, 0.01}, -1},
		{"top class past its threshold", []float32{0.05, 0.92, 0.03, 0}, 1},
		// The case the training report used to count: the top class
		// misses its threshold, a lower one passes its own. The scorer
		// raises nothing, so neither may anything that predicts it.
		{"top class short, lower class past", []float32{0.1, 0.5, 0.4, 0}, -1},
		{"uncalibrated class never alerts", []float32{0.01, 0.01, 0.01, 0.97}, -1},
		{"exactly at the threshold", []float32{0.7, 0, 0.3, 0}, 2},
	}
	for _, c := range cases {
		if got, _ := AlertClass(c.probs, thr, 0); got != c.want {
			t.Errorf("%s: AlertClass(%v) = %d, want %d", c.name, c.probs, got, c.want)
		}
	}
	if got, _ := AlertClass([]float32{0.8, 0.2}, []float32{0.5, 0}, 1); got != 0 {
		t.Errorf("benign at index 1: got %d, want class 0", got)
	}
	if got, _ := AlertClass([]float32{1}, []float32{0}, 0); got != -1 {
		t.Errorf("benign only: got %d, want -1", got)
	}
}
