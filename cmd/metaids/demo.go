package main

import (
	"container/heap"
	"context"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/apache/arrow/go/v15/arrow/memory"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/segmentio/kafka-go"
	"golang.org/x/sync/errgroup"

	"github.com/metaids/metaids/adapter"
	"github.com/metaids/metaids/features"
	"github.com/metaids/metaids/integration"
	"github.com/metaids/metaids/integration/pipeline"
	"github.com/metaids/metaids/model"
	"github.com/metaids/metaids/schemas"
	"github.com/metaids/metaids/stream"
)

// demoConfig is `metaids demo`: `up` on the embedded broker, fed by the
// synthetic traffic generator in real time, with a live view on stdout and a
// scripted analyst who labels the family the model has never seen.
type demoConfig struct {
	Demo struct {
		Duration time.Duration `yaml:"duration" help:"stop after this long (0: run until Ctrl-C)"`
		Hosts    int           `yaml:"hosts" help:"benign internal hosts in the synthetic traffic"`
		Rate     float64       `yaml:"rate" help:"benign flows per second per host"`
		Seed     uint64        `yaml:"seed" help:"seed of the synthetic traffic"`
		Model    string        `yaml:"model" help:"model file to serve (default: train the synthetic model once and cache it)"`
		Analyst  bool          `yaml:"analyst" help:"let a scripted analyst label the new family after it appears"`
		NewFam   string        `yaml:"new-family" help:"family the scripted analyst labels (absent from the synthetic model)"`
		Shots    int           `yaml:"shots" help:"labels the scripted analyst sends"`
		Refresh  time.Duration `yaml:"refresh" help:"interval of the status line"`
	} `yaml:"demo"`
	// Every flag of `up` works here too (-scorer.*, -adapter.*, ...).
	UpConfig `yaml:",inline"`
}

func runDemo(ctx context.Context, args []string, stderr io.Writer) int {
	var cfg demoConfig
	d := &cfg.Demo
	d.Hosts, d.Rate, d.Seed, d.Analyst, d.NewFam, d.Shots, d.Refresh = 500, 1, 1, true, integration.FamilyDNSTunnel, 10, 2*time.Second
	cfg.UpConfig = UpConfig{Config: pipeline.DefaultConfig(), Common: defaultCommon()}
	// The live view is the demo's output; the stages' logs would interleave
	// with it, so only errors show unless -log.level says otherwise.
	cfg.Log = LogConfig{Format: "text", Level: "error"}
	cfg.HTTP.HTTPAddr = ""
	up := &cfg.UpConfig
	up.Ingest.Inputs = []string{"flows.nprobe"}
	// Demo timings: a person is watching.
	up.Features.Batch.Linger = 50 * time.Millisecond
	up.Scorer.Alerts.Republish = 5 * time.Second
	up.Adapter.FitInterval = 5 * time.Second
	up.Adapter.MinLabels = d.Shots // the analyst sends one campaign's worth at once
	up.Kafka.Writer.BatchTimeout = 5 * time.Millisecond
	fs := flag.NewFlagSet("metaids demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	b := bind(fs, &cfg)
	if err := b.load(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		fmt.Fprintf(stderr, "metaids demo: %v\n", err)
		return exitUsage
	}
	log, err := newLogger(stderr, cfg.Log)
	if err == nil {
		err = cfg.UpConfig.Config.Validate()
	}
	if err == nil && (d.Hosts < 1 || d.Rate <= 0 || d.Shots < 1 || d.Refresh <= 0) {
		err = errors.New("-demo.hosts, -demo.rate, -demo.shots and -demo.refresh must be positive")
	}
	if err != nil {
		fmt.Fprintf(stderr, "metaids demo: %v\n", err)
		return exitUsage
	}
	if b.check {
		fmt.Fprintln(stderr, "metaids demo: configuration OK")
		return exitOK
	}
	if d.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d.Duration)
		defer cancel()
	}
	if err := demo(ctx, &cfg, os.Stdout, log); err != nil && ctx.Err() == nil {
		fmt.Fprintf(stderr, "metaids demo: %v\n", err)
		return exitRuntime
	}
	return exitOK
}

