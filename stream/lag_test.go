package stream

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/segmentio/kafka-go"
)

// TestLagTrackerPositions checks the lag of partitions whose position
// comes from a commit, from the log start (a new group at FirstOffset) and
// from nowhere yet (a new group at LastOffset), and that a stale fetch
// watermark never lowers an end offset a poll has seen.
func TestLagTrackerPositions(t *testing.T) {
	gauge := newMetrics(prometheus.NewRegistry()).lag
	tr := newLagTracker("g", gauge)
	tr.assign("in", 0, 7)                 // committed
	tr.assign("in", 1, kafka.FirstOffset) // nothing committed, starts at the log start
	tr.assign("in", 2, kafka.LastOffset)  // nothing committed, starts at the end
	all, unknown := tr.partitions()
	if len(all["in"]) != 3 || len(unknown["in"]) != 1 || unknown["in"][0] != 1 {
		t.Fatalf("partitions() = %v, %v; want all three, and 1 unknown", all, unknown)
	}
	k := func(p int) topicPartition { return topicPartition{"in", p} }
	tr.polled(map[topicPartition]int64{k(0): 10, k(1): 10, k(2): 10}, map[topicPartition]int64{k(1): 4})
	lag := func(p string) float64 { return testutil.ToFloat64(gauge.WithLabelValues("g", "in", p)) }
	if got := lag("0"); got != 3 {
		t.Errorf("committed at 7, end 10: lag %v, want 3", got)
	}
	if got := lag("1"); got != 6 {
		t.Errorf("from the log start 4, end 10: lag %v, want 6", got)
	}
	if n := testutil.CollectAndCount(gauge); n != 2 {
		t.Errorf("%d series, want 2: a group starting at the end has no lag before its first record", n)
	}
	// A record from a fetch made before the poll: its watermark is older.
	tr.handed(kafka.Message{Topic: "in", Partition: 0, Offset: 7, HighWaterMark: 8})
	if got := lag("0"); got != 2 {
		t.Errorf("handed offset 7, end 10 polled: lag %v, want 2 (the stale watermark 8 must not win)", got)
	}
	tr.handed(kafka.Message{Topic: "in", Partition: 2, Offset: 10, HighWaterMark: 12})
	if got := lag("2"); got != 1 {
		t.Errorf("handed offset 10, watermark 12: lag %v, want 1", got)
	}
	tr.handed(kafka.Message{Topic: "other", Partition: 0, Offset: 1, HighWaterMark: 5})
	if n := testutil.CollectAndCount(gauge); n != 3 {
		t.Errorf("%d series, want 3: a partition not assigned is not reported", n)
	}
}
