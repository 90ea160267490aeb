package train

import (
	"math"

	"github.com/metaids/metaids/dataset"
	"github.com/metaids/metaids/model"
)

// BenignThresholds returns the thresholds on the attack score 1 − p(benign)
// and on the anomaly score that fpr of d's benign validation flows reach
// (at or above, as the scorer compares), and how many such flows there
// were: the operating points of "recall at a fixed benign false-positive
// rate", fixed on training data before any evaluated flow is scored. The
// flows are scored as finish scores them to set the model's own thresholds:
// the deployed path over the Train and Val streams, so each validation flow
// has its host's history. With no benign validation flow it returns NaNs
// and 0.
func BenignThresholds(m *model.Model, d *dataset.Dataset, fpr float64) (attack, anomaly float32, n int) {
	var att, anom []float32
	want := func(i int) bool { return d.Split[i] == dataset.Val && d.Class[i] == 0 }
	infer(m, d.Streams(d.In(dataset.Train, dataset.Val)), want, func(_ int, o *out) {
		att = append(att, 1-o.probs[0])
		anom = append(anom, o.anomaly)
	})
	if len(att) == 0 {
		nan := float32(math.NaN())
		return nan, nan, 0
	}
	return quantile(att, 1-fpr), quantile(anom, 1-fpr), len(att)
}
