package eval

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"math"
	"slices"

	"github.com/metaids/metaids/dataset"
	"github.com/metaids/metaids/features"
	"github.com/metaids/metaids/model"
	"github.com/metaids/metaids/schemas"
	"github.com/metaids/metaids/train"
)

// Headline holds the numbers a model is compared on: binary F1 at the
// deployed thresholds, recall at a benign false-positive rate fixed on
// training data, and few-shot recall.
type Headline struct {
	// BinaryF1 is Binary.F1: attack vs benign, as served.
	BinaryF1 Metric `json:"binary_f1"`
	// RecallAtFPR is the classifier's recall at the operating point fixed
	// before scoring, AnomalyRecallAtFPR the anomaly score's: the detector
	// that needs no labels, and the only one of a model that knows no
	// family yet.
	RecallAtFPR        RecallAtFPR `json:"recall_at_fpr"`
	AnomalyRecallAtFPR RecallAtFPR `json:"anomaly_recall_at_fpr"`
	// FewShotK is -shots; FewShotRecall and FewShotFamilyRecall are the
	// mean over the new families of recall_after and family_recall_after
	// (NaN when no update went live).
	FewShotK            int    `json:"few_shot_k"`
	FewShotRecall       Metric `json:"few_shot_recall"`
	FewShotFamilyRecall Metric `json:"few_shot_family_recall"`
}

// RecallAtFPR is detection at a fixed benign false-positive rate: a flow
// is flagged when the starting model's score (the attack score
// 1 − p(benign), or the anomaly score, with no warm-up) reaches Threshold,
// the score that TargetFPR of the training data's benign validation flows
// reach. Nothing evaluated chooses it, so FPR, the rate measured on the
// evaluated benign flows, may differ from TargetFPR: that difference is
// part of the result.
type RecallAtFPR struct {
	TargetFPR float64 `json:"target_fpr"`
	Threshold Metric  `json:"threshold"`
	// BenignValFlows is how many benign validation flows set Threshold.
	BenignValFlows int `json:"benign_val_flows"`
	// Recall is over every evaluated attack flow, KnownRecall over those of
	// the model's own classes (not the new families).
	Recall      Metric `json:"recall"`
	KnownRecall Metric `json:"known_recall"`
	FPR         Metric `json:"fpr"`
	Attacks     int    `json:"attacks"`
	Known       int    `json:"known"`
	Benign      int    `json:"benign"`
}

// BaselineReport is the baseline's run on the same rows in the same mode,
// and where its detections differ from the model's.
type BaselineReport struct {
	// Kind is train.BaselinePerFlow for a trained baseline, "file" for
	// -baseline-model; PerFlow says whether the model is a per-flow one.
	Kind     string        `json:"kind"`
	File     string        `json:"file,omitempty"`
	PerFlow  bool          `json:"per_flow"`
	Training *TrainSummary `json:"training,omitempty"`
	Headline Headline      `json:"headline"`
	Binary   Binary        `json:"binary"`
	// NewFamilies, BenignFPRBefore and KnownRecallBefore are as in Report.
	NewFamilies       map[string]*FamilyResult `json:"new_families"`
	BenignFPRBefore   Metric                   `json:"benign_fpr_before"`
	KnownRecallBefore Metric                   `json:"known_recall_before"`
	// ModelOnly and BaselineOnly are the flows one of the two flagged and
	// the other did not, with the alerts as served; the AtFPR pair are the
	// same at the fixed-FPR operating point. Their hosts say how general a
	// difference is: many flows of one host are one finding, not many.
	ModelOnly         Difference `json:"model_only"`
	BaselineOnly      Difference `json:"baseline_only"`
	ModelOnlyAtFPR    Difference `json:"model_only_at_fpr"`
	BaselineOnlyAtFPR Difference `json:"baseline_only_at_fpr"`
}

// Difference counts flows one model flagged and the other did not, and
// the hosts (the scorer's per-host key, the flow's source) they came from.
type Difference struct {
	// Attacks are attack flows caught, on AttackHosts hosts; Benign are
	// benign flows falsely flagged, on BenignHosts hosts.
	Attacks     int `json:"attacks"`
	AttackHosts int `json:"attack_hosts"`
	Benign      int `json:"benign"`
	BenignHosts int `json:"benign_hosts"`
	// TopAttackHosts are the hosts with most of Attacks, at most five.
	TopAttackHosts []HostCount `json:"top_attack_hosts,omitempty"`
}

