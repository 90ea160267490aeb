package features

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow/go/v15/arrow/memory"

	"github.com/metaids/metaids/schemas"
)

func newTestBatcher(t *testing.T, mem memory.Allocator, maxRows int, linger time.Duration, parts int) *Batcher {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Batch.MaxRows, cfg.Batch.Linger = maxRows, linger
	b, err := NewBatcher(mem, cfg, parts)
	if err != nil {
		t.Fatalf("NewBatcher: %v", err)
	}
	return b
}

// decodeBatch decodes a flushed batch and checks it against the flows it
// should hold, in order.
func decodeBatch(t *testing.T, mem memory.Allocator, pb PartitionBatch, want []schemas.Flow) {
	t.Helper()
	v, err := Decode(pb.Value, mem)
	if err != nil {
		t.Fatalf("Decode(partition %d): %v", pb.Partition, err)
	}
	defer v.Release()
	if pb.Rows != v.Len() {
		t.Errorf("partition %d: Rows = %d, batch holds %d", pb.Partition, pb.Rows, v.Len())
	}
	checkView(t, v, want)
}

// TestBatcherRoutesAndFlushesOnSize adds many flows; every flushed batch
// must hold only flows of hosts mapping to its partition, in input order,
// and FlushAll must return the rest, so that together they are the input.
func TestBatcherRoutesAndFlushesOnSize(t *testing.T) {
	for _, parts := range []int{1, 4, 7} {
		t.Run(fmt.Sprintf("partitions=%d", parts), func(t *testing.T) {
			mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
			defer mem.AssertSize(t, 0)
			const maxRows = 64
			b := newTestBatcher(t, mem, maxRows, time.Minute, parts)
			defer b.Release()
			flows := randomFlows(9, 2000)
			now := time.Unix(1_700_000_000, 0)
			var out []PartitionBatch
			var err error
			sizeFlushes := 0
			for i := range flows {
				before := len(out)
				if out, err = b.Add(out, &flows[i], now); err != nil {
					t.Fatalf("Add: %v", err)
				}
				for _, pb := range out[before:] {
					sizeFlushes++
					if pb.Rows != maxRows {
						t.Errorf("size flush of %d rows, want %d", pb.Rows, maxRows)
					}
				}
			}
			if sizeFlushes == 0 {
				t.Fatalf("no size-triggered flush from %d flows", len(flows))
			}
			if out, err = b.FlushAll(out); err != nil {
				t.Fatalf("FlushAll: %v", err)
			}
			if b.Len() != 0 {
				t.Errorf("Len() after FlushAll = %d, want 0", b.Len())
			}
			// Rebuild each partition's expected flow sequence.
			want := make([][]schemas.Flow, parts)
			for _, f := range flows {
				p := Partition(Host(&f), parts)
				want[p] = append(want[p], f)
			}
			total := 0
			for _, pb := range out {
				total += pb.Rows
				if Partition(pb.Key, parts) != pb.Partition {
					t.Errorf("batch key %q maps to %d, batch is for %d", pb.Key, Partition(pb.Key, parts), pb.Partition)
				}
				decodeBatch(t, mem, pb, want[pb.Partition][:pb.Rows])
				want[pb.Partition] = want[pb.Partition][pb.Rows:]
			}
			if total != len(flows) {
				t.Errorf("flushed %d rows, added %d", total, len(flows))
			}
			for p, rest := range want {
				if len(rest) != 0 {
					t.Errorf("partition %d: %d flows never flushed", p, len(rest))
				}
			}
		})
	}
}

func TestBatcherLinger(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	const linger = 50 * time.Millisecond
	b := newTestBatcher(t, mem, 4096, linger, 8)
	defer b.Release()

	// Two hosts in different partitions, first seen 30ms apart.
	a, c := scanFlow(), dnsFlow()
	if Partition(Host(&a), 8) == Partition(Host(&c), 8) {
		t.Fatalf("test hosts share a partition; pick others")
	}
	start := time.Unix(1_700_000_000, 0)
	var out []PartitionBatch
	var err error
	if _, ok := b.Deadline(); ok {
		t.Errorf("Deadline() of an empty batcher ok = true, want false")
	}
	out, _ = b.Add(out, &a, start)
	out, _ = b.Add(out, &c, start.Add(30*time.Millisecond))
	out, _ = b.Add(out, &a, start.Add(40*time.Millisecond))
	if len(out) != 0 {
		t.Fatalf("Add flushed %d batches below max rows", len(out))
	}
	if d, ok := b.Deadline(); !ok || !d.Equal(start.Add(linger)) {
		t.Errorf("Deadline() = %v, %v; want %v, true", d, ok, start.Add(linger))
	}

	steps := []struct {
		at       time.Duration
		wantPart []int // partitions flushed, in order
		wantRows []int
	}{
		{49 * time.Millisecond, nil, nil},
		{50 * time.Millisecond, []int{Partition(Host(&a), 8)}, []int{2}},
		{79 * time.Millisecond, nil, nil},
		{80 * time.Millisecond, []int{Partition(Host(&c), 8)}, []int{1}},
		{time.Hour, nil, nil},
	}
	for _, s := range steps {
		out, err = b.FlushExpired(out[:0], start.Add(s.at))
		if err != nil {
			t.Fatalf("FlushExpired: %v", err)
		}
		var parts, rows []int
		for _, pb := range out {
			parts, rows = append(parts, pb.Partition), append(rows, pb.Rows)
			decodeBatch(t, mem, pb, lingerWant(pb.Rows, a, c))
		}
		if !slices.Equal(parts, s.wantPart) || !slices.Equal(rows, s.wantRows) {
			t.Errorf("FlushExpired(+%v) flushed partitions %v rows %v, want %v %v", s.at, parts, rows, s.wantPart, s.wantRows)
		}
	}
	if _, ok := b.Deadline(); ok {
		t.Errorf("Deadline() after all flushed ok = true, want false")
	}

	// A new flow opens a new batch whose linger starts at its own arrival.
	out, _ = b.Add(out[:0], &c, start.Add(time.Hour))
	if d, _ := b.Deadline(); !d.Equal(start.Add(time.Hour + linger)) {
		t.Errorf("Deadline() = %v, want %v", d, start.Add(time.Hour+linger))
	}
	if out, _ = b.FlushExpired(out[:0], start.Add(time.Hour+linger-1)); len(out) != 0 {
		t.Errorf("FlushExpired before the deadline flushed %d batches", len(out))
	}
	if out, _ = b.FlushAll(out[:0]); len(out) != 1 || out[0].Rows != 1 {
		t.Errorf("FlushAll = %d batches, want 1 of 1 row", len(out))
	}
}

