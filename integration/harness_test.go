package integration_test

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/apache/arrow/go/v15/arrow/memory"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
	"golang.org/x/sync/errgroup"

	"github.com/metaids/metaids/adapter"
	"github.com/metaids/metaids/features"
	"github.com/metaids/metaids/ingest"
	"github.com/metaids/metaids/integration"
	"github.com/metaids/metaids/integration/pipeline"
	"github.com/metaids/metaids/model"
	"github.com/metaids/metaids/schemas"
	"github.com/metaids/metaids/scorer"
	"github.com/metaids/metaids/stream"
)

// The harness of the accounting and burst tests: one embedded broker with
// the pipeline's topics, a signed model on the models topic, stages run
// in-process under a supervisor that restarts a crashed one (as Kubernetes
// restarts a pod whose process exited non-zero) or in a child process
// that can be killed outright, and readers that follow the input, scores,
// alerts and dead-letter topics into an integration.Ledger.

const (
	harnessPartitions = 4
	harnessModel      = "metaids"
	inputSource       = "nprobe"
	// restartBackoff is the supervisor's wait before restarting a stage
	// whose Run failed: a stage failing at once (its broker gone) must
	// not spin.
	restartBackoff = 200 * time.Millisecond
	// inputMaxBytes is the largest input record the tests produce.
	inputMaxBytes = 4 << 20
	// childEnv carries a child process's childSpec, as JSON.
	childEnv = "METAIDS_ACCOUNTING_CHILD"
)

type harnessOptions struct {
	// persist keeps the broker's state in a directory, so that it can be
	// stopped and started again on the same port.
	persist bool
	// ingestBatch is -ingest.batch.max-records; 0 keeps the test default.
	ingestBatch int
	// allGood makes every input record one flow that must be scored,
	// without remembering each record's value: for floods.
	allGood bool
	// hidden is the served model's hidden size; 0 means 16, which keeps
	// the accounting tests fast.
	hidden int
}

type harness struct {
	t   *testing.T
	ctx context.Context
	dir string
	log *slog.Logger

	mu        sync.Mutex
	broker    *stream.Embedded // nil while stopped
	brokerCfg stream.EmbeddedConfig

	kafka            stream.Config
	topics           schemas.Topics
	input            string
	keyPath, pubPath string
	codecs           *schemas.Codecs
	prod             *stream.Producer

	ledger   *integration.Ledger
	expectMu sync.Mutex
	expect   map[string]expectation // by record value
	alerts   atomic.Int64

	tailCtx    context.Context
	stopTails  context.CancelFunc
	tails      sync.WaitGroup
	tailMu     sync.Mutex
	tailNext   map[string][]int64 // topic → partition → next offset to read
	tailErrors []error

	ingestBatch int
	allGood     bool // see harnessOptions.allGood
}

// expectation is what the test expects of an input record: how many flows
// it holds and their outcome.
type expectation struct {
	flows int
	want  string
}

