package eval

// This file mirrors the adapter's fit and gate (adapter/fit.go and
// adapter/gate.go at the commit noted below), which the adapter does not
// export: the offline mode must fit exactly as the live adapter does, with
// the same inputs in the same order and the same seed, or the two modes
// would measure different models. TestEvalFitMirrorsAdapter catches a
// drift.
// When the adapter exports its fit (say adapter.FitHead), this copy goes.
//
// Mirrored from adapter at 61a334f.

import (
	"fmt"
	"math/rand/v2"
	"slices"

	"github.com/metaids/metaids/model"
	"github.com/metaids/metaids/schemas"
)

// errNoBenign mirrors adapter.ErrNoBenign.
var errNoBenign = fmt.Errorf("model has no benign class")

// errShape mirrors adapter.ErrShape.
var errShape = fmt.Errorf("embedding width does not match the model")

// sample is one new label joined to its flow's embedding.
type sample struct {
	verdict string // "benign" or a family name
	emb     []float32
}

// fitParams are the settings of one fit, taken from Settings.
type fitParams struct {
	holdout           float64
	recallTol, fprTol float64
	minAgreement      float64
	exemplarsPerClass int
	exemplarBytes     int64 // what the exemplars of an update may take in all
	newThreshold      float32
	newLabelWeight    float64
	ft                model.FineTuneConfig
}

// paramsFrom takes the fit's settings from a, as the adapter's paramsFrom
// does from its Config; writerBatchBytes is the Kafka producer's
// -kafka.writer.batch-bytes, which bounds the exemplars of an update.
func paramsFrom(a AdaptConfig, writerBatchBytes int64) fitParams {
	ft := model.DefaultFineTune()
	ft.Steps = a.FineTune.Steps
	ft.BatchSize = a.FineTune.BatchSize
	ft.AdamW.LR = float32(a.FineTune.LR)
	ft.AdamW.WeightDecay = float32(a.FineTune.WeightDecay)
	return fitParams{
		exemplarBytes:     writerBatchBytes / 4 * 3,
		holdout:           a.Gate.Holdout,
		recallTol:         a.Gate.RecallTolerance,
		fprTol:            a.Gate.FPRTolerance,
		minAgreement:      a.Gate.MinAgreement,
		exemplarsPerClass: a.ExemplarsPerClass,
		newThreshold:      float32(a.NewClassThreshold),
		newLabelWeight:    a.NewLabelWeight,
		ft:                ft,
	}
}

// row is one labelled embedding used in a fit: a new label or an exemplar.
type row struct {
	class int
	emb   []float32
	label bool // a new label, not an exemplar
}

