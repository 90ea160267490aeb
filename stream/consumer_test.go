package stream

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestRoundTrip(t *testing.T) {
	e := startBroker(t, EmbeddedConfig{})
	cfg := fastConfig(e)
	topic := topicName(t, "in")
	createTopic(t, cfg, topic, 3)
	reg := prometheus.NewRegistry()
	p := newProducer(t, cfg, reg)
	sent := produceN(t, p, topic, "m", 50)

	var got collector
	r := startConsumer(t, cfg, ConsumerConfig{Group: t.Name(), Topics: []string{topic}, MaxBatch: 16}, reg, got.handle)
	eventually(t, 15*time.Second, wantCount(&got, len(sent)))
	if !r.c.Ready() {
		t.Errorf("Ready() = false while consuming, want true")
	}
	if err := r.stop(t); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	if r.c.Ready() {
		t.Errorf("Ready() = true after Run returned, want false")
	}
	if got, want := sortedValues(got.values()), sortedValues(valuesOf(sent)); !slices.Equal(got, want) {
		t.Fatalf("consumed %v, want %v", got, want)
	}
	if got := testutil.ToFloat64(p.met.produced.WithLabelValues(topic)); got != 50 {
		t.Errorf("produced_messages_total = %v, want 50", got)
	}
	if got := testutil.ToFloat64(r.c.met.consumed.WithLabelValues(t.Name(), topic)); got != 50 {
		t.Errorf("consumed_records_total = %v, want 50", got)
	}
	if got := testutil.ToFloat64(r.c.met.commits.WithLabelValues(t.Name(), topic)); got < 1 {
		t.Errorf("commits_total = %v, want at least 1", got)
	}
	if got := sumOffsets(committed(t, cfg, t.Name(), topic, 3)); got != 50 {
		t.Errorf("committed offsets sum to %d, want 50", got)
	}
	// Caught up, so every partition's lag went to zero.
	for part := range 3 {
		if got := testutil.ToFloat64(r.c.met.lag.WithLabelValues(t.Name(), topic, fmt.Sprint(part))); got != 0 {
			t.Errorf("lag of partition %d = %v, want 0", part, got)
		}
	}
}

// TestLagCountsBacklogBehindTheFetch checks that the lag gauge counts the
// records that piled up at the broker while the stage worked through what
// it had fetched: the fetch's own high watermark knows nothing of them.
func TestLagCountsBacklogBehindTheFetch(t *testing.T) {
	e := startBroker(t, EmbeddedConfig{})
	cfg := fastConfig(e)
	cfg.Reader.LagInterval = 50 * time.Millisecond
	topic := topicName(t, "in")
	createTopic(t, cfg, topic, 1)
	reg := prometheus.NewRegistry()
	p := newProducer(t, cfg, reg)
	produceN(t, p, topic, "first", 1)

	inHandler, release := make(chan struct{}), make(chan struct{})
	var first atomic.Bool
	var got collector
	got.fail = func([]kafka.Message) error {
		if first.CompareAndSwap(false, true) {
			close(inHandler)
			<-release
		}
		return nil
	}
	r := startConsumer(t, cfg, ConsumerConfig{Group: t.Name(), Topics: []string{topic}, MaxBatch: 1}, reg, got.handle)
	releaseOnce := sync.OnceFunc(func() { close(release) })
	t.Cleanup(releaseOnce) // runs before r's cleanup, which waits for Run
	<-inHandler
	produceN(t, p, topic, "behind", 300)
	lag := func(want float64) func() error {
		return func() error {
			if got := testutil.ToFloat64(r.c.met.lag.WithLabelValues(t.Name(), topic, "0")); got != want {
				return fmt.Errorf("lag = %v, want %v", got, want)
			}
			return nil
		}
	}
	eventually(t, 10*time.Second, lag(300))
	releaseOnce()
	eventually(t, 15*time.Second, wantCount(&got, 301))
	eventually(t, 10*time.Second, lag(0))
	if err := r.stop(t); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
}

