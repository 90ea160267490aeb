package scorer

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/segmentio/kafka-go"

	"github.com/metaids/metaids/features"
	"github.com/metaids/metaids/model"
	"github.com/metaids/metaids/schemas"
)

// benchModel is a model of the production shape (F=36, H=64, 8 classes)
// whose "scan" class fires on lone unanswered SYNs. Like a trained model,
// its normalisation is fitted to the traffic (dt_prev, dst_repeat and
// dt_dst included, which only the scorer computes) and its anomaly
// threshold is the 99th percentile of the anomaly scores, both from a
// calibration pass over msgs.
func benchModel(tb testing.TB, msgs [][]byte) *model.Model {
	tb.Helper()
	m := newTestModel(tb, 1, 64, "benign", "scan", "bruteforce", "beacon", "exfil", "dos", "lateral", "miner")
	spec := features.Default()
	syn, _ := spec.Index("tcp_syn")
	noResp, _ := spec.Index("no_response")
	d, hid := m.EmbeddingDim(), m.Hidden()
	m.P.ClsW[1*d+hid+syn] += 10
	m.P.ClsW[1*d+hid+noResp] += 10
	m.P.ClsB[1] -= 12
	for k := range m.Thresholds {
		m.Thresholds[k] = 0.9
	}
	m.AnomalyThreshold = 0
	m.WeightsChanged()

	// With the identity normalisation, the embedding's tail is the raw
	// feature vector the scorer fed the model. The benchmark replays msgs
	// over and over on one core, so its hosts have seen every responder
	// before (dst_repeat 1): fit on a second pass, as it sees them.
	var x []float32
	twice := calibrate(tb, m, append(slices.Clip(msgs), msgs...))
	for _, sc := range twice[len(twice)/2:] {
		x = append(x, sc.Embedding[hid:]...)
	}
	if err := m.SetNorm(model.FitNorm(x, features.NumFeatures, 1e-3)); err != nil {
		tb.Fatal(err)
	}
	// Anomaly scores from hosts with history, as the benchmark sees them:
	// the second pass over the messages.
	var an []float32
	warm := calibrate(tb, m, append(slices.Clip(msgs), msgs...))
	for _, sc := range warm[len(warm)/2:] {
		an = append(an, sc.Anomaly)
	}
	slices.Sort(an)
	m.AnomalyThreshold = an[len(an)*99/100]
	return m
}

// calibrate scores msgs with a fresh core and returns the scores.
func calibrate(tb testing.TB, m *model.Model, msgs [][]byte) []features.Score {
	tb.Helper()
	s, _, _ := newCore(tb, testSettings(), m, nil)
	var out []features.Score
	for _, msg := range msgs {
		out = append(out, scores(tb, s, score(tb, s, 0, msg))...)
	}
	return out
}

// benchMessages returns count features messages of flows each over hosts
// hosts, one in twenty of them scanning, in time order.
func benchMessages(tb testing.TB, count, flows, hosts int) [][]byte {
	tb.Helper()
	rng := rand.New(rand.NewPCG(42, 0))
	addrs := make([]string, hosts)
	for i := range addrs {
		addrs[i] = netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}).String()
	}
	msgs := make([][]byte, count)
	start := t0
	var off int64
	for i := range msgs {
		batch := make([]schemas.Flow, flows)
		for j := range batch {
			h := rng.IntN(hosts)
			start += int64(time.Millisecond)
			batch[j] = flowOf(addrs[h], start, off, h%20 == 0, rng)
			off++
		}
		msgs[i] = encodeFlows(tb, batch)
	}
	return msgs
}

// BenchmarkScorer measures the scorer's work per features message: decode,
// plan waves, gather, step, scatter, build and encode the scores, raise,
// aggregate and encode alerts, and checkpoint the changed hosts every 30
// messages (everything but the network). Run it at
// GOMAXPROCS=1 with -cpu 1, as the acceptance target (300,000 flows/s) is
// per core.
func BenchmarkScorer(b *testing.B) {
	for _, size := range []struct{ flows, hosts int }{{4096, 2000}, {512, 256}} {
		b.Run(fmt.Sprintf("flows=%d/hosts=%d", size.flows, size.hosts), func(b *testing.B) {
			msgs := benchMessages(b, 16, size.flows, size.hosts)
			m := benchModel(b, msgs)
			s, _, clk := newCore(b, testSettings(), m, nil)
			batch := make([]kafka.Message, 1)
			var em emitter
			run := func(i int) {
				batch[0] = kafka.Message{Topic: s.featuresTopic, Key: []byte("k"), Value: msgs[i%len(msgs)]}
				em.reset()
				s.scoreBatch(batch, &em)
				s.checkpointDue(&em, s.now(), false) // a round every 30 batches
				clk.advance(time.Second)             // grown alerts are re-published every 10 batches
			}
			for i := range msgs { // every host seen once, alerts opened
				run(i)
			}
			b.ReportAllocs()
			n, alerts, i := 0, 0, 0
			cpu0 := cpuTime()
			for b.Loop() {
				run(i)
				i++
				n += size.flows
				alerts += em.alerts
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "flows/s")
			// The same per second of CPU the process used: on a shared
			// machine wall time also counts other processes' turns.
			b.ReportMetric(float64(n)/(cpuTime()-cpu0).Seconds(), "flows/cpu-s")
			b.ReportMetric(float64(alerts)/float64(i), "alerts/op")
			alerting := testutil.ToFloat64(s.met.alertFlows.WithLabelValues(kindClass)) + testutil.ToFloat64(s.met.alertFlows.WithLabelValues(kindAnomaly))
			b.ReportMetric(alerting/float64(i+len(msgs)), "alerting-flows/op")
		})
	}
}

// BenchmarkStoreBytesPerHost reports the memory of host state per host at
// H=64, from the store's estimate (the metaids_scorer_state_bytes gauge);
// TestStoreMemory holds that estimate against the heap.
func BenchmarkStoreBytesPerHost(b *testing.B) {
	for _, hosts := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprintf("hosts=%d", hosts), func(b *testing.B) {
			var st *store
			for b.Loop() {
				st = fillStore(hosts, 64)
			}
			b.ReportMetric(float64(st.bytes())/float64(hosts), "B/host")
			b.ReportMetric(float64(hosts)/(b.Elapsed().Seconds()/float64(b.N)), "hosts/s")
		})
	}
}

// cpuTime returns the CPU time this process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