// fitHead builds a candidate from cur and the new labels, and gates it.
// cur is not changed. The encoder is frozen: only the classifier head, its
// classes, thresholds and exemplars differ in the candidate.
//
//  1. The labels and each class's exemplars are split, per class, into a
//     part to fit and a part held back for the gate.
//  2. Each family new to the model gets a head row from its prototype, the
//     mean of its labels' embeddings (model.AddClass), so it starts as a
//     nearest-prototype rule rather than from nothing.
//  3. The head is fine-tuned on the new labels together with the replayed
//     exemplars of every class, so what the model knew stays in the loss.
//     A class's new labels are repeated until, taken together, they weigh
//     NewLabelWeight times its exemplars: a few benign labels on
//     false-positive flows must be able to move the boundary around those
//     flows, or they would change nothing.
//  4. The gate compares cur and the candidate on the held-back data.
//  5. The candidate's exemplars are the old ones plus the new labels,
//     subsampled to the cap per class (lower if the update would
//     otherwise outgrow one record).
//
// It returns the candidate and the gate's report; the candidate is nil
// when the report rejects it. An error means the inputs could not be used
// at all (no benign class, a bad embedding).
func fitHead(cur *model.Model, samples []sample, p fitParams, rng *rand.Rand) (*model.Model, gateReport, error) {
	benign, ok := cur.ClassIndex(schemas.VerdictBenign)
	if !ok {
		return nil, gateReport{}, errNoBenign
	}
	d := cur.EmbeddingDim()
	known := cur.NumClasses()
	var newNames []string
	for _, s := range samples {
		if len(s.emb) != d {
			return nil, gateReport{}, fmt.Errorf("fit head: label of %q: %w: %d values, want %d", s.verdict, errShape, len(s.emb), d)
		}
		if _, ok := cur.ClassIndex(s.verdict); !ok && !slices.Contains(newNames, s.verdict) {
			newNames = append(newNames, s.verdict)
		}
	}
	// Sorted, so the same labels give the same class order whatever order
	// they arrived in.
	slices.Sort(newNames)
	total := known + len(newNames)
	classOf := func(verdict string) int {
		if k, ok := cur.ClassIndex(verdict); ok {
			return k
		}
		return known + slices.Index(newNames, verdict)
	}

	labels := make([][]row, total)
	for _, s := range samples {
		k := classOf(s.verdict)
		labels[k] = append(labels[k], row{k, s.emb, true})
	}
	exemplars := make([][]row, total)
	for _, e := range cur.Exemplars {
		if int(e.Class) < known && len(e.Embedding) == d {
			exemplars[e.Class] = append(exemplars[e.Class], row{int(e.Class), e.Embedding, false})
		}
	}

	var rep gateReport
	fitLabels, holdLabels := make([][]row, total), make([][]row, total)
	fitEx, holdEx := make([][]row, total), make([][]row, total)
	for k := range total {
		fitLabels[k], holdLabels[k] = split(labels[k], p.holdout, rng)
		fitEx[k], holdEx[k] = split(exemplars[k], p.holdout, rng)
		rep.FitLabels += len(fitLabels[k])
		rep.HoldLabels += len(holdLabels[k])
		rep.FitExemplars += len(fitEx[k])
		rep.HoldExemplars += len(holdEx[k])
	}

	cand := cur.Clone()
	for i, name := range newNames {
		k := known + i
		mu := mean(fitLabels[k], d)
		if _, err := cand.AddClass(name, mu, p.newThreshold); err != nil {
			return nil, gateReport{}, fmt.Errorf("fit head: %w", err)
		}
	}

	emb, ys := trainingSet(fitEx, fitLabels, p.newLabelWeight, d, rng)
	if len(ys) > 0 {
		ft := p.ft
		// trainingSet weighs the classes itself: FineTuneHead's balancing
		// would weigh a class's new labels down again by their count.
		ft.Balance = false
		loss, err := cand.FineTuneHead(emb, ys, ft, rng)
		if err != nil {
			return nil, gateReport{}, fmt.Errorf("fit head: %w", err)
		}
		rep.Loss = loss
	}

	var hold []row
	for k := range total {
		hold = append(hold, holdEx[k]...)
		hold = append(hold, holdLabels[k]...)
	}
	rep.gate(cur, cand, hold, benign, known, newNames, p)
	if !rep.Accepted {
		return nil, rep, nil
	}

	// An exemplar costs its floats and a few bytes of framing. The cap per
	// class shrinks as classes are added, so that the update still fits in
	// one record.
	perClass := p.exemplarsPerClass
	if p.exemplarBytes > 0 {
		perClass = max(1, min(perClass, int(p.exemplarBytes/int64(total*(4*d+8)))))
	}
	cand.Exemplars = cand.Exemplars[:0]
	for k := range total {
		keep := slices.Concat(exemplars[k], labels[k])
		if len(keep) > perClass {
			rng.Shuffle(len(keep), func(i, j int) { keep[i], keep[j] = keep[j], keep[i] })
			keep = keep[:perClass]
		}
		for _, r := range keep {
			cand.Exemplars = append(cand.Exemplars, schemas.Exemplar{Class: int32(k), Embedding: slices.Clone(r.emb)})
		}
	}
	return cand, rep, nil
}

// trainingSet lays out the rows to fine-tune on, repeating them so that
// every class weighs the same in the loss, whatever its count: a new family
// with a handful of labels as much as a class with its full set of
// exemplars. Within a class that has both, the new labels together weigh
// newLabelWeight times the exemplars. Fractional repeats are drawn at
// random, so the weights hold in expectation.
func trainingSet(exemplars, labels [][]row, newLabelWeight float64, d int, rng *rand.Rand) ([]float32, []int) {
	// Each class gets twice the largest class's exemplar count in rows, so
	// that at the default weight of 1 exemplars are seldom dropped.
	perClass := 0
	for k := range exemplars {
		perClass = max(perClass, len(exemplars[k]), len(labels[k]))
	}
	perClass *= 2
	var emb []float32
	var ys []int
	put := func(rows []row, total float64) {
		if len(rows) == 0 {
			return
		}
		reps := total / float64(len(rows))
		for _, r := range rows {
			n := int(reps)
			if rng.Float64() < reps-float64(n) {
				n++
			}
			for range n {
				emb = append(emb, r.emb...)
				ys = append(ys, r.class)
			}
		}
	}
	for k := range exemplars {
		ex, nw := exemplars[k], labels[k]
		switch {
		case len(nw) == 0:
			put(ex, float64(perClass))
		case len(ex) == 0:
			put(nw, float64(perClass))
		default:
			put(ex, float64(perClass)/(1+newLabelWeight))
			put(nw, float64(perClass)*newLabelWeight/(1+newLabelWeight))
		}
	}
	return emb, ys
}

