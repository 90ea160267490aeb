package eval

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/metaids/metaids/dataset"
	"github.com/metaids/metaids/features"
	"github.com/metaids/metaids/model"
	"github.com/metaids/metaids/schemas"
	"github.com/metaids/metaids/train"
)

// Errors.
var (
	// ErrNotNew means a family given as new is a class the model already
	// has: it cannot be taught, so the evaluation would measure nothing.
	ErrNotNew = errors.New("family is already a class of the model")
	// ErrFormat means a data file is not in the format Config.Format names.
	ErrFormat = errors.New("data file in another format")
)

// evalSet is the data of one evaluation: every --data record in time order
// and which of them are replayed and measured.
type evalSet struct {
	d *dataset.Dataset
	// rows are the evaluated records (indices into d.Records), in time
	// order: the order of the replay.
	rows []int
	// families are the new families present in the data, sorted, and
	// verdicts the label each is taught with.
	families []string
	verdicts map[string]string
	stats    dataset.Stats
	files    []string
	// dropped counts evaluated rows ingest's validator would dead-letter,
	// by reason; they are evaluated in neither mode.
	dropped map[string]int
	// fit is the data the model was trained on, whose Train and Val splits
	// a baseline is trained on and whose benign Val flows fix the
	// operating point of Report.RecallAtFPR; nil for a model file.
	fit *dataset.Dataset
}

// truth returns the ground truth of evaluated row j: dataset.Benign, a
// family name or dataset.Unlabelled.
func (es *evalSet) truth(j int) string { return es.d.Records[es.rows[j]].Label }

// flow returns evaluated row j's flow.
func (es *evalSet) flow(j int) *schemas.Flow { return &es.d.Records[es.rows[j]].Flow }

// TrainSummary says where the evaluated model came from.
type TrainSummary struct {
	// Source is "file", or "data" when trained on the evaluated files'
	// earliest rows, or "train" when trained on -train files.
	Source    string            `json:"source"`
	File      string            `json:"file,omitempty"`
	Flows     int               `json:"flows,omitempty"`
	Seconds   float64           `json:"seconds,omitempty"`
	BestEpoch int               `json:"best_epoch,omitempty"`
	Epochs    int               `json:"epochs,omitempty"`
	Disabled  []string          `json:"disabled_features,omitempty"`
	Splits    map[string][4]int `json:"splits,omitempty"`
}

// prepare loads the data and the model: from the model file, or trained on
// the -train files, or on the earliest rows of the data itself.
func prepare(ctx context.Context, cfg Config, log *slog.Logger) (*model.Model, *evalSet, *TrainSummary, error) {
	dcfg := cfg.Dataset
	dcfg.Holdout = cfg.NewFamilies
	recs, stats, files, err := load(cfg.Data, cfg.Format, dcfg)
	if err != nil {
		return nil, nil, nil, err
	}
	d, err := dataset.Build(recs, dcfg)
	if err != nil {
		return nil, nil, nil, err
	}
	es := &evalSet{d: d, families: d.Holdout, verdicts: map[string]string{}, stats: stats, files: files}
	for _, f := range es.families {
		es.verdicts[f] = verdictOf(f)
	}
	log.Info("data loaded", "files", len(files), "flows", d.Len(), "hosts", len(d.Hosts),
		"new_families", strings.Join(es.families, ","), "rejected_rows", sum(stats.Rejected))

	var (
		m  *model.Model
		ts *TrainSummary
	)
	switch {
	case cfg.Model != "":
		if m, err = model.Load(cfg.Model, features.Default().Hash()); err != nil {
			return nil, nil, nil, fmt.Errorf("-model: %w", err)
		}
		ts = &TrainSummary{Source: "file", File: cfg.Model}
		es.rows = allRows(d)
	case len(cfg.Train) > 0:
		trecs, _, _, err := load(cfg.Train, FormatAuto, cfg.Dataset)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("-train: %w", err)
		}
		tcfg := cfg.Dataset
		tcfg.Holdout = presentFamilies(trecs, es.families)
		// The evaluated rows are -data's, so no row of -train is kept
		// back as a test set: a 0.7 split here used to leave the latest
		// 30% of every class, in the sequence scenario the long runs of
		// its attacks, out of training unseen and unscored.
		tcfg.TrainFraction = 1
		td, err := dataset.Build(trecs, tcfg)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("-train: %w", err)
		}
		if m, ts, err = trainOn(ctx, td, cfg, false, log); err != nil {
			return nil, nil, nil, err
		}
		ts.Source = "train"
		es.fit = td
		es.rows = allRows(d)
	default:
		if m, ts, err = trainOn(ctx, d, cfg, false, log); err != nil {
			return nil, nil, nil, err
		}
		ts.Source = "data"
		es.fit = d
		// Training saw the Train split and chose thresholds on Val: only
		// the rest is evaluated.
		for i, s := range d.Split {
			if s == dataset.Test || s == dataset.Holdout {
				es.rows = append(es.rows, i)
			}
		}
	}
	for _, f := range es.families {
		for _, c := range m.Classes() {
			if strings.EqualFold(c, f) || strings.EqualFold(c, es.verdicts[f]) {
				return nil, nil, nil, fmt.Errorf("-new-family %q: %w", f, ErrNotNew)
			}
		}
	}
	// The scorer takes class 0 for benign (its most probable attack class
	// is the most probable of the others), and so does the adapter's gate.
	if m.NumClasses() == 0 || m.Classes()[0] != schemas.VerdictBenign {
		return nil, nil, nil, fmt.Errorf("model classes %v: class 0 must be %q, as the scorer assumes", m.Classes(), schemas.VerdictBenign)
	}
	if m.Name == "" {
		m.Name = "metaids"
	}
	// Versions start at 1, so the first update is 2 and "version 0" can
	// only mean "not scored".
	m.Version = max(m.Version, 1)
	if es.dropped, err = admit(es); err != nil {
		return nil, nil, nil, err
	}
	if len(es.rows) == 0 {
		return nil, nil, nil, fmt.Errorf("-data: %w: no row left to evaluate", dataset.ErrNoData)
	}
	return m, es, ts, nil
}

