package integration

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"time"
)

// Part names a part of the sequence scenario.
type Part string

// Parts. The test part has other hosts than the train part, other infected
// hosts with other attack parameters, and starts an hour after the train
// part ends.
const (
	PartTrain Part = "train"
	PartTest  Part = "test"
)

// SequenceConfig sizes the sequence scenario (see SequenceScenario). The
// defaults give about 50,000 to 60,000 flows per part, some 3,000 of them
// attacks.
type SequenceConfig struct {
	// Seed seeds everything: the hosts' rates, which hosts are infected,
	// every attack's and routine's parameters, and the flows. Default 1.
	Seed uint64 `yaml:"seed" help:"seed of the sequence scenario"`
	// Hosts is the number of hosts in each part. Default 80.
	Hosts int `yaml:"hosts" help:"hosts in each part of the sequence scenario"`
	// Duration is the length of each part. Default 3h.
	Duration time.Duration `yaml:"duration" help:"length of each part of the sequence scenario"`
	// Infected is how many hosts run each sequence family in each part.
	// Default 3.
	Infected int `yaml:"infected" help:"hosts per sequence family and part that run the attack"`
	// Rate is the median benign flows per second of a host; each host's
	// own rate is this times a lognormal factor (see ProfileOffice).
	// Default 0.03.
	Rate float64 `yaml:"rate" help:"median benign flows per second of a host"`
	// Sessions is the mean number of benign look-alike sessions (see
	// integration.Sessions) a host starts per hour, each of 3 to 8 flows
	// made exactly as one sequence family makes its flows. Default 2:
	// about 2% of the benign flows look like each family's, so a detector
	// of single flows cannot flag a family's flows without flagging more
	// than 1% of benign ones. 0 turns them off (the scenario as it was
	// before they existed).
	Sessions float64 `yaml:"sessions" help:"mean benign look-alike sessions (short runs of a sequence family's flows) per host and hour"`
}

// DefaultSequenceConfig returns the defaults documented on SequenceConfig.
func DefaultSequenceConfig() SequenceConfig {
	return SequenceConfig{Seed: 1, Hosts: 120, Duration: 3 * time.Hour, Infected: 4, Rate: 0.03, Sessions: 2}
}

// Validate reports every problem with c, each naming its flag.
func (c SequenceConfig) Validate() error {
	var errs []error
	if c.Hosts < 1 || c.Hosts > 10000 {
		errs = append(errs, fmt.Errorf("-sequence.hosts: must be between 1 and 10000, got %d", c.Hosts))
	}
	if c.Duration < 10*time.Minute || c.Duration > 7*24*time.Hour {
		errs = append(errs, fmt.Errorf("-sequence.duration: must be between 10m and 168h, got %s", c.Duration))
	}
	if c.Infected < 0 || c.Infected*len(SequenceFamilies)*2 > c.Hosts {
		errs = append(errs, fmt.Errorf("-sequence.infected: must be between 0 and hosts/%d (%d), got %d",
			2*len(SequenceFamilies), c.Hosts/(2*len(SequenceFamilies)), c.Infected))
	}
	if !(c.Rate > 0 && c.Rate <= 100) {
		errs = append(errs, fmt.Errorf("-sequence.rate: must be in (0, 100], got %g", c.Rate))
	}
	if !(c.Sessions >= 0 && c.Sessions <= 60) {
		errs = append(errs, fmt.Errorf("-sequence.sessions: must be between 0 and 60, got %g", c.Sessions))
	}
	return errors.Join(errs...)
}

// sequenceEpoch is the start of the train part: a Monday morning.
var sequenceEpoch = time.Date(2026, 1, 5, 8, 0, 0, 0, time.UTC)

// secondHost numbers the test part's hosts, so they differ from the train
// part's for up to 10000 hosts.
const secondHost = 10000

// Scenario is one part of the sequence scenario: the generator's options
// and the time span the part covers.
type Scenario struct {
	Part     Part
	Start    time.Time
	Duration time.Duration
	Attacks  []Attack
	Routines []Routine
	// Options configure NewTraffic for the part, attacks and routines
	// included.
	Options []Option
}

