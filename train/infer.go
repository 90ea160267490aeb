package train

import (
	"sort"

	"github.com/metaids/metaids/dataset"
	"github.com/metaids/metaids/model"
)

// out is the model's output for one flow, valid only during the callback.
type out struct {
	probs   []float32
	anomaly float32
	emb     []float32
}

// inferBatch bounds the hosts stepped together.
const inferBatch = 256

// infer runs m over streams exactly as the scorer does, one flow per host
// per step from each host's saved state (model.Step), and calls fn for every
// flow whose record index want accepts. Evaluating through Step rather than
// the training tape means thresholds and test numbers are those of the
// deployed path, with full per-host history instead of windows.
func infer(m *model.Model, streams []dataset.Stream, want func(i int) bool, fn func(i int, o *out)) {
	order := make([]int, len(streams))
	for i := range order {
		order[i] = i
	}
	// Longest first, so the hosts still running at any step are a prefix
	// and their states need no compaction.
	sort.SliceStable(order, func(a, b int) bool { return streams[order[a]].Len() > streams[order[b]].Len() })
	f, h := m.Features(), m.Hidden()
	ws := model.NewWorkspace(m, inferBatch)
	hs, cs := make([]float32, inferBatch*h), make([]float32, inferBatch*h)
	x := make([]float32, inferBatch*f)
	var so model.StepOut
	var o out
	for c0 := 0; c0 < len(order); c0 += inferBatch {
		chunk := order[c0:min(c0+inferBatch, len(order))]
		clear(hs)
		clear(cs)
		for w := 0; ; w++ {
			k := 0
			for k < len(chunk) && streams[chunk[k]].Len() > w {
				k++
			}
			if k == 0 {
				break
			}
			for j := range k {
				copy(x[j*f:(j+1)*f], streams[chunk[j]].X[w*f:(w+1)*f])
			}
			m.Step(ws, hs[:k*h], cs[:k*h], x[:k*f], &so)
			for j := range k {
				i := streams[chunk[j]].Idx[w]
				if want(i) {
					o.probs, o.anomaly, o.emb = so.ProbsOf(j), so.Anomaly[j], so.EmbOf(j)
					fn(i, &o)
				}
			}
		}
	}
}
