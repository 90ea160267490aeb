package adapter

import (
	"fmt"
	"math"
	"strings"

	"github.com/metaids/metaids/model"
)

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
	BenignN             int // held-back benign examples, the gate set's included
	GateBenign          int // of which from the model's gate set (model.Model.GateBenign)
	GateKnown           int // known-class flows from the model's gate set (model.Model.GateKnown), in Classes' N
	FPRBefore, FPRAfter float64
	// FPRRiseLow is the rise of the benign false-positive rate that the
	// held-back flows show with 90% confidence (see fprRiseLow).
	FPRRiseLow    float64
	FitLabels     int
	HoldLabels    int
	FitExemplars  int
	HoldExemplars int
	Agreement     []labelAgreement
	Loss          float64 // the fine-tuning loss after the last step
	Steps         int     // fine-tuning steps of the chosen fit (0: prototype rows only)
	// CampaignOnly says the head is unchanged and the new families are
	// named only by the campaigns of their labels (model.AddDormantClass).
	CampaignOnly bool
	Campaigns    int // campaigns the candidate carries
	Accepted     bool
	Reason       string // why it was rejected; "" when accepted
}

// gateSlack absorbs rounding when comparing rates computed from counts.
const gateSlack = 1e-9

// gate evaluates cur and cand on the held-back rows and decides. A
// candidate is rejected if
//   - any class cur knows (benign aside) loses more recall than the
//     tolerance, and more flows than an unchanged model would lose by
//     chance (lossSignificant): the fit made the model forget;
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
	lost, gained := make([]int, total), make([]int, total)
	labelN, labelHit := make([]int, total), make([]int, total)
	fpB, fpA, flips := 0, 0, 0
	for i, r := range hold {
		n[r.class]++
		if r.label {
			// A head fit must reproduce held-back labels by itself: that
			// is what catches labels that contradict the exemplars. A
			// campaign-only candidate names them by campaign, which the
			// head can only refuse by not alerting on them.
			pred := after[i]
			if rep.CampaignOnly && pred != benign && r.host != "" {
				if k := model.Covers(cand.Campaigns, r.host, r.endNs); k >= 0 {
					pred = k
				}
			}
			labelN[r.class]++
			if pred == r.class {
				labelHit[r.class]++
			}
		}
		if r.class == benign {
			b, a := before[i] != benign, after[i] != benign
			if b {
				fpB++
			}
			if a {
				fpA++
			}
			if a != b {
				flips++
			}
			continue
		}
		b, a := before[i] == r.class, after[i] == r.class
		if b {
			hitB[r.class]++
		}
		if a {
			hitA[r.class]++
		}
		if b && !a {
			lost[r.class]++
		}
		if a && !b {
			gained[r.class]++
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
		// A few flows are noise: a class with two or three held-back
		// flows would otherwise "drop 0.5" or more for a confusion with a
		// sibling family (CIC-IDS2017's XSS beside a new web brute force,
		// its three Heartbleed flows beside it too).
		if !cg.New && cg.Before-cg.After > p.recallTol+gateSlack && lossSignificant(lost[k], gained[k]) {
			reject("recall of %q dropped from %.3f to %.3f on %d held-back flows, tolerance %.3f", cg.Name, cg.Before, cg.After, cg.N, p.recallTol)
		}
	}
	rep.BenignN = n[benign]
	if n[benign] > 0 {
		rep.FPRBefore = float64(fpB) / float64(n[benign])
		rep.FPRAfter = float64(fpA) / float64(n[benign])
	}
	if rep.FPRRiseLow = fprRiseLow(fpB, fpA, flips, n[benign]); rep.FPRRiseLow > p.fprTol+gateSlack {
		reject("benign false-positive rate rose from %.3f to %.3f on %d held-back flows, at least %.3f with 90%% confidence, tolerance %.3f",
			rep.FPRBefore, rep.FPRAfter, rep.BenignN, rep.FPRRiseLow, p.fprTol)
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

// fprRiseLow returns the one-sided 90% lower confidence bound of the rise
// in the benign false-positive rate, from n held-back benign flows of
// which fpB alerted before, fpA after, and flips changed their verdict.
// The gate rejects only a rise it is confident of: on a few hundred flows
// the point estimate of a rise near the tolerance is a coin toss (one flow
// of 272 is 0.004), and a coin toss must not decide whether a family gets
// detected at all. The comparison is paired, the same flows under both
// heads, so the spread is that of the per-flow differences.
func fprRiseLow(fpB, fpA, flips, n int) float64 {
	if n == 0 {
		return 0
	}
	N := float64(n)
	rise := float64(fpA-fpB) / N
	// Each flow's difference is −1, 0 or 1; its square is 1 on a flip.
	v := float64(flips)/N - rise*rise
	return rise - 1.2816*math.Sqrt(max(v, 0)/N)
}

// lossSignificant reports whether a class's held-back flows that the
// candidate stops naming (lost) outnumber those it starts naming (gained)
// by more than chance: the one-sided exact sign test on the flows whose
// verdict changed rejects "no change" at the 10% level. With nothing
// gained that takes four lost flows: fewer are what two heads of equal
// skill differ by on a small class, and refusing an update for them would
// let three flows of a rare family veto a new one.
func lossSignificant(lost, gained int) bool {
	n := lost + gained
	if lost <= gained || n == 0 {
		return false
	}
	// P(X ≥ lost) for X ~ Binomial(n, 1/2), summed in log space so that
	// thousands of flows do not underflow.
	lc, _ := math.Lgamma(float64(n + 1))
	lc -= float64(n) * math.Ln2
	p := 0.0
	for x := lost; x <= n; x++ {
		la, _ := math.Lgamma(float64(x + 1))
		lb, _ := math.Lgamma(float64(n - x + 1))
		p += math.Exp(lc - la - lb)
	}
	return p < 0.1
}

// score ranks accepted candidates: the mean held-back recall over every
// class, new ones included, less the benign false-positive rate.
func (rep *gateReport) score() float64 {
	if len(rep.Classes) == 0 {
		return -rep.FPRAfter
	}
	var s float64
	for _, c := range rep.Classes {
		s += c.After
	}
	return s/float64(len(rep.Classes)) - rep.FPRAfter
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
		for _, v := range p {
			if v-v != 0 {
				return nil
			}
		}
		out[i] = benign
		if k, _ := model.AlertClass(p, m.Thresholds, benign); k >= 0 {
			out[i] = k
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
	gateFPRRiseLow    = "fpr.rise.low90"
	gateHoldBenign    = "holdout.benign"
	gateGateBenign    = "holdout.benign.gate_set"
	gateGateKnown     = "holdout.known.gate_set"
	gateFitLabels     = "fit.labels"
	gateFitExemplars  = "fit.exemplars"
	gateHoldLabels    = "holdout.labels"
	gateHoldExemplars = "holdout.exemplars"
	gateLoss          = "fit.loss"
	gateSteps         = "fit.steps"
	gateCampaignOnly  = "fit.campaign_only"
	gateCampaigns     = "campaigns"
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
		gateFPRRiseLow:    rep.FPRRiseLow,
		gateHoldBenign:    float64(rep.BenignN),
		gateGateBenign:    float64(rep.GateBenign),
		gateGateKnown:     float64(rep.GateKnown),
		gateFitLabels:     float64(rep.FitLabels),
		gateFitExemplars:  float64(rep.FitExemplars),
		gateHoldLabels:    float64(rep.HoldLabels),
		gateHoldExemplars: float64(rep.HoldExemplars),
		gateLoss:          rep.Loss,
		gateSteps:         float64(rep.Steps),
		gateCampaignOnly:  b2f(rep.CampaignOnly),
		gateCampaigns:     float64(rep.Campaigns),
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

// logAttrs returns the report as slog key-value pairs.
func (rep *gateReport) logAttrs() []any {
	attrs := []any{
		"fpr_before", rep.FPRBefore, "fpr_after", rep.FPRAfter, "fpr_rise_low", rep.FPRRiseLow, "holdout_benign", rep.BenignN, "gate_set_benign", rep.GateBenign, "gate_set_known", rep.GateKnown,
		"fit_labels", rep.FitLabels, "holdout_labels", rep.HoldLabels,
		"fit_exemplars", rep.FitExemplars, "holdout_exemplars", rep.HoldExemplars, "loss", rep.Loss, "steps", rep.Steps,
		"campaign_only", rep.CampaignOnly, "campaigns", rep.Campaigns,
	}
	// One key for all classes: log keys stay a fixed set.
	var recall strings.Builder
	for i, c := range rep.Classes {
		if i > 0 {
			recall.WriteString("; ")
		}
		fmt.Fprintf(&recall, "%s %.3f->%.3f of %d", c.Name, c.Before, c.After, c.N)
	}
	var agree strings.Builder
	for i, a := range rep.Agreement {
		if i > 0 {
			agree.WriteString("; ")
		}
		fmt.Fprintf(&agree, "%s %.3f of %d", a.Name, a.Share, a.N)
	}
	return append(attrs, "recall", recall.String(), "agreement", agree.String())
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