// split shuffles rows and holds back share of them, rounded down, always
// leaving at least one to fit.
func split(rows []row, share float64, rng *rand.Rand) (fit, hold []row) {
	if len(rows) == 0 {
		return nil, nil
	}
	rows = slices.Clone(rows)
	rng.Shuffle(len(rows), func(i, j int) { rows[i], rows[j] = rows[j], rows[i] })
	h := min(int(share*float64(len(rows))), len(rows)-1)
	return rows[h:], rows[:h]
}

// mean returns the mean embedding of rows, the class's prototype.
func mean(rows []row, d int) []float32 {
	sum := make([]float64, d)
	for _, r := range rows {
		for j, v := range r.emb {
			sum[j] += float64(v)
		}
	}
	mu := make([]float32, d)
	for j := range mu {
		mu[j] = float32(sum[j] / float64(len(rows)))
	}
	return mu
}

// classGate is one class's recall on the held-back data under the model in
// service (Before) and the candidate (After).
type classGate struct {
	Name          string
	N             int // held-back examples of the class
	Before, After float64
	New           bool // the class is new in the candidate: nothing to regress
}

// labelAgreement is the share of one class's held-back new labels that
// the candidate reproduces.
type labelAgreement struct {
	Name  string
	N     int
	Share float64
}

// gateReport is what the gate measured and decided. Its numbers travel in
// the published update (ModelUpdate.Gate) and in the log of a rejection.
type gateReport struct {
	Classes             []classGate
	BenignN             int // held-back benign examples
	FPRBefore, FPRAfter float64
	FitLabels           int
	HoldLabels          int
	FitExemplars        int
	HoldExemplars       int
	Agreement           []labelAgreement
	Loss                float64 // the fine-tuning loss after the last step
	Accepted            bool
	Reason              string // why it was rejected; "" when accepted
}

// gateSlack absorbs rounding when comparing rates computed from counts.
const gateSlack = 1e-9

// gate evaluates cur and cand on the held-back rows and decides. A
// candidate is rejected if
//   - any class cur knows (benign aside) loses more recall than the
//     tolerance: the fit made the model forget;
//   - the share of benign rows it alerts on rises by more than the FPR
//     tolerance;
//   - for some class, it reproduces fewer than MinAgreement of the
//     held-back new labels: labels the head cannot learn without those
//     held back disagreeing contradict the exemplars, which is what a
//     label calling a known family benign looks like when it is too
//     few to drag the family's recall down measurably.
//
// New classes' recall is reported, not gated: cur cannot detect them, so
// they cannot regress.
func (rep *gateReport) gate(cur, cand *model.Model, hold []row, benign, known int, newNames []string, p fitParams) {
	before := predict(cur, hold, benign)
	after := predict(cand, hold, benign)
	if before == nil || after == nil {
		rep.Reason = "a head gives non-finite probabilities"
		return
	}
	total := known + len(newNames)
	name := func(k int) string {
		if k >= known {
			return newNames[k-known]
		}
		return cur.Classes()[k]
	}
	n, hitB, hitA := make([]int, total), make([]int, total), make([]int, total)
	labelN, labelHit := make([]int, total), make([]int, total)
	fpB, fpA := 0, 0
	for i, r := range hold {
		n[r.class]++
		if r.label {
			labelN[r.class]++
			if after[i] == r.class {
				labelHit[r.class]++
			}
		}
		if r.class == benign {
			if before[i] != benign {
				fpB++
			}
			if after[i] != benign {
				fpA++
			}
			continue
		}
		if before[i] == r.class {
			hitB[r.class]++
		}
		if after[i] == r.class {
			hitA[r.class]++
		}
	}
	reject := func(format string, args ...any) {
		if rep.Reason == "" {
			rep.Reason = fmt.Sprintf(format, args...)
		}
	}
	for k := range total {
		if k == benign || n[k] == 0 {
			continue
		}
		cg := classGate{Name: name(k), N: n[k], Before: float64(hitB[k]) / float64(n[k]), After: float64(hitA[k]) / float64(n[k]), New: k >= known}
		rep.Classes = append(rep.Classes, cg)
		if !cg.New && cg.Before-cg.After > p.recallTol+gateSlack {
			reject("recall of %q dropped from %.3f to %.3f on %d held-back flows, tolerance %.3f", cg.Name, cg.Before, cg.After, cg.N, p.recallTol)
		}
	}
	rep.BenignN = n[benign]
	if n[benign] > 0 {
		rep.FPRBefore = float64(fpB) / float64(n[benign])
		rep.FPRAfter = float64(fpA) / float64(n[benign])
	}
	if rep.FPRAfter-rep.FPRBefore > p.fprTol+gateSlack {
		reject("benign false-positive rate rose from %.3f to %.3f on %d held-back flows, tolerance %.3f", rep.FPRBefore, rep.FPRAfter, rep.BenignN, p.fprTol)
	}
	for k := range total {
		if labelN[k] == 0 {
			continue
		}
		a := labelAgreement{Name: name(k), N: labelN[k], Share: float64(labelHit[k]) / float64(labelN[k])}
		rep.Agreement = append(rep.Agreement, a)
		if a.Share < p.minAgreement-gateSlack {
			reject("candidate reproduces %.3f of %d held-back %q labels, want at least %.3f: they contradict the exemplars", a.Share, a.N, a.Name, p.minAgreement)
		}
	}
	rep.Accepted = rep.Reason == ""
}