func TestConsumerReadsSeveralTopics(t *testing.T) {
	e := startBroker(t, EmbeddedConfig{})
	cfg := fastConfig(e)
	a, b := topicName(t, "a"), topicName(t, "b")
	createTopic(t, cfg, a, 2)
	createTopic(t, cfg, b, 1)
	p := newProducer(t, cfg, nil)
	produceN(t, p, a, "a", 10)
	produceN(t, p, b, "b", 10)

	var got collector
	r := startConsumer(t, cfg, ConsumerConfig{Group: t.Name(), Topics: []string{a, b}}, nil, got.handle)
	eventually(t, 15*time.Second, wantCount(&got, 20))
	if err := r.stop(t); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	byTopic := map[string]int{}
	for _, m := range got.msgs {
		byTopic[m.Topic]++
	}
	if byTopic[a] != 10 || byTopic[b] != 10 {
		t.Errorf("consumed per topic %v, want 10 of each", byTopic)
	}
	if want := map[string][]int{a: {0, 1}, b: {0}}; !maps.EqualFunc(r.c.Assignment(), want, slices.Equal) {
		// The assignment of the last generation survives Run.
		t.Errorf("Assignment() = %v, want %v", r.c.Assignment(), want)
	}
}

func TestGroupSplitsPartitionsAndRebalancesWhenMemberLeaves(t *testing.T) {
	e := startBroker(t, EmbeddedConfig{})
	cfg := fastConfig(e)
	topic := topicName(t, "in")
	createTopic(t, cfg, topic, 4)
	p := newProducer(t, cfg, nil)
	cc := ConsumerConfig{Group: t.Name(), Topics: []string{topic}}

	var ga, gb collector
	a := startConsumer(t, cfg, cc, nil, ga.handle)
	eventually(t, 10*time.Second, wantAssigned(a.c, topic, 4))
	b := startConsumer(t, cfg, cc, nil, gb.handle)
	eventually(t, 10*time.Second, func() error {
		pa, pb := a.c.Assignment()[topic], b.c.Assignment()[topic]
		if len(pa) != 2 || len(pb) != 2 {
			return fmt.Errorf("assigned %v and %v, want two partitions each", pa, pb)
		}
		if all := sortedInts(append(slices.Clone(pa), pb...)); !slices.Equal(all, []int{0, 1, 2, 3}) {
			return fmt.Errorf("assigned %v and %v, want partitions 0-3 split between them", pa, pb)
		}
		return nil
	})

	// Five records on each partition: each member sees only its own.
	produceToEach(t, p, topic, "split", 4, 5)
	eventually(t, 15*time.Second, func() error {
		if n := ga.count() + gb.count(); n < 20 {
			return fmt.Errorf("consumed %d records, want 20", n)
		}
		return nil
	})
	wantPartitions(t, "member a", ga.partitions(), a.c.Assignment()[topic])
	wantPartitions(t, "member b", gb.partitions(), b.c.Assignment()[topic])

	if err := b.stop(t); err != nil {
		t.Fatalf("member b: Run = %v, want nil", err)
	}
	eventually(t, 10*time.Second, wantAssigned(a.c, topic, 4))
	before := ga.count()
	produceToEach(t, p, topic, "after", 4, 5)
	eventually(t, 15*time.Second, wantCount(&ga, before+20))
	if got := len(ga.partitions()); got != 4 {
		t.Errorf("member a consumed from %d partitions after b left, want 4", got)
	}
	if got := testutil.ToFloat64(a.c.met.generations.WithLabelValues(t.Name())); got < 3 {
		t.Errorf("member a joined %v generations, want at least 3", got)
	}
	if dups := duplicates(append(ga.values(), gb.values()...)); len(dups) > 0 {
		t.Errorf("records delivered twice: %v", dups)
	}
}

