package adapter

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/metaids/metaids/stream"
)

// The adapter reads its inputs with plain partition readers rather than
// stream.Consumer. The Consumer commits each batch once it is handled, but
// a label is done with only when the update that fits it is published,
// possibly much later, and a restarted adapter must read again the scores
// and alerts its held labels were joined with. So the adapter keeps its
// own positions (joiner.resume, scoresResume, alertsResume), records the
// labels' in each update, and commits all three to -adapter.group without
// joining it.

// start reads the models topic to its end, works out where to read each
// input from, and starts one reader per partition, all feeding in. It
// retries broker trouble until ctx is done.
func (s *Stage) start(ctx context.Context, wg *sync.WaitGroup, in chan<- input) error {
	modelParts, err := s.partitions(ctx, s.modelsTopic)
	if err != nil {
		return err
	}
	for _, p := range modelParts {
		r, err := s.catchUpModels(ctx, p)
		if err != nil {
			return err
		}
		wg.Go(func() { s.follow(ctx, r, fromModels, in) })
	}
	if s.cur == nil {
		s.log.Warn("no model yet: labels are joined but not fitted until one is published", "topic", s.modelsTopic, "model", s.set.Model)
	}

	parts := map[string][]int{}
	for _, topic := range []string{s.labelsTopic, s.scoresTopic, s.alertsTopic} {
		if parts[topic], err = s.partitions(ctx, topic); err != nil {
			return err
		}
	}
	committed, err := s.fetchCommitted(ctx, parts)
	if err != nil {
		return err
	}
	since := time.Now().Add(-s.set.Join.Window)
	for _, topic := range []string{s.labelsTopic, s.scoresTopic, s.alertsTopic} {
		for _, p := range parts[topic] {
			first, last, at, err := s.offsets(ctx, topic, p, since)
			if err != nil {
				return err
			}
			off, ok := committed[topic][p]
			switch topic {
			case s.labelsTopic:
				// A published update may have got further than the last
				// commit: it was published, then the adapter stopped.
				if r, seen := s.resumeSeen[p]; seen {
					off, ok = max(off, r), true
				}
				if !ok {
					off = first // a new adapter: every retained label counts
				}
				off = min(max(off, first), last)
				s.join.resumeAt(p, off)
			case s.scoresTopic, s.alertsTopic:
				if !ok {
					off = at // a new adapter: the window before now
				}
				off = min(max(off, first), last)
				if topic == s.scoresTopic {
					s.join.scoreNext[p] = off
				} else {
					s.join.alertNext[p] = off
				}
			}
			kind := map[string]inputKind{s.labelsTopic: fromLabels, s.scoresTopic: fromScores, s.alertsTopic: fromAlerts}[topic]
			r := s.reader(topic, p)
			if err := r.SetOffset(off); err != nil {
				r.Close()
				return fmt.Errorf("read %s/%d from %d: %w", topic, p, off, err)
			}
			s.lag.Assign(topic, p, off)
			wg.Go(func() { s.follow(ctx, r, kind, in) })
		}
	}
	// Reported under -adapter.group, as the stages' groups report theirs.
	wg.Go(func() { s.lag.Run(ctx) })
	return nil
}

// reader returns a reader of one partition, positioned by the caller.
func (s *Stage) reader(topic string, part int) *kafka.Reader {
	return kafka.NewReader(kafka.ReaderConfig{
		Brokers:        s.cfg.Brokers,
		Topic:          topic,
		Partition:      part,
		Dialer:         s.dialer,
		MinBytes:       s.cfg.Reader.MinBytes,
		MaxBytes:       s.cfg.Reader.MaxBytes,
		MaxWait:        s.cfg.Reader.MaxWait,
		ReadBackoffMin: s.cfg.RetryBackoff,
		ReadBackoffMax: s.cfg.RetryBackoffMax,
		Logger:         stream.Logger(s.log),
		ErrorLogger:    stream.ErrorLogger(s.log),
	})
}

// follow hands r's records to in until ctx is done, then closes r.
func (s *Stage) follow(ctx context.Context, r *kafka.Reader, kind inputKind, in chan<- input) {
	defer r.Close()
	for attempt := 0; ; {
		msg, err := r.FetchMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			s.log.Warn("read failed, retrying", "topic", r.Config().Topic, "partition", r.Config().Partition, "err", err)
			if !sleep(ctx, backoff(attempt, s.cfg.RetryBackoff, s.cfg.RetryBackoffMax)) {
				return
			}
			attempt++
			continue
		}
		attempt = 0
		select {
		case in <- input{kind, msg}:
		case <-ctx.Done():
			return
		}
	}
}

// catchUpModels reads one models partition from its start to the end it
// had when asked, applying every update, and returns the reader to go on
// following it.
func (s *Stage) catchUpModels(ctx context.Context, part int) (*kafka.Reader, error) {
	first, last, _, err := s.offsets(ctx, s.modelsTopic, part, time.Time{})
	if err != nil {
		return nil, err
	}
	r := s.reader(s.modelsTopic, part)
	if err := r.SetOffset(first); err != nil {
		r.Close()
		return nil, fmt.Errorf("read %s/%d: %w", s.modelsTopic, part, err)
	}
	for next := first; next < last; {
		msg, err := r.FetchMessage(ctx)
		if err != nil {
			r.Close()
			return nil, fmt.Errorf("read %s/%d: %w", s.modelsTopic, part, err)
		}
		s.handleModel(&msg)
		next = msg.Offset + 1
	}
	return r, nil
}

