package stream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"runtime/debug"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
)

// Handler processes one fetched batch. It returns only after every record it
// produced has been acknowledged by the broker; the Consumer then commits.
// A bad record never makes it fail: the handler dead-letters and counts it.
// An error means the infrastructure failed; nothing is committed and Run
// returns the error. The batch holds records of one or more partitions,
// each partition's records in offset order. ctx is not cancelled when Run's
// context is, only when the shutdown timeout after that runs out, so the
// handler can finish the batch in hand.
type Handler func(ctx context.Context, batch []kafka.Message) error

// ConsumerConfig says what a Consumer reads; the Kafka settings come from
// Config. Stages fill it from their own flags.
type ConsumerConfig struct {
	// Group is the consumer group id.
	Group string
	// Topics are the full names, prefix included, of the topics to read.
	// Create them first (EnsureTopics): a topic missing at a rebalance,
	// like a partition added later, is only picked up at the next one.
	Topics []string
	// MaxBatch is the most records handed to one Handler call.
	// Default: 500.
	MaxBatch int
	// ShutdownTimeout bounds the drain after Run's context is cancelled:
	// finishing the batch in hand, committing and leaving the group.
	// Default: 30s.
	ShutdownTimeout time.Duration
	// StartOffset is where the group starts on a partition it has never
	// committed: kafka.FirstOffset or kafka.LastOffset. Default:
	// kafka.FirstOffset, so a new group misses nothing retained.
	StartOffset int64
	// Revoked, if set, is called with this member's partitions when their
	// generation ends, by a rebalance or because Run is stopping, once the
	// last batch handed out is committed and before the group can hand the
	// partitions to another member: the moment to save per-partition state
	// for their next owner. kafka-go's groups are eager, so every
	// partition is revoked, including those that come back at once. Its
	// context ends after half of -kafka.group.rebalance-timeout or after
	// -kafka.timeout, whichever is sooner, so that the member still rejoins
	// in time. It is not called when a handled batch was left uncommitted
	// (a fenced commit, a handler error): the state would then hold
	// records that the next owner is given again.
	Revoked func(ctx context.Context, partitions map[string][]int)
	// State, if set, is per-partition state of the stage that is committed
	// with each offset and handed back with the partition: see
	// PartitionState.
	State PartitionState
}

// PartitionState is state a stage keeps per input partition that must move
// with the partition's committed offset: a restarted member, or the one a
// rebalance hands the partition to, must resume with the state as of the
// offset it resumes at, not with none. The Consumer commits it in the
// offset commit's metadata, so it is exactly as durable and as fenced as the
// offset; Kafka bounds metadata by offset.metadata.max.bytes (4096 bytes
// by default).
type PartitionState interface {
	// Save returns the state of topic/partition after the records handed
	// out so far. The Consumer calls it when it commits their offset.
	Save(topic string, partition int) string
	// Load replaces the state of topic/partition with saved, the value
	// committed with the offset the partition is assigned at ("" if none
	// was). The Consumer calls it for every assigned partition at the
	// start of each generation, before it hands out any of their records.
	Load(topic string, partition int, saved string)
}

func (cc *ConsumerConfig) applyDefaults() {
	if cc.MaxBatch == 0 {
		cc.MaxBatch = 500
	}
	if cc.ShutdownTimeout == 0 {
		cc.ShutdownTimeout = 30 * time.Second
	}
	if cc.StartOffset == 0 {
		cc.StartOffset = kafka.FirstOffset
	}
}

func (cc ConsumerConfig) validate() error {
	var errs []error
	if cc.Group == "" {
		errs = append(errs, errors.New("consumer group id is required"))
	}
	if len(cc.Topics) == 0 {
		errs = append(errs, errors.New("consumer needs at least one topic"))
	}
	for _, t := range cc.Topics {
		if t == "" || !validTopicChars(t) {
			errs = append(errs, fmt.Errorf("consumer topic %q is not a valid topic name", t))
		}
	}
	if cc.MaxBatch < 1 {
		errs = append(errs, fmt.Errorf("consumer max batch must be at least 1, got %d", cc.MaxBatch))
	}
	if cc.ShutdownTimeout < 0 {
		errs = append(errs, fmt.Errorf("consumer shutdown timeout must not be negative, got %v", cc.ShutdownTimeout))
	}
	if cc.StartOffset != kafka.FirstOffset && cc.StartOffset != kafka.LastOffset {
		errs = append(errs, fmt.Errorf("consumer start offset must be kafka.FirstOffset or kafka.LastOffset, got %d", cc.StartOffset))
	}
	return errors.Join(errs...)
}