func demo(ctx context.Context, cfg *demoConfig, out io.Writer, log *slog.Logger) error {
	t0 := time.Now()
	v := &view{out: out, t0: t0}
	m, err := demoModel(ctx, cfg.Demo.Model, v, log)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	p, err := pipeline.Start(ctx, &cfg.UpConfig.Config, m, log, reg)
	if err != nil {
		return err
	}
	defer p.Close()
	v.printf("broker %s · model %s v%d · classes %s · new family for the analyst: %s",
		p.Kafka.Brokers[0], m.Name, m.Version, strings.Join(m.Classes(), ","), cfg.Demo.NewFam)

	gen := integration.NewTraffic(integration.Seed(cfg.Demo.Seed), integration.Hosts(cfg.Demo.Hosts),
		integration.Rate(cfg.Demo.Rate), integration.Start(time.Now()))
	truth := map[string]string{}
	for _, a := range gen.Attacks() {
		truth[a.Host.String()] = a.Family
		v.printf("scheduled: %s", a)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return p.Run(gctx) })
	g.Go(func() error { return replayLive(gctx, p.Kafka, gen) })
	g.Go(func() error { return v.alerts(gctx, p.Kafka) })
	g.Go(func() error { return v.scores(gctx, p.Kafka, truth, cfg) })
	g.Go(func() error { return v.status(gctx, reg, cfg.Demo.Refresh) })
	if cfg.HTTP.HTTPAddr != "" {
		g.Go(func() error { return serveOps(gctx, cfg.HTTP.HTTPAddr, reg, p.Ready, log) })
	}
	err = g.Wait()
	v.summary()
	return err
}

// demoModel loads the given model, or trains the synthetic one, cached per
// feature-spec hash so later demos start at once.
func demoModel(ctx context.Context, file string, v *view, log *slog.Logger) (*model.Model, error) {
	hash := features.Default().Hash()
	if file != "" {
		return model.Load(file, hash)
	}
	dir, err := os.UserCacheDir()
	if err != nil {
		dir = os.TempDir()
	}
	// The cache key covers what decides the model: the feature spec and the
	// training and synthetic-data defaults.
	tc := defaultTrainConfig()
	key := fnv.New64a()
	fmt.Fprintf(key, "%s %+v %+v", hash, tc.Train, tc.SyntheticData)
	file = filepath.Join(dir, "metaids", fmt.Sprintf("demo-model-%s-%x.bin", hash, key.Sum64()))
	if m, err := model.Load(file, hash); err == nil {
		v.printf("using cached synthetic model %s", file)
		return m, nil
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return nil, err
	}
	v.printf("training the synthetic model (once; cached in %s)…", file)
	tc.Synthetic, tc.Out, tc.Report, tc.Plots, tc.Progress = true, file+".tmp", "none", "none", "off"
	tc.Dataset.Holdout = []string{integration.FamilyDNSTunnel}
	if err := trainMain(ctx, tc, io.Discard, log); err != nil {
		return nil, fmt.Errorf("train the demo model: %w", err)
	}
	if err := os.Rename(file+".tmp", file); err != nil {
		return nil, err
	}
	v.printf("trained in %s", time.Since(v.t0).Round(100*time.Millisecond))
	return model.Load(file, hash)
}