func newHarness(t *testing.T, opts harnessOptions) *harness {
	t.Helper()
	dir := t.TempDir()
	logPath := filepath.Join(dir, "stages.log")
	lf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{
		t:      t,
		ctx:    t.Context(),
		dir:    dir,
		log:    slog.New(slog.NewTextHandler(lf, &slog.HandlerOptions{Level: slog.LevelInfo})),
		topics: schemas.Topics{},
		ledger: integration.NewLedger(),
		expect: map[string]expectation{},

		ingestBatch: 256,
	}
	h.input = h.topics.Input(inputSource)
	t.Cleanup(func() {
		lf.Close()
		if t.Failed() {
			dumpTail(t, logPath, 80)
		}
	})
	h.brokerCfg = stream.EmbeddedConfig{Addr: "127.0.0.1:0", Partitions: harnessPartitions}
	if opts.persist {
		h.brokerCfg.DataDir = filepath.Join(dir, "broker")
	}
	h.startBroker()
	t.Cleanup(h.stopBroker) // runs last: the stages and readers stop first

	kc := stream.DefaultConfig()
	kc.Brokers = []string{h.brokerCfg.Addr}
	kc.ClientID = "accounting"
	kc.Timeout = 5 * time.Second
	kc.RetryBackoff = 50 * time.Millisecond
	kc.RetryBackoffMax = 500 * time.Millisecond
	kc.Writer.BatchTimeout = 5 * time.Millisecond
	kc.Reader.MaxWait = 100 * time.Millisecond
	kc.Group.SessionTimeout = 3 * time.Second
	kc.Group.HeartbeatInterval = 300 * time.Millisecond
	kc.Group.RebalanceTimeout = 10 * time.Second
	h.kafka = kc

	names := stream.TopicNames{Features: "features", Scores: "scores", Alerts: "alerts", Actions: "actions", Labels: "labels", Models: "models", ScorerState: "scorer.state", DLQ: "flows.dlq"}
	// The input takes records larger than the stages' own produce
	// requests, as a shipper's topic may.
	specs := append(stream.PipelineTopics("", names, harnessPartitions, 1),
		stream.TopicSpec{Name: h.input, Partitions: harnessPartitions, Configs: map[string]string{"max.message.bytes": strconv.Itoa(inputMaxBytes)}})
	if err := stream.EnsureTopics(h.ctx, kc, specs); err != nil {
		t.Fatal(err)
	}
	priv, pubPath, err := pipeline.KeyPair(filepath.Join(dir, "signing-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	h.keyPath, h.pubPath = filepath.Join(dir, "signing-key.pem"), pubPath
	if _, err := pipeline.PublishModel(h.ctx, kc, harnessModelV1(t, cmp.Or(opts.hidden, 16)), priv); err != nil {
		t.Fatal(err)
	}
	if h.codecs, err = schemas.NewCodecs(nil); err != nil {
		t.Fatal(err)
	}
	pc := kc
	pc.Writer.BatchBytes = inputMaxBytes
	if h.prod, err = stream.NewProducer(pc, nil, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.prod.Close() })
	if opts.ingestBatch > 0 {
		h.ingestBatch = opts.ingestBatch
	}
	h.allGood = opts.allGood
	h.follow()
	return h
}

// harnessModelV1 is an untrained model, seeded: the accounting does not
// need good scores, only scores, and a classifier threshold low enough that
// the alerts topic is busy for the faults on it.
func harnessModelV1(t testing.TB, hidden int) *model.Model {
	t.Helper()
	cfg := model.DefaultConfig()
	cfg.Name = harnessModel
	cfg.Features = features.NumFeatures
	cfg.Hidden = hidden
	cfg.Classes = []string{schemas.VerdictBenign, integration.FamilyPortScan}
	cfg.SpecHash = features.Default().Hash()
	m, err := model.New(cfg, rand.New(rand.NewPCG(11, 0)))
	if err != nil {
		t.Fatal(err)
	}
	m.Version = 1
	m.Thresholds[1] = 0.3
	return m
}

func (h *harness) startBroker() {
	h.t.Helper()
	e, err := stream.StartEmbedded(h.brokerCfg)
	if err != nil {
		h.t.Fatalf("start broker: %v", err)
	}
	h.mu.Lock()
	h.broker = e
	h.brokerCfg.Addr = e.Addr() // a restart takes the same port
	h.mu.Unlock()
}

func (h *harness) stopBroker() {
	h.mu.Lock()
	e := h.broker
	h.broker = nil
	h.mu.Unlock()
	if e != nil {
		e.Close()
	}
}

// cluster is the running broker's kfake cluster, for faults.
func (h *harness) cluster() *kfake.Cluster {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.broker == nil {
		h.t.Fatal("broker is stopped")
	}
	return h.broker.Cluster()
}

// ingestConfig is ingest's config in the tests: small input batches
// (-ingest.batch.max-records 256 unless the test says otherwise), so that a
// fault lands among several batches rather than in the only one.
func (h *harness) ingestConfig() ingest.Config {
	c := ingest.DefaultConfig()
	c.Config = h.kafka
	c.Ingest.Group = "accounting-ingest"
	c.Ingest.Inputs = []string{h.input}
	c.Ingest.Replay = true // generated traffic carries its own clock
	c.Ingest.MaxRecordBytes = 64 << 10
	c.Ingest.Batch.MaxRecords = h.ingestBatch
	c.Ingest.Partitions = harnessPartitions
	c.Features.Batch.Linger = 20 * time.Millisecond
	c.Shutdown.Timeout = 10 * time.Second
	return c
}

func (h *harness) scorerConfig() scorer.Config {
	c := scorer.DefaultConfig()
	c.Config = h.kafka
	c.Scorer.Group = "accounting-scorer"
	c.Scorer.Model.Name = harnessModel
	c.Scorer.Model.Keys = []string{h.pubPath}
	c.Scorer.Alerts.Republish = 200 * time.Millisecond
	return c
}

func (h *harness) adapterConfig() adapter.Config {
	c := adapter.DefaultConfig()
	c.Config = h.kafka
	c.Adapter.Group = "accounting-adapter"
	c.Adapter.Model = harnessModel
	c.Adapter.SigningKey = h.keyPath
	return c
}

// ---- input ----

// produce writes msgs to the broker after recording what the test expects
// of each.
func (h *harness) produce(msgs []kafka.Message, exp []expectation) {
	h.t.Helper()
	if h.allGood {
		h.t.Fatal("harness: produce with expectations on an allGood harness")
	}
	h.produceRaw(msgs, exp)
}

// produceGood produces records of one good flow each on an allGood harness.
func (h *harness) produceGood(msgs []kafka.Message) {
	h.t.Helper()
	if !h.allGood {
		h.t.Fatal("harness: produceGood needs an allGood harness")
	}
	h.produceRaw(msgs, nil)
}

func (h *harness) produceRaw(msgs []kafka.Message, exp []expectation) {
	h.t.Helper()
	h.expectMu.Lock()
	for i := range exp {
		h.expect[string(msgs[i].Value)] = exp[i]
	}
	h.expectMu.Unlock()
	if err := h.prod.Produce(h.ctx, msgs...); err != nil {
		h.t.Fatalf("produce %d input records: %v", len(msgs), err)
	}
}

// waitSettled waits until at least n input flows have been read back and
// every one of them has come out scored or dead-lettered.
func (h *harness) waitSettled(n int, timeout time.Duration) {
	h.t.Helper()
	eventually(h.t, timeout, func() error {
		settled, in := h.ledger.Settled()
		if in < n || settled < in {
			return fmt.Errorf("%d of %d input flows settled (%d produced)", settled, in, n)
		}
		return nil
	})
}

// waitDrained waits until ingest has committed every input record and the
// scorer every features message: nothing is in flight any more, so no
// late output (a redelivery's) can follow the reconciliation.
func (h *harness) waitDrained(timeout time.Duration) {
	h.t.Helper()
	client := &kafka.Client{Addr: kafka.TCP(h.kafka.Brokers...), Timeout: 5 * time.Second}
	groups := map[string]string{h.ingestConfig().Ingest.Group: h.input, h.scorerConfig().Scorer.Group: h.topics.Features()}
	eventually(h.t, timeout, func() error {
		for group, topic := range groups {
			end := h.endOffsets(topic)
			parts := make([]int, len(end))
			for p := range parts {
				parts[p] = p
			}
			resp, err := client.OffsetFetch(h.ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: parts}})
			if err != nil {
				return fmt.Errorf("committed offsets of %s: %w", group, err)
			}
			for _, p := range resp.Topics[topic] {
				if end[p.Partition] > 0 && p.CommittedOffset < end[p.Partition] {
					return fmt.Errorf("%s has committed %s/%d to %d of %d", group, topic, p.Partition, p.CommittedOffset, end[p.Partition])
				}
			}
		}
		return nil
	})
}

