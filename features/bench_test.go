package features

import (
	"fmt"
	"testing"
	"time"

	"github.com/apache/arrow/go/v15/arrow/memory"
)

func BenchmarkVector(b *testing.B) {
	flows := randomFlows(20, 4096)
	dst := make([]float32, 0, NumFeatures)
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		dst = Vector(dst[:0], &flows[n%len(flows)])
		n++
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "flows/s")
}

func BenchmarkPartition(b *testing.B) {
	flows := randomFlows(21, 4096)
	host := make([]byte, 0, 64)
	b.ReportAllocs()
	n, sink := 0, 0
	for b.Loop() {
		host = AppendHost(host[:0], &flows[n%len(flows)])
		sink += Partition(host, 12)
		n++
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "flows/s")
	_ = sink
}

// BenchmarkBuildEncode is ingest's per-batch cost: append rows (vector
// included), close the record and encode it as a message value.
func BenchmarkBuildEncode(b *testing.B) {
	for _, rows := range []int{64, 1024, 4096} {
		b.Run(fmt.Sprintf("rows=%d", rows), func(b *testing.B) {
			flows := randomFlows(22, rows)
			bld := NewBuilder(memory.DefaultAllocator)
			defer bld.Release()
			b.ReportAllocs()
			n, size := 0, 0
			var buf []byte
			for b.Loop() {
				for i := range flows {
					bld.Append(&flows[i])
				}
				rec := bld.NewRecord()
				var err error
				if buf, err = Encode(buf[:0], rec); err != nil {
					b.Fatal(err)
				}
				rec.Release()
				n += rows
				size = len(buf)
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "flows/s")
			b.ReportMetric(float64(size)/float64(rows), "bytes/flow")
		})
	}
}

// BenchmarkBatcher is the whole ingest-side path per flow: host key,
// partition, vector, Arrow append, and the flushes and encodes that Add
// triggers, over 12 partitions.
func BenchmarkBatcher(b *testing.B) {
	flows := randomFlows(23, 1<<15)
	bt, err := NewBatcher(memory.DefaultAllocator, DefaultConfig(), 12)
	if err != nil {
		b.Fatal(err)
	}
	defer bt.Release()
	now := time.Unix(0, 0)
	var out []PartitionBatch
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		if out, err = bt.Add(out[:0], &flows[n%len(flows)], now); err != nil {
			b.Fatal(err)
		}
		n++
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "flows/s")
}

// BenchmarkDecode is the scorer's per-message cost: validate and map a
// batch, then gather every row's vector.
func BenchmarkDecode(b *testing.B) {
	for _, rows := range []int{64, 4096} {
		b.Run(fmt.Sprintf("rows=%d", rows), func(b *testing.B) {
			msg := encodeFlows(b, memory.DefaultAllocator, randomFlows(24, rows))
			vec := make([]float32, 0, NumFeatures)
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				v, err := Decode(msg, memory.DefaultAllocator)
				if err != nil {
					b.Fatal(err)
				}
				for i := range v.Len() {
					vec = v.Vector(vec[:0], i)
				}
				v.Release()
				n += rows
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "flows/s")
		})
	}
}