// replayLive ships the generator's flows to flows.nprobe as nProbe would:
// each flow once it has ended, in real time.
func replayLive(ctx context.Context, kcfg stream.Config, gen *integration.Traffic) error {
	p, err := stream.NewProducer(kcfg, nil, nil)
	if err != nil {
		return err
	}
	defer p.Close()
	topic := schemas.Topics{Prefix: kcfg.TopicPrefix}.Input("nprobe")
	var pending endHeap
	next := gen.Next()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		now := time.Now().UnixNano()
		for next.Flow.StartNs <= now {
			heap.Push(&pending, next.Flow)
			next = gen.Next()
		}
		var msgs []kafka.Message
		for pending.Len() > 0 && pending[0].EndNs <= now {
			f := heap.Pop(&pending).(schemas.Flow)
			msgs = append(msgs, kafka.Message{Topic: topic, Key: f.SrcAddr.AppendTo(nil), Value: integration.AppendNProbeJSON(nil, &f)})
		}
		if len(msgs) > 0 {
			if err := p.Produce(ctx, msgs...); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

type endHeap []schemas.Flow

func (h endHeap) Len() int           { return len(h) }
func (h endHeap) Less(i, j int) bool { return h[i].EndNs < h[j].EndNs }
func (h endHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *endHeap) Push(x any)        { *h = append(*h, x.(schemas.Flow)) }
func (h *endHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// view prints the live picture. Its methods run in their own goroutines.
type view struct {
	out io.Writer
	t0  time.Time

	mu          sync.Mutex
	alertsSeen  int
	quietAlerts int
	firstAlert  time.Duration
	version     int64
	labelsSent  time.Time
	fam         map[string]*famStat // per ground-truth family, since the last status
}

type famStat struct{ flows, hit, total, totalHit int }

func (v *view) printf(format string, args ...any) {
	v.mu.Lock()
	defer v.mu.Unlock()
	fmt.Fprintf(v.out, "[%6.1fs] %s\n", time.Since(v.t0).Seconds(), fmt.Sprintf(format, args...))
}

func demoReader(kcfg stream.Config, topic string) (*kafka.Reader, error) {
	// One group per reader: two readers of different topics in one group
	// would make every join a rebalance of both.
	d, err := kcfg.Dialer()
	if err != nil {
		return nil, err
	}
	return kafka.NewReader(kafka.ReaderConfig{
		Brokers: kcfg.Brokers, Topic: topic, GroupID: fmt.Sprintf("metaids-demo-view-%s-%d", topic, os.Getpid()),
		Dialer: d, MaxWait: 100 * time.Millisecond, StartOffset: kafka.FirstOffset, CommitInterval: time.Second,
	}), nil
}

// alerts prints every alert publication as it arrives.
func (v *view) alerts(ctx context.Context, kcfg stream.Config) error {
	r, err := demoReader(kcfg, schemas.Topics{Prefix: kcfg.TopicPrefix}.Alerts())
	if err != nil {
		return err
	}
	defer r.Close()
	codecs, err := schemas.NewCodecs(nil)
	if err != nil {
		return err
	}
	for {
		msg, err := r.ReadMessage(ctx)
		if err != nil {
			return nil // ctx ended
		}
		a, err := codecs.DecodeAlert(msg.Value)
		if err != nil {
			v.printf("undecodable alert: %v", err)
			continue
		}
		v.mu.Lock()
		v.alertsSeen++
		if v.firstAlert == 0 {
			v.firstAlert = time.Since(v.t0)
		}
		quiet := a.Class == "anomaly" && a.Severity == schemas.SeverityLow
		if quiet {
			v.quietAlerts++
		}
		v.mu.Unlock()
		if quiet {
			// Low-severity anomaly-only alerts go to the SIEM like every
			// alert; on screen they would drown the detections, so the
			// status line counts them instead.
			continue
		}
		var why []string
		for _, c := range a.Explanation {
			why = append(why, fmt.Sprintf("%s%+.2f", c.Feature, c.Value))
		}
		v.printf("ALERT %-8s %-15s %-15s → %-15s p=%.2f anomaly=%.2f flows=%d model=v%d  because %s",
			a.Severity, a.Class, a.Host, a.Peer, a.Probability, a.AnomalyScore, a.Count, a.ModelVersion, strings.Join(why, " "))
	}
}

// scores tracks detection per ground-truth family and plays the analyst.
func (v *view) scores(ctx context.Context, kcfg stream.Config, truth map[string]string, cfg *demoConfig) error {
	r, err := demoReader(kcfg, schemas.Topics{Prefix: kcfg.TopicPrefix}.Scores())
	if err != nil {
		return err
	}
	defer r.Close()
	lp, err := stream.NewProducer(kcfg, nil, nil)
	if err != nil {
		return err
	}
	defer lp.Close()
	labelsTopic := schemas.Topics{Prefix: kcfg.TopicPrefix}.Labels()
	mem := memory.NewGoAllocator()
	newFam, seenNew := cfg.Demo.NewFam, 0
	labelled := map[uint64]bool{}
	for {
		msg, err := r.ReadMessage(ctx)
		if err != nil {
			return nil
		}
		sv, err := features.DecodeScores(msg.Value, mem)
		if err != nil {
			v.printf("undecodable scores batch: %v", err)
			continue
		}
		classes := sv.Classes()
		var labels []schemas.Label
		v.mu.Lock()
		if v.fam == nil {
			v.fam = map[string]*famStat{}
		}
		for i := range sv.Len() {
			fam, ok := truth[sv.Host(i)]
			if !ok {
				fam = integration.FamilyBenign
			}
			st := v.fam[fam]
			if st == nil {
				st = &famStat{}
				v.fam[fam] = st
			}
			top := argmax(sv.Probs(i))
			hit := classes[top] == fam
			st.flows++
			st.total++
			if hit {
				st.hit++
				st.totalHit++
			}
			if ver := sv.ModelVersion(i); ver > v.version {
				v.version = ver
			}
			if fam == newFam && cfg.Demo.Analyst && len(labelled) < cfg.Demo.Shots {
				// An analyst looks at a few of the new campaign's flows
				// before labelling: wait until some have gone by.
				if seenNew++; seenNew > 2*cfg.Demo.Shots && !labelled[sv.FlowID(i)] {
					labelled[sv.FlowID(i)] = true
					labels = append(labels, adapter.FlowLabel(sv.FlowID(i), newFam, "demo-analyst", "scripted analyst: new campaign"))
				}
			}
		}
		v.mu.Unlock()
		sv.Release()
		if len(labels) > 0 {
			if err := adapter.SendLabels(ctx, lp, labelsTopic, labels); err != nil {
				return err
			}
			if len(labelled) == cfg.Demo.Shots {
				v.mu.Lock()
				v.labelsSent = time.Now()
				v.mu.Unlock()
				v.printf("ANALYST labelled %d flows of %s: the adapter fits, gates and publishes a new head", cfg.Demo.Shots, newFam)
			}
		}
	}
}

func argmax(p []float32) int {
	k := 0
	for i := range p {
		if p[i] > p[k] {
			k = i
		}
	}
	return k
}

// status prints one line per refresh: rates, lag, model, per-family hits.
func (v *view) status(ctx context.Context, reg *prometheus.Registry, every time.Duration) error {
	t := time.NewTicker(every)
	defer t.Stop()
	var lastIn, lastScored float64
	lastVer := int64(0)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		mfs, _ := reg.Gather()
		in, scored, lag := sumMetric(mfs, "metaids_ingest_records_total"), sumMetric(mfs, "metaids_scorer_flows_total"), sumMetric(mfs, "metaids_stream_consumer_lag")
		dt := every.Seconds()
		v.mu.Lock()
		ver := v.version
		var fams []string
		for name, st := range v.fam {
			if st.flows > 0 {
				fams = append(fams, fmt.Sprintf("%s %d/%d", name, st.hit, st.flows))
			}
			st.flows, st.hit = 0, 0
		}
		sent, seen, quiet := v.labelsSent, v.alertsSeen, v.quietAlerts
		v.mu.Unlock()
		sort.Strings(fams)
		v.printf("ingest %5.0f rec/s · scorer %5.0f flows/s · lag %4.0f · model v%d · alerts %d (%d low anomaly-only) · classified right: %s",
			(in-lastIn)/dt, (scored-lastScored)/dt, lag, ver, seen, quiet, strings.Join(fams, ", "))
		if ver > lastVer && lastVer != 0 {
			msg := fmt.Sprintf("MODEL v%d is live in the scorer", ver)
			if !sent.IsZero() {
				msg += fmt.Sprintf(" (%s after the analyst's last label)", time.Since(sent).Round(10*time.Millisecond))
			}
			v.printf("%s", msg)
		}
		lastIn, lastScored, lastVer = in, scored, ver
	}
}

func sumMetric(mfs []*dto.MetricFamily, name string) float64 {
	var s float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			switch {
			case m.Counter != nil:
				s += m.Counter.GetValue()
			case m.Gauge != nil:
				s += m.Gauge.GetValue()
			}
		}
	}
	return s
}

func (v *view) summary() {
	v.mu.Lock()
	defer v.mu.Unlock()
	fmt.Fprintf(v.out, "\nsummary after %s: %d alert publications, first after %s\n", time.Since(v.t0).Round(time.Second), v.alertsSeen, v.firstAlert.Round(100*time.Millisecond))
	names := make([]string, 0, len(v.fam))
	for n := range v.fam {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		st := v.fam[n]
		fmt.Fprintf(v.out, "  %-16s flows %7d  classified as their family %6.1f%%\n", n, st.total, 100*float64(st.totalHit)/float64(max(st.total, 1)))
	}
}