// Consumer is one member of a consumer group running the at-least-once
// loop: fetch a batch, hand it to the Handler, commit it. Create it with
// NewConsumer and call Run once.
type Consumer struct {
	cfg    Config
	cc     ConsumerConfig
	log    *slog.Logger
	met    *metrics
	dialer *kafka.Dialer
	// client commits offsets and fetches their metadata: kafka-go's
	// Generation.CommitOffsets carries no metadata. Its requests name the
	// generation, so the coordinator fences them as it fences the
	// Generation's own.
	client *kafka.Client
	tr     *kafka.Transport // the client's

	started  atomic.Bool
	ready    atomic.Bool
	mu       sync.Mutex
	assigned map[string][]int
	lag      *lagTracker // the current generation's; Run's goroutine sets it
}

// NewConsumer returns a Consumer for cc with the Kafka settings of cfg. It
// does not contact the brokers until Run.
func NewConsumer(cfg Config, cc ConsumerConfig, log *slog.Logger, reg prometheus.Registerer) (*Consumer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("stream config: %w", err)
	}
	cc.applyDefaults()
	if err := cc.validate(); err != nil {
		return nil, err
	}
	d, err := cfg.Dialer()
	if err != nil {
		return nil, err
	}
	tr, err := cfg.Transport()
	if err != nil {
		return nil, err
	}
	cc.Topics = slices.Clone(cc.Topics)
	return &Consumer{
		cfg:    cfg,
		cc:     cc,
		log:    orDiscard(log).With("group", cc.Group),
		met:    newMetrics(reg),
		dialer: d,
		client: &kafka.Client{Addr: kafka.TCP(cfg.Brokers...), Transport: tr, Timeout: cfg.Timeout},
		tr:     tr,
	}, nil
}

// Ready reports whether the Consumer has joined its group and not since
// failed to rejoin. A member with no partitions assigned is still ready.
func (c *Consumer) Ready() bool { return c.ready.Load() }

// Assignment returns the partitions of each topic this member holds in the
// current generation.
func (c *Consumer) Assignment() map[string][]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string][]int, len(c.assigned))
	for t, ps := range c.assigned {
		out[t] = slices.Clone(ps)
	}
	return out
}

// errStopping and errGenerationEnded end a generation without failing Run.
var (
	errStopping        = errors.New("stopping")
	errGenerationEnded = errors.New("generation ended")
)

