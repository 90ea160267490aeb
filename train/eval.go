package train

import (
	"math"
	"math/rand/v2"
	"slices"
	"sort"

	"github.com/metaids/metaids/dataset"
	"github.com/metaids/metaids/features"
	"github.com/metaids/metaids/model"
)

// Scores are the deployed path's outputs for the test and held-out flows:
// the model run over every flow of every host in time order (model.Step),
// scored on the flows of interest only. Context from training flows is what
// a scorer running since before the test period would have had.
type Scores struct {
	// Idx are record indices, in time order.
	Idx     []int
	Probs   []float32 // len(Idx)×C
	Anomaly []float32
	Emb     []float32 // len(Idx)×D
	C, D    int

	streams []dataset.Stream
	at      map[int][2]int // record → stream, position
}

// Score runs m over every record of d and keeps the outputs of the Test and
// Holdout flows.
func Score(m *model.Model, d *dataset.Dataset) *Scores {
	sc := &Scores{C: m.NumClasses(), D: m.EmbeddingDim(), at: map[int][2]int{}}
	sc.streams = d.Streams(func(int) bool { return true })
	for s, st := range sc.streams {
		for p, i := range st.Idx {
			sc.at[i] = [2]int{s, p}
		}
	}
	want := d.In(dataset.Test, dataset.Holdout)
	type row struct {
		i    int
		p, e []float32
		a    float32
	}
	var rows []row
	infer(m, sc.streams, want, func(i int, o *out) {
		rows = append(rows, row{i, slices.Clone(o.probs), slices.Clone(o.emb), o.anomaly})
	})
	sort.Slice(rows, func(a, b int) bool { return rows[a].i < rows[b].i })
	for _, r := range rows {
		sc.Idx = append(sc.Idx, r.i)
		sc.Probs = append(sc.Probs, r.p...)
		sc.Emb = append(sc.Emb, r.e...)
		sc.Anomaly = append(sc.Anomaly, r.a)
	}
	return sc
}

// Binary holds benign-vs-attack numbers at the deployed thresholds.
type Binary struct {
	TP, FP, TN, FN int
	Precision      Metric `json:"precision"`
	Recall         Metric `json:"recall"`
	F1             Metric `json:"f1"`
	// FPR is the share of benign flows alerted on.
	FPR Metric `json:"fpr"`
}

func binary(tp, fp, tn, fn int) Binary {
	b := Binary{TP: tp, FP: fp, TN: tn, FN: fn}
	b.Precision = ratio(tp, tp+fp)
	b.Recall = ratio(tp, tp+fn)
	b.F1 = ratio(2*tp, 2*tp+fp+fn)
	b.FPR = ratio(fp, fp+tn)
	return b
}

func ratio(a, b int) Metric {
	if b == 0 {
		return Metric(math.NaN())
	}
	return Metric(float64(a) / float64(b))
}

// ClassResult is one class's numbers on the test split.
type ClassResult struct {
	Class string `json:"class"`
	N     int    `json:"n"`
	// Recall is the share of the class's flows alerted on as any attack
	// (for benign: the share not alerted on).
	Recall Metric `json:"recall"`
	// ClassRecall is the share whose alert names this class.
	ClassRecall Metric `json:"class_recall"`
	// AnomalyAUC is the ROC AUC of the anomaly score for this class's
	// flows against the benign test flows (NaN for benign).
	AnomalyAUC Metric `json:"anomaly_auc"`
}

// Curve is a ROC or precision-recall curve, thinned for the report.
type Curve struct {
	X   []float64 `json:"x"`
	Y   []float64 `json:"y"`
	AUC Metric    `json:"auc"`
}