// ---- readers ----

// follow starts readers of the input, scores, dead-letter and alerts
// topics that feed the ledger until the test ends. They are plain
// partition readers, not a group, and survive a broker restart.
func (h *harness) follow() {
	h.tailCtx, h.stopTails = context.WithCancel(context.Background())
	h.tailNext = map[string][]int64{}
	h.t.Cleanup(func() {
		h.stopTails()
		h.tails.Wait()
	})
	mem := memory.DefaultAllocator
	h.tail(h.input, func(m *kafka.Message) error {
		if h.allGood {
			h.ledger.Input(schemas.Coord{Topic: m.Topic, Partition: int32(m.Partition), Offset: m.Offset}, integration.OutcomeScored)
			return nil
		}
		h.expectMu.Lock()
		exp, ok := h.expect[string(m.Value)]
		h.expectMu.Unlock()
		if !ok {
			return fmt.Errorf("input record %s/%d@%d was not produced by the test", m.Topic, m.Partition, m.Offset)
		}
		for i := range exp.flows {
			h.ledger.Input(schemas.Coord{Topic: m.Topic, Partition: int32(m.Partition), Offset: m.Offset, Index: int32(i)}, exp.want)
		}
		return nil
	})
	h.tail(h.topics.Scores(), func(m *kafka.Message) error {
		v, err := features.DecodeScores(m.Value, mem)
		if err != nil {
			return fmt.Errorf("scores %d@%d: %w", m.Partition, m.Offset, err)
		}
		defer v.Release()
		for i := range v.Len() {
			h.ledger.Scored(v.FlowID(i))
		}
		return nil
	})
	h.tail(h.topics.DLQ(), func(m *kafka.Message) error {
		d, err := h.codecs.DecodeDeadLetter(m.Value)
		if err != nil {
			return fmt.Errorf("dead letter %d@%d: %w", m.Partition, m.Offset, err)
		}
		h.ledger.DeadLettered(&d)
		return nil
	})
	h.tail(h.topics.Alerts(), func(m *kafka.Message) error {
		if _, err := h.codecs.DecodeAlert(m.Value); err != nil {
			return fmt.Errorf("alert %d@%d: %w", m.Partition, m.Offset, err)
		}
		h.alerts.Add(1)
		return nil
	})
}