// Run joins the group and hands batches to h until ctx is cancelled or an
// error that retrying cannot fix occurs. On cancellation it finishes the
// batch in hand, commits it under a fresh context bounded by the shutdown
// timeout, leaves the group and returns nil. If h fails, nothing of that
// batch is committed and Run returns the error. Join failures from
// authentication, authorisation or bad group settings are returned too;
// others (a coordinator moving, a broker restarting) are retried.
func (c *Consumer) Run(ctx context.Context, h Handler) error {
	if !c.started.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer c.ready.Store(false)
	defer c.tr.CloseIdleConnections()

	// drain is what the handler and the final commit run under: it
	// survives ctx's cancellation by ShutdownTimeout, so the batch in hand
	// can be finished and committed rather than abandoned half-produced.
	drain, cancelDrain := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelDrain()
	stopDrainTimer := context.AfterFunc(ctx, func() {
		c.log.Info("draining", "timeout", c.cc.ShutdownTimeout)
		time.AfterFunc(c.cc.ShutdownTimeout, cancelDrain)
	})
	defer stopDrainTimer()

	cg, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID:                c.cc.Group,
		Brokers:           c.cfg.Brokers,
		Dialer:            c.dialer,
		Topics:            c.cc.Topics,
		HeartbeatInterval: c.cfg.Group.HeartbeatInterval,
		SessionTimeout:    c.cfg.Group.SessionTimeout,
		RebalanceTimeout:  c.cfg.Group.RebalanceTimeout,
		// kafka-go waits this long after every failed join, without
		// growing it, so it takes the cap: a broker that is down is not
		// hammered, and its failures are not logged ten times a second.
		JoinGroupBackoff: c.cfg.RetryBackoffMax,
		StartOffset:      c.cc.StartOffset,
		Timeout:          c.cfg.Timeout,
		Logger:           Logger(c.log),
		ErrorLogger:      ErrorLogger(c.log),
	})
	if err != nil {
		return fmt.Errorf("consumer group %s: %w", c.cc.Group, err)
	}
	defer c.leave(cg)

	for {
		gen, err := cg.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if fatalJoinError(err) || securityError(err) {
				c.log.Error("join group failed", "err", err)
				return fmt.Errorf("join group %s: %w", c.cc.Group, err)
			}
			c.ready.Store(false)
			c.log.Warn("join group failed, retrying", "err", err)
			continue
		}
		err = c.runGeneration(ctx, drain, gen, h)
		switch {
		case errors.Is(err, errGenerationEnded):
			continue
		case errors.Is(err, errStopping):
			return nil
		default:
			c.log.Error("consumer stopped", "err", err)
			return err
		}
	}
}

// leave closes the group, which leaves it so the remaining members take
// over at once instead of after a session timeout. A coordinator that does
// not answer must not hold up the process's exit for long.
func (c *Consumer) leave(cg *kafka.ConsumerGroup) {
	done := make(chan struct{})
	go func() {
		cg.Close()
		close(done)
	}()
	t := time.NewTimer(c.cc.ShutdownTimeout)
	defer t.Stop()
	select {
	case <-done:
		c.log.Info("left group")
	case <-t.C:
		c.log.Warn("leave group timed out", "timeout", c.cc.ShutdownTimeout)
	}
}

// fatalJoinError reports join failures, besides security errors, that
// retrying cannot fix: the group's settings are wrong.
func fatalJoinError(err error) bool {
	var kerr kafka.Error
	if !errors.As(err, &kerr) {
		return false
	}
	switch kerr {
	case kafka.InvalidSessionTimeout, kafka.InconsistentGroupProtocol, kafka.InvalidGroupId, kafka.UnsupportedVersion:
		return true
	}
	return false
}

// fenced reports commit failures that mean the generation is over: the
// partitions may belong to another member now, so the batch is theirs to
// redo and must not be committed by us.
func fenced(err error) bool {
	return errors.Is(err, kafka.RebalanceInProgress) || errors.Is(err, kafka.IllegalGeneration) ||
		errors.Is(err, kafka.UnknownMemberId) || errors.Is(err, kafka.FencedInstanceID)
}

