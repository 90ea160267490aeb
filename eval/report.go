package eval

import (
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/metaids/metaids/dataset"
	"github.com/metaids/metaids/train"
)

// Metric is a report number that may be undefined (a recall over no
// flows): NaN, written as null.
type Metric = train.Metric

// Report is the JSON report of an evaluation. Every number is measured on
// the evaluated rows at the deployed thresholds: the model's own, and the
// adapter's for a new family.
type Report struct {
	// Flows is the number of evaluated flows that were scored.
	Flows int    `json:"flows"`
	Mode  string `json:"mode"`
	// ModelVersionStart and ModelVersionEnd are the versions serving at
	// the first and the last evaluated flow.
	ModelVersionStart int64 `json:"model_version_start"`
	ModelVersionEnd   int64 `json:"model_version_end"`
	// Headline gathers the numbers a model is compared on, its baseline's
	// included: binary F1, recall at a benign false-positive rate fixed on
	// training data, few-shot recall.
	Headline Headline `json:"headline"`
	// Baseline is the baseline's run on the same rows (-baseline,
	// -baseline-model), absent without one.
	Baseline *BaselineReport `json:"baseline,omitempty"`
	// Binary is attack vs benign over every scored flow with a verdict, each
	// scored by the model serving at the time.
	Binary Binary `json:"binary"`
	// PerClass is keyed by ground-truth label; "(unlabelled)" holds the
	// flows the dataset gives no verdict (support and detected only).
	PerClass map[string]ClassResult `json:"per_class"`
	// NewFamilies is keyed by family.
	NewFamilies map[string]*FamilyResult `json:"new_families"`
	// BenignFPRBefore and KnownRecallBefore are the share of benign flows
	// alerted on, and of known families' flows alerted on as any attack,
	// by the starting model; the After numbers are the final model's on the
	// same flows (updates change only the head, so re-scoring the stored
	// embeddings gives exactly what it would have served). AsServed has
	// them split by which model actually served.
	BenignFPRBefore   Metric `json:"benign_fpr_before"`
	BenignFPRAfter    Metric `json:"benign_fpr_after"`
	KnownRecallBefore Metric `json:"known_recall_before"`
	KnownRecallAfter  Metric `json:"known_recall_after"`
	// AdaptationLatencyMs is from the K-th label sent to the first score by
	// the model it taught, over the accepted adaptations.
	AdaptationLatencyMs Quantiles `json:"adaptation_latency_ms"`
	// ThroughputFlowsPerS is scored flows over the time from the first
	// flow replayed to the last score seen.
	ThroughputFlowsPerS float64 `json:"throughput_flows_per_s"`
	// AlertLatencyMs is, live, from a flow's replay to its alert on the
	// alerts topic; offline, the scoring time of the flow's step.
	AlertLatencyMs Quantiles `json:"alert_latency_ms"`

	// Confusion counts scored flows by ground truth, then by predicted
	// class: the alert's class, "anomaly", or benign for no alert.
	Confusion map[string]map[string]int `json:"confusion"`

	AsServed    AsServed      `json:"as_served"`
	Adaptations []*Adaptation `json:"adaptations"`
	Data        DataSummary   `json:"data"`
	Model       ModelSummary  `json:"model"`
	Training    *TrainSummary `json:"training,omitempty"`
	Live        *LiveSummary  `json:"live,omitempty"`
	Curves      Curves        `json:"curves"`
	Notes       []string      `json:"notes"`
}

// Binary holds attack-vs-benign numbers at the deployed thresholds, and the
// threshold-free areas under the curves of the attack score 1 − p(benign).
type Binary struct {
	TP        int    `json:"tp"`
	FP        int    `json:"fp"`
	TN        int    `json:"tn"`
	FN        int    `json:"fn"`
	Precision Metric `json:"precision"`
	Recall    Metric `json:"recall"`
	F1        Metric `json:"f1"`
	Accuracy  Metric `json:"accuracy"`
	FPR       Metric `json:"fpr"`
	ROCAUC    Metric `json:"roc_auc"`
	PRAUC     Metric `json:"pr_auc"`
}

// ClassResult is one ground-truth label's numbers. A flow's predicted
// label is its alert's class, or benign when it raised no alert.
type ClassResult struct {
	Support int `json:"support"`
	// Recall is the share of the label's flows predicted as the label;
	// Precision the share of flows predicted as the label that are.
	Recall    Metric `json:"recall"`
	Precision Metric `json:"precision"`
	// Detected is the share alerted on as any attack (for benign: the
	// false-positive rate).
	Detected Metric `json:"detected"`
}

