package integration_test

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/segmentio/kafka-go"
	"golang.org/x/sync/errgroup"

	"github.com/metaids/metaids/dataset"
	"github.com/metaids/metaids/integration"
	"github.com/metaids/metaids/integration/pipeline"
	"github.com/metaids/metaids/model"
	"github.com/metaids/metaids/schemas"
	"github.com/metaids/metaids/stream"
	"github.com/metaids/metaids/train"
)

var (
	modelOnce sync.Once
	testModel *model.Model
	modelErr  error
)

// trainedModel trains a small synthetic model once per test binary: a few
// seconds, seeded, with every family but the DNS tunnel known.
func trainedModel(t testing.TB) *model.Model {
	t.Helper()
	modelOnce.Do(func() {
		sc := dataset.DefaultSyntheticConfig()
		recs, err := dataset.Synthetic(sc)
		if err != nil {
			modelErr = err
			return
		}
		dc := dataset.DefaultConfig()
		dc.Holdout = []string{integration.FamilyDNSTunnel}
		d, err := dataset.Build(recs, dc)
		if err != nil {
			modelErr = err
			return
		}
		tc := train.DefaultConfig()
		res, err := train.Train(context.Background(), d, tc, nil)
		if err != nil {
			modelErr = err
			return
		}
		testModel = res.Model
	})
	if modelErr != nil {
		t.Fatalf("train the test model: %v", modelErr)
	}
	return testModel.Clone()
}

// testPipelineConfig is the pipeline with test timings on a fresh embedded
// broker: small batches, short linger and waits, so the test is fast.
func testPipelineConfig(t *testing.T) pipeline.Config {
	cfg := pipeline.DefaultConfig()
	cfg.Ingest.Inputs = []string{"flows.nprobe"}
	cfg.Ingest.Replay = true // generated traffic carries its own clock
	cfg.Features.Batch.Linger = 20 * time.Millisecond
	cfg.Kafka.Writer.BatchTimeout = 5 * time.Millisecond
	cfg.Kafka.Reader.MaxWait = 100 * time.Millisecond
	cfg.Kafka.Group.SessionTimeout = 3 * time.Second
	cfg.Kafka.Group.HeartbeatInterval = 300 * time.Millisecond
	cfg.Scorer.Alerts.Republish = 200 * time.Millisecond
	cfg.Model.SigningKey = filepath.Join(t.TempDir(), "signing-key.pem")
	return cfg
}

