package model

// AlertClass is the scorer's alert rule for one flow's class
// probabilities, shared by everything that must predict what the scorer
// will do (training's threshold calibration and report, the adapter's
// gate, eval's offline mode): the most probable class other than benign
// alerts if its probability reaches its threshold. A threshold of 0 means
// uncalibrated, never. It returns the class, or −1 when none alerts, and
// that class's probability.
func AlertClass(probs, thr []float32, benign int) (int, float32) {
	k := -1
	for j, p := range probs {
		if j != benign && (k < 0 || p > probs[k]) {
			k = j
		}
	}
	if k < 0 || thr[k] <= 0 || probs[k] < thr[k] {
		return -1, 0
	}
	return k, probs[k]
}