// TestRebalanceWaitsForBatchInHand checks that a member whose handler is
// busy when a rebalance starts finishes the batch and commits it before
// its partitions move, so the new owner does not see those records again.
func TestRebalanceWaitsForBatchInHand(t *testing.T) {
	e := startBroker(t, EmbeddedConfig{})
	cfg := fastConfig(e)
	topic := topicName(t, "in")
	createTopic(t, cfg, topic, 2)
	p := newProducer(t, cfg, nil)
	produceToEach(t, p, topic, "m", 2, 10)
	cc := ConsumerConfig{Group: t.Name(), Topics: []string{topic}, MaxBatch: 100}

	inHandler, release := make(chan struct{}), make(chan struct{})
	var first atomic.Bool
	var ga, gb collector
	ga.fail = func([]kafka.Message) error {
		if first.CompareAndSwap(false, true) {
			close(inHandler)
			<-release
		}
		return nil
	}
	a := startConsumer(t, cfg, cc, nil, ga.handle)
	releaseA := sync.OnceFunc(func() { close(release) })
	t.Cleanup(releaseA) // runs before a's cleanup, which waits for Run
	<-inHandler

	// Once the group is preparing the rebalance b's join starts, the next
	// heartbeat is a's, and it tells a that its generation is over.
	var preparing atomic.Bool
	heartbeat := make(chan struct{})
	var once sync.Once
	e.Cluster().ControlKey(int16(kmsg.Heartbeat), func(kmsg.Request) (kmsg.Response, error, bool) {
		e.Cluster().KeepControl()
		if preparing.Load() {
			once.Do(func() { close(heartbeat) })
		}
		return nil, nil, false
	})
	b := startConsumer(t, cfg, cc, nil, gb.handle)
	eventually(t, 10*time.Second, wantGroupState(cfg, t.Name(), "PreparingRebalance"))
	preparing.Store(true)
	<-heartbeat
	// a knows its generation has ended but holds it, and so the group,
	// until its batch is committed: it must not rejoin meanwhile.
	consistently(t, 500*time.Millisecond, wantGroupState(cfg, t.Name(), "PreparingRebalance"))
	releaseA()

	eventually(t, 10*time.Second, func() error {
		if len(a.c.Assignment()[topic]) != 1 || len(b.c.Assignment()[topic]) != 1 {
			return fmt.Errorf("assigned %v and %v, want one partition each", a.c.Assignment(), b.c.Assignment())
		}
		return nil
	})
	eventually(t, 15*time.Second, func() error {
		if n := len(dedupe(append(ga.values(), gb.values()...))); n < 20 {
			return fmt.Errorf("consumed %d distinct records, want 20", n)
		}
		return nil
	})
	if err := errors.Join(a.stop(t), b.stop(t)); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	if dups := duplicates(append(ga.values(), gb.values()...)); len(dups) > 0 {
		t.Errorf("records delivered twice across the rebalance: %v", dups)
	}
	if got := testutil.ToFloat64(a.c.met.commitErrors.WithLabelValues(t.Name(), "fenced")); got != 0 {
		t.Errorf("fenced commits = %v, want 0", got)
	}
}

// TestRevokedBeforePartitionsMove checks the Revoked hook: when a second
// member joins, the first is told of all its partitions after its last
// batch is committed and before the newcomer holds any; and it is told
// again of what it keeps when it stops.
func TestRevokedBeforePartitionsMove(t *testing.T) {
	e := startBroker(t, EmbeddedConfig{})
	cfg := fastConfig(e)
	topic := topicName(t, "in")
	createTopic(t, cfg, topic, 2)
	p := newProducer(t, cfg, nil)
	produceToEach(t, p, topic, "m", 2, 10)

	// What the hook saw, each time it ran.
	type call struct {
		parts     []int
		committed map[int]int64
		err       error
		newcomer  []int // the second member's partitions at the time
		ctxErr    error
	}
	calls := make(chan call, 4)
	var b atomic.Pointer[Consumer]
	cc := ConsumerConfig{Group: t.Name(), Topics: []string{topic}}
	ccA := cc
	ccA.Revoked = func(ctx context.Context, parts map[string][]int) {
		c := call{parts: parts[topic], ctxErr: ctx.Err()}
		c.committed, c.err = readCommitted(cfg, t.Name(), topic, 2)
		if bc := b.Load(); bc != nil {
			c.newcomer = bc.Assignment()[topic]
		}
		calls <- c
	}
	var ga, gb collector
	a := startConsumer(t, cfg, ccA, nil, ga.handle)
	eventually(t, 15*time.Second, wantCount(&ga, 20))
	eventually(t, 10*time.Second, func() error {
		if got := committed(t, cfg, t.Name(), topic, 2); got[0] != 10 || got[1] != 10 {
			return fmt.Errorf("committed %v, want 10 on each partition", got)
		}
		return nil
	})

	rb := startConsumer(t, cfg, cc, nil, gb.handle)
	b.Store(rb.c)
	var first call
	select {
	case first = <-calls:
	case <-time.After(15 * time.Second):
		t.Fatal("Revoked not called within 15s of a second member joining")
	}
	if first.err != nil {
		t.Fatalf("read committed offsets during Revoked: %v", first.err)
	}
	if !slices.Equal(first.parts, []int{0, 1}) {
		t.Errorf("first Revoked call got partitions %v, want [0 1]", first.parts)
	}
	if first.committed[0] != 10 || first.committed[1] != 10 {
		t.Errorf("committed offsets %v during Revoked, want 10 on each partition", first.committed)
	}
	if len(first.newcomer) != 0 {
		t.Errorf("second member held %v during Revoked, want nothing yet", first.newcomer)
	}
	if first.ctxErr != nil {
		t.Errorf("Revoked's context: %v, want it live", first.ctxErr)
	}
	eventually(t, 10*time.Second, func() error {
		if len(a.c.Assignment()[topic]) != 1 || len(rb.c.Assignment()[topic]) != 1 {
			return fmt.Errorf("assigned %v and %v, want one partition each", a.c.Assignment(), rb.c.Assignment())
		}
		return nil
	})
	kept := a.c.Assignment()[topic]
	if err := a.stop(t); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	select {
	case last := <-calls:
		if !slices.Equal(last.parts, kept) {
			t.Errorf("Revoked on stop got partitions %v, want %v", last.parts, kept)
		}
	default:
		t.Error("Revoked not called when Run stopped")
	}
}