func eventually(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestPipelineDetectsScanAndBeacon replays synthetic traffic with a port scan
// and C2 beaconing through ingest, scorer and adapter over the embedded
// broker, and checks that the class alerts name exactly the injected hosts
// and families, and that every flow in is scored.
func TestPipelineDetectsScanAndBeacon(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: trains a model and runs the whole pipeline over the embedded broker")
	}
	m := trainedModel(t)
	cfg := testPipelineConfig(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	reg := prometheus.NewRegistry()
	log := slog.New(slog.DiscardHandler)
	p, err := pipeline.Start(ctx, &cfg, m, log, reg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return p.Run(gctx) })

	start := time.Now().Add(-10 * time.Minute)
	gen := integration.NewTraffic(integration.Seed(7), integration.Hosts(40), integration.Start(start),
		integration.WithScan("10.0.0.9"), integration.WithBeacon("10.0.0.33"))
	var msgs []kafka.Message
	topic := schemas.Topics{}.Input("nprobe")
	for {
		ev := gen.Next()
		if ev.Flow.StartNs > start.Add(90*time.Second).UnixNano() {
			break
		}
		msgs = append(msgs, kafka.Message{Topic: topic, Key: ev.Flow.SrcAddr.AppendTo(nil), Value: integration.AppendNProbeJSON(nil, &ev.Flow)})
	}
	prod, err := stream.NewProducer(p.Kafka, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	if err := prod.Produce(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	n := len(msgs)

	eventually(t, 90*time.Second, func() error {
		if got := testutil.ToFloat64(findCounter(t, reg, "metaids_scorer_flows_total")); got < float64(n) {
			return fmt.Errorf("scored %v of %d flows", got, n)
		}
		return nil
	})
	want := map[[2]string]bool{{"10.0.0.9", integration.FamilyPortScan}: true, {"10.0.0.33", integration.FamilyBeacon}: true}
	var got map[[2]string]bool
	eventually(t, 30*time.Second, func() error {
		got = classAlerts(t, ctx, p.Kafka)
		for k := range want {
			if !got[k] {
				return fmt.Errorf("no %s alert for %s yet; class alerts so far: %v", k[1], k[0], got)
			}
		}
		return nil
	})
	cancel()
	if err := g.Wait(); err != nil && ctx.Err() == nil {
		t.Fatalf("stages did not stop cleanly: %v", err)
	}
	for k := range got {
		if !want[k] {
			t.Errorf("class alert %s for %s: not an injected host and family (want exactly %v)", k[1], k[0], want)
		}
	}
	if scored := testutil.ToFloat64(findCounter(t, reg, "metaids_scorer_flows_total")); int(scored) != n {
		t.Errorf("scored flows = %v, want exactly the %d flows in", scored, n)
	}
}

// classAlerts reads the alerts topic from the start and returns the (host,
// family) pairs of its class alerts; anomaly-only alerts are left out.
func classAlerts(t *testing.T, ctx context.Context, kcfg stream.Config) map[[2]string]bool {
	t.Helper()
	codecs, err := schemas.NewCodecs(nil)
	if err != nil {
		t.Fatal(err)
	}
	d, err := kcfg.Dialer()
	if err != nil {
		t.Fatal(err)
	}
	out := map[[2]string]bool{}
	parts, err := d.LookupPartitions(ctx, "tcp", kcfg.Brokers[0], schemas.Topics{}.Alerts())
	if err != nil {
		t.Fatal(err)
	}
	for _, part := range parts {
		conn, err := d.DialLeader(ctx, "tcp", kcfg.Brokers[0], part.Topic, part.ID)
		if err != nil {
			t.Fatal(err)
		}
		first, last, err := conn.ReadOffsets()
		conn.Close()
		if err != nil || last <= first {
			continue
		}
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: kcfg.Brokers, Topic: part.Topic, Partition: part.ID, Dialer: d, MaxWait: 100 * time.Millisecond})
		r.SetOffset(first)
		for off := first; off < last; off++ {
			rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			msg, err := r.ReadMessage(rctx)
			cancel()
			if err != nil {
				t.Fatalf("read alerts partition %d: %v", part.ID, err)
			}
			a, err := codecs.DecodeAlert(msg.Value)
			if err != nil {
				t.Fatalf("decode alert: %v", err)
			}
			if a.Class != "anomaly" {
				out[[2]string{a.Host, a.Class}] = true
			}
		}
		r.Close()
	}
	return out
}

func findCounter(t *testing.T, reg *prometheus.Registry, name string) prometheus.Collector {
	t.Helper()
	return gatheredSum{reg: reg, name: name}
}

// gatheredSum is a collector view of one metric family summed over its
// labels, so testutil.ToFloat64 can read counters registered by the stages.
type gatheredSum struct {
	reg  *prometheus.Registry
	name string
}

func (g gatheredSum) Describe(ch chan<- *prometheus.Desc) {
	ch <- prometheus.NewDesc(g.name+"_sum_view", "sum of "+g.name, nil, nil)
}

func (g gatheredSum) Collect(ch chan<- prometheus.Metric) {
	var s float64
	mfs, _ := g.reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != g.name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if c := m.GetCounter(); c != nil {
				s += c.GetValue()
			}
			if gg := m.GetGauge(); gg != nil {
				s += gg.GetValue()
			}
		}
	}
	ch <- prometheus.MustNewConstMetric(prometheus.NewDesc(g.name+"_sum_view", "sum of "+g.name, nil, nil), prometheus.UntypedValue, s)
}
