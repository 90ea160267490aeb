package integration_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/apache/arrow/go/v15/arrow/memory"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"golang.org/x/sync/errgroup"

	"github.com/metaids/metaids/features"
	"github.com/metaids/metaids/integration"
	"github.com/metaids/metaids/integration/pipeline"
	"github.com/metaids/metaids/model"
	"github.com/metaids/metaids/schemas"
	"github.com/metaids/metaids/scorer"
	"github.com/metaids/metaids/stream"
)

// warmScore is one scored flow of a beacon host.
type warmScore struct {
	timeNs  int64
	probs   []float32
	version int64
}

// warmResult is what one run of the rebalance scenario saw.
type warmResult struct {
	scores   map[string][]warmScore // each beacon host's flows, in time order
	moved    []string               // beacon hosts whose partition the second replica took
	restored float64                // hosts the second replica restored from checkpoints
	replayed float64                // flows it replayed to bring them up to date
}

// TestPipelineWarmRestartBeacon runs C2 beacons through the pipeline while
// a second scorer replica joins mid-stream and takes some of the features
// partitions, and compares how the moved beacon hosts' flows after the move
// score: with checkpoints, exactly as when no replica joins; without, from
// a blank state. Two beacon hosts sit in each partition, so whichever
// partitions move, beacons move with them.
func TestPipelineWarmRestartBeacon(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: trains a model and runs the pipeline three times over the embedded broker")
	}
	m := trainedModel(t)
	beacon, ok := m.ClassIndex(integration.FamilyBeacon)
	if !ok {
		t.Fatalf("the test model has no %s class: %v", integration.FamilyBeacon, m.Classes())
	}
	const parts = 4
	hosts := warmBeaconHosts(parts, 2)
	start := time.Now().Add(-10 * time.Minute).Truncate(time.Second)
	opts := []integration.Option{integration.Seed(17), integration.Hosts(40), integration.Start(start)}
	for _, h := range hosts {
		opts = append(opts, integration.WithAttack(integration.Attack{
			Family: integration.FamilyBeacon, Host: h, Target: netip.MustParseAddr("198.51.100.77"),
			Start: 5 * time.Second, Duration: 10 * time.Minute,
		}))
	}
	gen := integration.NewTraffic(opts...)
	move := start.Add(2 * time.Minute).UnixNano()
	var phases [2][]schemas.Flow
	before := map[string]int{} // each beacon host's flows before the move
	for {
		ev := gen.Next()
		if ev.Flow.StartNs >= start.Add(4*time.Minute).UnixNano() {
			break
		}
		i := 0
		if ev.Flow.StartNs >= move {
			i = 1
		} else if ev.Label == integration.FamilyBeacon {
			before[ev.Flow.SrcAddr.String()]++
		}
		phases[i] = append(phases[i], ev.Flow)
	}

	base := warmRun(t, m, parts, hosts, phases, false, 0)
	warm := warmRun(t, m, parts, hosts, phases, true, time.Second)
	// An interval no run reaches: the first replica's round on revocation
	// is the only checkpoint.
	revoke := warmRun(t, m, parts, hosts, phases, true, time.Hour)
	cold := warmRun(t, m, parts, hosts, phases, true, 0)
	if len(warm.moved) == 0 || len(revoke.moved) == 0 || len(cold.moved) == 0 {
		t.Fatalf("no beacon host moved (with checkpoints %v, on revocation only %v, without %v)", warm.moved, revoke.moved, cold.moved)
	}
	if warm.restored == 0 || revoke.restored == 0 {
		t.Errorf("the second replica restored %v hosts from checkpoints (%v on revocation only), want some", warm.restored, revoke.restored)
	}
	if revoke.replayed != 0 {
		t.Errorf("with checkpoints on revocation only, the second replica replayed %v flows, want 0", revoke.replayed)
	}

	classified := func(probs []float32) bool {
		k, p := -1, float32(-1)
		for j := 1; j < len(probs); j++ {
			if probs[j] > p {
				k, p = j, probs[j]
			}
		}
		return k == beacon && p >= m.Thresholds[k]
	}
	type tally struct {
		flows, beacon, baseBeacon, same, firstBeacon, firstBase int
		firstP, firstBaseP                                      float64 // mean c2_beacon probability of the first flow after the move
	}
	compare := func(name string, r warmResult) tally {
		var tl tally
		for _, h := range r.moved {
			got, want := r.scores[h], base.scores[h]
			if len(got) != len(want) || len(got) <= before[h] {
				t.Fatalf("%s: %d flows of %s scored, %d in the baseline; want the same, more than the %d before the move", name, len(got), h, len(want), before[h])
			}
			for i := before[h]; i < len(got); i++ {
				g, w := got[i], want[i]
				if g.timeNs != w.timeNs || g.version != w.version {
					t.Fatalf("%s: %s's flow %d ends at %d scored by v%d; in the baseline at %d by v%d", name, h, i, g.timeNs, g.version, w.timeNs, w.version)
				}
				tl.flows++
				if classified(g.probs) {
					tl.beacon++
					if i == before[h] {
						tl.firstBeacon++
					}
				}
				if classified(w.probs) {
					tl.baseBeacon++
					if i == before[h] {
						tl.firstBase++
					}
				}
				if warmClose(g.probs, w.probs, 1e-4) {
					tl.same++
				}
				if i == before[h] {
					tl.firstP += float64(g.probs[beacon]) / float64(len(r.moved))
					tl.firstBaseP += float64(w.probs[beacon]) / float64(len(r.moved))
				}
			}
		}
		t.Logf("%s: moved beacon hosts %v; of their %d flows after the move, %d classified %s (%d without the move), %d scored as without the move; first flow after the move classified for %d of %d hosts (%d without the move), mean P(%s) %.4f (%.4f without the move); restored %v hosts, replayed %v flows",
			name, r.moved, tl.flows, tl.beacon, integration.FamilyBeacon, tl.baseBeacon, tl.same, tl.firstBeacon, len(r.moved), tl.firstBase,
			integration.FamilyBeacon, tl.firstP, tl.firstBaseP, r.restored, r.replayed)
		return tl
	}
	w := compare("with checkpoints", warm)
	rv := compare("on revocation only", revoke)
	c := compare("without checkpoints", cold)
	for _, r := range []struct {
		name string
		tl   tally
	}{{"with checkpoints", w}, {"with checkpoints on revocation only", rv}} {
		if r.tl.same != r.tl.flows || r.tl.beacon != r.tl.baseBeacon {
			t.Errorf("%s, %d of %d flows after the move scored as without it (%d classified %s, want %d); want all",
				r.name, r.tl.same, r.tl.flows, r.tl.beacon, integration.FamilyBeacon, r.tl.baseBeacon)
		}
	}
	if c.same == c.flows {
		t.Errorf("without checkpoints, every flow after the move scored as without it: the scenario does not exercise the move")
	}
}

