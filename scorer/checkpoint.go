package scorer

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/metaids/metaids/features"
	"github.com/metaids/metaids/model"
	"github.com/metaids/metaids/stream"
)

// Warm restarts.
//
// A replica checkpoints the hosts of each features partition it holds to
// the same-numbered partition of the compacted scorer.state topic, keyed by
// host: every -scorer.state.checkpoint-interval, the hosts whose state
// changed since the last checkpoint (and a tombstone for each checkpointed
// host dropped since), and once more when it stops. Each record says which
// features offset its state is as of: the offset of the next message the
// host's state has not seen. A round writes every host changed since the
// previous round, so at the newest round's offset R every record on the
// partition is its host's state at R (a host not rewritten had no flows in
// between).
//
// A replica that sees a features partition for the first time (at start,
// or when a rebalance hands it over) reads that scorer.state partition to
// its end before scoring it: it restores the hosts whose records were
// written by the encoder it serves, then replays the features messages
// between R and the offset it was handed the partition at, stepping the
// states without emitting anything. The result is the state the previous
// owner had when it committed that offset, whenever it last checkpointed,
// so the interval only bounds the replay. (If the previous owner's last
// commit failed after its checkpoint was written, the flows it scored and
// did not commit are applied twice to their hosts' states.)
//
// A replica also writes a round for every partition it holds when the
// consumer reports their revocation (stream.ConsumerConfig.Revoked): after
// the last batch is committed, while the consumer still holds the
// generation, so the round is acknowledged before anyone else can be
// assigned the partitions, and it is as of the offset the next owner
// starts at. That owner then has nothing to replay. The periodic rounds
// run inside the handler for the same reason. Two rounds run outside the
// generation: the flush loop's, for partitions that have gone quiet, and
// the stop-time one, which after a successful revocation round has
// nothing left to write. Each has half an interval to land, and a new
// owner writes its first round half an interval after it took the
// partition, so the last word on a host is the new owner's. (The first
// round comes that early, rather than a whole interval in, because a
// partition with no round yet is restored with nothing to replay from,
// should the revocation round have failed.)
//
// Checkpoints are written in the handler's produce, with the batch's
// outputs, and a batch is committed only once they are acknowledged.

// Checkpoint record layout, version 2, little-endian:
//
//	version       uint8 (2)
//	hidden        uint16, H
//	encoder       [16]byte, encoderID of the model that wrote it
//	model_version int64, for operators
//	offset        int64, the features offset the state is as of
//	last_start_ns int64, start of the host's previous flow (for dt_prev)
//	touched_ns    int64, event time the host was last seen (for the TTL)
//	flows         uint32, flows seen since the state was created
//	h, c          H float32 each
//	peers         uint8, N ≤ features.PeerSlots, the host's recent responders
//	key, last_ns  N × (uint64, int64), its features.PeerMemory (for dst_repeat, dt_dst)
//	campaign      optional (int64, int64): the first labelled flow's end and the
//	              newest named flow's end of the host's campaign (model.CampaignBook.Run)
//
// Version 1 had no peers; its records were written under a feature spec
// without dst_repeat, so their encoder never matches and they are refused.
const (
	ckptVersion    = 2
	ckptHeaderSize = 1 + 2 + 16 + 8 + 8 + 8 + 8 + 4
)

// Results of restoring checkpointed hosts, the label values of
// metaids_scorer_state_restored_hosts_total.
const (
	restoredOK         = "restored"
	restoredOtherModel = "other_encoder" // written by another encoder: its states mean nothing to this one
	restoredMalformed  = "malformed"
)

// Results of restoring a partition, the label values of
// metaids_scorer_state_restores_total.
const (
	restoreOK      = "ok"
	restoreFailed  = "failed"   // the state or features could not be read; hosts start from what was read
	restoreNoTopic = "no_topic" // no such scorer.state partition: checkpoints are off for the partition
)

// errNoStateTopic means the scorer.state topic lacks the partition, or is
// not co-partitioned with features.
var errNoStateTopic = errors.New("no scorer.state partition for the features partition")

// encoderID identifies an encoder by its content: the feature spec, the
// shapes, the normalisation and the LSTM weights, everything that turns a
// host's flows into its state. Replicas agree on it without talking, and a
// state is restored only under the encoder that wrote it.
type encoderID [16]byte