func (h *harness) tail(topic string, fn func(*kafka.Message) error) {
	h.tailMu.Lock()
	h.tailNext[topic] = make([]int64, harnessPartitions)
	h.tailMu.Unlock()
	d, err := h.kafka.Dialer()
	if err != nil {
		h.t.Fatal(err)
	}
	for p := range harnessPartitions {
		r := kafka.NewReader(kafka.ReaderConfig{
			Brokers: h.kafka.Brokers, Topic: topic, Partition: p, Dialer: d,
			MaxWait: 100 * time.Millisecond, ReadBackoffMin: 50 * time.Millisecond, ReadBackoffMax: 500 * time.Millisecond,
		})
		h.tails.Go(func() {
			defer r.Close()
			for {
				m, err := r.ReadMessage(h.tailCtx)
				if err != nil {
					if h.tailCtx.Err() != nil {
						return
					}
					continue // the reader retries the broker itself
				}
				ferr := fn(&m)
				h.tailMu.Lock()
				h.tailNext[topic][p] = m.Offset + 1
				if ferr != nil && len(h.tailErrors) < 10 {
					h.tailErrors = append(h.tailErrors, ferr)
				}
				h.tailMu.Unlock()
			}
		})
	}
}

// syncTails waits until the readers have read every topic they follow to
// its end, once the stages have stopped.
func (h *harness) syncTails() {
	h.t.Helper()
	ends := map[string][]int64{}
	for _, topic := range []string{h.input, h.topics.Scores(), h.topics.DLQ(), h.topics.Alerts()} {
		ends[topic] = h.endOffsets(topic)
	}
	eventually(h.t, 30*time.Second, func() error {
		h.tailMu.Lock()
		defer h.tailMu.Unlock()
		for topic, end := range ends {
			for p, e := range end {
				if got := h.tailNext[topic][p]; got < e {
					return fmt.Errorf("%s/%d read to %d of %d", topic, p, got, e)
				}
			}
		}
		return nil
	})
	h.tailMu.Lock()
	defer h.tailMu.Unlock()
	for _, err := range h.tailErrors {
		h.t.Errorf("reading the outputs: %v", err)
	}
}

// endOffsets returns the high watermark of each partition of topic.
func (h *harness) endOffsets(topic string) []int64 {
	h.t.Helper()
	d, err := h.kafka.Dialer()
	if err != nil {
		h.t.Fatal(err)
	}
	out := make([]int64, harnessPartitions)
	for p := range out {
		conn, err := d.DialLeader(h.ctx, "tcp", h.kafka.Brokers[0], topic, p)
		if err != nil {
			h.t.Fatalf("end offsets of %s: %v", topic, err)
		}
		out[p], err = conn.ReadLastOffset()
		conn.Close()
		if err != nil {
			h.t.Fatalf("end offset of %s/%d: %v", topic, p, err)
		}
	}
	return out
}

// ---- in-process stages under a supervisor ----

// runner is what the harness needs of a stage.
type runner interface {
	Run(context.Context) error
	Ready() bool
}