// Eval is a model's quality on the test split.
type Eval struct {
	// Classifier is benign vs attack by the class thresholds alone;
	// Deployed adds the anomaly threshold, as the scorer alerts on either.
	Classifier Binary `json:"classifier"`
	Deployed   Binary `json:"deployed"`
	// Anomaly is the anomaly threshold alone.
	Anomaly Binary `json:"anomaly"`
	// ROC and PR curves of the attack score 1−p(benign), and ROC of the
	// anomaly score: threshold-free.
	ROC        Curve `json:"roc"`
	PR         Curve `json:"pr"`
	AnomalyROC Curve `json:"anomaly_roc"`
	AnomalyPR  Curve `json:"anomaly_pr"`
	// PerClass lists benign and every known family.
	PerClass []ClassResult `json:"per_class"`
	// Confusion[i][j] counts test flows of class i whose alert names class j
	// (0: no alert), over the model's classes.
	Confusion [][]int `json:"confusion"`
	// Holdout lists the held-out families: the share of all their flows
	// alerted on before any label, by the classifier (as some known family)
	// and by the anomaly score.
	Holdout []HoldoutResult `json:"holdout,omitempty"`
}

// HoldoutResult is a held-out family's zero-shot detection.
type HoldoutResult struct {
	Family            string `json:"family"`
	N                 int    `json:"n"`
	ClassifierRecall  Metric `json:"classifier_recall"`
	AnomalyRecall     Metric `json:"anomaly_recall"`
	DeployedRecall    Metric `json:"deployed_recall"`
	AnomalyROCAUCvsBn Metric `json:"anomaly_roc_auc_vs_benign"`
}

// alertClass returns the class the scorer alerts with (model.AlertClass:
// the most probable attack class, if it reaches its threshold), or 0.
// Calibration and the report must use the scorer's rule exactly: one that
// let a less probable class alert past a higher one that missed its
// threshold counted alerts the scorer never raises.
func alertClass(p, thr []float32) int {
	k, _ := model.AlertClass(p, thr, 0)
	return max(k, 0)
}

// Evaluate measures m on the test split of d from its Scores.
func Evaluate(m *model.Model, d *dataset.Dataset, sc *Scores) *Eval {
	C := sc.C
	ev := &Eval{Confusion: make([][]int, C)}
	for k := range ev.Confusion {
		ev.Confusion[k] = make([]int, C)
	}
	var cl, dep, an [4]int // tp fp tn fn
	count := func(c *[4]int, attack, alert bool) {
		switch {
		case attack && alert:
			c[0]++
		case !attack && alert:
			c[1]++
		case !attack:
			c[2]++
		default:
			c[3]++
		}
	}
	var score, anom []float64
	var truth []bool
	n := make([]int, C)
	hit := make([]int, C)
	chit := make([]int, C)
	hold := map[string]*[4]int{} // n, classifier, anomaly, deployed
	var benAnom []float64
	clsAnom := make([][]float64, C)
	holdAnom := map[string][]float64{}
	for r, i := range sc.Idx {
		p := sc.Probs[r*C : (r+1)*C]
		a := sc.Anomaly[r]
		ac := alertClass(p, m.Thresholds)
		aa := a > m.AnomalyThreshold
		if d.Split[i] == dataset.Holdout {
			name := d.Records[i].Label
			h := hold[name]
			if h == nil {
				h = new([4]int)
				hold[name] = h
			}
			h[0]++
			h[1] += b2i(ac > 0)
			h[2] += b2i(aa)
			h[3] += b2i(ac > 0 || aa)
			holdAnom[name] = append(holdAnom[name], float64(a))
			continue
		}
		c := d.Class[i]
		if c < 0 {
			continue // unlabelled
		}
		attack := c > 0
		if !attack {
			benAnom = append(benAnom, float64(a))
		}
		count(&cl, attack, ac > 0)
		count(&dep, attack, ac > 0 || aa)
		count(&an, attack, aa)
		score = append(score, 1-float64(p[0]))
		anom = append(anom, float64(a))
		truth = append(truth, attack)
		clsAnom[c] = append(clsAnom[c], float64(a))
		n[c]++
		ev.Confusion[c][ac]++
		if (ac > 0) == attack {
			hit[c]++
		}
		if ac == c {
			chit[c]++
		}
	}
	ev.Classifier = binary(cl[0], cl[1], cl[2], cl[3])
	ev.Deployed = binary(dep[0], dep[1], dep[2], dep[3])
	ev.Anomaly = binary(an[0], an[1], an[2], an[3])
	ev.ROC, ev.PR = curves(score, truth)
	ev.AnomalyROC, ev.AnomalyPR = curves(anom, truth)
	for k, name := range m.Classes() {
		cr := ClassResult{Class: name, N: n[k], Recall: ratio(hit[k], n[k]), ClassRecall: ratio(chit[k], n[k]), AnomalyAUC: Metric(math.NaN())}
		if k > 0 {
			cr.AnomalyAUC = aucVsBenign(benAnom, clsAnom[k])
		}
		ev.PerClass = append(ev.PerClass, cr)
	}
	names := make([]string, 0, len(hold))
	for name := range hold {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		h := hold[name]
		ev.Holdout = append(ev.Holdout, HoldoutResult{Family: name, N: h[0],
			ClassifierRecall: ratio(h[1], h[0]), AnomalyRecall: ratio(h[2], h[0]), DeployedRecall: ratio(h[3], h[0]),
			AnomalyROCAUCvsBn: aucVsBenign(benAnom, holdAnom[name])})
	}
	return ev
}