// FamilyResult is one new family's numbers around its adaptation.
type FamilyResult struct {
	// Verdict is the label the analyst sent ("Web_Attack_-_Brute_Force").
	Verdict string `json:"verdict"`
	Shots   int    `json:"shots"`
	Flows   int    `json:"flows"`
	// Version is the update that taught the family, 0 if none went live.
	Version int64 `json:"version"`
	// RecallBefore is the share of the family's flows scored before its
	// labels were sent (the labelled ones included) alerted on as any
	// attack. The After numbers are on its flows scored by a model that
	// knows it: RecallAfter as any attack, FamilyRecallAfter as the
	// family; PrecisionAfter is the share of all flows those models alerted
	// on as the family that are of it.
	NBefore           int    `json:"n_before"`
	NAfter            int    `json:"n_after"`
	NBetween          int    `json:"n_between"`
	RecallBefore      Metric `json:"recall_before"`
	RecallAfter       Metric `json:"recall_after"`
	FamilyRecallAfter Metric `json:"family_recall_after"`
	// FamilyRecallAfterHead is FamilyRecallAfter by the classifier head
	// alone, without the campaigns of labelled hosts (model.Campaign): how
	// much of the family the head would name on an attacker nobody
	// labelled.
	FamilyRecallAfterHead Metric `json:"family_recall_after_head"`
	PrecisionAfter        Metric `json:"precision_after"`
	F1After               Metric `json:"f1_after"`
	// RecallAfterWithoutUpdate is the starting model's recall (any
	// attack) on the same after-flows: what the labels bought.
	RecallAfterWithoutUpdate Metric `json:"recall_after_without_update"`
	// Timeline has one character per flow of the family in replay order:
	// '.' no alert, 'a' alerted as another class, 'F' alerted as the
	// family, '-' never scored. LabelledAt indexes it at the K-th flow,
	// LiveAt at the first flow the update scored (−1: none).
	Timeline   string `json:"timeline"`
	LabelledAt int    `json:"labelled_at"`
	LiveAt     int    `json:"live_at"`
}

// AsServed splits the benign false-positive rate and known families'
// recall by the model that served: the starting one, or an update.
type AsServed struct {
	BenignFPRBefore   Metric `json:"benign_fpr_before"`
	BenignFPRAfter    Metric `json:"benign_fpr_after"`
	KnownRecallBefore Metric `json:"known_recall_before"`
	KnownRecallAfter  Metric `json:"known_recall_after"`
	BenignBefore      int    `json:"benign_before"`
	BenignAfter       int    `json:"benign_after"`
	KnownBefore       int    `json:"known_before"`
	KnownAfter        int    `json:"known_after"`
}

// Quantiles summarise a latency distribution.
type Quantiles struct {
	P50 Metric `json:"p50"`
	P99 Metric `json:"p99"`
	Max Metric `json:"max"`
	N   int    `json:"n"`
}

// DataSummary describes the evaluated data.
type DataSummary struct {
	Files     []string       `json:"files"`
	Rows      int            `json:"rows"`      // records read
	Evaluated int            `json:"evaluated"` // records replayed
	Labels    map[string]int `json:"labels"`    // evaluated records by ground truth
	Rejected  map[string]int `json:"rejected"`  // rows the ingest decoders refused
	DeltaT    bool           `json:"dt_prev_gaps"`
}

// ModelSummary describes the starting and final models.
type ModelSummary struct {
	Name             string    `json:"name"`
	Hidden           int       `json:"hidden"`
	ClassesStart     []string  `json:"classes_start"`
	ClassesEnd       []string  `json:"classes_end"`
	Thresholds       []float32 `json:"thresholds_start"`
	AnomalyThreshold float32   `json:"anomaly_threshold"`
}

// Curves are the threshold-free curves of the attack score, thinned.
type Curves struct {
	ROC train.Curve `json:"roc"`
	PR  train.Curve `json:"pr"`
}

// unlabelledKey is the per-class key of flows without a verdict.
const unlabelledKey = "(unlabelled)"