// TestEvictedMemberDoesNotCommit checks that a member whose handler
// outlives the rebalance timeout, and so loses its partitions, does not
// commit for them afterwards: the coordinator fences the commit and the
// new owner's progress stands.
func TestEvictedMemberDoesNotCommit(t *testing.T) {
	e := startBroker(t, EmbeddedConfig{})
	cfg := fastConfig(e)
	cfg.Group.RebalanceTimeout = time.Second
	topic := topicName(t, "in")
	createTopic(t, cfg, topic, 1)
	p := newProducer(t, cfg, nil)
	produceN(t, p, topic, "old", 5)
	cc := ConsumerConfig{Group: t.Name(), Topics: []string{topic}}
	reg := prometheus.NewRegistry()

	inHandler, release := make(chan struct{}), make(chan struct{})
	var first atomic.Bool
	var ga, gb collector
	ga.fail = func([]kafka.Message) error {
		if first.CompareAndSwap(false, true) {
			close(inHandler)
			<-release
		}
		return nil
	}
	a := startConsumer(t, cfg, cc, reg, ga.handle)
	releaseA := sync.OnceFunc(func() { close(release) })
	t.Cleanup(releaseA) // runs before a's cleanup, which waits for Run
	<-inHandler
	b := startConsumer(t, cfg, cc, nil, gb.handle)
	// a does not rejoin within the rebalance timeout, so b takes all.
	eventually(t, 10*time.Second, wantAssigned(b.c, topic, 1))
	produceN(t, p, topic, "new", 5)
	eventually(t, 10*time.Second, wantCount(&gb, 10))
	eventually(t, 5*time.Second, func() error {
		if got := committed(t, cfg, t.Name(), topic, 1)[0]; got != 10 {
			return fmt.Errorf("committed offset %d, want 10", got)
		}
		return nil
	})

	releaseA()
	eventually(t, 10*time.Second, func() error {
		if got := testutil.ToFloat64(a.c.met.commitErrors.WithLabelValues(t.Name(), "fenced")); got != 1 {
			return fmt.Errorf("fenced commits = %v, want 1", got)
		}
		return nil
	})
	if got := committed(t, cfg, t.Name(), topic, 1)[0]; got != 10 {
		t.Errorf("committed offset %d after the evicted member's commit, want 10 (b's)", got)
	}
	if err := errors.Join(a.stop(t), b.stop(t)); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
}