// runGeneration consumes the partitions of one generation. It returns
// errGenerationEnded when a rebalance ends the generation, errStopping when
// ctx is cancelled, and any other error when Run must fail.
func (c *Consumer) runGeneration(ctx, drain context.Context, gen *kafka.Generation, h Handler) error {
	// kafka-go rejoins the group only once every function started on the
	// generation has returned, and closes the coordinator connection
	// then. This guard holds both until we are done with the batch in
	// hand: a rebalance waits for its commit, which the coordinator still
	// accepts under the old generation while it waits for us, and no one
	// else can be assigned our partitions in between.
	release := make(chan struct{})
	defer close(release)
	gctxc := make(chan context.Context, 1)
	gen.Start(func(gctx context.Context) {
		gctxc <- gctx
		<-gctx.Done()
		<-release
	})
	gctx := <-gctxc

	assigned := make(map[string][]int, len(gen.Assignments))
	for topic, pas := range gen.Assignments {
		for _, pa := range pas {
			assigned[topic] = append(assigned[topic], pa.ID)
		}
		slices.Sort(assigned[topic])
	}
	if c.cc.State != nil {
		if err := c.loadState(gctx, gen, assigned); err != nil {
			if ctx.Err() != nil {
				return errStopping
			}
			if gctx.Err() != nil {
				return errGenerationEnded
			}
			return err
		}
	}
	c.mu.Lock()
	c.assigned = assigned
	c.mu.Unlock()
	c.lag = newLagTracker(c.cc.Group, c.met.lag)
	for topic, pas := range gen.Assignments {
		for _, pa := range pas {
			c.lag.assign(topic, pa.ID, pa.Offset)
		}
	}
	c.ready.Store(true)
	c.met.generations.WithLabelValues(c.cc.Group).Inc()
	c.log.Info("joined group", "generation", gen.ID, "member", gen.MemberID, "assigned", assigned)

	fctx, cancelFetch := context.WithCancel(ctx)
	stop := context.AfterFunc(gctx, cancelFetch)
	records := make(chan kafka.Message, c.cc.MaxBatch)
	var wg sync.WaitGroup
	var readers []*kafka.Reader
	defer func() {
		stop()
		cancelFetch()
		wg.Wait()
		for _, r := range readers {
			r.Close()
		}
		for topic, parts := range assigned {
			for _, p := range parts {
				c.met.lag.DeleteLabelValues(c.cc.Group, topic, strconv.Itoa(p))
			}
		}
	}()
	for _, topic := range slices.Sorted(maps.Keys(gen.Assignments)) {
		for _, pa := range gen.Assignments[topic] {
			r := kafka.NewReader(kafka.ReaderConfig{
				Brokers:        c.cfg.Brokers,
				Topic:          topic,
				Partition:      pa.ID,
				Dialer:         c.dialer,
				MinBytes:       c.cfg.Reader.MinBytes,
				MaxBytes:       c.cfg.Reader.MaxBytes,
				MaxWait:        c.cfg.Reader.MaxWait,
				ReadBackoffMin: c.cfg.RetryBackoff,
				ReadBackoffMax: c.cfg.RetryBackoffMax,
				Logger:         Logger(c.log),
				ErrorLogger:    ErrorLogger(c.log),
			})
			readers = append(readers, r)
			if err := r.SetOffset(pa.Offset); err != nil {
				return fmt.Errorf("start %s/%d at offset %d: %w", topic, pa.ID, pa.Offset, err)
			}
			wg.Go(func() { c.fetch(fctx, r, records) })
		}
	}
	poll := lagPoller{client: c.client, timeout: c.cfg.Timeout, interval: c.cfg.Reader.LagInterval, log: c.log}
	wg.Go(func() { poll.run(fctx, c.lag) })

	for {
		batch, err := c.collect(ctx, gctx, records)
		if err != nil {
			if errors.Is(err, errGenerationEnded) {
				c.log.Info("generation ended", "generation", gen.ID)
			}
			c.revoked(drain, assigned)
			return err
		}
		if err := c.handle(drain, batch, h); err != nil {
			return err
		}
		if err := c.commit(drain, gen, batch); err != nil {
			if !fenced(err) {
				return err
			}
			c.log.Info("commit fenced by a rebalance, records go to the partitions' next owner", "generation", gen.ID, "err", err)
			if ctx.Err() != nil {
				return errStopping
			}
			return errGenerationEnded
		}
	}
}

// revoked runs the Revoked hook, if any, on the partitions of a generation
// that is ending. The generation is held open meanwhile (see
// runGeneration), so nobody else owns the partitions yet.
func (c *Consumer) revoked(drain context.Context, assigned map[string][]int) {
	if c.cc.Revoked == nil || len(assigned) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(drain, min(c.cfg.Timeout, c.cfg.Group.RebalanceTimeout/2))
	defer cancel()
	parts := make(map[string][]int, len(assigned))
	for t, ps := range assigned {
		parts[t] = slices.Clone(ps)
	}
	c.cc.Revoked(ctx, parts)
}

