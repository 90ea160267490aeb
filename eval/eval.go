package eval

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"strings"

	"github.com/metaids/metaids/model"
)

// Run evaluates cfg: it loads the data, loads or trains the model, replays
// the evaluated rows live or offline, and returns the report.
func Run(ctx context.Context, cfg Config, log *slog.Logger) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("eval config: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("tool", "eval")
	m, es, ts, err := prepare(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	base, br, err := prepareBaseline(ctx, cfg, es, log)
	if err != nil {
		return nil, err
	}
	// Both operating points are fixed before any evaluated flow is scored.
	op := operatingPoint(m, es, cfg.FixedFPR)
	var opB opPoint
	if base != nil {
		opB = operatingPoint(base, es, cfg.FixedFPR)
	}
	o, err := runMode(ctx, cfg, m, es, log)
	if err != nil {
		return nil, err
	}
	rep := o.report(cfg)
	rep.Training = ts
	rep.Headline = headlineOf(o, rep, op, cfg.FixedFPR, cfg.Shots)
	if es.fit == nil {
		rep.Notes = append(rep.Notes, "recall_at_fpr: a model file carries no benign validation flows to fix its threshold on; give -train to measure it")
		slices.Sort(rep.Notes)
	}
	if base == nil {
		return rep, nil
	}
	ob, err := runMode(ctx, cfg, base, es, log.With("model", "baseline"))
	if err != nil {
		return nil, fmt.Errorf("baseline: %w", err)
	}
	brep := ob.report(cfg)
	compare(br, o, ob, brep, rep.Headline, headlineOf(ob, brep, opB, cfg.FixedFPR, cfg.Shots))
	rep.Baseline = br
	return rep, nil
}

// runMode replays the evaluated rows through m, live or offline.
func runMode(ctx context.Context, cfg Config, m *model.Model, es *evalSet, log *slog.Logger) (*outcome, error) {
	if cfg.Offline {
		return runOffline(ctx, cfg, m, es, log)
	}
	return runLive(ctx, cfg, m, es, log)
}

// WriteTable prints the report's headline numbers as a short table.
func WriteTable(w io.Writer, rep *Report) error {
	var b strings.Builder
	f := func(m Metric) string {
		if m != m {
			return "  -  "
		}
		return fmt.Sprintf("%.3f", float64(m))
	}
	fmt.Fprintf(&b, "metaids eval (%s): %d flows, model v%d -> v%d\n", rep.Mode, rep.Flows, rep.ModelVersionStart, rep.ModelVersionEnd)
	bn := rep.Binary
	fmt.Fprintf(&b, "binary     precision %s  recall %s  f1 %s  accuracy %s  fpr %s  roc_auc %s\n",
		f(bn.Precision), f(bn.Recall), f(bn.F1), f(bn.Accuracy), f(bn.FPR), f(bn.ROCAUC))
	fmt.Fprintf(&b, "benign fpr before %s  after %s    known recall before %s  after %s\n",
		f(rep.BenignFPRBefore), f(rep.BenignFPRAfter), f(rep.KnownRecallBefore), f(rep.KnownRecallAfter))
	for _, at := range []struct {
		name string
		r    RecallAtFPR
	}{{"attack score", rep.Headline.RecallAtFPR}, {"anomaly score", rep.Headline.AnomalyRecallAtFPR}} {
		fmt.Fprintf(&b, "%s at benign fpr %.3f (threshold %s from %d benign validation flows): recall %s  known recall %s  measured fpr %s\n",
			at.name, at.r.TargetFPR, f(at.r.Threshold), at.r.BenignValFlows, f(at.r.Recall), f(at.r.KnownRecall), f(at.r.FPR))
	}
	fams := slices.Sorted(maps.Keys(rep.NewFamilies))
	if len(fams) > 0 {
		fmt.Fprintf(&b, "%-28s %5s %6s %7s %7s %9s %9s %7s %8s\n", "new family", "shots", "flows", "rec_bef", "rec_aft", "fam_rec_a", "prec_aft", "f1_aft", "head_fam")
		for _, name := range fams {
			fr := rep.NewFamilies[name]
			fmt.Fprintf(&b, "%-28s %5d %6d %7s %7s %9s %9s %7s %8s\n", trunc(name, 28), fr.Shots, fr.Flows,
				f(fr.RecallBefore), f(fr.RecallAfter), f(fr.FamilyRecallAfter), f(fr.PrecisionAfter), f(fr.F1After), f(fr.FamilyRecallAfterHead))
		}
	}
	for _, ad := range rep.Adaptations {
		fams := strings.Join(ad.Families, ", ")
		if ad.Accepted {
			how := ""
			if ad.Gate["fit.campaign_only"] == 1 {
				how = " (head unchanged: named by campaign only)"
			}
			fmt.Fprintf(&b, "update: %s, %d labels -> v%d%s, first score by it after %s ms (serving after %s ms)\n",
				fams, ad.Labels, ad.Version, how, f1d(ad.LatencyMs), f1d(ad.ServingMs))
		} else {
			fmt.Fprintf(&b, "update: %s, %d labels -> rejected: %s\n", fams, ad.Labels, ad.Reason)
		}
	}
	fmt.Fprintf(&b, "%-28s %7s %7s %9s %8s\n", "class", "support", "recall", "precision", "detected")
	for _, name := range slices.Sorted(maps.Keys(rep.PerClass)) {
		c := rep.PerClass[name]
		fmt.Fprintf(&b, "%-28s %7d %7s %9s %8s\n", trunc(name, 28), c.Support, f(c.Recall), f(c.Precision), f(c.Detected))
	}
	fmt.Fprintf(&b, "adaptation latency ms p50 %s p99 %s (n=%d)   alert latency ms p50 %s p99 %s   throughput %.0f flows/s\n",
		f1d(rep.AdaptationLatencyMs.P50), f1d(rep.AdaptationLatencyMs.P99), rep.AdaptationLatencyMs.N,
		f1d(rep.AlertLatencyMs.P50), f1d(rep.AlertLatencyMs.P99), rep.ThroughputFlowsPerS)
	if br := rep.Baseline; br != nil {
		writeBaseline(&b, rep, br, f)
	}
	for _, n := range rep.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func f1d(m Metric) string {
	if m != m {
		return "-"
	}
	return fmt.Sprintf("%.1f", float64(m))
}

func trunc(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "~"
}

// writeBaseline prints the model and its baseline side by side, and where
// their detections differ.
func writeBaseline(b *strings.Builder, rep *Report, br *BaselineReport, f func(Metric) string) {
	name := br.Kind
	if br.File != "" {
		name = filepath.Base(br.File)
	}
	fmt.Fprintf(b, "%-28s %9s %8s %9s %8s %9s %9s %9s %7s\n", "side by side", "binary_f1", "rec@fpr", "known@fpr", "fpr@fpr",
		"anom@fpr", "afpr@fpr", fmt.Sprintf("fs_rec@%d", rep.Headline.FewShotK), "fs_fam")
	for _, row := range []struct {
		name string
		h    Headline
	}{{"model", rep.Headline}, {"baseline (" + name + ")", br.Headline}} {
		at, an := row.h.RecallAtFPR, row.h.AnomalyRecallAtFPR
		fmt.Fprintf(b, "%-28s %9s %8s %9s %8s %9s %9s %9s %7s\n", trunc(row.name, 28), f(row.h.BinaryF1), f(at.Recall), f(at.KnownRecall),
			f(at.FPR), f(an.Recall), f(an.FPR), f(row.h.FewShotRecall), f(row.h.FewShotFamilyRecall))
	}
	diff := func(label string, as, at Difference) {
		fmt.Fprintf(b, "%s: as served %d attack flows on %d hosts%s, %d benign on %d hosts; at fixed fpr %d attack flows on %d hosts%s, %d benign on %d hosts\n",
			label, as.Attacks, as.AttackHosts, topHosts(as), as.Benign, as.BenignHosts, at.Attacks, at.AttackHosts, topHosts(at), at.Benign, at.BenignHosts)
	}
	diff("model only", br.ModelOnly, br.ModelOnlyAtFPR)
	diff("baseline only", br.BaselineOnly, br.BaselineOnlyAtFPR)
}

// topHosts lists a difference's largest hosts, for the table.
func topHosts(d Difference) string {
	if len(d.TopAttackHosts) == 0 {
		return ""
	}
	var parts []string
	for _, h := range d.TopAttackHosts[:min(3, len(d.TopAttackHosts))] {
		parts = append(parts, fmt.Sprintf("%s %d", h.Host, h.Flows))
	}
	return " (" + strings.Join(parts, ", ") + ")"
}