// report computes the Report from an outcome.
func (o *outcome) report(cfg Config) *Report {
	es := o.es
	rep := &Report{
		Mode:        o.mode,
		PerClass:    map[string]ClassResult{},
		NewFamilies: map[string]*FamilyResult{},
		Confusion:   map[string]map[string]int{},
		Adaptations: o.adaptations,
		Live:        o.live,
		Notes:       append([]string{}, o.notes...),
	}
	final := o.start
	first, last := -1, -1
	for j, r := range o.rows {
		if r.version == 0 {
			continue
		}
		rep.Flows++
		if first < 0 {
			first = j
		}
		last = j
	}
	if first >= 0 {
		rep.ModelVersionStart = o.rows[first].version
		rep.ModelVersionEnd = o.rows[last].version
	}
	for v, m := range o.models {
		if v > final.Version {
			final = m
		}
	}
	isNew := map[string]bool{}
	for _, f := range es.families {
		isNew[f] = true
	}
	known := map[string]bool{}
	for _, c := range o.start.Classes()[1:] {
		known[c] = true
	}

	// Binary, per class and the curves: as served.
	var (
		b       Binary
		scores  []float32
		pos     []bool
		support = map[string]int{}
		hit     = map[string]int{}
		det     = map[string]int{}
		predN   = map[string]int{}
		predOK  = map[string]int{}
		labels  = map[string]int{}
	)
	predName := func(p int16) string {
		if p == predNone {
			return dataset.Benign
		}
		return o.names[p]
	}
	for j, r := range o.rows {
		t := es.truth(j)
		labels[labelKey(t)]++
		if r.version == 0 {
			continue
		}
		key := labelKey(t)
		support[key]++
		if rep.Confusion[key] == nil {
			rep.Confusion[key] = map[string]int{}
		}
		rep.Confusion[key][predName(r.pred)]++
		alert := r.pred != predNone
		if alert {
			det[key]++
		}
		if t == dataset.Unlabelled {
			continue
		}
		p := o.truthName(predName(r.pred), t)
		predN[p]++
		if p == t {
			hit[t]++
			predOK[t]++
		}
		attack := t != dataset.Benign
		switch {
		case attack && alert:
			b.TP++
		case attack:
			b.FN++
		case alert:
			b.FP++
		default:
			b.TN++
		}
		scores = append(scores, r.attack)
		pos = append(pos, attack)
	}
	b.Precision = ratio(b.TP, b.TP+b.FP)
	b.Recall = ratio(b.TP, b.TP+b.FN)
	b.F1 = f1(b.Precision, b.Recall)
	b.Accuracy = ratio(b.TP+b.TN, b.TP+b.TN+b.FP+b.FN)
	b.FPR = ratio(b.FP, b.FP+b.TN)
	rep.Curves.ROC, rep.Curves.PR = curves(scores, pos)
	b.ROCAUC, b.PRAUC = rep.Curves.ROC.AUC, rep.Curves.PR.AUC
	rep.Binary = b
	for key, n := range support {
		cr := ClassResult{Support: n, Detected: ratio(det[key], n), Recall: Metric(math.NaN()), Precision: Metric(math.NaN())}
		if key != unlabelledKey {
			cr.Recall = ratio(hit[key], n)
			cr.Precision = ratio(predOK[key], predN[key])
		}
		rep.PerClass[key] = cr
	}

	// The starting and the final model on the same flows.
	before, after := o.rescore(o.start), o.rescore(final)
	var bn, bfB, bfA, kn, krB, krA int
	for j, r := range o.rows {
		if r.version == 0 {
			continue
		}
		t := es.truth(j)
		switch {
		case t == dataset.Benign:
			bn++
			bfB += b2i(before[j] != predNone)
			bfA += b2i(after[j] != predNone)
		case known[t]:
			kn++
			krB += b2i(before[j] != predNone)
			krA += b2i(after[j] != predNone)
		}
	}
	rep.BenignFPRBefore, rep.BenignFPRAfter = ratio(bfB, bn), ratio(bfA, bn)
	rep.KnownRecallBefore, rep.KnownRecallAfter = ratio(krB, kn), ratio(krA, kn)

	// As served: by the starting model or by an update.
	var as AsServed
	var asB, asA, akB, akA int
	for j, r := range o.rows {
		if r.version == 0 {
			continue
		}
		t := es.truth(j)
		upd := r.version != o.start.Version
		alert := r.pred != predNone
		switch {
		case t == dataset.Benign && upd:
			as.BenignAfter++
			asA += b2i(alert)
		case t == dataset.Benign:
			as.BenignBefore++
			asB += b2i(alert)
		case known[t] && upd:
			as.KnownAfter++
			akA += b2i(alert)
		case known[t]:
			as.KnownBefore++
			akB += b2i(alert)
		}
	}
	as.BenignFPRBefore, as.BenignFPRAfter = ratio(asB, as.BenignBefore), ratio(asA, as.BenignAfter)
	as.KnownRecallBefore, as.KnownRecallAfter = ratio(akB, as.KnownBefore), ratio(akA, as.KnownAfter)
	rep.AsServed = as

	// New families.
	plan := planLabels(es, cfg.Shots)
	for _, fam := range es.families {
		rep.NewFamilies[fam] = o.family(fam, plan, before)
	}

	var adLat []float64
	for _, ad := range o.adaptations {
		if ad.Accepted && ad.LiveAt >= 0 {
			adLat = append(adLat, float64(ad.LatencyMs))
		}
	}
	rep.AdaptationLatencyMs = quantiles(adLat)
	rep.AlertLatencyMs = quantiles(o.alertLatency)
	if s := o.elapsed.Seconds(); s > 0 {
		rep.ThroughputFlowsPerS = float64(rep.Flows) / s
	}

	rep.Data = DataSummary{Files: es.files, Rows: es.d.Len(), Evaluated: len(es.rows), Labels: labels,
		Rejected: es.stats.Rejected, DeltaT: es.d.DeltaT}
	rep.Model = ModelSummary{Name: o.start.Name, Hidden: o.start.Hidden(), ClassesStart: o.start.Classes(),
		ClassesEnd: final.Classes(), Thresholds: o.start.Thresholds, AnomalyThreshold: o.start.AnomalyThreshold}
	for f, n := range plan.short {
		rep.Notes = append(rep.Notes, "new family "+f+" has only "+strconv.Itoa(n)+" flows, fewer than -shots: no labels were sent for it")
	}
	for reason, n := range es.dropped {
		rep.Notes = append(rep.Notes, strconv.Itoa(n)+" rows left out: ingest's validator would dead-letter them ("+reason+")")
	}
	for key := range support {
		if key != dataset.Benign && key != unlabelledKey && !known[key] && !isNew[key] {
			rep.Notes = append(rep.Notes, "family "+key+" is neither a class of the model nor a -new-family: it counts in binary only")
		}
	}
	slices.Sort(rep.Notes)
	return rep
}