// fetch feeds one partition's records into out until ctx is done. The
// reader retries broker failures itself; the errors it still reports are
// logged, and fetching goes on.
func (c *Consumer) fetch(ctx context.Context, r *kafka.Reader, out chan<- kafka.Message) {
	cfg := r.Config()
	for {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			c.log.Warn("fetch failed, retrying", "topic", cfg.Topic, "partition", cfg.Partition, "err", err)
			if !sleep(ctx, c.cfg.RetryBackoff) {
				return
			}
			continue
		}
		select {
		case out <- m:
		case <-ctx.Done():
			return
		}
	}
}

// collect waits for a record, then gathers more until the batch holds
// MaxBatch records or MaxWait has passed since the first. A batch being
// gathered when the generation ends or ctx is cancelled is dropped: none
// of it has been handled, and all of it is still uncommitted.
func (c *Consumer) collect(ctx, gctx context.Context, records <-chan kafka.Message) ([]kafka.Message, error) {
	var batch []kafka.Message
	var linger <-chan time.Time
	for len(batch) < c.cc.MaxBatch {
		// Checked first so that a steady stream of records cannot starve
		// a shutdown or a rebalance in the select below.
		if ctx.Err() != nil {
			return nil, errStopping
		}
		if gctx.Err() != nil {
			return nil, errGenerationEnded
		}
		select {
		case <-ctx.Done():
			return nil, errStopping
		case <-gctx.Done():
			return nil, errGenerationEnded
		case m := <-records:
			batch = append(batch, m)
			if linger == nil {
				t := time.NewTimer(c.cfg.Reader.MaxWait)
				defer t.Stop()
				linger = t.C
			}
		case <-linger:
			return batch, nil
		}
	}
	return batch, nil
}

func (c *Consumer) handle(ctx context.Context, batch []kafka.Message, h Handler) error {
	type tp struct {
		topic     string
		partition int
	}
	last := make(map[tp]kafka.Message)
	for _, m := range batch {
		c.met.consumed.WithLabelValues(c.cc.Group, m.Topic).Inc()
		last[tp{m.Topic, m.Partition}] = m
	}
	for _, m := range last {
		c.lag.handed(m)
	}
	c.met.batchRecords.WithLabelValues(c.cc.Group).Observe(float64(len(batch)))

	start := time.Now()
	err := c.call(ctx, batch, h)
	c.met.handleSeconds.WithLabelValues(c.cc.Group).Observe(time.Since(start).Seconds())
	if err != nil {
		return fmt.Errorf("handle batch of %d records: %w", len(batch), err)
	}
	return nil
}

// call runs h, turning a panic into an error so that Run still leaves the
// group and the process exits through its normal path. Stages recover
// per-record panics themselves and dead-letter the record; one that
// reaches here is a bug in the stage, so nothing is committed.
func (c *Consumer) call(ctx context.Context, batch []kafka.Message, h Handler) (err error) {
	defer func() {
		if p := recover(); p != nil {
			c.log.Error("handler panicked", "panic", p, "stack", string(debug.Stack()))
			err = fmt.Errorf("%w: %v", ErrHandlerPanic, p)
		}
	}()
	return h(ctx, batch)
}

