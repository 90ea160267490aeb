package train

import (
	"math"

	"github.com/metaids/metaids/dataset"
	"github.com/metaids/metaids/model"
)

// BenignThreshold returns the threshold on the attack score 1 − p(benign)
// above which (at or above, as the scorer compares) fpr of d's benign
// validation flows lie, and how many such flows there were: the operating
// point of "recall at a fixed benign false-positive rate", fixed on training
// data before any evaluated flow is scored. The flows are scored as finish
// scores them to set the model's own thresholds: the deployed path over
// the Train and Val streams, so each validation flow has its host's
// history. With no benign validation flow it returns NaN and 0.
func BenignThreshold(m *model.Model, d *dataset.Dataset, fpr float64) (float32, int) {
	var scores []float32
	want := func(i int) bool { return d.Split[i] == dataset.Val && d.Class[i] == 0 }
	infer(m, d.Streams(d.In(dataset.Train, dataset.Val)), want, func(_ int, o *out) {
		scores = append(scores, 1-o.probs[0])
	})
	if len(scores) == 0 {
		return float32(math.NaN()), 0
	}
	return quantile(scores, 1-fpr), len(scores)
}