// fingerprint returns m's encoderID: the first 16 bytes of a SHA-256 over
// the encoder's parts, floats by their bits.
func fingerprint(m *model.Model) encoderID {
	h := sha256.New()
	buf := make([]byte, 0, 4096)
	buf = append(buf, "metaids encoder v1\x00"...)
	buf = append(buf, m.SpecHash...)
	buf = append(buf, 0)
	buf = binary.LittleEndian.AppendUint32(buf, uint32(m.Features()))
	buf = binary.LittleEndian.AppendUint32(buf, uint32(m.Hidden()))
	mean, std := m.Norm()
	for _, t := range [][]float32{mean, std, m.P.WeightIH, m.P.WeightHH, m.P.BiasIH, m.P.BiasHH} {
		buf = binary.LittleEndian.AppendUint64(buf, uint64(len(t)))
		for _, x := range t {
			buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(x))
			if len(buf) >= cap(buf)-8 {
				h.Write(buf)
				buf = buf[:0]
			}
		}
	}
	h.Write(buf)
	var id encoderID
	copy(id[:], h.Sum(nil))
	return id
}

// checkpoint is one host's checkpoint record.
type checkpoint struct {
	encoder      encoderID
	modelVersion int64
	offset       int64
	lastNs       int64
	touched      int64
	flows        uint32
	h, c         []float32
	peers        features.PeerMemory
	// campaign, when hasCampaign: the host's campaign run, first and last.
	hasCampaign bool
	campaign    [2]int64
}

// appendCheckpoint appends ck's record to dst.
func appendCheckpoint(dst []byte, ck *checkpoint) []byte {
	if len(ck.h) != len(ck.c) || len(ck.h) > math.MaxUint16 {
		panic(fmt.Sprintf("scorer: checkpoint of h[%d], c[%d]", len(ck.h), len(ck.c)))
	}
	le := binary.LittleEndian
	dst = append(dst, ckptVersion)
	dst = le.AppendUint16(dst, uint16(len(ck.h)))
	dst = append(dst, ck.encoder[:]...)
	dst = le.AppendUint64(dst, uint64(ck.modelVersion))
	dst = le.AppendUint64(dst, uint64(ck.offset))
	dst = le.AppendUint64(dst, uint64(ck.lastNs))
	dst = le.AppendUint64(dst, uint64(ck.touched))
	dst = le.AppendUint32(dst, ck.flows)
	for _, x := range ck.h {
		dst = le.AppendUint32(dst, math.Float32bits(x))
	}
	for _, x := range ck.c {
		dst = le.AppendUint32(dst, math.Float32bits(x))
	}
	n := min(max(ck.peers.N, 0), features.PeerSlots)
	dst = append(dst, uint8(n))
	for i := range n {
		dst = le.AppendUint64(dst, ck.peers.Key[i])
		dst = le.AppendUint64(dst, uint64(ck.peers.Last[i]))
	}
	if ck.hasCampaign {
		dst = le.AppendUint64(dst, uint64(ck.campaign[0]))
		dst = le.AppendUint64(dst, uint64(ck.campaign[1]))
	}
	return dst
}

// ckptCampaignSize is the optional campaign run at a record's end.
const ckptCampaignSize = 16

// checkpointSize is the length of a record for hidden size hid and a host
// that remembers peers responders.
func checkpointSize(hid, peers int) int { return ckptHeaderSize + 8*hid + 1 + 16*peers }

// checkpointOffset returns the features offset of record b without
// decoding the rest.
func checkpointOffset(b []byte) (int64, error) {
	if len(b) < ckptHeaderSize {
		return 0, fmt.Errorf("checkpoint of %d bytes, shorter than its header", len(b))
	}
	if b[0] != ckptVersion {
		return 0, fmt.Errorf("checkpoint version %d, this build reads %d", b[0], ckptVersion)
	}
	return int64(binary.LittleEndian.Uint64(b[1+2+16+8:])), nil
}