// aucVsBenign is the ROC AUC of scores pos against the benign scores.
func aucVsBenign(benign, pos []float64) Metric {
	s := append(slices.Clone(benign), pos...)
	t := make([]bool, len(s))
	for j := len(benign); j < len(t); j++ {
		t[j] = true
	}
	roc, _ := curves(s, t)
	return roc.AUC
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// curves returns the ROC curve (x FPR, y TPR) and precision-recall curve (x
// recall, y precision) of score against truth, with the ROC AUC
// (trapezoids, ties handled) and the average precision, thinned to about 200
// points each.
func curves(score []float64, truth []bool) (roc, pr Curve) {
	idx := make([]int, len(score))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return score[idx[a]] > score[idx[b]] })
	P, N := 0, 0
	for _, t := range truth {
		if t {
			P++
		} else {
			N++
		}
	}
	if P == 0 || N == 0 {
		nan := Metric(math.NaN())
		return Curve{AUC: nan}, Curve{AUC: nan}
	}
	var rx, ry, px, py []float64
	rx, ry = append(rx, 0), append(ry, 0)
	tp, fp := 0, 0
	var auc, ap, prevR float64
	prevF, prevT := 0.0, 0.0
	for k := 0; k < len(idx); {
		j := k
		for j < len(idx) && score[idx[j]] == score[idx[k]] {
			if truth[idx[j]] {
				tp++
			} else {
				fp++
			}
			j++
		}
		k = j
		fx, ty := float64(fp)/float64(N), float64(tp)/float64(P)
		auc += (fx - prevF) * (ty + prevT) / 2
		prevF, prevT = fx, ty
		prec := float64(tp) / float64(tp+fp)
		ap += (ty - prevR) * prec
		prevR = ty
		rx, ry = append(rx, fx), append(ry, ty)
		px, py = append(px, ty), append(py, prec)
	}
	rx, ry = thin(rx, ry, 200)
	px, py = thin(px, py, 200)
	return Curve{X: rx, Y: ry, AUC: Metric(auc)}, Curve{X: px, Y: py, AUC: Metric(ap)}
}

// thin keeps about n points of a curve, always the first and last.
func thin(x, y []float64, n int) ([]float64, []float64) {
	if len(x) <= n {
		return x, y
	}
	var ox, oy []float64
	step := float64(len(x)-1) / float64(n-1)
	for i := range n {
		j := int(math.Round(float64(i) * step))
		ox, oy = append(ox, x[j]), append(oy, y[j])
	}
	return ox, oy
}