// replica is one stage replica run in-process, restarted (a new Stage on a
// fresh registry) whenever its Run fails, until stopped.
type replica struct {
	name   string
	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex
	cur      runner
	regs     []*prometheus.Registry
	failures []string // why each incarnation before the current one ended
	stopErr  error
}

func (h *harness) startIngest(name string) *replica {
	return h.startReplica(name, func(log *slog.Logger, reg *prometheus.Registry) (runner, error) {
		return ingest.New(h.ingestConfig(), log, reg)
	})
}

func (h *harness) startScorer(name string) *replica {
	return h.startReplica(name, func(log *slog.Logger, reg *prometheus.Registry) (runner, error) {
		return scorer.New(h.scorerConfig(), log, reg)
	})
}

func (h *harness) startAdapter(name string) *replica {
	return h.startReplica(name, func(log *slog.Logger, reg *prometheus.Registry) (runner, error) {
		return adapter.New(h.adapterConfig(), log, reg)
	})
}

func (h *harness) startReplica(name string, build func(*slog.Logger, *prometheus.Registry) (runner, error)) *replica {
	ctx, cancel := context.WithCancel(h.ctx)
	r := &replica{name: name, cancel: cancel, done: make(chan struct{})}
	log := h.log.With("replica", name)
	go func() {
		defer close(r.done)
		for {
			reg := prometheus.NewRegistry()
			st, err := build(log, reg)
			if err != nil {
				r.mu.Lock()
				r.stopErr = fmt.Errorf("build %s: %w", name, err)
				r.mu.Unlock()
				return
			}
			r.mu.Lock()
			r.cur, r.regs = st, append(r.regs, reg)
			r.mu.Unlock()
			err = st.Run(ctx)
			if ctx.Err() != nil {
				r.mu.Lock()
				r.stopErr = err
				r.mu.Unlock()
				return
			}
			log.Warn("stage failed; the supervisor restarts it", "err", err)
			r.mu.Lock()
			r.failures = append(r.failures, fmt.Sprint(err))
			r.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-time.After(restartBackoff):
			}
		}
	}()
	h.t.Cleanup(func() { r.stop(h.t) })
	return r
}

// stop cancels the replica, as SIGTERM does, and waits for it to drain.
func (r *replica) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case <-r.done:
	case <-time.After(45 * time.Second):
		t.Errorf("%s did not stop within 45s of cancellation", r.name)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopErr != nil {
		t.Errorf("%s: %v", r.name, r.stopErr)
		r.stopErr = nil
	}
}

// restarts is how many times the supervisor restarted the replica.
func (r *replica) restarts() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.failures)
}

// failure is why the replica's i-th incarnation failed (-1: the last
// that did), or "".
func (r *replica) failure(i int) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if i < 0 {
		i += len(r.failures)
	}
	if i < 0 || i >= len(r.failures) {
		return ""
	}
	return r.failures[i]
}

func (r *replica) ready() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cur != nil && r.cur.Ready()
}

// metric sums a counter or gauge over every incarnation's registry and
// every label value.
func (r *replica) metric(name string) float64 {
	r.mu.Lock()
	regs := slices.Clone(r.regs)
	r.mu.Unlock()
	var s float64
	for _, reg := range regs {
		s += gathered(reg, name)
	}
	return s
}

func gathered(reg prometheus.Gatherer, name string) float64 {
	mfs, err := reg.Gather()
	if err != nil {
		return 0
	}
	var s float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			switch {
			case m.GetCounter() != nil:
				s += m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				s += m.GetGauge().GetValue()
			}
		}
	}
	return s
}

// ---- faults ----

// holdNextProduce holds the next produce request that writes to topic in
// the broker until release is called (or the broker stops), then lets the
// broker handle it as usual. held is closed once a request is held: the
// stage that sent it has a batch in hand whose outputs are not yet
// acknowledged, which is where a kill, an outage or a rebalance hurts most.
func (h *harness) holdNextProduce(topic string) (held <-chan struct{}, release func()) {
	c := h.cluster()
	heldc, releasec := make(chan struct{}), make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(releasec) }) }
	h.t.Cleanup(release)
	var taken atomic.Bool
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		preq := req.(*kmsg.ProduceRequest)
		if !slices.ContainsFunc(preq.Topics, func(t kmsg.ProduceRequestTopic) bool { return t.Topic == topic }) {
			return nil, nil, false // not ours: handled as usual, and the control stays
		}
		c.DropControl()
		// The control runs again for requests that arrive while it
		// sleeps; it holds only the first.
		if !taken.CompareAndSwap(false, true) {
			return nil, nil, false
		}
		close(heldc)
		c.SleepControl(func() { <-releasec })
		return nil, nil, false
	})
	return heldc, release
}

