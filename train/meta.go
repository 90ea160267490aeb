package train

import (
	"github.com/metaids/metaids/model"
)

// episode is one N-way K-shot episode laid out in tape slots after the
// classification batch.
type episode struct {
	slot, pos []int // tape slot and step of each episode flow
	labels    []int
	support   []bool
	emb, grad []float32
}

// sampleEpisode fills an episode into the slots from first on and returns
// how many windows it used (0 when fewer than two classes have enough
// training flows). Benign is always one of the ways: what matters most is
// that a family's cluster sits apart from normal traffic.
func (tr *trainer) sampleEpisode(first int) int {
	k := tr.cfg.Meta.Shots
	var eligible []int
	for c := 1; c < tr.nCls; c++ {
		if len(tr.byCls[c]) > k {
			eligible = append(eligible, c)
		}
	}
	tr.rng.Shuffle(len(eligible), func(a, b int) { eligible[a], eligible[b] = eligible[b], eligible[a] })
	ways := eligible
	if len(tr.byCls[0]) > k {
		ways = append([]int{0}, eligible...)
	}
	ways = ways[:min(len(ways), tr.cfg.Meta.Ways)]
	if len(ways) < 2 {
		return 0
	}
	ep := &tr.episode
	ep.slot, ep.pos, ep.labels, ep.support = ep.slot[:0], ep.pos[:0], ep.labels[:0], ep.support[:0]
	slot := first
	for _, c := range ways {
		refs := tr.byCls[c]
		q := min(tr.cfg.Meta.Queries, len(refs)-k)
		// Distinct flows: a partial Fisher–Yates over indices.
		idx := tr.pick(len(refs), k+q)
		for i, r := range idx {
			ep.slot = append(ep.slot, slot)
			ep.pos = append(ep.pos, tr.fill(slot, refs[r]))
			ep.labels = append(ep.labels, c)
			ep.support = append(ep.support, i < k)
			slot++
		}
	}
	return slot - first
}

// pick returns n distinct indices below total.
func (tr *trainer) pick(total, n int) []int {
	if n*4 < total {
		seen := make(map[int]bool, n)
		out := make([]int, 0, n)
		for len(out) < n {
			i := tr.rng.IntN(total)
			if !seen[i] {
				seen[i] = true
				out = append(out, i)
			}
		}
		return out
	}
	p := tr.rng.Perm(total)
	return p[:n]
}

// metaLoss adds weight × the prototypical loss of the episode's embeddings
// (taken before dropout, as the prototypes the adapter computes are) to the
// tape's DEmb slots and returns the loss.
func (tr *trainer) metaLoss(weight float32) float64 {
	ep := &tr.episode
	d := tr.m.EmbeddingDim()
	n := len(ep.labels)
	ep.emb = grow(ep.emb, n*d)
	ep.grad = grow(ep.grad, n*d)
	for i := range n {
		copy(ep.emb[i*d:(i+1)*d], tr.tape.Emb(ep.slot[i], ep.pos[i]))
	}
	loss, _, err := model.PrototypicalLoss(ep.grad, ep.emb, d, ep.labels, ep.support)
	if err != nil {
		// Every query's class has support by construction.
		panic(err)
	}
	for i := range n {
		de := tr.tape.DEmb(ep.slot[i], ep.pos[i])
		for j, g := range ep.grad[i*d : (i+1)*d] {
			de[j] += weight * g
		}
	}
	return loss
}

func grow(s []float32, n int) []float32 {
	if cap(s) >= n {
		return s[:n]
	}
	return make([]float32, n)
}