// FewShot is one held-out family's few-shot result for one K.
type FewShot struct {
	Family  string `json:"family"`
	K       int    `json:"k"`
	Queries int    `json:"queries"`
	// ProtoRecall and ProtoFPR are for the head with the family's row set
	// from the prototype of the K support embeddings (w = 2μ, b = −|μ|²)
	// and no training; Recall and FPR after the adapter's head fine-tuning
	// with the model's exemplars replayed. Recall
	// is the share of the family's other flows whose alert names the family
	// (p above newClassThreshold, and the most probable alerting class);
	// RecallAny the share alerted on as any attack; FPR the share of benign
	// test flows alerted on as anything.
	ProtoRecall Metric `json:"proto_recall"`
	ProtoFPR    Metric `json:"proto_fpr"`
	Recall      Metric `json:"recall"`
	RecallAny   Metric `json:"recall_any"`
	FPR         Metric `json:"fpr"`
}

// newClassThreshold is the probability above which a class added from a
// few labels alerts in the evaluation; the adapter may choose otherwise.
const newClassThreshold = 0.5

// EvalFewShot adapts a copy of m to each held-out family from its first K
// flows (in time order) for each K, with the encoder frozen as in the
// adapter, and measures recall on the family's remaining flows and the
// false-positive rate on the benign test flows.
//
// ft configures the fine-tuning after the prototype initialisation (the
// adapter's model.DefaultFineTune unless the caller says otherwise).
func EvalFewShot(m *model.Model, d *dataset.Dataset, sc *Scores, ks []int, ft model.FineTuneConfig, seed uint64) []FewShot {
	D, C := sc.D, sc.C
	var benign []float32
	fam := map[string][]float32{}
	for r, i := range sc.Idx {
		e := sc.Emb[r*D : (r+1)*D]
		switch {
		case d.Split[i] == dataset.Holdout:
			fam[d.Records[i].Label] = append(fam[d.Records[i].Label], e...)
		case d.Class[i] == 0:
			benign = append(benign, e...)
		}
	}
	var res []FewShot
	for _, name := range d.Holdout {
		emb := fam[name]
		n := len(emb) / D
		for _, k := range ks {
			if k >= n {
				continue
			}
			support, query := emb[:k*D], emb[k*D:]
			fs := FewShot{Family: name, K: k, Queries: n - k}
			mm := m.Clone()
			proto, _, _ := model.Prototypes(support, D, make([]int, k), 1)
			nk, err := mm.AddClass(name, proto, newClassThreshold)
			if err != nil {
				continue
			}
			measure := func() (recall, any, fpr Metric) {
				pq := mm.HeadProbs(nil, query)
				hit, anyHit := 0, 0
				for q := range n - k {
					ac := alertClass(pq[q*(C+1):(q+1)*(C+1)], mm.Thresholds)
					hit += b2i(ac == nk)
					anyHit += b2i(ac > 0)
				}
				pb := mm.HeadProbs(nil, benign)
				fp := 0
				nb := len(benign) / D
				for b := range nb {
					fp += b2i(alertClass(pb[b*(C+1):(b+1)*(C+1)], mm.Thresholds) > 0)
				}
				return ratio(hit, n-k), ratio(anyHit, n-k), ratio(fp, nb)
			}
			fs.ProtoRecall, _, fs.ProtoFPR = measure()
			// The adapter's path: the support flows plus replayed exemplars.
			var xs []float32
			var ys []int
			xs = append(xs, support...)
			for range k {
				ys = append(ys, nk)
			}
			for _, e := range mm.Exemplars {
				xs = append(xs, e.Embedding...)
				ys = append(ys, int(e.Class))
			}
			rng := rand.New(rand.NewPCG(seed, uint64(k)))
			if _, err := mm.FineTuneHead(xs, ys, ft, rng); err == nil {
				fs.Recall, fs.RecallAny, fs.FPR = measure()
			}
			res = append(res, fs)
		}
	}
	return res
}