// decodeCheckpoint decodes record b into ck, whose h and c it reuses when
// they are large enough. It refuses a record of another version or length
// and one with a non-finite state.
func decodeCheckpoint(b []byte, ck *checkpoint) error {
	if _, err := checkpointOffset(b); err != nil {
		return err
	}
	le := binary.LittleEndian
	hid := int(le.Uint16(b[1:]))
	if len(b) < checkpointSize(hid, 0) {
		return fmt.Errorf("checkpoint of %d bytes, shorter than the %d of H=%d", len(b), checkpointSize(hid, 0), hid)
	}
	n := int(b[checkpointSize(hid, 0)-1])
	size := checkpointSize(hid, n)
	ck.hasCampaign = len(b) == size+ckptCampaignSize
	if n > features.PeerSlots || (len(b) != size && !ck.hasCampaign) {
		return fmt.Errorf("checkpoint of %d bytes with %d peers, want %d for H=%d and at most %d peers",
			len(b), n, checkpointSize(hid, min(n, features.PeerSlots)), hid, features.PeerSlots)
	}
	copy(ck.encoder[:], b[3:19])
	p := b[19:]
	ck.modelVersion = int64(le.Uint64(p))
	ck.offset = int64(le.Uint64(p[8:]))
	ck.lastNs = int64(le.Uint64(p[16:]))
	ck.touched = int64(le.Uint64(p[24:]))
	ck.flows = le.Uint32(p[32:])
	p = p[36:]
	ck.h, ck.c = grow(ck.h, hid), grow(ck.c, hid)
	for i := range hid {
		ck.h[i] = math.Float32frombits(le.Uint32(p[4*i:]))
		ck.c[i] = math.Float32frombits(le.Uint32(p[4*(hid+i):]))
		if !finite(ck.h[i]) || !finite(ck.c[i]) {
			return fmt.Errorf("checkpoint holds a non-finite state value at %d", i)
		}
	}
	p = p[8*hid+1:]
	ck.peers = features.PeerMemory{N: n}
	for i := range n {
		ck.peers.Key[i] = le.Uint64(p[16*i:])
		ck.peers.Last[i] = int64(le.Uint64(p[16*i+8:]))
	}
	if ck.hasCampaign {
		p = p[16*n:]
		ck.campaign = [2]int64{int64(le.Uint64(p)), int64(le.Uint64(p[8:]))}
	}
	return nil
}

// checkpointsOn reports whether the stage checkpoints and restores.
func (s *Stage) checkpointsOn() bool { return s.set.State.CheckpointInterval > 0 }

// firstRound returns the ckptAt of a partition just taken: its first round
// is due half an interval later.
func (s *Stage) firstRound() time.Time {
	return s.now().Add(-s.set.State.CheckpointInterval / 2)
}

// checkpointDue writes a checkpoint round into em for every partition whose
// interval has passed, or for all of them if force is set.
func (s *Stage) checkpointDue(em *emitter, now time.Time, force bool) {
	if !s.checkpointsOn() {
		return
	}
	s.checkpointParts(em, slices.Sorted(maps.Keys(s.parts)), now, force)
}

// checkpointParts writes a round for each partition of ids this replica
// holds whose interval has passed since its last round, or for every one
// when force is set (a revocation, a stop): one loop, so the due, idle and
// revoked rounds cannot drift apart in which partitions they skip.
func (s *Stage) checkpointParts(em *emitter, ids []int, now time.Time, force bool) {
	for _, id := range ids {
		p := s.parts[id]
		if p == nil || !p.ckpt || p.next < 0 || (!force && now.Sub(p.ckptAt) < s.set.State.CheckpointInterval) {
			continue
		}
		s.checkpoint(p, em)
		p.ckptAt = now
	}
}

// checkpoint appends one round for partition p to em: a tombstone for
// each checkpointed host dropped since the last round that has not come
// back, and the state of each host that changed. The records are pinned to
// p's number on the scorer.state topic.
func (s *Stage) checkpoint(p *partition, em *emitter) {
	st := p.st
	for _, key := range st.tombs {
		if _, live := st.index[key]; live {
			continue // back since, and dirty: its state follows
		}
		em.msgs = append(em.msgs, stream.AtPartition(kafka.Message{Topic: s.stateTopic, Key: []byte(key)}, p.id))
		em.tombs++
		em.ckpts = append(em.ckpts, ckRef{p: p, slot: -1, key: key})
	}
	clear(st.tombs)
	st.tombs = st.tombs[:0]

	n := 0
	for _, sl := range st.dirty {
		if st.meta[sl].dirty {
			n++
		}
	}
	size := checkpointSize(st.hid, features.PeerSlots) + ckptCampaignSize
	buf := make([]byte, 0, n*size)
	ck := checkpoint{encoder: s.ckptID, offset: p.next}
	if sv := s.current.Load(); sv != nil {
		ck.modelVersion = sv.m.Version
	}
	for _, sl := range st.dirty {
		m := &st.meta[sl]
		if !m.dirty {
			continue // written already, or dropped
		}
		m.dirty, m.saved = false, true
		ck.lastNs, ck.touched, ck.flows, ck.peers = m.lastNs, m.touched, m.flows, m.peers
		ck.h, ck.c = st.state(sl)
		first, last, ok := p.campaigns.Run(m.key)
		ck.hasCampaign, ck.campaign = ok, [2]int64{first, last}
		a := len(buf)
		buf = appendCheckpoint(buf, &ck)
		em.msgs = append(em.msgs, stream.AtPartition(kafka.Message{Topic: s.stateTopic, Key: []byte(m.key), Value: buf[a:len(buf):len(buf)]}, p.id))
		em.states++
		em.ckpts = append(em.ckpts, ckRef{p: p, slot: sl})
	}
	st.dirty = st.dirty[:0]
}