// trainOn trains a model on d's Train split with the standard settings and
// the configured seed, as `metaids train` would; perFlow trains the per-flow
// baseline instead.
func trainOn(ctx context.Context, d *dataset.Dataset, cfg Config, perFlow bool, log *slog.Logger) (*model.Model, *TrainSummary, error) {
	tc := cfg.Trainer
	tc.Seed = cfg.Seed
	tc.PerFlow = perFlow
	t0 := time.Now()
	log.Info("training", "per_flow", perFlow, "flows", d.Len(), "classes", strings.Join(d.Classes, ","), "held_out", strings.Join(d.Holdout, ","), "seed", tc.Seed)
	res, err := train.Train(ctx, d, tc, func(p train.Progress) {
		if p.ValMetric == p.ValMetric { // an epoch ended
			log.Debug("epoch", "phase", p.Phase, "epoch", p.Epoch, "val_metric", p.ValMetric, "best_epoch", p.BestEpoch)
		}
	})
	if err != nil {
		return nil, nil, fmt.Errorf("train: %w", err)
	}
	m := res.Model
	m.Version = 1
	m.CreatedNs = time.Now().UnixNano()
	n := 0
	for _, s := range d.Split {
		if s == dataset.Train || s == dataset.Val {
			n++
		}
	}
	log.Info("trained", "seconds", time.Since(t0).Seconds(), "epochs", len(res.History), "best_epoch", res.BestEpoch+1,
		"anomaly_threshold", m.AnomalyThreshold)
	return m, &TrainSummary{Flows: n, Seconds: time.Since(t0).Seconds(), BestEpoch: res.BestEpoch + 1,
		Epochs: len(res.History), Disabled: res.Disabled, Splits: d.Counts()}, nil
}

// load expands patterns and reads every file, checking that each is in
// format (unless auto). It returns the records, the loader's counts and
// the files read.
func load(patterns []string, format string, cfg dataset.Config) ([]dataset.Record, dataset.Stats, []string, error) {
	files, err := dataset.Expand(patterns)
	if err != nil {
		return nil, dataset.Stats{}, nil, err
	}
	l, err := dataset.NewLoader(cfg)
	if err != nil {
		return nil, dataset.Stats{}, nil, err
	}
	var out []dataset.Record
	for _, f := range files {
		recs, err := l.ReadFile(f)
		if err != nil {
			return nil, l.Stats, nil, err
		}
		if format != FormatAuto && len(recs) > 0 && string(recs[0].Format) != format {
			return nil, l.Stats, nil, fmt.Errorf("%s: %w: %s, not %s", f, ErrFormat, recs[0].Format, format)
		}
		out = append(out, recs...)
	}
	if len(out) == 0 {
		return nil, l.Stats, nil, fmt.Errorf("%s: %w", strings.Join(patterns, ","), dataset.ErrNoData)
	}
	return out, l.Stats, files, nil
}

func allRows(d *dataset.Dataset) []int {
	rows := make([]int, d.Len())
	for i := range rows {
		rows[i] = i
	}
	return rows
}

// presentFamilies returns those of families that label some record: the
// training files need not hold every new family, and dataset.Build refuses
// to hold out one that is absent.
func presentFamilies(recs []dataset.Record, families []string) []string {
	var out []string
	for _, f := range families {
		if slices.ContainsFunc(recs, func(r dataset.Record) bool { return r.Label == f }) {
			out = append(out, f)
		}
	}
	return out
}

// badVerdict matches what an adapter verdict may not contain; see
// verdictOf.
var badVerdict = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

// verdictOf returns the verdict an analyst would type for a family: the
// adapter accepts letters, digits, '.', '_' and '-' (at most 64, starting
// with a letter or digit), so "Web Attack - Brute Force" is taught as
// "Web_Attack_-_Brute_Force". It returns "" for a name with nothing usable.
func verdictOf(family string) string {
	v := strings.Trim(badVerdict.ReplaceAllString(family, "_"), "_.-")
	if len(v) > 64 {
		v = v[:64]
	}
	return v
}

// isBenign reports whether a label means normal traffic, as dataset reads
// labels.
func isBenign(label string) bool {
	return strings.EqualFold(label, dataset.Benign) || strings.EqualFold(label, "normal")
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