// SequenceScenario returns one part of the sequence scenario: Hosts office
// hosts (ProfileOffice) for Duration, of which Infected per sequence family
// run that attack alongside their benign traffic, and many run benign
// routines (NTP polls, update checks, backups), so that periodicity and
// repetition are not by themselves signs of an attack, and every host
// starts short look-alike sessions (Sessions per hour, see Sessions), so
// that no single attack flow, with its gap to the host's last flow to the
// same destination, is one: only an attack's persistence gives it away.
//
// Each part draws, from its own seeded source: which hosts are infected;
// each attack's start (in the first third of the part), length (at least
// half the part), target and timing (beacon every 30 to 90 s with 10 to 30%
// jitter; scan probe every 15 to 45 s, 20 to 50% jitter; exfiltration
// upload every 45 to 120 s, 10 to 40%; stuffing attempt every 15 to 45 s,
// 30 to 60%: about as often as, or less often than, the host's own flows);
// and each host's routines (NTP with probability 0.6, polling every
// 64·2^k s for k in 0..4; update checks with probability 0.6, every 10 to
// 60 min; backups with probability 0.25, 10 to 40 chunks every 1 to 2 h);
// and, from a source of their own, each host's sessions (a Poisson process;
// kind uniform; 3 to 8 flows with the imitated family's timing; a fresh
// target each).
// The test part's hosts are HostAddr(10000) onwards, the train part's
// HostAddr(0) onwards, and the test part starts an hour after the train part
// ends, so a model trained on one and tested on the other has seen neither
// the hosts nor the time.
func SequenceScenario(cfg SequenceConfig, part Part) (*Scenario, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("sequence scenario: %w", err)
	}
	var idx uint64
	sc := &Scenario{Part: part, Start: sequenceEpoch, Duration: cfg.Duration}
	first := 0
	switch part {
	case PartTrain:
	case PartTest:
		idx = 1
		first = secondHost
		sc.Start = sequenceEpoch.Add(cfg.Duration + time.Hour)
	default:
		return nil, fmt.Errorf("sequence scenario: -part: want train or test, got %q", part)
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x5e9+idx))
	d := cfg.Duration
	span := func(lo, hi time.Duration) time.Duration { return spanIn(rng, lo, hi) }
	external := func(a, b, c byte) netip.Addr { return netip.AddrFrom4([4]byte{a, b, c, byte(1 + rng.IntN(254))}) }

	perm := rng.Perm(cfg.Hosts)
	for k, fam := range SequenceFamilies {
		for j := range cfg.Infected {
			a := Attack{Family: fam, Host: HostAddr(first + perm[k*cfg.Infected+j])}
			a.Start = span(0, d/3)
			a.Duration = span(d/2, d-a.Start)
			switch fam {
			case FamilySlowBeacon:
				a.Target = external(198, 51, 100)
			case FamilySlowScan:
				a.Target, a.Span = netip.AddrFrom4([4]byte{10, 1, byte(rng.IntN(256)), 1}), 254
			case FamilySlowExfil:
				a.Target = external(203, 0, 113)
			case FamilyCredStuffing:
				a.Target = external(192, 0, 2)
			}
			a.Period, a.Jitter = timing(rng, fam)
			sc.Attacks = append(sc.Attacks, a)
		}
	}
	for i := range cfg.Hosts {
		h := HostAddr(first + i)
		if rng.Float64() < 0.6 {
			p := time.Duration(64<<rng.IntN(5)) * time.Second
			sc.Routines = append(sc.Routines, Routine{Kind: RoutineNTP, Host: h, Target: external(162, 159, 200),
				Start: span(0, p), Duration: d, Period: p, Jitter: 0.02})
		}
		if rng.Float64() < 0.6 {
			p := span(10*time.Minute, time.Hour)
			sc.Routines = append(sc.Routines, Routine{Kind: RoutineUpdate, Host: h, Target: external(151, 101, 2),
				Start: span(0, p), Duration: d, Period: p, Jitter: 0.1})
		}
		if rng.Float64() < 0.25 {
			p := span(time.Hour, 2*time.Hour)
			target := netip.AddrFrom4([4]byte{10, 0, 1, 50})
			if rng.Float64() < 0.5 {
				target = external(52, 216, 8) // a cloud store: external, like an exfiltration's drop
			}
			sc.Routines = append(sc.Routines, Routine{Kind: RoutineBackup, Host: h, Target: target,
				Start: span(0, p), Duration: d, Period: p, Jitter: 0.05, Chunks: 10 + rng.IntN(31)})
		}
	}
	// Sessions come from a source of their own, so that adding them left
	// the attacks and routines of a seed as they were.
	if cfg.Sessions > 0 {
		srng := rand.New(rand.NewPCG(cfg.Seed, 0x5e55+idx))
		mean := float64(time.Duration(float64(time.Hour) / cfg.Sessions))
		for i := range cfg.Hosts {
			h := HostAddr(first + i)
			for at := time.Duration(srng.ExpFloat64() * mean); at < d; at += time.Duration(srng.ExpFloat64() * mean) {
				k := srng.IntN(len(Sessions))
				r := Routine{Kind: Sessions[k], Host: h, Start: at, Duration: d - at, Count: 3 + srng.IntN(6)}
				n := sessionNets[r.Kind]
				r.Target = netip.AddrFrom4([4]byte{n.a, n.b, byte(srng.IntN(256)), byte(1 + srng.IntN(n.last))})
				r.Period, r.Jitter = timing(srng, sessionFamily[r.Kind])
				sc.Routines = append(sc.Routines, r)
			}
		}
	}
	sc.Options = []Option{Seed(2*cfg.Seed + idx), Hosts(cfg.Hosts), FirstHost(first), Start(sc.Start),
		Rate(cfg.Rate), WithProfile(ProfileOffice), WithAttacks(sc.Attacks...)}
	for _, r := range sc.Routines {
		sc.Options = append(sc.Options, WithRoutine(r))
	}
	return sc, nil
}