// checkpointIdle writes the rounds due on the partitions the consumer
// holds, from the flush loop: a partition that has gone quiet gets no
// handler call to write them. It runs outside the consumer's generation,
// so it goes by the consumer's current assignment and gives its records
// half an interval to land (see the note at the top of this file). A
// round that fails is undone: its hosts are written at the next one.
func (s *Stage) checkpointIdle(ctx context.Context) {
	if !s.checkpointsOn() || s.in == nil {
		return
	}
	held := s.in.Assignment()[s.featuresTopic]
	s.mu.Lock()
	defer s.mu.Unlock()
	em := &s.em
	em.reset()
	s.checkpointParts(em, held, s.now(), false)
	if len(em.msgs) == 0 {
		return
	}
	pctx, cancel := context.WithTimeout(ctx, min(s.set.State.CheckpointInterval/2, s.cfg.Timeout))
	defer cancel()
	if err := s.produce(pctx, em); err != nil {
		s.uncheckpoint(em)
		if ctx.Err() == nil {
			s.log.Warn("checkpoint of idle partitions failed; retrying at the next round", "err", err)
		}
	}
}

// uncheckpoint marks the hosts of em's checkpoint records as not written.
func (s *Stage) uncheckpoint(em *emitter) {
	for _, r := range em.ckpts {
		st := r.p.st
		if r.slot < 0 {
			st.tombs = append(st.tombs, r.key)
			continue
		}
		st.markDirty(r.slot)
	}
}

// restoreNew restores every partition of batch the stage holds no state
// for, from the first offset the batch has of it.
func (s *Stage) restoreNew(ctx context.Context, sv *served, batch []kafka.Message) {
	if !s.checkpointsOn() {
		return
	}
	for i := range batch {
		id := batch[i].Partition
		if s.parts[id] != nil {
			continue
		}
		p := s.partition(sv, id)
		s.restore(ctx, sv, p, batch[i].Offset)
	}
}

// restore loads partition p's checkpointed hosts and replays the features
// messages from the checkpoint's offset up to from, the first offset the
// stage scores. A partition whose checkpoints cannot be read starts with
// what was read (nothing, at worst), as it would without checkpoints; one
// with no scorer.state partition is not checkpointed.
func (s *Stage) restore(ctx context.Context, sv *served, p *partition, from int64) {
	start := time.Now()
	p.next, p.ckptAt = from, s.firstRound()
	log := s.log.With("partition", p.id)
	recs, err := s.readState(ctx, p.id)
	if errors.Is(err, errNoStateTopic) {
		p.ckpt = false
		s.met.restores.WithLabelValues(restoreNoTopic).Inc()
		log.Warn("checkpoints off for the partition", "topic", s.stateTopic, "err", err)
		return
	}
	if err != nil {
		s.met.restores.WithLabelValues(restoreFailed).Inc()
		log.Warn("read checkpoints failed; hosts start from zero", "topic", s.stateTopic, "err", err)
		return
	}
	hosts, at := s.applyCheckpoints(p, recs)
	clear(recs)
	replayed := 0
	if at >= 0 && at < from {
		replayed, err = s.replay(ctx, sv, p, at, from)
		if err != nil {
			s.met.restores.WithLabelValues(restoreFailed).Inc()
			log.Warn("replay of features since the checkpoint failed; hosts stay as checkpointed", "from", at, "to", from, "replayed_flows", replayed, "err", err)
			return
		}
	}
	s.met.restores.WithLabelValues(restoreOK).Inc()
	s.met.restoreSeconds.Observe(time.Since(start).Seconds())
	log.Info("restored host states", "hosts", hosts, "checkpoint_offset", at, "offset", from,
		"replayed_flows", replayed, "seconds", time.Since(start).Seconds())
}

