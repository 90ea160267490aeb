package eval

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
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
	var o *outcome
	if cfg.Offline {
		o, err = runOffline(ctx, cfg, m, es, log)
	} else {
		o, err = runLive(ctx, cfg, m, es, log)
	}
	if err != nil {
		return nil, err
	}
	rep := o.report(cfg)
	rep.Training = ts
	return rep, nil
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
	fams := slices.Sorted(maps.Keys(rep.NewFamilies))
	if len(fams) > 0 {
		fmt.Fprintf(&b, "%-28s %5s %6s %7s %7s %9s %9s %7s\n", "new family", "shots", "flows", "rec_bef", "rec_aft", "fam_rec_a", "prec_aft", "f1_aft")
		for _, name := range fams {
			fr := rep.NewFamilies[name]
			fmt.Fprintf(&b, "%-28s %5d %6d %7s %7s %9s %9s %7s\n", trunc(name, 28), fr.Shots, fr.Flows,
				f(fr.RecallBefore), f(fr.RecallAfter), f(fr.FamilyRecallAfter), f(fr.PrecisionAfter), f(fr.F1After))
		}
	}
	for _, ad := range rep.Adaptations {
		fams := strings.Join(ad.Families, ", ")
		if ad.Accepted {
			fmt.Fprintf(&b, "update: %s, %d labels -> v%d, first score by it after %s ms (serving after %s ms)\n",
				fams, ad.Labels, ad.Version, f1d(ad.LatencyMs), f1d(ad.ServingMs))
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