// waitChan waits for ch to close.
func waitChan(t *testing.T, ch <-chan struct{}, timeout time.Duration, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(timeout):
		t.Fatalf("after %s: %s", timeout, what)
	}
}

// ---- child processes ----

// childSpec is what a child process runs: the stages whose configs are
// set, against the parent's broker.
type childSpec struct {
	Ingest  *ingest.Config  `json:"ingest,omitempty"`
	Scorer  *scorer.Config  `json:"scorer,omitempty"`
	Adapter *adapter.Config `json:"adapter,omitempty"`
	// Every is how often the child reports childStats on stdout.
	Every time.Duration `json:"every"`
	// Log is the file the stages log to.
	Log string `json:"log"`
	// Procs, if set, is the child's GOMAXPROCS: the CPUs of a stage's
	// container.
	Procs int `json:"procs,omitempty"`
}

// childStats is one report of a child: its memory, and each consumer
// group's lag (metaids_stream_consumer_lag summed over partitions).
type childStats struct {
	HeapLive  uint64             `json:"heap_live"` // marked live by the last GC
	GCs       uint64             `json:"gcs"`       // GC cycles completed
	HeapAlloc uint64             `json:"heap_alloc"`
	HeapInuse uint64             `json:"heap_inuse"`
	RSS       uint64             `json:"rss"`
	PeakRSS   uint64             `json:"peak_rss"`
	Lag       map[string]float64 `json:"lag"`
	Scored    float64            `json:"scored"`
	Ready     bool               `json:"ready"`
	Failed    string             `json:"failed,omitempty"`
}

// TestAccountingChild is not a test: it is the child process that the kill
// and burst tests start from the test binary, so that a stage can be
// killed with SIGKILL and its memory measured apart from the broker's.
func TestAccountingChild(t *testing.T) {
	raw := os.Getenv(childEnv)
	if raw == "" {
		t.Skip("helper process of the kill and burst tests; runs only when they start it")
	}
	os.Exit(runChild(raw))
}

func runChild(raw string) int {
	var spec childSpec
	if err := json.Unmarshal([]byte(raw), &spec); err != nil {
		fmt.Fprintln(os.Stderr, "child spec:", err)
		return 2
	}
	lf, err := os.OpenFile(spec.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer lf.Close()
	log := slog.New(slog.NewTextHandler(lf, &slog.HandlerOptions{Level: slog.LevelInfo})).With("pid", os.Getpid())
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() { // the parent holds stdin open: EOF means it has gone
		io.Copy(io.Discard, os.Stdin)
		stop()
	}()

	type stage struct {
		name string
		st   runner
	}
	var stages []stage
	var regs []*prometheus.Registry
	var scorerReg *prometheus.Registry
	add := func(name string, build func(*prometheus.Registry) (runner, error)) error {
		reg := prometheus.NewRegistry()
		st, err := build(reg)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		stages, regs = append(stages, stage{name, st}), append(regs, reg)
		if name == "scorer" {
			scorerReg = reg
		}
		return nil
	}
	var errs []error
	if spec.Ingest != nil {
		errs = append(errs, add("ingest", func(reg *prometheus.Registry) (runner, error) { return ingest.New(*spec.Ingest, log, reg) }))
	}
	if spec.Scorer != nil {
		errs = append(errs, add("scorer", func(reg *prometheus.Registry) (runner, error) { return scorer.New(*spec.Scorer, log, reg) }))
	}
	if spec.Adapter != nil {
		errs = append(errs, add("adapter", func(reg *prometheus.Registry) (runner, error) { return adapter.New(*spec.Adapter, log, reg) }))
	}
	if err := errors.Join(errs...); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}

	var failed atomic.Pointer[string]
	out := json.NewEncoder(os.Stdout)
	report := func() {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		rss, peak := procRSS()
		live := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/gc/cycles/total:gc-cycles"}}
		metrics.Read(live)
		s := childStats{HeapLive: live[0].Value.Uint64(), GCs: live[1].Value.Uint64(), HeapAlloc: ms.HeapAlloc, HeapInuse: ms.HeapInuse, RSS: rss, PeakRSS: peak, Lag: map[string]float64{}, Ready: true}
		for _, reg := range regs {
			for g, v := range lagByGroup(reg) {
				s.Lag[g] += v
			}
		}
		if scorerReg != nil {
			s.Scored = gathered(scorerReg, "metaids_scorer_flows_total")
		}
		for _, st := range stages {
			s.Ready = s.Ready && st.st.Ready()
		}
		if f := failed.Load(); f != nil {
			s.Failed = *f
		}
		out.Encode(s)
	}
	g, gctx := errgroup.WithContext(ctx)
	for _, st := range stages {
		g.Go(func() error {
			if err := st.st.Run(gctx); err != nil {
				msg := st.name + ": " + err.Error()
				failed.CompareAndSwap(nil, &msg)
				log.Error("stage failed", "stage", st.name, "err", err)
				return err
			}
			return nil
		})
	}
	done := make(chan error, 1)
	go func() { done <- g.Wait() }()
	tick := time.NewTicker(spec.Every)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			report()
			if err != nil {
				return 1
			}
			return 0
		case <-tick.C:
			report()
		}
	}
}