// applyCheckpoints restores into p the hosts of recs, the records of p's
// scorer.state partition in offset order. For each host the record with
// the highest features offset wins (the later on a tie) and a tombstone
// deletes; hosts whose record another encoder wrote, or that do not
// decode, are left out. It returns the hosts restored and the newest
// offset among them, −1 with none.
func (s *Stage) applyCheckpoints(p *partition, recs []kafka.Message) (hosts int, at int64) {
	type rec struct {
		val    []byte
		offset int64
	}
	latest := make(map[string]rec, len(recs))
	for _, m := range recs {
		k := string(m.Key)
		if m.Value == nil {
			delete(latest, k)
			continue
		}
		off, err := checkpointOffset(m.Value)
		if err != nil {
			s.met.restored.WithLabelValues(restoredMalformed).Inc()
			delete(latest, k)
			continue
		}
		if r, ok := latest[k]; ok && r.offset > off {
			continue
		}
		latest[k] = rec{m.Value, off}
	}
	type host struct {
		key string
		ck  checkpoint
	}
	keep := make([]host, 0, len(latest))
	for k, r := range latest {
		var ck checkpoint
		if err := decodeCheckpoint(r.val, &ck); err != nil {
			s.met.restored.WithLabelValues(restoredMalformed).Inc()
			continue
		}
		if ck.encoder != s.ckptID || len(ck.h) != p.st.hid {
			s.met.restored.WithLabelValues(restoredOtherModel).Inc()
			continue
		}
		keep = append(keep, host{k, ck})
	}
	// Oldest first, so that the LRU list comes back in order.
	slices.SortFunc(keep, func(a, b host) int {
		return cmp.Or(cmp.Compare(a.ck.touched, b.ck.touched), cmp.Compare(a.key, b.key))
	})
	at = -1
	for i := range keep {
		h := &keep[i]
		p.st.restore(h.key, &h.ck)
		if h.ck.hasCampaign {
			p.campaigns.Seed(h.key, h.ck.campaign[0], h.ck.campaign[1])
		}
		at = max(at, h.ck.offset)
	}
	p.st.expire()
	p.st.takeEvicted() // not evictions of live hosts: the checkpoint was stale
	s.met.restored.WithLabelValues(restoredOK).Add(float64(len(keep)))
	return len(keep), at
}

// replay steps p's hosts through the features messages [from, to) of its
// partition without emitting anything, as the previous owner scored them.
// Messages that do not decode are skipped as scoring skips them.
func (s *Stage) replay(ctx context.Context, sv *served, p *partition, from, to int64) (flows int, err error) {
	err = s.readRange(ctx, s.featuresTopic, p.id, from, to, func(m *kafka.Message) {
		flows += s.replayOne(sv, p, m)
	})
	s.met.replayed.Add(float64(flows))
	return flows, err
}

// replayOne steps the flows of one features message, recovering a panic
// as process does.
func (s *Stage) replayOne(sv *served, p *partition, msg *kafka.Message) (n int) {
	defer func() {
		if r := recover(); r != nil {
			n = 0
		}
	}()
	v, err := features.Decode(msg.Value, s.mem)
	if err != nil {
		return 0
	}
	defer v.Release()
	if n = v.Len(); n == 0 {
		return 0
	}
	waves := s.sp.plan(p.st, v)
	s.sp.run(sv.m, p.st, v, waves, float32(math.Inf(1)))
	p.st.expire()
	return n
}

// readState returns the records of partition id of the scorer.state
// topic, from its first offset to its end as of now. errNoStateTopic means
// the topic does not have partition id, or has another partition count
// than features (so its partitions do not hold the same hosts).
func (s *Stage) readState(ctx context.Context, id int) ([]kafka.Message, error) {
	dialer, err := s.cfg.Dialer()
	if err != nil {
		return nil, err
	}
	counts := [2]int{}
	for i, topic := range []string{s.featuresTopic, s.stateTopic} {
		parts, err := lookupPartitions(ctx, dialer, s.cfg.Brokers, topic)
		if err != nil {
			if errors.Is(err, kafka.UnknownTopicOrPartition) {
				return nil, fmt.Errorf("%w: %s: %v", errNoStateTopic, topic, err)
			}
			return nil, fmt.Errorf("partitions of %s: %w", topic, err)
		}
		counts[i] = len(parts)
	}
	if counts[0] != counts[1] {
		return nil, fmt.Errorf("%w: %s has %d partitions, %s %d", errNoStateTopic, s.stateTopic, counts[1], s.featuresTopic, counts[0])
	}
	first, last, err := s.offsets(ctx, dialer, s.stateTopic, id)
	if err != nil {
		return nil, err
	}
	var out []kafka.Message
	err = s.readRange(ctx, s.stateTopic, id, first, last, func(m *kafka.Message) {
		out = append(out, kafka.Message{Key: m.Key, Value: m.Value, Offset: m.Offset})
	})
	return out, err
}

