package integration

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/metaids/metaids/schemas"
)

// Ledger reconciles what went into the pipeline with what came out of it,
// by flow id: every input flow must come out scored (on the scores topic,
// any number of times, since delivery is at-least-once and consumers drop
// duplicates by id) or dead-lettered (its record on flows.dlq), never
// both, and nothing may come out that did not go in. The accounting tests
// feed it the input topic, the scores topic and flows.dlq as they read
// them; Balance says whether the books close. It is safe for concurrent
// use.
type Ledger struct {
	mu      sync.Mutex
	in      map[uint64]string      // flow id → the outcome the test expects ("" if any)
	records map[recordKey][]uint64 // input record → its flows' ids
	scored  map[uint64]int         // flow id → score rows seen
	dead    map[recordKey]deadSeen
	// Out-of-books: ids and records that came out with no input behind them.
	strayScores, strayDead int
}

// recordKey locates one input record; a dead letter names its record, not
// its flows.
type recordKey struct {
	topic     string
	partition int32
	offset    int64
}

type deadSeen struct {
	reason string
	n      int
}

// Outcomes a test can expect of an input flow: OutcomeScored, or a
// dead-letter reason (ingest.Reason) as a string.
const (
	OutcomeScored = "scored"
	OutcomeAny    = ""
)

// NewLedger returns an empty Ledger.
func NewLedger() *Ledger {
	return &Ledger{
		in:      make(map[uint64]string),
		records: make(map[recordKey][]uint64),
		scored:  make(map[uint64]int),
		dead:    make(map[recordKey]deadSeen),
	}
}

// Input registers the flow at c (its record's coordinates and its index in
// the record) as an input, with the outcome expected of it: OutcomeScored,
// a dead-letter reason, or OutcomeAny.
func (l *Ledger) Input(c schemas.Coord, want string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	id := schemas.FlowID(c)
	if _, ok := l.in[id]; ok {
		return
	}
	l.in[id] = want
	k := recordKey{c.Topic, c.Partition, c.Offset}
	l.records[k] = append(l.records[k], id)
}

// Scored records one score row for flow id.
func (l *Ledger) Scored(id uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.scored[id]++
}

// DeadLettered records one dead letter.
func (l *Ledger) DeadLettered(d *schemas.DeadLetter) {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := recordKey{d.Topic, d.Partition, d.Offset}
	s := l.dead[k]
	if s.n > 0 && s.reason != d.Reason {
		s.reason += "|" + d.Reason // a redelivery judged differently: Balance reports it
	} else {
		s.reason = d.Reason
	}
	s.n++
	l.dead[k] = s
}

// Settled reports how many input flows have come out scored or
// dead-lettered, and how many went in: a test polls it until the two meet.
func (l *Ledger) Settled() (settled, in int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for k, ids := range l.records {
		if _, dead := l.dead[k]; dead {
			settled += len(ids)
			continue
		}
		for _, id := range ids {
			if l.scored[id] > 0 {
				settled++
			}
		}
	}
	return settled, len(l.in)
}

// UniqueScored returns how many distinct flow ids have been scored,
// inputs or not.
func (l *Ledger) UniqueScored() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.scored)
}

// Balance is the reconciliation of a Ledger.
type Balance struct {
	In         int // input flows
	Scored     int // input flows scored, counted once each
	ScoreRows  int // score rows for input flows, duplicates included
	Duplicates int // ScoreRows - Scored: redeliveries the consumers drop by id

	DeadLettered         map[string]int // input flows dead-lettered, once each, by reason
	DeadLetterDuplicates int            // dead letters beyond the first per record

	Lost       int // input flows neither scored nor dead-lettered
	Both       int // input flows scored and dead-lettered
	Stray      int // score rows and dead letters with no input behind them
	Flipped    int // records dead-lettered with different reasons on redelivery
	Unexpected []string
}

// Balance reconciles the books.
func (l *Ledger) Balance() Balance {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := Balance{In: len(l.in), DeadLettered: map[string]int{}}
	for _, k := range slices.SortedFunc(maps.Keys(l.records), compareRecords) {
		ids := l.records[k]
		d, dead := l.dead[k]
		if dead {
			b.DeadLetterDuplicates += d.n - 1
			if strings.Contains(d.reason, "|") {
				b.Flipped++
			}
		}
		for _, id := range ids {
			n := l.scored[id]
			want := l.in[id]
			got := OutcomeScored
			switch {
			case n > 0 && dead:
				b.Both++
				got = OutcomeScored + "+" + d.reason
			case n > 0:
				b.Scored++
				b.ScoreRows += n
			case dead:
				b.DeadLettered[d.reason] += 1
				got = d.reason
			default:
				b.Lost++
				got = "lost"
			}
			if want != OutcomeAny && got != want && len(b.Unexpected) < 20 {
				b.Unexpected = append(b.Unexpected, fmt.Sprintf("%s/%d@%d: %s, want %s", k.topic, k.partition, k.offset, got, want))
			}
		}
	}
	b.Duplicates = b.ScoreRows - b.Scored
	for id, n := range l.scored {
		if _, ok := l.in[id]; !ok {
			b.Stray += n
		}
	}
	for k, d := range l.dead {
		if _, ok := l.records[k]; !ok {
			b.Stray += d.n
		}
	}
	return b
}

func compareRecords(a, b recordKey) int {
	if c := strings.Compare(a.topic, b.topic); c != 0 {
		return c
	}
	if a.partition != b.partition {
		return int(a.partition - b.partition)
	}
	switch {
	case a.offset < b.offset:
		return -1
	case a.offset > b.offset:
		return 1
	}
	return 0
}

// Err is nil when the books close: every input flow scored or
// dead-lettered, none both, none with an outcome other than expected, and
// nothing out that did not go in.
func (b Balance) Err() error {
	var errs []error
	if b.Lost > 0 {
		errs = append(errs, fmt.Errorf("%d of %d input flows lost: neither scored nor dead-lettered", b.Lost, b.In))
	}
	if b.Both > 0 {
		errs = append(errs, fmt.Errorf("%d input flows both scored and dead-lettered", b.Both))
	}
	if b.Stray > 0 {
		errs = append(errs, fmt.Errorf("%d score rows or dead letters with no input behind them", b.Stray))
	}
	if b.Flipped > 0 {
		errs = append(errs, fmt.Errorf("%d records dead-lettered with different reasons on redelivery", b.Flipped))
	}
	for _, u := range b.Unexpected {
		errs = append(errs, fmt.Errorf("unexpected outcome: %s", u))
	}
	return errors.Join(errs...)
}

// String is the one-line report the accounting tests log.
func (b Balance) String() string {
	var dl []string
	total := 0
	for _, r := range slices.Sorted(maps.Keys(b.DeadLettered)) {
		dl = append(dl, fmt.Sprintf("%s=%d", r, b.DeadLettered[r]))
		total += b.DeadLettered[r]
	}
	return fmt.Sprintf("in=%d scored(unique)=%d duplicates=%d dead-lettered=%d {%s} dlq-duplicates=%d lost=%d both=%d stray=%d",
		b.In, b.Scored, b.Duplicates, total, strings.Join(dl, " "), b.DeadLetterDuplicates, b.Lost, b.Both, b.Stray)
}