// partitions returns topic's partition ids, retrying until the topic
// exists or ctx is done.
func (s *Stage) partitions(ctx context.Context, topic string) ([]int, error) {
	for attempt := 0; ; attempt++ {
		resp, err := s.client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
		if err == nil {
			for _, t := range resp.Topics {
				if t.Name == topic && t.Error == nil && len(t.Partitions) > 0 {
					ids := make([]int, len(t.Partitions))
					for i, p := range t.Partitions {
						ids[i] = p.ID
					}
					slices.Sort(ids)
					return ids, nil
				} else if t.Name == topic && t.Error != nil {
					err = t.Error
				}
			}
			if err == nil {
				err = errors.New("topic has no partitions")
			}
		}
		s.log.Warn("topic unavailable, retrying", "topic", topic, "err", err)
		if !sleep(ctx, backoff(attempt, s.cfg.RetryBackoff, s.cfg.RetryBackoffMax)) {
			return nil, fmt.Errorf("look up topic %s: %w", topic, ctx.Err())
		}
	}
}

// offsets returns a partition's first and next-to-be-written offsets and,
// unless since is zero, the offset of its first record at or after since
// (last if none: producers that leave record times unset write none).
func (s *Stage) offsets(ctx context.Context, topic string, part int, since time.Time) (first, last, at int64, err error) {
	for attempt := 0; ; attempt++ {
		first, last, at, err = s.readOffsets(ctx, topic, part, since)
		if err == nil {
			return first, last, at, nil
		}
		s.log.Warn("offsets unavailable, retrying", "topic", topic, "partition", part, "err", err)
		if !sleep(ctx, backoff(attempt, s.cfg.RetryBackoff, s.cfg.RetryBackoffMax)) {
			return 0, 0, 0, fmt.Errorf("offsets of %s/%d: %w", topic, part, ctx.Err())
		}
	}
}

func (s *Stage) readOffsets(ctx context.Context, topic string, part int, since time.Time) (first, last, at int64, err error) {
	var errs []error
	for _, b := range s.cfg.Brokers {
		conn, err := s.dialer.DialLeader(ctx, "tcp", b, topic, part)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		defer conn.Close()
		if err := conn.SetDeadline(time.Now().Add(s.cfg.Timeout)); err != nil {
			return 0, 0, 0, err
		}
		if first, last, err = conn.ReadOffsets(); err != nil {
			return 0, 0, 0, err
		}
		at = last
		if !since.IsZero() {
			if at, err = conn.ReadOffset(since); err != nil {
				return 0, 0, 0, err
			}
			if at < 0 {
				at = last
			}
		}
		return first, last, at, nil
	}
	return 0, 0, 0, errors.Join(errs...)
}

// fetchCommitted returns the offsets committed to -adapter.group, per
// topic and partition; partitions without a commit are absent.
func (s *Stage) fetchCommitted(ctx context.Context, parts map[string][]int) (map[string]map[int]int64, error) {
	for attempt := 0; ; attempt++ {
		resp, err := s.client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: s.set.Group, Topics: parts})
		if err == nil && resp.Error != nil {
			err = resp.Error
		}
		if errors.Is(err, kafka.GroupIdNotFound) {
			return map[string]map[int]int64{}, nil // nothing committed yet
		}
		if err == nil {
			out := map[string]map[int]int64{}
			for topic, ps := range resp.Topics {
				out[topic] = map[int]int64{}
				for _, p := range ps {
					if p.Error == nil && p.CommittedOffset >= 0 {
						out[topic][p.Partition] = p.CommittedOffset
					}
				}
			}
			return out, nil
		}
		s.log.Warn("committed offsets unavailable, retrying", "group", s.set.Group, "err", err)
		if !sleep(ctx, backoff(attempt, s.cfg.RetryBackoff, s.cfg.RetryBackoffMax)) {
			return nil, fmt.Errorf("fetch offsets of group %s: %w", s.set.Group, ctx.Err())
		}
	}
}

// commitResume commits where a restarted adapter must read each input
// from. A failure is counted and logged, not fatal: the next commit
// carries the offsets, and published updates carry the labels'.
func (s *Stage) commitResume(ctx context.Context) {
	topics := map[string][]kafka.OffsetCommit{}
	add := func(topic string, offs map[int]int64) {
		for _, p := range slices.Sorted(maps.Keys(offs)) {
			topics[topic] = append(topics[topic], kafka.OffsetCommit{Partition: p, Offset: offs[p]})
		}
	}
	add(s.labelsTopic, s.join.resume())
	add(s.scoresTopic, s.join.scoresResume())
	add(s.alertsTopic, s.join.alertsResume())
	key := fmt.Sprint(topics)
	if key == s.committed {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	resp, err := s.client.OffsetCommit(cctx, &kafka.OffsetCommitRequest{GroupID: s.set.Group, GenerationID: -1, Topics: topics})
	if err == nil {
	check:
		for topic, ps := range resp.Topics {
			for _, p := range ps {
				if p.Error != nil {
					err = fmt.Errorf("%s/%d: %w", topic, p.Partition, p.Error)
					break check
				}
			}
		}
	}
	if err != nil {
		s.met.resumeCommitErr.Inc()
		s.log.Warn("commit resume offsets", "group", s.set.Group, "err", err)
		return
	}
	s.committed = key
}

// backoff is the wait before retry attempt (0-based): base doubling up to
// limit.
func backoff(attempt int, base, limit time.Duration) time.Duration {
	d := base
	for range min(attempt, 30) {
		d *= 2
		if d >= limit {
			return limit
		}
	}
	return min(d, limit)
}

// sleep waits for d or until ctx is done, reporting whether it slept the
// whole time.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