// family computes one new family's numbers.
func (o *outcome) family(fam string, plan *labelPlan, startPred []int16) *FamilyResult {
	es := o.es
	verdict := es.verdicts[fam]
	fr := &FamilyResult{Verdict: verdict, Shots: len(plan.rows[fam]), Flows: plan.total[fam], LabelledAt: -1, LiveAt: -1}
	// The versions that know the family.
	knows := map[int64]bool{}
	for v, m := range o.models {
		if _, ok := m.ClassIndex(verdict); ok {
			knows[v] = true
			if fr.Version == 0 || v < fr.Version {
				fr.Version = v
			}
		}
	}
	// The K-th flow, after whose score the labels went out; −1 when the
	// family had fewer than K flows and no labels were sent.
	kth := -1
	if _, short := plan.short[fam]; !short && len(plan.rows[fam]) > 0 {
		kth = plan.rows[fam][len(plan.rows[fam])-1]
	}
	famIdx, hasFam := o.nameIdx[verdict]
	var (
		tl                               strings.Builder
		nB, hB, nA, hA, fA, fH, hW, nBtw int
	)
	i := 0
	for j, r := range o.rows {
		if es.truth(j) != fam {
			continue
		}
		switch {
		case r.version == 0:
			tl.WriteByte('-')
		case r.pred == predNone:
			tl.WriteByte('.')
		case hasFam && r.pred == famIdx:
			tl.WriteByte('F')
		default:
			tl.WriteByte('a')
		}
		if j == kth {
			fr.LabelledAt = i
		}
		if r.version != 0 {
			alert := r.pred != predNone
			switch {
			case kth < 0 || j <= kth:
				nB++
				hB += b2i(alert)
			case knows[r.version]:
				if fr.LiveAt < 0 {
					fr.LiveAt = i
				}
				nA++
				hA += b2i(alert)
				fA += b2i(hasFam && r.pred == famIdx)
				fH += b2i(hasFam && r.predHead == famIdx)
				hW += b2i(startPred[j] != predNone)
			default:
				nBtw++
			}
		}
		i++
	}
	// Precision: every flow a knowing model alerted on as the family.
	var predF, predFok int
	if hasFam {
		for j, r := range o.rows {
			if r.version != 0 && knows[r.version] && r.pred == famIdx {
				predF++
				predFok += b2i(es.truth(j) == fam)
			}
		}
	}
	fr.NBefore, fr.NAfter, fr.NBetween = nB, nA, nBtw
	fr.RecallBefore = ratio(hB, nB)
	fr.RecallAfter = ratio(hA, nA)
	fr.FamilyRecallAfter = ratio(fA, nA)
	fr.FamilyRecallAfterHead = ratio(fH, nA)
	fr.PrecisionAfter = ratio(predFok, predF)
	fr.F1After = f1(fr.PrecisionAfter, fr.FamilyRecallAfter)
	fr.RecallAfterWithoutUpdate = ratio(hW, nA)
	fr.Timeline = tl.String()
	return fr
}