// sessionNets says where each session kind's targets are: the first two
// bytes, and how many values the last may take from 1 (the sweep leaves
// room for its consecutive addresses).
var sessionNets = map[string]struct {
	a, b byte
	last int
}{
	SessionPolling:    {104, 16, 254},
	SessionScanLike:   {10, 2, 200},
	SessionAutosave:   {52, 96, 254},
	SessionLoginRetry: {20, 190, 254},
}

// timing draws a sequence family's period and jitter, for an attack of the
// family or a session imitating it: beacon every 30 to 90 s with 10 to 30%
// jitter; scan probe every 15 to 45 s, 20 to 50%; exfiltration upload
// every 45 to 120 s, 10 to 40%; stuffing attempt every 15 to 45 s, 30 to
// 60%.
func timing(rng *rand.Rand, family string) (time.Duration, float64) {
	switch family {
	case FamilySlowBeacon:
		return spanIn(rng, 30*time.Second, 90*time.Second), uniformIn(rng, 0.1, 0.3)
	case FamilySlowScan:
		return spanIn(rng, 15*time.Second, 45*time.Second), uniformIn(rng, 0.2, 0.5)
	case FamilySlowExfil:
		return spanIn(rng, 45*time.Second, 120*time.Second), uniformIn(rng, 0.1, 0.4)
	default: // FamilyCredStuffing
		return spanIn(rng, 15*time.Second, 45*time.Second), uniformIn(rng, 0.3, 0.6)
	}
}

// uniformIn draws uniformly from [lo, hi).
func uniformIn(rng *rand.Rand, lo, hi float64) float64 { return lo + (hi-lo)*rng.Float64() }

// spanIn draws a duration uniformly from [lo, hi).
func spanIn(rng *rand.Rand, lo, hi time.Duration) time.Duration {
	return time.Duration(uniformIn(rng, float64(lo), float64(hi)))
}

// Events generates the part's flows, in time order, up to its end. Their
// start and duration are cut to whole microseconds, the resolution of the
// flow-log files Writer writes, so a flow read back from them is the same.
func (sc *Scenario) Events() []Event {
	gen := NewTraffic(sc.Options...)
	end := sc.Start.Add(sc.Duration).UnixNano()
	var out []Event
	for {
		ev := gen.Next()
		f := &ev.Flow
		if f.StartNs >= end {
			return out
		}
		dur := f.EndNs - f.StartNs
		f.StartNs -= f.StartNs % 1e3
		f.EndNs = f.StartNs + dur - dur%1e3
		out = append(out, ev)
	}
}