// offsets returns the first and the next offset of a partition.
func (s *Stage) offsets(ctx context.Context, dialer *kafka.Dialer, topic string, id int) (first, last int64, err error) {
	var errs []error
	for _, b := range s.cfg.Brokers {
		conn, err := dialer.DialLeader(ctx, "tcp", b, topic, id)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		first, last, err = conn.ReadOffsets()
		conn.Close()
		if err == nil {
			return first, last, nil
		}
		errs = append(errs, err)
	}
	return 0, 0, fmt.Errorf("offsets of %s/%d: %w", topic, id, errors.Join(errs...))
}

// readRange calls fn for each record of topic/id with an offset in
// [from, to), in order; from is raised to the partition's first offset if
// retention removed what came before. Each read may take up to the
// configured timeout.
func (s *Stage) readRange(ctx context.Context, topic string, id int, from, to int64, fn func(*kafka.Message)) error {
	if from >= to {
		return nil
	}
	dialer, err := s.cfg.Dialer()
	if err != nil {
		return err
	}
	first, _, err := s.offsets(ctx, dialer, topic, id)
	if err != nil {
		return err
	}
	if from < first {
		s.log.Warn("records before the partition's first offset are gone; reading from there", "topic", topic, "partition", id, "from", from, "first", first)
		from = first
		if from >= to {
			return nil
		}
	}
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:        s.cfg.Brokers,
		Topic:          topic,
		Partition:      id,
		Dialer:         dialer,
		MinBytes:       1,
		MaxBytes:       s.cfg.Reader.MaxBytes,
		MaxWait:        s.cfg.Reader.MaxWait,
		ReadBackoffMin: s.cfg.RetryBackoff,
		ReadBackoffMax: s.cfg.RetryBackoffMax,
		Logger:         stream.Logger(s.log),
		ErrorLogger:    stream.ErrorLogger(s.log),
	})
	defer r.Close()
	if err := r.SetOffset(from); err != nil {
		return fmt.Errorf("read %s/%d from %d: %w", topic, id, from, err)
	}
	for {
		rctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
		m, err := r.ReadMessage(rctx)
		cancel()
		if err != nil {
			return fmt.Errorf("read %s/%d at %d of [%d, %d): %w", topic, id, r.Offset(), from, to, err)
		}
		if m.Offset >= to {
			return nil
		}
		fn(&m)
		if m.Offset+1 >= to {
			return nil
		}
	}
}

// revoked is the consumer's Revoked hook: it writes a round for each
// partition of a generation that is ending, within the hook's bounded
// context. A round that fails is undone, as in checkpointIdle: the next
// owner then replays from the round before, and the hosts are written at
// the next round if the partition stays here.
func (s *Stage) revoked(ctx context.Context, parts map[string][]int) {
	if !s.checkpointsOn() {
		return
	}
	held := parts[s.featuresTopic]
	s.mu.Lock()
	defer s.mu.Unlock()
	em := &s.em
	em.reset()
	s.checkpointParts(em, held, s.now(), true)
	if len(em.msgs) == 0 {
		return
	}
	if err := s.produce(ctx, em); err != nil {
		s.uncheckpoint(em)
		s.log.Warn("checkpoint of revoked partitions failed; their next owner replays from the round before", "partitions", held, "err", err)
		return
	}
	s.log.Info("checkpointed revoked partitions", "partitions", held, "hosts", em.states, "tombstones", em.tombs)
}

// finalCheckpoint writes a round for every partition still held, after
// the consumer has stopped: what the revocation round could not write. It
// has half an interval (or the timeout, if shorter) to be acknowledged:
// see the note at the top of this file.
func (s *Stage) finalCheckpoint(ctx context.Context) {
	if !s.checkpointsOn() || s.current.Load() == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.syncAssignment()
	em := &s.em
	em.reset()
	s.checkpointDue(em, s.now(), true)
	if len(em.msgs) == 0 {
		return
	}
	wait := min(s.set.State.CheckpointInterval/2, s.cfg.Timeout)
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), wait)
	defer cancel()
	if err := s.produce(pctx, em); err != nil {
		s.log.Warn("final checkpoint failed; the next owner replays from the one before", "err", err)
		return
	}
	s.log.Info("checkpointed host states", "hosts", em.states, "tombstones", em.tombs)
}