// truthName maps a predicted class name onto ground-truth names: a new
// family's verdict back to the family.
func (o *outcome) truthName(pred, truth string) string {
	if pred == truth {
		return pred
	}
	for f, v := range o.es.verdicts {
		if pred == v {
			return f
		}
	}
	return pred
}

func labelKey(t string) string {
	if t == dataset.Unlabelled {
		return unlabelledKey
	}
	return t
}

// curves returns the ROC and precision-recall curves of scores against
// pos, with their areas (trapezoidal over distinct scores, so ties count
// half), thinned to about 200 points.
func curves(scores []float32, pos []bool) (roc, pr train.Curve) {
	nan := Metric(math.NaN())
	roc.AUC, pr.AUC = nan, nan
	idx := make([]int, len(scores))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool { return scores[idx[a]] > scores[idx[b]] })
	var P, N int
	for _, p := range pos {
		if p {
			P++
		} else {
			N++
		}
	}
	if P == 0 || N == 0 {
		return roc, pr
	}
	var (
		tp, fp         int
		auc, ap        float64
		prevFPR, prevR float64
		rx, ry, px, py []float64
	)
	rx, ry = append(rx, 0), append(ry, 0)
	for k := 0; k < len(idx); {
		s := scores[idx[k]]
		for k < len(idx) && scores[idx[k]] == s {
			if pos[idx[k]] {
				tp++
			} else {
				fp++
			}
			k++
		}
		tpr, fpr := float64(tp)/float64(P), float64(fp)/float64(N)
		prec := float64(tp) / float64(tp+fp)
		auc += (fpr - prevFPR) * (tpr + ry[len(ry)-1]) / 2
		ap += (tpr - prevR) * prec
		prevFPR, prevR = fpr, tpr
		rx, ry = append(rx, fpr), append(ry, tpr)
		px, py = append(px, tpr), append(py, prec)
	}
	roc = train.Curve{X: thin(rx), Y: thin(ry), AUC: Metric(auc)}
	pr = train.Curve{X: thin(px), Y: thin(py), AUC: Metric(ap)}
	return roc, pr
}

// thin keeps about 200 evenly spaced points of a curve, and its ends.
func thin(v []float64) []float64 {
	const keep = 200
	if len(v) <= keep {
		return v
	}
	out := make([]float64, 0, keep+1)
	for i := 0; i < keep; i++ {
		out = append(out, v[i*len(v)/keep])
	}
	return append(out, v[len(v)-1])
}

// quantiles returns the nearest-rank p50 and p99 of v and its maximum.
func quantiles(v []float64) Quantiles {
	q := Quantiles{P50: Metric(math.NaN()), P99: Metric(math.NaN()), Max: Metric(math.NaN()), N: len(v)}
	if len(v) == 0 {
		return q
	}
	s := slices.Clone(v)
	slices.Sort(s)
	at := func(p float64) Metric {
		i := int(math.Ceil(p*float64(len(s)))) - 1
		return Metric(s[min(max(i, 0), len(s)-1)])
	}
	q.P50, q.P99, q.Max = at(0.5), at(0.99), Metric(s[len(s)-1])
	return q
}

func ratio(a, b int) Metric {
	if b == 0 {
		return Metric(math.NaN())
	}
	return Metric(float64(a) / float64(b))
}

func f1(p, r Metric) Metric {
	if p+r == 0 {
		return 0
	}
	return 2 * p * r / (p + r)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
