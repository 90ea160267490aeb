package dataset

import (
	"fmt"
	"math"
	"slices"
	"sort"

	"github.com/metaids/metaids/features"
)

// Split says what a flow is for.
type Split uint8

// Splits. Train and Val come from the earliest TrainFraction of each class,
// Val being the latest part of it; Test is the rest; Holdout holds every flow
// of a held-out family.
const (
	Train Split = iota
	Val
	Test
	Holdout
)

var splitNames = [...]string{"train", "val", "test", "holdout"}

func (s Split) String() string {
	if int(s) < len(splitNames) {
		return splitNames[s]
	}
	return fmt.Sprintf("split(%d)", s)
}

// Dataset is a set of records ready for training: in time order, with raw
// feature vectors, splits, classes and hosts.
type Dataset struct {
	// Records are in time order (ties keep input order).
	Records []Record
	// X holds the raw feature vectors, len(Records)×features.NumFeatures,
	// with the dt_prev slot 0: it depends on the stream (see Streams).
	X []float32
	// Split is each record's split.
	Split []Split
	// Class is each record's class index into Classes, or −1 for
	// unlabelled and held-out flows.
	Class []int
	// Classes names the model's classes: Benign first, then the known
	// families in lexical order.
	Classes []string
	// Holdout names the held-out families (those that occur).
	Holdout []string
	// Host is each record's host index into Hosts.
	Host  []int32
	Hosts []string
	// DeltaT reports whether dt_prev is filled from gaps; when false it is
	// marked missing (NaN) and the trainer switches the feature off.
	DeltaT bool
}

// Build sorts records by time, computes their feature vectors and splits
// them (see the package doc). It keeps records; the caller must not change
// it afterwards. A held-out family that no record has is an error, since it
// is most likely a typo.
func Build(records []Record, cfg Config) (*Dataset, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("dataset config: %w", err)
	}
	if len(records) == 0 {
		return nil, fmt.Errorf("dataset: %w", ErrNoData)
	}
	sort.SliceStable(records, func(i, j int) bool { return records[i].Flow.StartNs < records[j].Flow.StartNs })
	n := len(records)
	d := &Dataset{
		Records: records,
		X:       make([]float32, 0, n*features.NumFeatures),
		Split:   make([]Split, n),
		Class:   make([]int, n),
		Host:    make([]int32, n),
	}
	held := map[string]bool{}
	for _, h := range cfg.Holdout {
		held[canonicalLabel(h)] = true
	}
	byLabel := map[string][]int{}
	hostIdx := map[string]int32{}
	cic := false
	for i := range records {
		r := &records[i]
		d.X = features.Vector(d.X, &r.Flow)
		byLabel[r.Label] = append(byLabel[r.Label], i)
		h := features.Host(&r.Flow)
		k, ok := hostIdx[h]
		if !ok {
			k = int32(len(d.Hosts))
			hostIdx[h] = k
			d.Hosts = append(d.Hosts, h)
		}
		d.Host[i] = k
		cic = cic || r.Format == FormatCIC
	}
	switch cfg.DeltaT {
	case DeltaTGap:
		d.DeltaT = true
	case DeltaTAuto:
		d.DeltaT = !cic
	}
	for name := range held {
		if len(byLabel[name]) == 0 {
			return nil, fmt.Errorf("-holdout-family: no flow is labelled %q", name)
		}
		d.Holdout = append(d.Holdout, name)
	}
	sort.Strings(d.Holdout)
	d.Classes = []string{Benign}
	for label := range byLabel {
		if label != Benign && label != Unlabelled && !held[label] {
			d.Classes = append(d.Classes, label)
		}
	}
	slices.Sort(d.Classes[1:])
	classIdx := map[string]int{}
	for k, c := range d.Classes {
		classIdx[c] = k
	}
	for label, idx := range byLabel {
		cls := -1
		if k, ok := classIdx[label]; ok {
			cls = k
		}
		// idx is in time order because records are.
		nTrain := int(math.Round(float64(len(idx)) * cfg.TrainFraction))
		nVal := int(math.Round(float64(nTrain) * cfg.ValFraction))
		for j, i := range idx {
			d.Class[i] = cls
			switch {
			case held[label]:
				d.Split[i] = Holdout
			case j < nTrain-nVal:
				d.Split[i] = Train
			case j < nTrain:
				d.Split[i] = Val
			default:
				d.Split[i] = Test
			}
		}
	}
	return d, nil
}

