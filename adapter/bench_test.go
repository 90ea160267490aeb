package adapter

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// BenchmarkFitHead times one fit and gate as the adapter runs it: 10 new
// labels on a model of 8 classes with exemplars of each replayed. Run with
// -cpu 1; the budget is 200 ms at 64 exemplars per class.
func BenchmarkFitHead(b *testing.B) {
	for _, ex := range []int{16, 64, 256} {
		for _, kind := range []string{"new family", "known family"} {
			b.Run(fmt.Sprintf("exemplars=%d/%s", ex, kind), func(b *testing.B) {
				w := newWorld(50)
				base := baseModel(b, w, ex)
				fam := "ransomware"
				if kind == "known family" {
					fam = "ddos"
				}
				labels := samples(fam, w.sample(fam, 10))
				p := testParams()
				b.ReportAllocs()
				seed := uint64(0)
				for b.Loop() {
					seed++
					_, rep, err := fitHead(base, labels, p, rand.New(rand.NewPCG(seed, 1)))
					if err != nil || !rep.Accepted {
						b.Fatalf("fitHead = %v, %s", err, rep.Reason)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/op")
			})
		}
	}
}