// commit commits, per partition, the offset after the highest record of
// batch, with the partition's State if one is set. It retries failures
// other than fencing up to CommitRetries times.
func (c *Consumer) commit(ctx context.Context, gen *kafka.Generation, batch []kafka.Message) error {
	next := make(map[string]map[int]int64)
	for _, m := range batch {
		parts := next[m.Topic]
		if parts == nil {
			parts = make(map[int]int64)
			next[m.Topic] = parts
		}
		if n := m.Offset + 1; n > parts[m.Partition] {
			parts[m.Partition] = n
		}
	}
	req := &kafka.OffsetCommitRequest{GroupID: gen.GroupID, GenerationID: int(gen.ID), MemberID: gen.MemberID, Topics: make(map[string][]kafka.OffsetCommit, len(next))}
	for topic, parts := range next {
		for p, off := range parts {
			oc := kafka.OffsetCommit{Partition: p, Offset: off}
			if c.cc.State != nil {
				oc.Metadata = c.cc.State.Save(topic, p)
			}
			req.Topics[topic] = append(req.Topics[topic], oc)
		}
	}
	for attempt := 0; ; attempt++ {
		err := c.commitOnce(ctx, req)
		if err == nil {
			for topic := range next {
				c.met.commits.WithLabelValues(c.cc.Group, topic).Inc()
			}
			return nil
		}
		if fenced(err) {
			c.met.commitErrors.WithLabelValues(c.cc.Group, "fenced").Inc()
			return fmt.Errorf("commit offsets: %w", err)
		}
		c.met.commitErrors.WithLabelValues(c.cc.Group, "error").Inc()
		if attempt >= c.cfg.Group.CommitRetries {
			return fmt.Errorf("commit offsets after %d attempts: %w", attempt+1, err)
		}
		wait := backoff(attempt, c.cfg.RetryBackoff, c.cfg.RetryBackoffMax)
		c.log.Warn("commit failed, retrying", "attempt", attempt+1, "backoff", wait, "err", err)
		if !sleep(ctx, wait) {
			return fmt.Errorf("commit offsets: %w (after %v)", ctx.Err(), err)
		}
	}
}

// commitOnce sends req and returns its failure, or the failures of its
// partitions joined.
func (c *Consumer) commitOnce(ctx context.Context, req *kafka.OffsetCommitRequest) error {
	resp, err := c.client.OffsetCommit(ctx, req)
	if err != nil {
		return err
	}
	var errs []error
	for topic, parts := range resp.Topics {
		for _, p := range parts {
			if p.Error != nil {
				errs = append(errs, fmt.Errorf("%s/%d: %w", topic, p.Partition, p.Error))
			}
		}
	}
	return errors.Join(errs...)
}

// loadState hands State the metadata committed with each assigned
// partition's offset. It retries a failed fetch up to CommitRetries times:
// handing out records without their partition's state would judge them
// differently from the member that handled the records before.
func (c *Consumer) loadState(ctx context.Context, gen *kafka.Generation, assigned map[string][]int) error {
	req := &kafka.OffsetFetchRequest{GroupID: gen.GroupID, Topics: assigned}
	for attempt := 0; ; attempt++ {
		saved, err := c.fetchMetadata(ctx, req)
		if err == nil {
			for topic, parts := range assigned {
				for _, p := range parts {
					c.cc.State.Load(topic, p, saved[topic][p])
				}
			}
			return nil
		}
		if attempt >= c.cfg.Group.CommitRetries || ctx.Err() != nil {
			return fmt.Errorf("fetch committed partition state after %d attempts: %w", attempt+1, err)
		}
		wait := backoff(attempt, c.cfg.RetryBackoff, c.cfg.RetryBackoffMax)
		c.log.Warn("fetch of committed partition state failed, retrying", "attempt", attempt+1, "backoff", wait, "err", err)
		if !sleep(ctx, wait) {
			return fmt.Errorf("fetch committed partition state: %w (after %v)", ctx.Err(), err)
		}
	}
}

// fetchMetadata returns the metadata committed with each partition of req.
func (c *Consumer) fetchMetadata(ctx context.Context, req *kafka.OffsetFetchRequest) (map[string]map[int]string, error) {
	resp, err := c.client.OffsetFetch(ctx, req)
	if err != nil {
		return nil, err
	}
	out := make(map[string]map[int]string, len(resp.Topics))
	if errors.Is(resp.Error, kafka.GroupIdNotFound) {
		return out, nil // nothing committed, by anyone, yet
	}
	if resp.Error != nil {
		return nil, resp.Error
	}
	var errs []error
	for topic, parts := range resp.Topics {
		m := make(map[int]string, len(parts))
		for _, p := range parts {
			if errors.Is(p.Error, kafka.UnknownTopicOrPartition) {
				continue // nothing committed there yet
			}
			if p.Error != nil {
				errs = append(errs, fmt.Errorf("%s/%d: %w", topic, p.Partition, p.Error))
				continue
			}
			m[p.Partition] = p.Metadata
		}
		out[topic] = m
	}
	return out, errors.Join(errs...)
}
