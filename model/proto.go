package model

import (
	"fmt"
	"math"
)

// PrototypicalLoss is the episodic loss of prototypical networks (Snell et
// al., 2017), which makes classes form tight clusters in embedding space so
// an unseen family can later be recognised from a few examples. Of the n
// embeddings emb (n×d), those with support[i] define each class's prototype
// (their mean); each other row (a query) is classified by a softmax over
// negative squared distances to the prototypes, and the loss is the mean
// cross-entropy over queries. It writes dL/demb into grad (n×d), ready to be
// added to a Tape's DEmb slots, and returns the loss and the queries'
// accuracy. A query whose class has no support row is an error.
func PrototypicalLoss(grad, emb []float32, d int, labels []int, support []bool) (loss, acc float64, err error) {
	return protoLoss(grad, emb, d, labels, support)
}

func protoLoss[T float](grad, emb []T, d int, labels []int, support []bool) (loss, acc float64, err error) {
	n := len(labels)
	if d <= 0 || len(emb) != n*d || len(grad) != n*d || len(support) != n {
		panic(fmt.Sprintf("model: PrototypicalLoss: %d and %d values, %d labels, %d support flags, d=%d", len(emb), len(grad), n, len(support), d))
	}
	idx := map[int]int{} // class → prototype row
	var count []float64
	for i, y := range labels {
		if !support[i] {
			continue
		}
		if _, ok := idx[y]; !ok {
			idx[y] = len(count)
			count = append(count, 0)
		}
		count[idx[y]]++
	}
	k := len(count)
	proto := make([]float64, k*d)
	for i, y := range labels {
		if support[i] {
			p := idx[y]
			for j, v := range emb[i*d : (i+1)*d] {
				proto[p*d+j] += float64(v)
			}
		}
	}
	for p := range k {
		for j := range d {
			proto[p*d+j] /= count[p]
		}
	}
	queries := 0
	for i, y := range labels {
		if support[i] {
			continue
		}
		if _, ok := idx[y]; !ok {
			return 0, 0, fmt.Errorf("prototypical loss: query row %d of class %d has no support", i, y)
		}
		queries++
	}
	clear(grad)
	if queries == 0 {
		return 0, 0, nil
	}
	dproto := make([]float64, k*d)
	logits := make([]float64, k)
	lp := make([]float64, k)
	correct := 0
	for i, y := range labels {
		if support[i] {
			continue
		}
		e := emb[i*d : (i+1)*d]
		for p := range k {
			var s float64
			for j, v := range e {
				diff := float64(v) - proto[p*d+j]
				s += diff * diff
			}
			logits[p] = -s
		}
		_, arg := logSoftmax(lp, logits)
		yi := idx[y]
		if arg == yi {
			correct++
		}
		loss -= lp[yi]
		ge := grad[i*d : (i+1)*d]
		for p := range k {
			dl := math.Exp(lp[p])
			if p == yi {
				dl--
			}
			dl /= float64(queries)
			for j, v := range e {
				diff := float64(v) - proto[p*d+j]
				ge[j] += T(-2 * dl * diff)
				dproto[p*d+j] += 2 * dl * diff
			}
		}
	}
	for i, y := range labels {
		if support[i] {
			p := idx[y]
			for j := range d {
				grad[i*d+j] += T(dproto[p*d+j] / count[p])
			}
		}
	}
	return loss / float64(queries), float64(correct) / float64(queries), nil
}