func TestHandlerErrorLeavesBatchUncommitted(t *testing.T) {
	e := startBroker(t, EmbeddedConfig{})
	cfg := fastConfig(e)
	topic := topicName(t, "in")
	createTopic(t, cfg, topic, 1)
	p := newProducer(t, cfg, nil)
	produceN(t, p, topic, "m", 20)
	cc := ConsumerConfig{Group: t.Name(), Topics: []string{topic}, MaxBatch: 4}

	errBroker := errors.New("alerts topic unreachable")
	var failed []kafka.Message
	var ga collector
	ga.fail = func(batch []kafka.Message) error {
		for _, m := range batch {
			if string(m.Value) == "m-10" {
				failed = slices.Clone(batch)
				return errBroker
			}
		}
		return nil
	}
	a := startConsumer(t, cfg, cc, nil, ga.handle)
	if err := a.wait(t, 15*time.Second); !errors.Is(err, errBroker) {
		t.Fatalf("Run = %v, want %v", err, errBroker)
	}
	start := committed(t, cfg, t.Name(), topic, 1)[0]
	if start > failed[0].Offset {
		t.Fatalf("committed offset %d, past the failed batch at %d-%d", start, failed[0].Offset, failed[len(failed)-1].Offset)
	}

	var gb collector
	b := startConsumer(t, cfg, cc, nil, gb.handle)
	eventually(t, 15*time.Second, wantCount(&gb, int(20-start)))
	if err := b.stop(t); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	if got := gb.msgs[0].Offset; got != start {
		t.Errorf("restarted consumer began at offset %d, want the committed %d", got, start)
	}
	again := map[string]bool{}
	for _, v := range gb.values() {
		again[v] = true
	}
	for _, m := range failed {
		if !again[string(m.Value)] {
			t.Errorf("record %s of the failed batch was not delivered again", m.Value)
		}
	}
}

func TestHandlerPanicFailsRun(t *testing.T) {
	e := startBroker(t, EmbeddedConfig{})
	cfg := fastConfig(e)
	topic := topicName(t, "in")
	createTopic(t, cfg, topic, 1)
	produceN(t, newProducer(t, cfg, nil), topic, "m", 3)
	r := startConsumer(t, cfg, ConsumerConfig{Group: t.Name(), Topics: []string{topic}}, nil,
		func(context.Context, []kafka.Message) error { panic("bug in stage") })
	if err := r.wait(t, 10*time.Second); !errors.Is(err, ErrHandlerPanic) || !strings.Contains(err.Error(), "bug in stage") {
		t.Fatalf("Run = %v, want %v naming the panic", err, ErrHandlerPanic)
	}
	if got := committed(t, cfg, t.Name(), topic, 1)[0]; got != -1 {
		t.Errorf("committed offset %d, want none", got)
	}
}

func TestRestartResumesAfterCommit(t *testing.T) {
	e := startBroker(t, EmbeddedConfig{})
	cfg := fastConfig(e)
	topic := topicName(t, "in")
	createTopic(t, cfg, topic, 1)
	p := newProducer(t, cfg, nil)
	produceN(t, p, topic, "first", 10)
	cc := ConsumerConfig{Group: t.Name(), Topics: []string{topic}, MaxBatch: 3}

	var ga collector
	a := startConsumer(t, cfg, cc, nil, ga.handle)
	eventually(t, 15*time.Second, wantCount(&ga, 10))
	if err := a.stop(t); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	if got := committed(t, cfg, t.Name(), topic, 1)[0]; got != 10 {
		t.Fatalf("committed offset %d after consuming 10, want 10", got)
	}

	produceN(t, p, topic, "second", 10)
	var gb collector
	b := startConsumer(t, cfg, cc, nil, gb.handle)
	eventually(t, 15*time.Second, wantCount(&gb, 10))
	if err := b.stop(t); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	// One partition delivers in order, so a redelivered "first" record
	// would precede the "second" ones.
	for _, v := range gb.values() {
		if !strings.HasPrefix(v, "second-") {
			t.Fatalf("restarted consumer got %v, want only second-*", gb.values())
		}
	}
	if n := gb.count(); n != 10 {
		t.Errorf("restarted consumer got %d records, want 10", n)
	}
}

// TestCancelFinishesBatchInHand checks graceful shutdown: cancelling Run's
// context while the handler works lets it finish with a live context, then
// commits its batch and returns nil.
func TestCancelFinishesBatchInHand(t *testing.T) {
	e := startBroker(t, EmbeddedConfig{})
	cfg := fastConfig(e)
	topic := topicName(t, "in")
	createTopic(t, cfg, topic, 1)
	p := newProducer(t, cfg, nil)
	produceN(t, p, topic, "m", 5)

	inHandler, release := make(chan struct{}), make(chan struct{})
	var handled []kafka.Message
	var ctxErr error
	h := func(ctx context.Context, batch []kafka.Message) error {
		close(inHandler)
		<-release
		handled, ctxErr = batch, ctx.Err()
		return ctxErr
	}
	r := startConsumer(t, cfg, ConsumerConfig{Group: t.Name(), Topics: []string{topic}}, nil, h)
	<-inHandler
	r.cancel()
	close(release)
	if err := r.wait(t, 15*time.Second); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	if ctxErr != nil {
		t.Errorf("handler's context: %v, want it live while draining", ctxErr)
	}
	want := handled[len(handled)-1].Offset + 1
	if got := committed(t, cfg, t.Name(), topic, 1)[0]; got != want {
		t.Errorf("committed offset %d, want %d (after the batch in hand)", got, want)
	}
}

