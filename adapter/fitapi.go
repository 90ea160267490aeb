package adapter

import (
	"math/rand/v2"

	"github.com/metaids/metaids/model"
)

// Labelled is one label joined to its scored flow: the verdict and the
// flow's embedding from the scores topic.
type Labelled struct {
	Verdict   string // schemas.VerdictBenign or a family name
	Embedding []float32
	Host      string // the flow's host, "" if unknown: no campaign
	EndNs     int64  // the flow's end
}

// FitResult is the outcome of Fit.
type FitResult struct {
	// Candidate is the fitted model, nil when the gate rejected it.
	Candidate *model.Model
	// Accepted says whether the gate let the candidate through; Reason
	// says why not.
	Accepted bool
	Reason   string
	// Gate holds the gate's numbers as they travel in ModelUpdate.Gate.
	Gate map[string]float64
}

// Fit fits cur's head to the labels and gates the candidate exactly as the
// stage does before it publishes (see fitHead), for tools that replay the
// adapter's decisions offline (metaids eval). writerBatchBytes is the
// producer's -kafka.writer.batch-bytes, which bounds the exemplars an
// update may carry. The candidate's Name and versions are left to the
// caller.
func Fit(cur *model.Model, labels []Labelled, s Settings, writerBatchBytes int64, rng *rand.Rand) (FitResult, error) {
	c := DefaultConfig()
	c.Adapter = s
	c.Writer.BatchBytes = writerBatchBytes
	p := paramsFrom(c)
	samples := make([]sample, len(labels))
	for i, l := range labels {
		samples[i] = sample{verdict: l.Verdict, emb: l.Embedding, host: l.Host, endNs: l.EndNs}
	}
	cand, rep, err := fitHead(cur, samples, p, rng)
	if err != nil {
		return FitResult{}, err
	}
	return FitResult{Candidate: cand, Accepted: rep.Accepted, Reason: rep.Reason, Gate: rep.numbers(p)}, nil
}