// warmBeaconHosts returns per hosts for each of parts features partitions,
// from 10.0.9.0/24, which the generator uses for nothing else.
func warmBeaconHosts(parts, per int) []netip.Addr {
	count := make([]int, parts)
	var out []netip.Addr
	for i := 1; i < 255 && len(out) < parts*per; i++ {
		a := netip.AddrFrom4([4]byte{10, 0, 9, byte(i)})
		if p := features.Partition(a.String(), parts); count[p] < per {
			count[p]++
			out = append(out, a)
		}
	}
	return out
}

// warmRun runs the pipeline over phases[0], then (with join) starts a
// second scorer replica and waits for the rebalance, then runs phases[1],
// and returns the scores of the beacon hosts' flows.
func warmRun(t *testing.T, m *model.Model, parts int, hosts []netip.Addr, phases [2][]schemas.Flow, join bool, interval time.Duration) warmResult {
	t.Helper()
	cfg := testPipelineConfig(t)
	cfg.Broker.Partitions = parts
	cfg.Scorer.State.CheckpointInterval = interval
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	log := slog.New(slog.DiscardHandler)
	reg := prometheus.NewRegistry()
	if os.Getenv("METAIDS_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	p, err := pipeline.Start(ctx, &cfg, m.Clone(), log, reg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return p.Run(gctx) })
	prod, err := stream.NewProducer(p.Kafka, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	send := func(flows []schemas.Flow) {
		t.Helper()
		msgs := make([]kafka.Message, len(flows))
		topic := p.Kafka.Topic("flows.nprobe")
		for i := range flows {
			msgs[i] = kafka.Message{Topic: topic, Key: flows[i].SrcAddr.AppendTo(nil), Value: integration.AppendNProbeJSON(nil, &flows[i])}
		}
		if err := prod.Produce(ctx, msgs...); err != nil {
			t.Fatal(err)
		}
	}
	regs := []*prometheus.Registry{reg}
	waitScored := func(n int) {
		t.Helper()
		eventually(t, 90*time.Second, func() error {
			var got float64
			for _, r := range regs {
				got += warmSum(r, "metaids_scorer_flows_total")
			}
			if got < float64(n) {
				return fmt.Errorf("scored %v of %d flows", got, n)
			}
			return nil
		})
	}

	send(phases[0])
	waitScored(len(phases[0]))
	if interval > 0 && interval < time.Minute {
		// The pipeline has run for a while before the rebalance: every
		// host has been checkpointed once by a periodic round. (A partition's first round
		// comes half an interval after a replica takes it; a rebalance
		// before that finds nothing to restore.)
		n := map[netip.Addr]bool{}
		for _, f := range phases[0] {
			n[f.SrcAddr] = true
		}
		eventually(t, 30*time.Second, func() error {
			if got := warmSum(reg, "metaids_scorer_state_checkpoint_records_total", "kind", "state"); got < float64(len(n)) {
				return fmt.Errorf("%v of %d hosts checkpointed", got, len(n))
			}
			return nil
		})
	}
	var res warmResult
	var reg2 *prometheus.Registry
	if join {
		sc := scorer.Config{Config: p.Kafka, Scorer: cfg.Scorer}
		sc.ClientID = "metaids-scorer-2"
		_, pub, err := pipeline.KeyPair(cfg.Model.SigningKey)
		if err != nil {
			t.Fatal(err)
		}
		sc.Scorer.Model.Keys = append(sc.Scorer.Model.Keys, pub)
		sc.Scorer.Model.Name = m.Name
		reg2 = prometheus.NewRegistry()
		s2, err := scorer.New(sc, log, reg2)
		if err != nil {
			t.Fatal(err)
		}
		g.Go(func() error { return s2.Run(gctx) })
		regs = append(regs, reg2)
		var taken []int
		eventually(t, 60*time.Second, func() error {
			taken, err = warmTaken(ctx, p.Kafka, cfg.Scorer.Group, sc.ClientID)
			return err
		})
		for _, h := range hosts {
			if slices.Contains(taken, features.Partition(h.String(), parts)) {
				res.moved = append(res.moved, h.String())
			}
		}
	}
	send(phases[1])
	waitScored(len(phases[0]) + len(phases[1]))

	// The counters move before the scores are acknowledged: wait for
	// every flow of the beacon hosts on the scores topic.
	want := map[string]int{}
	for _, ph := range phases {
		for _, f := range ph {
			if h := f.SrcAddr.String(); slices.Contains(hosts, f.SrcAddr) {
				want[h]++
			}
		}
	}
	eventually(t, 60*time.Second, func() error {
		res.scores = warmScores(t, ctx, p.Kafka, want)
		for h, n := range want {
			if len(res.scores[h]) != n {
				return fmt.Errorf("%d of the %d flows of %s on the scores topic", len(res.scores[h]), n, h)
			}
		}
		return nil
	})
	if reg2 != nil {
		res.restored = warmSum(reg2, "metaids_scorer_state_restored_hosts_total", "result", "restored")
		res.replayed = warmSum(reg2, "metaids_scorer_state_replayed_flows_total")
	}
	cancel()
	if err := g.Wait(); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("stages did not stop cleanly: %v", err)
	}
	return res
}

// warmTaken returns the features partitions the group member with clientID
// holds, once the group is stable with two members that each hold some.
func warmTaken(ctx context.Context, kc stream.Config, group, clientID string) ([]int, error) {
	tr, err := kc.Transport()
	if err != nil {
		return nil, err
	}
	defer tr.CloseIdleConnections()
	client := &kafka.Client{Addr: kafka.TCP(kc.Brokers...), Transport: tr, Timeout: 5 * time.Second}
	resp, err := client.DescribeGroups(ctx, &kafka.DescribeGroupsRequest{GroupIDs: []string{group}})
	if err != nil {
		return nil, err
	}
	if len(resp.Groups) != 1 {
		return nil, fmt.Errorf("described %d groups, want 1", len(resp.Groups))
	}
	gr := resp.Groups[0]
	if gr.Error != nil || gr.GroupState != "Stable" || len(gr.Members) != 2 {
		return nil, fmt.Errorf("group %s: state %s with %d members (err %v), want Stable with 2", group, gr.GroupState, len(gr.Members), gr.Error)
	}
	features := kc.Topic("features")
	var taken []int
	found := false
	for _, mb := range gr.Members {
		var held []int
		for _, tp := range mb.MemberAssignments.Topics {
			if tp.Topic == features {
				held = append(held, tp.Partitions...)
			}
		}
		if len(held) == 0 {
			return nil, fmt.Errorf("member %s (%s) holds no features partition yet", mb.MemberID, mb.ClientID)
		}
		if mb.ClientID == clientID {
			taken, found = held, true
		}
	}
	if !found {
		return nil, fmt.Errorf("no member with client id %s", clientID)
	}
	return taken, nil
}

// warmScores reads the scores topic and returns the scores of the flows
// of hosts, each host's in time order, once per flow.
func warmScores(t *testing.T, ctx context.Context, kc stream.Config, hosts map[string]int) map[string][]warmScore {
	t.Helper()
	byID := map[uint64]bool{}
	out := map[string][]warmScore{}
	for _, msg := range warmReadAll(t, ctx, kc, kc.Topic("scores")) {
		v, err := features.DecodeScores(msg.Value, memory.DefaultAllocator)
		if err != nil {
			t.Fatalf("decode scores: %v", err)
		}
		for i := range v.Len() {
			if h := v.Host(i); hosts[h] > 0 && !byID[v.FlowID(i)] {
				byID[v.FlowID(i)] = true
				out[h] = append(out[h], warmScore{timeNs: v.TimeNs(i), probs: slices.Clone(v.Probs(i)), version: v.ModelVersion(i)})
			}
		}
		v.Release()
	}
	for _, sc := range out {
		slices.SortStableFunc(sc, func(a, b warmScore) int { return cmp.Compare(a.timeNs, b.timeNs) })
	}
	return out
}

// warmReadAll returns every record of topic as of now, partition by
// partition.
func warmReadAll(t testing.TB, ctx context.Context, kc stream.Config, topic string) []kafka.Message {
	t.Helper()
	d, err := kc.Dialer()
	if err != nil {
		t.Fatal(err)
	}
	ps, err := d.LookupPartitions(ctx, "tcp", kc.Brokers[0], topic)
	if err != nil {
		t.Fatal(err)
	}
	var out []kafka.Message
	for _, part := range ps {
		conn, err := d.DialLeader(ctx, "tcp", kc.Brokers[0], topic, part.ID)
		if err != nil {
			t.Fatal(err)
		}
		first, last, err := conn.ReadOffsets()
		conn.Close()
		if err != nil {
			t.Fatal(err)
		}
		if last <= first {
			continue
		}
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: kc.Brokers, Topic: topic, Partition: part.ID, Dialer: d, MaxWait: 100 * time.Millisecond})
		if err := r.SetOffset(first); err != nil {
			t.Fatal(err)
		}
		for {
			rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			msg, err := r.ReadMessage(rctx)
			cancel()
			if err != nil {
				r.Close()
				t.Fatalf("read %s/%d: %v", topic, part.ID, err)
			}
			out = append(out, msg)
			if msg.Offset >= last-1 {
				break
			}
		}
		r.Close()
	}
	return out
}

// warmSum sums the counters or gauges called name in reg, over the series
// whose labels include the given name, value pairs.
func warmSum(reg *prometheus.Registry, name string, labels ...string) float64 {
	mfs, _ := reg.Gather()
	var s float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				ok := false
				for _, lp := range m.GetLabel() {
					ok = ok || lp.GetName() == labels[i] && lp.GetValue() == labels[i+1]
				}
				if !ok {
					continue series
				}
			}
			if c := m.GetCounter(); c != nil {
				s += c.GetValue()
			}
			if g := m.GetGauge(); g != nil {
				s += g.GetValue()
			}
		}
	}
	return s
}

func warmClose(got, want []float32, tol float64) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if math.Abs(float64(got[i])-float64(want[i])) > tol {
			return false
		}
	}
	return true
}