// predict returns, for each row, the class the scorer would alert on, or
// benign: the most probable class other than benign, if its probability
// reaches its threshold (a threshold of 0 means uncalibrated, never). This
// is the scorer's rule, so the gate measures what analysts will see. It
// returns nil if any probability is not finite.
func predict(m *model.Model, rows []row, benign int) []int {
	if len(rows) == 0 {
		return []int{}
	}
	d, c := m.EmbeddingDim(), m.NumClasses()
	emb := make([]float32, 0, len(rows)*d)
	for _, r := range rows {
		emb = append(emb, r.emb...)
	}
	probs := m.HeadProbs(nil, emb)
	out := make([]int, len(rows))
	for i := range rows {
		p := probs[i*c : (i+1)*c]
		best := -1
		for k, v := range p {
			if v-v != 0 {
				return nil
			}
			if k != benign && (best < 0 || v > p[best]) {
				best = k
			}
		}
		out[i] = benign
		if best >= 0 && m.Thresholds[best] > 0 && p[best] >= m.Thresholds[best] {
			out[i] = best
		}
	}
	return out
}

// Keys of the gate's numbers in ModelUpdate.Gate. Class-specific keys are
// "recall.<class>.before", "recall.<class>.after", "holdout.<class>",
// "agreement.<class>" and "holdout.labels.<class>".
const (
	gateFPRBefore     = "fpr.before"
	gateFPRAfter      = "fpr.after"
	gateHoldBenign    = "holdout.benign"
	gateFitLabels     = "fit.labels"
	gateFitExemplars  = "fit.exemplars"
	gateHoldLabels    = "holdout.labels"
	gateHoldExemplars = "holdout.exemplars"
	gateLoss          = "fit.loss"
	gateRecallTol     = "tolerance.recall"
	gateFPRTol        = "tolerance.fpr"
	gateMinAgreement  = "tolerance.agreement"
	// gateResumePrefix + partition records the labels offset up to which
	// every label has been dealt with, so a restarted adapter neither
	// loses nor refits any (see Stage).
	gateResumePrefix = "resume.labels."
)

// numbers returns the report as ModelUpdate.Gate entries.
func (rep *gateReport) numbers(p fitParams) map[string]float64 {
	g := map[string]float64{
		gateFPRBefore:     rep.FPRBefore,
		gateFPRAfter:      rep.FPRAfter,
		gateHoldBenign:    float64(rep.BenignN),
		gateFitLabels:     float64(rep.FitLabels),
		gateFitExemplars:  float64(rep.FitExemplars),
		gateHoldLabels:    float64(rep.HoldLabels),
		gateHoldExemplars: float64(rep.HoldExemplars),
		gateLoss:          rep.Loss,
		gateRecallTol:     p.recallTol,
		gateFPRTol:        p.fprTol,
	}
	for _, c := range rep.Classes {
		if !c.New {
			g["recall."+c.Name+".before"] = c.Before
		}
		g["recall."+c.Name+".after"] = c.After
		g["holdout."+c.Name] = float64(c.N)
	}
	for _, a := range rep.Agreement {
		g["agreement."+a.Name] = a.Share
		g["holdout.labels."+a.Name] = float64(a.N)
	}
	g[gateMinAgreement] = p.minAgreement
	return g
}