// HostCount is a host and a count of its flows.
type HostCount struct {
	Host  string `json:"host"`
	Flows int    `json:"flows"`
}

// prepareBaseline loads or trains the baseline, if one is asked for: the
// per-flow model trained on the very data and split the model was, with
// the same settings and seed.
func prepareBaseline(ctx context.Context, cfg Config, es *evalSet, log *slog.Logger) (*model.Model, *BaselineReport, error) {
	var (
		m   *model.Model
		br  *BaselineReport
		err error
	)
	switch {
	case cfg.BaselineModel != "":
		if m, err = model.Load(cfg.BaselineModel, features.Default().Hash()); err != nil {
			return nil, nil, fmt.Errorf("-baseline-model: %w", err)
		}
		br = &BaselineReport{Kind: "file", File: cfg.BaselineModel, Training: &TrainSummary{Source: "file", File: cfg.BaselineModel}}
	case cfg.Baseline == train.BaselinePerFlow:
		if es.fit == nil {
			return nil, nil, fmt.Errorf("-baseline: no training data to train it on")
		}
		var ts *TrainSummary
		if m, ts, err = trainOn(ctx, es.fit, cfg, true, log.With("model", "baseline")); err != nil {
			return nil, nil, fmt.Errorf("baseline: %w", err)
		}
		ts.Source = "same as the model's"
		br = &BaselineReport{Kind: train.BaselinePerFlow, Training: ts}
	default:
		return nil, nil, nil
	}
	for _, f := range es.families {
		if _, ok := m.ClassIndex(es.verdicts[f]); ok {
			return nil, nil, fmt.Errorf("baseline: -new-family %q: %w", f, ErrNotNew)
		}
		if _, ok := m.ClassIndex(f); ok {
			return nil, nil, fmt.Errorf("baseline: -new-family %q: %w", f, ErrNotNew)
		}
	}
	if m.NumClasses() == 0 || m.Classes()[0] != schemas.VerdictBenign {
		return nil, nil, fmt.Errorf("baseline classes %v: class 0 must be %q, as the scorer assumes", m.Classes(), schemas.VerdictBenign)
	}
	if m.Name == "" {
		m.Name = "metaids"
	}
	m.Version = max(m.Version, 1)
	br.PerFlow = m.PerFlow()
	return m, br, nil
}

// opPoint is a model's fixed-FPR thresholds on its attack and anomaly
// scores, and the benign validation flows they were set on.
type opPoint struct {
	attack, anomaly float32
	n               int
}

// operatingPoint returns m's fixed-FPR thresholds from the training data's
// benign validation flows, NaN without training data.
func operatingPoint(m *model.Model, es *evalSet, fpr float64) opPoint {
	if es.fit == nil {
		nan := float32(math.NaN())
		return opPoint{nan, nan, 0}
	}
	a, an, n := train.BenignThresholds(m, es.fit, fpr)
	return opPoint{a, an, n}
}

// headlineOf measures o's headline numbers at the operating point op.
func headlineOf(o *outcome, rep *Report, op opPoint, fpr float64, k int) Headline {
	h := Headline{BinaryF1: rep.Binary.F1, FewShotK: k}
	h.RecallAtFPR = o.recallAtFPR(flaggedAt(o.startScores(), op.attack), op.attack, op.n, fpr)
	anom := make([]float32, len(o.rows))
	for j, r := range o.rows {
		anom[j] = float32(math.NaN())
		if r.version != 0 {
			anom[j] = r.anomaly
		}
	}
	h.AnomalyRecallAtFPR = o.recallAtFPR(flaggedAt(anom, op.anomaly), op.anomaly, op.n, fpr)
	h.FewShotRecall = meanOf(rep.NewFamilies, func(f *FamilyResult) Metric { return f.RecallAfter })
	h.FewShotFamilyRecall = meanOf(rep.NewFamilies, func(f *FamilyResult) Metric { return f.FamilyRecallAfter })
	return h
}

// startScores returns every row's attack score 1 − p(benign) by the
// starting model, re-scoring the stored embeddings with its head: updates
// change only the head, so this is what the starting model would have
// served. Rows never scored get NaN.
func (o *outcome) startScores() []float32 {
	out := make([]float32, len(o.rows))
	o.headProbs(o.start, func(j int, probs []float32) {
		out[j] = float32(math.NaN())
		if o.rows[j].version != 0 {
			out[j] = 1 - probs[0]
		}
	})
	return out
}