// procRSS returns this process's resident set size and its peak, in bytes,
// from /proc (0, 0 where there is none).
func procRSS() (rss, peak uint64) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, 0
	}
	for line := range strings.Lines(string(b)) {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "VmRSS":
			rss = kb << 10
		case "VmHWM":
			peak = kb << 10
		}
	}
	return rss, peak
}

func lagByGroup(reg prometheus.Gatherer) map[string]float64 {
	out := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		return out
	}
	for _, mf := range mfs {
		if mf.GetName() != "metaids_stream_consumer_lag" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "group" {
					out[l.GetValue()] += m.GetGauge().GetValue()
				}
			}
		}
	}
	return out
}

// child is a child process running stages.
type child struct {
	name  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	done  chan struct{}

	mu      sync.Mutex
	last    childStats
	peak    childStats // each field's maximum over the reports
	live    []uint64   // HeapLive after each GC cycle the reports saw
	reports int
	err     error // from Wait
	killed  bool
}

// startChild starts spec's stages in a child process of the test binary.
func (h *harness) startChild(name string, spec childSpec) *child {
	h.t.Helper()
	spec.Log = filepath.Join(h.dir, name+".log")
	if spec.Every == 0 {
		spec.Every = 100 * time.Millisecond
	}
	raw, err := json.Marshal(spec)
	if err != nil {
		h.t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestAccountingChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"="+string(raw))
	if spec.Procs > 0 {
		cmd.Env = append(cmd.Env, "GOMAXPROCS="+strconv.Itoa(spec.Procs))
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		h.t.Fatal(err)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		h.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		h.t.Fatal(err)
	}
	c := &child{name: name, cmd: cmd, stdin: stdin, done: make(chan struct{}), peak: childStats{Lag: map[string]float64{}}}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var s childStats
			if json.Unmarshal(sc.Bytes(), &s) != nil || s.Lag == nil {
				continue // the test framework's own lines
			}
			c.observe(s)
		}
		err := cmd.Wait()
		c.mu.Lock()
		c.err = err
		if err != nil && stderr.Len() > 0 {
			c.err = fmt.Errorf("%w: %s", err, bytes.TrimSpace(stderr.Bytes()))
		}
		c.mu.Unlock()
		close(c.done)
	}()
	h.t.Cleanup(func() {
		c.stop(h.t)
		if h.t.Failed() {
			dumpTail(h.t, spec.Log, 40)
		}
	})
	return c
}

func (c *child) observe(s childStats) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s.GCs != c.last.GCs {
		c.live = append(c.live, s.HeapLive)
	}
	c.last = s
	c.reports++
	c.peak.HeapLive = max(c.peak.HeapLive, s.HeapLive)
	c.peak.HeapAlloc = max(c.peak.HeapAlloc, s.HeapAlloc)
	c.peak.HeapInuse = max(c.peak.HeapInuse, s.HeapInuse)
	c.peak.RSS = max(c.peak.RSS, s.RSS)
	c.peak.PeakRSS = max(c.peak.PeakRSS, s.PeakRSS)
	for g, v := range s.Lag {
		c.peak.Lag[g] = max(c.peak.Lag[g], v)
	}
	if s.Failed != "" && c.peak.Failed == "" {
		c.peak.Failed = s.Failed
	}
}