// Robustness is recall on attack flows of the test split against an
// attacker who perturbs the attacker-controlled features of its own flows
// (every attack flow in the window that ends at the scored flow) within the
// training budget, by targeted PGD towards benign, white-box.
type Robustness struct {
	Epsilon float64 `json:"epsilon"`
	Steps   int     `json:"steps"`
	Flows   int     `json:"flows"`
	// CleanRecall is the share of the sampled attack flows alerted on by the
	// classifier before the perturbation, AdvRecall after. Both are measured
	// on windows of Config.Window flows from a zero state, the setting the
	// attacker's gradient is computed in.
	CleanRecall Metric `json:"clean_recall"`
	AdvRecall   Metric `json:"adv_recall"`
}

// EvalRobustness attacks up to maxFlows attack flows of the test split.
func EvalRobustness(m *model.Model, d *dataset.Dataset, sc *Scores, cfg Config, maxFlows int) Robustness {
	T, F := cfg.Window, features.NumFeatures
	rb := Robustness{Epsilon: cfg.Adv.Epsilon, Steps: cfg.Adv.EvalSteps}
	var targets []int
	for _, i := range sc.Idx {
		if d.Split[i] == dataset.Test && d.Class[i] > 0 {
			targets = append(targets, i)
		}
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 7))
	rng.Shuffle(len(targets), func(a, b int) { targets[a], targets[b] = targets[b], targets[a] })
	targets = targets[:min(len(targets), maxFlows)]
	if len(targets) == 0 {
		return rb
	}
	const S = 64
	a := &adversary{m: m, tape: model.NewTape(m, S, T), f: F, t: T,
		x: make([]float32, S*T*F), xadv: make([]float32, S*T*F), dx: make([]float32, S*T*F),
		attack: make([]bool, S*T), noG: &model.Params{}}
	_, a.std = m.Norm()
	_, _, a.lo, a.hi = stats(d.Streams(d.In(dataset.Train)), F)
	spec := features.Default()
	for _, j := range spec.AttackerControlled() {
		if a.std[j] < 1e5 { // not switched off
			a.advIdx = append(a.advIdx, j)
		}
	}
	labels := make([]int, S*T)
	clean, adv := 0, 0
	C := m.NumClasses()
	probs := make([]float32, C)
	detected := func(x []float32, s int) bool {
		lg := a.tape.Logits(s, T-1)
		mx := slices.Max(lg)
		var sum float32
		for k, v := range lg {
			probs[k] = float32(math.Exp(float64(v - mx)))
			sum += probs[k]
		}
		for k := range probs {
			probs[k] /= sum
		}
		return alertClass(probs, m.Thresholds) > 0
	}
	for b0 := 0; b0 < len(targets); b0 += S {
		batch := targets[b0:min(b0+S, len(targets))]
		for s, i := range batch {
			at := sc.at[i]
			st := &sc.streams[at[0]]
			start := max(0, at[1]-(T-1))
			n := at[1] - start + 1
			x := a.x[s*T*F : (s+1)*T*F]
			// Right-align: a window shorter than T starts with copies of its
			// first flow, so the scored flow is always the last step.
			for t := range T {
				src := max(0, t-(T-n)) + start
				copy(x[t*F:(t+1)*F], st.X[src*F:(src+1)*F])
				k := st.Idx[src]
				a.attack[s*T+t] = d.Class[k] > 0 || d.Split[k] == dataset.Holdout
				labels[s*T+t] = -1
			}
			labels[s*T+T-1] = 0 // the attacker wants the last flow called benign
		}
		S1 := len(batch)
		a.tape.Forward(m, a.x[:S1*T*F], S1, model.ForwardOptions{})
		for s := range S1 {
			clean += b2i(detected(a.x, s))
		}
		a.pgd(S1, float32(cfg.Adv.Epsilon), cfg.Adv.EvalSteps, labels[:S1*T], -1)
		a.tape.Forward(m, a.xadv[:S1*T*F], S1, model.ForwardOptions{})
		for s := range S1 {
			adv += b2i(detected(a.xadv, s))
		}
	}
	rb.Flows = len(targets)
	rb.CleanRecall = ratio(clean, len(targets))
	rb.AdvRecall = ratio(adv, len(targets))
	return rb
}