// Len returns the number of records.
func (d *Dataset) Len() int { return len(d.Records) }

// Features returns record i's raw feature vector (dt_prev 0). The caller
// must not modify it.
func (d *Dataset) Features(i int) []float32 {
	f := features.NumFeatures
	return d.X[i*f : (i+1)*f : (i+1)*f]
}

// Stream is one host's flows of a stream set, in time order, with their
// feature vectors and dt_prev filled from this stream alone.
type Stream struct {
	Host int32
	// Idx are the records' indices into the Dataset.
	Idx []int
	// X holds len(Idx)×features.NumFeatures raw features.
	X []float32
}

// Len returns the number of flows in s.
func (s *Stream) Len() int { return len(s.Idx) }

// Streams returns one Stream per host holding the records for which keep
// returns true, hosts in order of first appearance. dt_prev is the gap to
// the previous record in the same stream (features.DeltaT, 0 for the first),
// exactly what the scorer computes when it sees only these flows; so the
// training stream knows nothing of validation or test flows, not even when
// they happened. dst_repeat and dt_dst come from the stream's own
// features.PeerMemory in the same way. When d.DeltaT is false all three are
// NaN, which the model treats as missing: on per-class samples the gaps
// between flows to one responder are as much a sampling artefact as dt_prev.
func (d *Dataset) Streams(keep func(i int) bool) []Stream {
	f := features.NumFeatures
	pos := make([]int, len(d.Hosts))
	for i := range pos {
		pos[i] = -1
	}
	var (
		out   []Stream
		peers []features.PeerMemory // per stream
	)
	last := make([]int64, len(d.Hosts))
	for i := range d.Records {
		if !keep(i) {
			continue
		}
		h := d.Host[i]
		p := pos[h]
		if p < 0 {
			p = len(out)
			pos[h] = p
			out = append(out, Stream{Host: h})
			peers = append(peers, features.PeerMemory{})
		}
		s := &out[p]
		fl := &d.Records[i].Flow
		start := fl.StartNs
		nan := float32(math.NaN())
		dt, seen, dtDst := nan, nan, nan
		if d.DeltaT {
			dt = 0
			if s.Len() > 0 {
				dt = features.DeltaT(start - last[h])
			}
			seen, dtDst = peers[p].See(features.FlowPeerKey(fl), start)
		}
		last[h] = start
		s.Idx = append(s.Idx, i)
		s.X = append(s.X, d.Features(i)...)
		x := s.X[s.Len()*f-f:]
		x[features.IdxDeltaT], x[features.IdxDstRepeat], x[features.IdxDeltaDst] = dt, seen, dtDst
	}
	return out
}

// In returns a keep function for Streams selecting the given splits.
func (d *Dataset) In(splits ...Split) func(i int) bool {
	var want [4]bool
	for _, s := range splits {
		want[s] = true
	}
	return func(i int) bool { return want[d.Split[i]] }
}

// Counts returns, per label (Unlabelled as "(unlabelled)"), how many records
// fall in each split, for reports.
func (d *Dataset) Counts() map[string][4]int {
	out := map[string][4]int{}
	for i, r := range d.Records {
		name := r.Label
		if name == Unlabelled {
			name = "(unlabelled)"
		}
		c := out[name]
		c[d.Split[i]]++
		out[name] = c
	}
	return out
}
