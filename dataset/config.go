package dataset

import (
	"errors"
	"fmt"
	"strconv"
)

// Config says how records become a training set: the split, the held-out
// families, and how dt_prev is filled.
type Config struct {
	// TrainFraction is the share of each class's flows, earliest first,
	// used for training (validation included); the rest is the test set.
	// 1 leaves no test set, for training data evaluated on other data.
	// Default 0.7.
	TrainFraction float64 `yaml:"train-fraction" help:"share of each class's flows (earliest first) used for training; the rest is the test set (1: none)"`
	// ValFraction is the share of each class's training flows, latest
	// first, carved off for validation: early stopping and thresholds are
	// chosen there, never on the test set. Default 0.2.
	ValFraction float64 `yaml:"val-fraction" help:"share of each class's training flows (latest first) held out for validation"`
	// Holdout lists families kept out of training and validation entirely,
	// to measure few-shot adaptation to families the model never saw.
	// Default none.
	Holdout []string `yaml:"holdout-family" help:"attack families kept out of training entirely (comma-separated or repeated)"`
	// DeltaT says how dt_prev, dst_repeat and dt_dst are filled: "gap"
	// (from the host's earlier flows in the stream, as the scorer does:
	// seconds since its previous flow, and since its previous flow to the
	// same responder), "off" (marked missing, and switched off in the
	// trained model, for data whose gaps are sampling artefacts) or
	// "auto" ("off" when any record comes from a
	// CICFlowMeter file, whose public releases are split per class and the
	// shared copy is a per-class random sample; "gap" otherwise). Default
	// "auto".
	DeltaT string `yaml:"delta-t" help:"how dt_prev, dst_repeat and dt_dst are filled: gap, off or auto (off for CICFlowMeter per-class samples)"`
	// LUFlowLocalAS lists the AS numbers of LUFlow's own network, mapped to
	// internal addresses (see ReadLUFlow). Default ["786"] (JANET, which
	// carries Lancaster University).
	LUFlowLocalAS []string `yaml:"luflow-local-as" help:"LUFlow AS numbers mapped to internal addresses"`
}

// DeltaT modes.
const (
	DeltaTAuto = "auto"
	DeltaTGap  = "gap"
	DeltaTOff  = "off"
)

// DefaultConfig returns the defaults documented on Config's fields.
func DefaultConfig() Config {
	return Config{TrainFraction: 0.7, ValFraction: 0.2, DeltaT: DeltaTAuto, LUFlowLocalAS: []string{"786"}}
}

// Validate reports every problem with c, each naming its flag.
func (c Config) Validate() error {
	var errs []error
	if !(c.TrainFraction > 0 && c.TrainFraction <= 1) {
		errs = append(errs, fmt.Errorf("-train-fraction: must be in (0, 1], got %g", c.TrainFraction))
	}
	if !(c.ValFraction > 0 && c.ValFraction < 1) {
		errs = append(errs, fmt.Errorf("-val-fraction: must be in (0, 1), got %g", c.ValFraction))
	}
	switch c.DeltaT {
	case DeltaTAuto, DeltaTGap, DeltaTOff:
	default:
		errs = append(errs, fmt.Errorf("-delta-t: must be auto, gap or off, got %q", c.DeltaT))
	}
	for _, h := range c.Holdout {
		if canonicalLabel(h) == Benign || h == "" {
			errs = append(errs, fmt.Errorf("-holdout-family: cannot hold out %q", h))
		}
	}
	if _, err := c.localAS(); err != nil {
		errs = append(errs, fmt.Errorf("-luflow-local-as: %w", err))
	}
	return errors.Join(errs...)
}

func (c Config) localAS() (map[uint32]bool, error) {
	m := make(map[uint32]bool, len(c.LUFlowLocalAS))
	for _, s := range c.LUFlowLocalAS {
		n, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("want AS numbers, got %q", s)
		}
		m[uint32(n)] = true
	}
	return m, nil
}
