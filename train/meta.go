package train

import (
	"math"
	"slices"

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
		q := tr.cfg.Meta.Queries
		if c == 0 {
			// Benign gets three times the queries: the add-class rehearsal
			// needs them to teach a prototype row to stay quiet on normal
			// traffic, whose variety a few flows do not cover.
			q *= 3
		}
		q = min(q, len(refs)-k)
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
	return loss + tr.addClassLoss(weight)
}

// addClassLoss rehearses, on the episode, exactly what the adapter does
// with a new family: one of the episode's families plays the new class, its
// trained head row replaced by a row made from the prototype of its support
// embeddings as model.AddClass makes it (w = 2μ, b = −|μ|²), and the
// episode's queries of every class, benign included, are classified by
// the whole head with that row. Its cross-entropy trains the encoder (and
// the trained rows) so that a prototype row added later both catches its
// family and stays quiet on benign traffic and on the known families: the
// prototypical loss alone shapes distances among prototypes, but not how a
// prototype row's logits compare with the trained rows'. It adds
// weight × its gradient to the tape's DEmb slots and to the head's
// gradients, and returns the loss.
func (tr *trainer) addClassLoss(weight float32) float64 {
	ep := &tr.episode
	d, C := tr.m.EmbeddingDim(), tr.nCls
	var fams []int
	for i, c := range ep.labels {
		if c > 0 && ep.support[i] && !slices.Contains(fams, c) {
			fams = append(fams, c)
		}
	}
	if len(fams) == 0 {
		return 0
	}
	nc := fams[tr.rng.IntN(len(fams))]
	mu := make([]float64, d)
	k := 0
	for i, c := range ep.labels {
		if c == nc && ep.support[i] {
			for j, v := range ep.emb[i*d : (i+1)*d] {
				mu[j] += float64(v)
			}
			k++
		}
	}
	var mu2 float64
	for j := range mu {
		mu[j] /= float64(k)
		mu2 += mu[j] * mu[j]
	}
	nq := 0
	for _, s := range ep.support {
		if !s {
			nq++
		}
	}
	W, b := tr.m.P.ClsW, tr.m.P.ClsB
	gW, gB := tr.g.ClsW, tr.g.ClsB
	logits, lp := make([]float64, C), make([]float64, C)
	dmu := make([]float64, d)
	var loss float64
	for i, y := range ep.labels {
		if ep.support[i] {
			continue
		}
		z := ep.emb[i*d : (i+1)*d]
		for c := range C {
			var s float64
			if c == nc {
				for j, v := range z {
					s += 2 * mu[j] * float64(v)
				}
				s -= mu2
			} else {
				s = float64(b[c])
				for j, v := range z {
					s += float64(W[c*d+j]) * float64(v)
				}
			}
			logits[c] = s
		}
		logSoftmaxF64(lp, logits)
		loss -= lp[y]
		de := tr.tape.DEmb(ep.slot[i], ep.pos[i])
		for c := range C {
			g := math.Exp(lp[c])
			if c == y {
				g--
			}
			g *= float64(weight) / float64(nq)
			if g == 0 {
				continue
			}
			if c == nc {
				for j, v := range z {
					de[j] += float32(g * 2 * mu[j])
					dmu[j] += g * 2 * (float64(v) - mu[j])
				}
				continue
			}
			gB[c] += float32(g)
			for j, v := range z {
				de[j] += float32(g) * W[c*d+j]
				gW[c*d+j] += float32(g) * v
			}
		}
	}
	for i, c := range ep.labels {
		if c == nc && ep.support[i] {
			de := tr.tape.DEmb(ep.slot[i], ep.pos[i])
			for j := range de {
				de[j] += float32(dmu[j] / float64(k))
			}
		}
	}
	return loss / float64(nq)
}

// logSoftmaxF64 writes log softmax(x) into dst.
func logSoftmaxF64(dst, x []float64) {
	mx := x[0]
	for _, v := range x[1:] {
		mx = max(mx, v)
	}
	var sum float64
	for _, v := range x {
		sum += math.Exp(v - mx)
	}
	lse := mx + math.Log(sum)
	for j, v := range x {
		dst[j] = v - lse
	}
}

func grow(s []float32, n int) []float32 {
	if cap(s) >= n {
		return s[:n]
	}
	return make([]float32, n)
}
