package dataset

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/metaids/metaids/integration"
)

// SyntheticConfig sets up the synthetic training data: the project's traffic
// generator (integration.NewTraffic) with its default attack scenario,
// repeated in waves from other hosts so every family has more than one
// attacker.
type SyntheticConfig struct {
	// Seed seeds the generator. Default 1.
	Seed uint64 `yaml:"seed" help:"seed of the synthetic traffic generator"`
	// Hosts is the number of benign hosts. Default 20.
	Hosts int `yaml:"hosts" help:"benign hosts in the synthetic traffic"`
	// Duration is how much traffic to generate; the default scenario's
	// attacks all end within 31 minutes. Default 31m.
	Duration time.Duration `yaml:"duration" help:"length of the synthetic traffic"`
	// Waves is how many copies of the default attacks run, each from its
	// own hosts and shifted in time. Default 2.
	Waves int `yaml:"waves" help:"copies of the default attack scenario, each from other hosts"`
}

// DefaultSyntheticConfig returns the defaults documented on SyntheticConfig.
func DefaultSyntheticConfig() SyntheticConfig {
	return SyntheticConfig{Seed: 1, Hosts: 20, Duration: 31 * time.Minute, Waves: 2}
}

// Validate reports every problem with c.
func (c SyntheticConfig) Validate() error {
	var errs []error
	if c.Hosts < 1 || c.Hosts > 5000 {
		errs = append(errs, fmt.Errorf("-synthetic-data.hosts: must be between 1 and 5000, got %d", c.Hosts))
	}
	if c.Duration < time.Minute || c.Duration > 24*time.Hour {
		errs = append(errs, fmt.Errorf("-synthetic-data.duration: must be between 1m and 24h, got %s", c.Duration))
	}
	if c.Waves < 1 || c.Waves > 50 {
		errs = append(errs, fmt.Errorf("-synthetic-data.waves: must be between 1 and 50, got %d", c.Waves))
	}
	return errors.Join(errs...)
}

// Synthetic generates labelled flows with integration.NewTraffic (see
// SyntheticEvents).
func Synthetic(cfg SyntheticConfig) ([]Record, error) {
	evs, err := SyntheticEvents(cfg)
	if err != nil {
		return nil, err
	}
	out := make([]Record, len(evs))
	for i, ev := range evs {
		out[i] = Record{Flow: ev.Flow, Label: canonicalLabel(ev.Label), RawLabel: ev.Label, Format: FormatSynthetic}
	}
	return out, nil
}

// SyntheticEvents generates the flows of Synthetic as the generator's
// events, for writing them to files. Wave w > 0 repeats each default attack
// from a host whose last octet is moved by 16·w (so it never collides with
// the first wave's or a benign host) and starts it w·(Duration/(4·Waves))
// later, cut to fit: attacks overlap in time, as real ones do.
func SyntheticEvents(cfg SyntheticConfig) ([]integration.Event, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("synthetic data: %w", err)
	}
	var attacks []integration.Attack
	for w := range cfg.Waves {
		shift := time.Duration(w) * cfg.Duration / time.Duration(4*cfg.Waves)
		for _, a := range integration.DefaultAttacks() {
			if w > 0 {
				b := a.Host.As4()
				b[3] += byte(16 * w)
				a.Host = netip.AddrFrom4(b)
				a.Start += shift
				if end := a.Start + a.Duration; end > cfg.Duration {
					a.Duration = cfg.Duration - a.Start
				}
			}
			if a.Duration > 0 {
				attacks = append(attacks, a)
			}
		}
	}
	opts := []integration.Option{integration.Seed(cfg.Seed), integration.Hosts(cfg.Hosts)}
	for _, a := range attacks {
		opts = append(opts, integration.WithAttack(a))
	}
	gen := integration.NewTraffic(opts...)
	end := gen.StartTime().Add(cfg.Duration).UnixNano()
	var out []integration.Event
	for {
		ev := gen.Next()
		if ev.Flow.StartNs >= end {
			break
		}
		out = append(out, ev)
	}
	return out, nil
}

// Sequence returns the labelled flows of one part of the generator's
// sequence scenario (integration.SequenceScenario), in time order: the
// attacks that only a host's sequence of flows gives away, and their benign
// look-alikes. RawLabel is the generator's label, with the routine
// appended for a benign routine's flows ("benign/backup"), so reports can
// count the look-alikes apart. Train on PartTrain and test on PartTest:
// they differ in hosts, infected hosts and time.
func Sequence(cfg integration.SequenceConfig, part integration.Part) ([]Record, error) {
	sc, err := integration.SequenceScenario(cfg, part)
	if err != nil {
		return nil, err
	}
	evs := sc.Events()
	out := make([]Record, len(evs))
	for i, ev := range evs {
		raw := ev.Label
		if slices.Contains(integration.Routines, ev.Kind) {
			raw += "/" + ev.Kind
		}
		out[i] = Record{Flow: ev.Flow, Label: canonicalLabel(ev.Label), RawLabel: raw, Format: FormatSynthetic}
	}
	return out, nil
}