// stats returns the latest report and each field's peak so far.
func (c *child) stats() (last, peak childStats) {
	c.mu.Lock()
	defer c.mu.Unlock()
	peak = c.peak
	peak.Lag = maps.Clone(c.peak.Lag)
	return c.last, peak
}

// liveHeaps returns the live heap after each GC cycle since the window
// began, in order.
func (c *child) liveHeaps() []uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.live)
}

// resetPeaks starts a new measurement window.
func (c *child) resetPeaks() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.peak = childStats{Lag: map[string]float64{}}
	c.live = nil
}

// kill sends SIGKILL: the stages get no chance to finish, commit or leave.
func (c *child) kill(t *testing.T) {
	t.Helper()
	c.mu.Lock()
	c.killed = true
	c.mu.Unlock()
	if err := c.cmd.Process.Kill(); err != nil {
		t.Fatalf("kill %s: %v", c.name, err)
	}
	waitChan(t, c.done, 10*time.Second, c.name+" still running after SIGKILL")
}

// throttle emulates a CPU limit on the child, as a container's CFS quota
// does: in every period the child runs for share of it and is stopped
// (SIGSTOP) for the rest. Lift the limit with lift.
func (c *child) throttle(share float64, period time.Duration) *throttle {
	th := &throttle{stop: make(chan struct{}), done: make(chan struct{}), holds: make(chan chan struct{}), resumes: make(chan struct{})}
	run := time.Duration(share * float64(period))
	go func() {
		defer close(th.done)
		p := c.cmd.Process
		defer p.Signal(syscall.SIGCONT)
		t := time.NewTimer(run)
		defer t.Stop()
		running := true
		for {
			select {
			case <-th.stop:
				return
			case <-c.done:
				return
			case ack := <-th.holds:
				p.Signal(syscall.SIGSTOP)
				close(ack)
				select {
				case <-th.resumes:
				case <-th.stop:
					return
				case <-c.done:
					return
				}
				p.Signal(syscall.SIGCONT)
				running = true
				t.Reset(run)
			case <-t.C:
				if running {
					p.Signal(syscall.SIGSTOP)
					t.Reset(period - run)
				} else {
					p.Signal(syscall.SIGCONT)
					t.Reset(run)
				}
				running = !running
			}
		}
	}()
	return th
}

// throttle is a child's CPU limit.
type throttle struct {
	stop, done chan struct{}
	holds      chan chan struct{}
	resumes    chan struct{}
	once       sync.Once
}

// hold stops the child until resume: time the child does not see pass,
// such as the time a test takes to produce what the child should see
// arrive at once.
func (th *throttle) hold() {
	ack := make(chan struct{})
	th.holds <- ack
	<-ack
}

// resume lets the child run under its limit again after hold.
func (th *throttle) resume() { th.resumes <- struct{}{} }

// lift removes the limit and lets the child run freely.
func (th *throttle) lift() {
	th.once.Do(func() { close(th.stop) })
	<-th.done
}

// stop sends SIGTERM and waits for the stages to drain and the process to
// exit; a non-zero exit fails the test.
func (c *child) stop(t *testing.T) {
	t.Helper()
	select {
	case <-c.done:
	default:
		c.cmd.Process.Signal(syscall.SIGCONT) // in case it is throttled
		c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.done:
		case <-time.After(45 * time.Second):
			t.Errorf("%s did not stop within 45s of SIGTERM", c.name)
			c.cmd.Process.Kill()
			<-c.done
		}
	}
	c.stdin.Close()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil && !c.killed {
		t.Errorf("%s exited: %v", c.name, c.err)
	}
}

// dumpTail logs the last n lines of a log file.
func dumpTail(t *testing.T, path string, n int) {
	b, err := os.ReadFile(path)
	if err != nil {
		return
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	t.Logf("last %d lines of %s:\n%s", len(lines), filepath.Base(path), strings.Join(lines, "\n"))
}