// TestCommitRetriesTransientFailure fails the first offset commit with a
// retriable coordinator error and expects the retry to land it.
func TestCommitRetriesTransientFailure(t *testing.T) {
	e := startBroker(t, EmbeddedConfig{})
	cfg := fastConfig(e)
	topic := topicName(t, "in")
	createTopic(t, cfg, topic, 1)
	p := newProducer(t, cfg, nil)
	produceN(t, p, topic, "m", 3)

	var failedOnce atomic.Bool
	e.Cluster().ControlKey(int16(kmsg.OffsetCommit), func(req kmsg.Request) (kmsg.Response, error, bool) {
		creq := req.(*kmsg.OffsetCommitRequest)
		resp := creq.ResponseKind().(*kmsg.OffsetCommitResponse)
		for _, rt := range creq.Topics {
			st := kmsg.NewOffsetCommitResponseTopic()
			st.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				sp := kmsg.NewOffsetCommitResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.ErrorCode = kerr.CoordinatorLoadInProgress.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		failedOnce.Store(true)
		return resp, nil, true
	})
	reg := prometheus.NewRegistry()
	var got collector
	r := startConsumer(t, cfg, ConsumerConfig{Group: t.Name(), Topics: []string{topic}}, reg, got.handle)
	eventually(t, 10*time.Second, func() error {
		if c := committed(t, cfg, t.Name(), topic, 1)[0]; c != 3 {
			return fmt.Errorf("committed offset %d, want 3", c)
		}
		return nil
	})
	if err := r.stop(t); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	if !failedOnce.Load() {
		t.Fatal("the injected commit failure never ran")
	}
	if got := testutil.ToFloat64(r.c.met.commitErrors.WithLabelValues(t.Name(), "error")); got != 1 {
		t.Errorf("commit errors = %v, want 1", got)
	}
	if n := got.count(); n != 3 {
		t.Errorf("consumed %d records, want 3 (a retried commit redelivers nothing)", n)
	}
}

func TestConsumerRejectsBadConfig(t *testing.T) {
	cfg := DefaultConfig()
	for _, tc := range []struct {
		name string
		cc   ConsumerConfig
		want string
	}{
		{"no group", ConsumerConfig{Topics: []string{"t"}}, "group id is required"},
		{"no topics", ConsumerConfig{Group: "g"}, "at least one topic"},
		{"bad topic", ConsumerConfig{Group: "g", Topics: []string{"a/b"}}, `"a/b" is not a valid topic name`},
		{"bad start", ConsumerConfig{Group: "g", Topics: []string{"t"}, StartOffset: 7}, "start offset"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewConsumer(cfg, tc.cc, nil, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewConsumer = %v, want an error containing %q", err, tc.want)
			}
		})
	}
	c, err := NewConsumer(cfg, ConsumerConfig{Group: "g", Topics: []string{"t"}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := c.Run(ctx, nil); err != nil {
		t.Fatalf("first Run with a cancelled context = %v, want nil", err)
	}
	if err := c.Run(ctx, nil); !errors.Is(err, ErrRunning) {
		t.Fatalf("second Run = %v, want %v", err, ErrRunning)
	}
}

func wantAssigned(c *Consumer, topic string, n int) func() error {
	return func() error {
		if got := c.Assignment()[topic]; len(got) != n {
			return fmt.Errorf("assigned %v, want %d partitions", got, n)
		}
		return nil
	}
}

func wantGroupState(cfg Config, group, state string) func() error {
	return func() error {
		tr, err := cfg.Transport()
		if err != nil {
			return err
		}
		defer tr.CloseIdleConnections()
		client := &kafka.Client{Addr: kafka.TCP(cfg.Brokers...), Transport: tr}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		resp, err := client.DescribeGroups(ctx, &kafka.DescribeGroupsRequest{GroupIDs: []string{group}})
		if err != nil {
			return err
		}
		if len(resp.Groups) != 1 || resp.Groups[0].GroupState != state {
			return fmt.Errorf("group %s: %+v, want state %s", group, resp.Groups, state)
		}
		return nil
	}
}

// produceToEach writes n records to each of the topic's partitions.
func produceToEach(t testing.TB, p *Producer, topic, prefix string, partitions, n int) {
	t.Helper()
	var msgs []kafka.Message
	for part := range partitions {
		for i := range n {
			v := fmt.Sprintf("%s-%d-%d", prefix, part, i)
			msgs = append(msgs, AtPartition(kafka.Message{Topic: topic, Key: []byte(v), Value: []byte(v)}, part))
		}
	}
	if err := p.Produce(t.Context(), msgs...); err != nil {
		t.Fatalf("Produce: %v", err)
	}
}

func wantPartitions(t testing.TB, who string, seen map[int]int, assigned []int) {
	t.Helper()
	got := sortedInts(slices.Collect(maps.Keys(seen)))
	if !slices.Equal(got, sortedInts(assigned)) {
		t.Errorf("%s consumed from partitions %v, want its assignment %v", who, got, assigned)
	}
}

func valuesOf(msgs []kafka.Message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = string(m.Value)
	}
	return out
}

func sortedValues(v []string) []string { v = slices.Clone(v); slices.Sort(v); return v }
func sortedInts(v []int) []int         { v = slices.Clone(v); slices.Sort(v); return v }

func dedupe(v []string) []string { return slices.Compact(sortedValues(v)) }

func duplicates(v []string) []string {
	seen := map[string]int{}
	var out []string
	for _, s := range v {
		if seen[s]++; seen[s] == 2 {
			out = append(out, s)
		}
	}
	return out
}

func sumOffsets(m map[int]int64) int64 {
	var n int64
	for _, o := range m {
		n += o
	}
	return n
}

// TestStateMovesWithOffset checks ConsumerConfig.State: a member that
// takes over a partition is handed the state committed with the offset it
// starts at, and a fresh group's partitions start with none.
func TestStateMovesWithOffset(t *testing.T) {
	e := startBroker(t, EmbeddedConfig{})
	cfg := fastConfig(e)
	topic := topicName(t, "in")
	createTopic(t, cfg, topic, 1)
	p := newProducer(t, cfg, nil)
	produceN(t, p, topic, "first", 5)

	// Each member's state counts the records handled on the partition.
	run := func(want int) *countState {
		t.Helper()
		st := &countState{loaded: map[int]string{}, n: map[int]int{}}
		cc := ConsumerConfig{Group: t.Name(), Topics: []string{topic}, MaxBatch: 2, State: st}
		r := startConsumer(t, cfg, cc, nil, st.handle)
		eventually(t, 15*time.Second, func() error {
			if got := st.count(0); got != want {
				return fmt.Errorf("state counts %d records, want %d", got, want)
			}
			return nil
		})
		if err := r.stop(t); err != nil {
			t.Fatalf("Run = %v, want nil", err)
		}
		return st
	}
	first := run(5)
	if got, ok := first.loadedFor(0); !ok || got != "" {
		t.Errorf("first member loaded %q (called: %v), want \"\" for a new group", got, ok)
	}
	produceN(t, p, topic, "second", 3)
	second := run(8)
	if got, _ := second.loadedFor(0); got != "5" {
		t.Errorf("second member loaded %q, want the 5 committed with offset 5", got)
	}
}

// countState is a PartitionState and Handler that counts the records
// handled per partition of one topic.
type countState struct {
	mu     sync.Mutex
	loaded map[int]string
	n      map[int]int
}

func (s *countState) handle(_ context.Context, batch []kafka.Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range batch {
		s.n[m.Partition]++
	}
	return nil
}

func (s *countState) Save(_ string, p int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strconv.Itoa(s.n[p])
}

func (s *countState) Load(_ string, p int, saved string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.loaded[p] = saved
	s.n[p], _ = strconv.Atoi(saved) // "" is 0
}

func (s *countState) count(p int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n[p]
}

func (s *countState) loadedFor(p int) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.loaded[p]
	return v, ok
}