// flaggedAt returns which rows the starting model flags at threshold thr
// (none when thr is NaN).
func flaggedAt(scores []float32, thr float32) []bool {
	out := make([]bool, len(scores))
	for j, s := range scores {
		out[j] = s >= thr // false for NaN on either side
	}
	return out
}

// recallAtFPR measures recall and the benign FPR of the flags at the
// operating point thr.
func (o *outcome) recallAtFPR(flags []bool, thr float32, nVal int, target float64) RecallAtFPR {
	r := RecallAtFPR{TargetFPR: target, Threshold: Metric(thr), BenignValFlows: nVal}
	known := o.knownFamilies()
	var hit, khit, fp int
	for j, row := range o.rows {
		t := o.es.truth(j)
		if row.version == 0 || t == dataset.Unlabelled {
			continue
		}
		switch {
		case t == dataset.Benign:
			r.Benign++
			fp += b2i(flags[j])
		default:
			r.Attacks++
			hit += b2i(flags[j])
			if known[t] {
				r.Known++
				khit += b2i(flags[j])
			}
		}
	}
	nan := Metric(math.NaN())
	r.Recall, r.KnownRecall, r.FPR = nan, nan, nan
	if thr == thr {
		r.Recall, r.KnownRecall, r.FPR = ratio(hit, r.Attacks), ratio(khit, r.Known), ratio(fp, r.Benign)
	}
	return r
}

// knownFamilies returns the starting model's attack classes.
func (o *outcome) knownFamilies() map[string]bool {
	known := map[string]bool{}
	for _, c := range o.start.Classes()[1:] {
		known[c] = true
	}
	return known
}

// alerted returns which rows raised an alert as served.
func (o *outcome) alerted() []bool {
	out := make([]bool, len(o.rows))
	for j, r := range o.rows {
		out[j] = r.version != 0 && r.pred != predNone
	}
	return out
}

// meanOf is the mean of get over the families where it is defined.
func meanOf(fams map[string]*FamilyResult, get func(*FamilyResult) Metric) Metric {
	var sum float64
	n := 0
	for _, f := range fams {
		if v := get(f); v == v {
			sum += float64(v)
			n++
		}
	}
	if n == 0 {
		return Metric(math.NaN())
	}
	return Metric(sum / float64(n))
}

// difference counts the rows a flags and b does not, by host.
func difference(es *evalSet, scored []bool, a, b []bool) Difference {
	var d Difference
	atk, ben := map[string]int{}, map[string]int{}
	for j := range a {
		t := es.truth(j)
		if !scored[j] || !a[j] || b[j] || t == dataset.Unlabelled {
			continue
		}
		host := features.Host(es.flow(j))
		if t == dataset.Benign {
			d.Benign++
			ben[host]++
		} else {
			d.Attacks++
			atk[host]++
		}
	}
	d.AttackHosts, d.BenignHosts = len(atk), len(ben)
	for h, n := range atk {
		d.TopAttackHosts = append(d.TopAttackHosts, HostCount{h, n})
	}
	slices.SortFunc(d.TopAttackHosts, func(x, y HostCount) int {
		return cmp.Or(cmp.Compare(y.Flows, x.Flows), cmp.Compare(x.Host, y.Host))
	})
	d.TopAttackHosts = d.TopAttackHosts[:min(5, len(d.TopAttackHosts))]
	return d
}

// compare fills br from the baseline's outcome ob, its report brep and
// its headline, set against the model's outcome o and headline hm: the same
// rows, so row j is the same flow in both.
func compare(br *BaselineReport, o, ob *outcome, brep *Report, hm, hb Headline) {
	br.Binary = brep.Binary
	br.NewFamilies = brep.NewFamilies
	br.BenignFPRBefore, br.KnownRecallBefore = brep.BenignFPRBefore, brep.KnownRecallBefore
	br.Headline = hb
	scored := make([]bool, len(o.rows))
	for j := range scored {
		scored[j] = o.rows[j].version != 0 && ob.rows[j].version != 0
	}
	am, ab := o.alerted(), ob.alerted()
	br.ModelOnly = difference(o.es, scored, am, ab)
	br.BaselineOnly = difference(o.es, scored, ab, am)
	fm := flaggedAt(o.startScores(), float32(hm.RecallAtFPR.Threshold))
	fb := flaggedAt(ob.startScores(), float32(hb.RecallAtFPR.Threshold))
	br.ModelOnlyAtFPR = difference(o.es, scored, fm, fb)
	br.BaselineOnlyAtFPR = difference(o.es, scored, fb, fm)
}