// lingerWant returns the flows the linger test expects in a batch of n rows:
// host a's two flows, or host c's one.
func lingerWant(n int, a, c schemas.Flow) []schemas.Flow {
	if n == 2 {
		return []schemas.Flow{a, a}
	}
	return []schemas.Flow{c}
}

func TestBatcherSpans(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	b := newTestBatcher(t, mem, 100, time.Second, 1)
	defer b.Release()
	now := time.Unix(0, 0)
	coords := []schemas.Coord{
		{Topic: "flows.a", Partition: 0, Offset: 10},
		{Topic: "flows.a", Partition: 0, Offset: 10, Index: 1},
		{Topic: "flows.a", Partition: 1, Offset: 5},
		{Topic: "flows.a", Partition: 0, Offset: 12},
		{Topic: "flows.b", Partition: 0, Offset: 3},
		{Topic: "flows.a", Partition: 1, Offset: 4},
	}
	for _, c := range coords {
		f := scanFlow()
		f.Source = c
		b.Add(nil, &f, now)
	}
	out, err := b.FlushAll(nil)
	if err != nil || len(out) != 1 {
		t.Fatalf("FlushAll = %d batches, %v; want 1, nil", len(out), err)
	}
	want := []Span{
		{Topic: "flows.a", Partition: 0, FirstOffset: 10, LastOffset: 12},
		{Topic: "flows.a", Partition: 1, FirstOffset: 4, LastOffset: 5},
		{Topic: "flows.b", Partition: 0, FirstOffset: 3, LastOffset: 3},
	}
	if !slices.Equal(out[0].Spans, want) {
		t.Errorf("Spans = %+v, want %+v", out[0].Spans, want)
	}
	if string(out[0].Key) != "203.0.113.7" || !out[0].Opened.Equal(now) {
		t.Errorf("Key, Opened = %q, %v; want 203.0.113.7, %v", out[0].Key, out[0].Opened, now)
	}

	// The next batch starts with fresh spans.
	f := dnsFlow()
	b.Add(nil, &f, now)
	out, _ = b.FlushAll(nil)
	if len(out) != 1 || len(out[0].Spans) != 1 || out[0].Spans[0].Topic != "flows.zeek" {
		t.Errorf("second batch spans = %+v, want only flows.zeek", out[0].Spans)
	}
}

func TestNewBatcherRejects(t *testing.T) {
	tests := []struct {
		name    string
		cfg     func(*Config)
		parts   int
		wantErr string
	}{
		{"zero partitions", func(*Config) {}, 0, "partitions must be between 1"},
		{"zero rows", func(c *Config) { c.Batch.MaxRows = 0 }, 4, "-features.batch.max-rows"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tc.cfg(&cfg)
			_, err := NewBatcher(memory.DefaultAllocator, cfg, tc.parts)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("NewBatcher error = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

// TestBatcherSameHostOnePartition: every flow of a host is in batches of one
// partition, across formats of its address.
func TestBatcherSameHostOnePartition(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	b := newTestBatcher(t, mem, 3, time.Second, 16)
	defer b.Release()
	var out []PartitionBatch
	for i := range 40 {
		f := scanFlow()
		f.DstPort = uint16(i)
		if i%2 == 1 {
			f.SrcAddr = netip.AddrFrom16(f.SrcAddr.As16()) // the IPv4-mapped form
		}
		out, _ = b.Add(out, &f, time.Unix(0, 0))
	}
	out, _ = b.FlushAll(out)
	for _, pb := range out {
		if pb.Partition != out[0].Partition {
			t.Fatalf("host's flows in partitions %d and %d", out[0].Partition, pb.Partition)
		}
		v, err := Decode(pb.Value, mem)
		if err != nil {
			t.Fatal(err)
		}
		for i := range v.Len() {
			if v.Host(i) != "203.0.113.7" {
				t.Errorf("row host %q, want 203.0.113.7", v.Host(i))
			}
		}
		v.Release()
	}
}
