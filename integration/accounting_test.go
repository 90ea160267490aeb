package integration_test

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/metaids/metaids/ingest"
	"github.com/metaids/metaids/integration"
	"github.com/metaids/metaids/schemas"
	"github.com/metaids/metaids/stream"
)

// The accounting test replays flows with known ids through ingest, scorer
// and adapter over the embedded broker while one fault is injected, then
// reconciles: every input flow is scored exactly once after de-duplication
// by flow id, or dead-lettered with the reason its record deserves, and
// nothing else comes out. Each fault is injected once the first third of
// the input has come out, so it strikes a pipeline in full flow. The
// numbers of every run are logged and summarised in docs/reliability.md.

// trafficStart is the synthetic traffic's clock: fixed, so the input is the
// same on every run (ingest's replay mode judges age per partition, and
// the far-future record is far enough to be rejected whenever this runs).
var trafficStart = time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)

// hostileEvery puts one hostile record among this many.
const hostileEvery = 29

// hostile is a kind of hostile input record, made from a good one, and the
// outcome ingest owes it: a dead-letter reason, OutcomeScored, or OutcomeAny
// where either outcome is defensible (the books must close all the same).
type hostile struct {
	name  string
	want  string
	flows int // flows in the record if it is good
	make  func(good []byte, f schemas.Flow) []byte
}

func hostileKinds() []hostile {
	reason := func(r ingest.Reason) string { return string(r) }
	return []hostile{
		{"truncated", reason(ingest.ReasonMalformed), 1, func(g []byte, _ schemas.Flow) []byte { return g[:len(g)/2] }},
		{"deep_json", reason(ingest.ReasonMalformed), 1, func(g []byte, _ schemas.Flow) []byte {
			return slices.Concat([]byte(`{"X":`), bytes.Repeat([]byte("["), 1000), bytes.Repeat([]byte("]"), 1000), []byte(","), g[1:])
		}},
		{"binary", reason(ingest.ReasonMalformed), 1, func(_ []byte, f schemas.Flow) []byte {
			return append([]byte{0, 0xff, 0xfe, 0x80}, f.SrcAddr.AsSlice()...)
		}},
		{"bad_address", reason(ingest.ReasonBadAddress), 1, func(g []byte, _ schemas.Flow) []byte { return setMember(g, "IPV4_SRC_ADDR", `"300.1.2.3"`) }},
		{"invalid_utf8_address", reason(ingest.ReasonBadAddress), 1, func(g []byte, _ schemas.Flow) []byte {
			return setMember(g, "IPV4_DST_ADDR", "\"10.0.0.\xff\"")
		}},
		{"missing_protocol", reason(ingest.ReasonMissingField), 1, func(g []byte, _ schemas.Flow) []byte {
			return bytes.Replace(g, []byte(`"PROTOCOL":`), []byte(`"PROTOCOL_X":`), 1)
		}},
		{"far_future", reason(ingest.ReasonTimeOutOfWindow), 1, func(g []byte, _ schemas.Flow) []byte {
			return setMember(setMember(g, "FLOW_START_MILLISECONDS", "4102444800000"), "FLOW_END_MILLISECONDS", "4102444801000") // 2100
		}},
		{"far_past", reason(ingest.ReasonTimeOutOfWindow), 1, func(g []byte, _ schemas.Flow) []byte {
			return setMember(setMember(g, "FLOW_START_MILLISECONDS", "315532800000"), "FLOW_END_MILLISECONDS", "315532801000") // 1980
		}},
		{"end_before_start", reason(ingest.ReasonEndBeforeStart), 1, func(g []byte, f schemas.Flow) []byte {
			return setMember(g, "FLOW_END_MILLISECONDS", fmt.Sprint(f.StartNs/1e6-1000))
		}},
		{"counter_overflow", reason(ingest.ReasonBadCounter), 1, func(g []byte, _ schemas.Flow) []byte {
			return setMember(g, "IN_BYTES", strings.Repeat("9", 400))
		}},
		{"negative_port", reason(ingest.ReasonBadPort), 1, func(g []byte, _ schemas.Flow) []byte { return setMember(g, "L4_SRC_PORT", "-1") }},
		{"giant_field", reason(ingest.ReasonTooLarge), 1, func(g []byte, _ schemas.Flow) []byte {
			return addMember(g, "L7_PROTO_NAME", `"`+strings.Repeat("A", 100<<10)+`"`) // over -ingest.max-record-bytes
		}},
		{"over_request_limit", reason(ingest.ReasonTooLarge), 1, func(g []byte, _ schemas.Flow) []byte {
			// Larger than ingest's own produce requests (-kafka.writer.batch-bytes,
			// 1 MiB): its dead letter must still fit in one.
			return addMember(g, "L7_PROTO_NAME", `"`+strings.Repeat("B", 3<<19)+`"`)
		}},
		{"large_field_under_limit", integration.OutcomeScored, 1, func(g []byte, _ schemas.Flow) []byte {
			return addMember(g, "L7_PROTO_NAME", `"`+strings.Repeat("A", 48<<10)+`"`)
		}},
		{"json_array", integration.OutcomeScored, 2, func(g []byte, _ schemas.Flow) []byte {
			return slices.Concat([]byte("["), g, []byte(","), g, []byte("]"))
		}},
		{"invalid_utf8_service", integration.OutcomeAny, 1, func(g []byte, _ schemas.Flow) []byte {
			return addMember(g, "L7_PROTO_NAME", "\"TLS.\xff\xfe\xc0\"")
		}},
		{"ipv4_mapped_ipv6", integration.OutcomeAny, 1, func(g []byte, f schemas.Flow) []byte {
			return v6(g, "::ffff:"+f.SrcAddr.Unmap().String(), "2001:db8::7")
		}},
		{"ipv6_zone", integration.OutcomeAny, 1, func(g []byte, _ schemas.Flow) []byte { return v6(g, "fe80::1%eth0", "fe80::2%25") }},
		{"ipv6_extremes", integration.OutcomeAny, 1, func(g []byte, _ schemas.Flow) []byte {
			return v6(g, "::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")
		}},
		{"duplicate_key", integration.OutcomeAny, 1, func(g []byte, _ schemas.Flow) []byte {
			return bytes.Replace(g, []byte(`"PROTOCOL":`), []byte(`"PROTOCOL":17,"PROTOCOL":`), 1)
		}},
	}
}

// setMember replaces the value of the member key of a flat JSON object.
func setMember(rec []byte, key, literal string) []byte {
	k := []byte(`"` + key + `":`)
	i := bytes.Index(rec, k)
	if i < 0 {
		panic("no member " + key)
	}
	j := i + len(k)
	end := j + bytes.IndexAny(rec[j:], ",}")
	return slices.Concat(rec[:j], []byte(literal), rec[end:])
}

// addMember adds a member at the start of a JSON object.
func addMember(rec []byte, key, literal string) []byte {
	return slices.Concat([]byte(`{"`+key+`":`+literal+`,`), rec[1:])
}

// v6 moves a record's addresses to the IPv6 members, with the given text.
func v6(rec []byte, src, dst string) []byte {
	rec = setMember(rec, "IPV4_SRC_ADDR", `"`+src+`"`)
	rec = setMember(rec, "IPV4_DST_ADDR", `"`+dst+`"`)
	rec = bytes.Replace(rec, []byte(`"IPV4_SRC_ADDR"`), []byte(`"IPV6_SRC_ADDR"`), 1)
	return bytes.Replace(rec, []byte(`"IPV4_DST_ADDR"`), []byte(`"IPV6_DST_ADDR"`), 1)
}

// accountingInput returns n nProbe records of seeded synthetic traffic
// with a port scan in it, one in hostileEvery replaced by a hostile record
// (each kind in turn), what the test expects of each, and the flow count.
func accountingInput(n int) (msgs []kafka.Message, exp []expectation, flows int) {
	gen := integration.NewTraffic(integration.Seed(20260601), integration.Hosts(60), integration.Start(trafficStart),
		integration.WithScan("10.0.0.9"))
	kinds := hostileKinds()
	topic := schemas.Topics{}.Input(inputSource)
	for i := range n {
		ev := gen.Next()
		val := integration.AppendNProbeJSON(nil, &ev.Flow)
		e := expectation{flows: 1, want: integration.OutcomeScored}
		if i%hostileEvery == hostileEvery/2 {
			k := kinds[(i/hostileEvery)%len(kinds)]
			val = k.make(val, ev.Flow)
			e = expectation{flows: k.flows, want: k.want}
		}
		msgs = append(msgs, kafka.Message{Topic: topic, Key: ev.Flow.SrcAddr.AppendTo(nil), Value: val})
		exp = append(exp, e)
		flows += e.flows
	}
	return msgs, exp, flows
}

// accountingRun is one scenario in progress.
type accountingRun struct {
	t        *testing.T
	h        *harness
	msgs     []kafka.Message
	exp      []expectation
	third    int
	produced bool
	notes    []string

	replicas []*replica
	children []*child
	spec     childSpec
}

// produceRest produces the two thirds of the input not yet produced.
func (a *accountingRun) produceRest() {
	if !a.produced {
		a.produced = true
		a.h.produce(a.msgs[a.third:], a.exp[a.third:])
	}
}

// fault installs kfake faults and waits, once the rest of the input is
// produced, until they have answered n requests.
func (a *accountingRun) fault(n int, faults ...kfake.Fault) {
	a.t.Helper()
	f := a.h.cluster().Fault(faults...)
	a.produceRest()
	ctx, cancel := context.WithTimeout(a.h.ctx, 60*time.Second)
	defer cancel()
	if err := f.Wait(ctx, n); err != nil {
		a.t.Fatalf("faults answered %d of %d requests: %v", f.Hits(), n, err)
	}
	f.Remove()
}

func (a *accountingRun) note(format string, args ...any) {
	a.notes = append(a.notes, fmt.Sprintf(format, args...))
}

type accountingScenario struct {
	name string
	// fault says what is injected, for the report.
	fault string
	opts  harnessOptions
	// child runs ingest and scorer in a child process instead of in-process.
	child  bool
	inject func(a *accountingRun)
}

func accountingScenarios() []accountingScenario {
	produce := kmsg.Produce
	return []accountingScenario{
		{name: "none", fault: "no fault (baseline)", inject: func(a *accountingRun) {}},
		{
			name:  "produce_features",
			fault: "12 produce requests to features answered REQUEST_TIMED_OUT after the broker appended them",
			inject: func(a *accountingRun) {
				a.fault(12, kfake.Fault{Keys: []kmsg.Key{produce}, Topic: a.h.topics.Features(), Err: kerr.RequestTimedOut, Count: 12})
			},
		},
		{
			name:  "produce_scores",
			fault: "30 produce requests to scores refused with NOT_LEADER_FOR_PARTITION",
			inject: func(a *accountingRun) {
				a.fault(30, kfake.Fault{Keys: []kmsg.Key{produce}, Topic: a.h.topics.Scores(), Err: kerr.NotLeaderForPartition, Count: 30})
			},
		},
		{
			name:  "produce_alerts",
			fault: "30 produce requests to alerts answered REQUEST_TIMED_OUT after the broker appended them",
			inject: func(a *accountingRun) {
				a.fault(30, kfake.Fault{Keys: []kmsg.Key{produce}, Topic: a.h.topics.Alerts(), Err: kerr.RequestTimedOut, Count: 30})
			},
		},
		{
			name:  "fetch",
			fault: "40 fetches of the input refused with NOT_LEADER_FOR_PARTITION, 40 of features with UNKNOWN_SERVER_ERROR",
			inject: func(a *accountingRun) {
				a.fault(80,
					kfake.Fault{Keys: []kmsg.Key{kmsg.Fetch}, Topic: a.h.input, Err: kerr.NotLeaderForPartition, Count: 40},
					kfake.Fault{Keys: []kmsg.Key{kmsg.Fetch}, Topic: a.h.topics.Features(), Err: kerr.UnknownServerError, Count: 40})
			},
		},
		{
			name:  "commit",
			fault: "8 offset commits of ingest refused with COORDINATOR_NOT_AVAILABLE (more than its retries), 8 of the scorer answered REQUEST_TIMED_OUT after applying them",
			inject: func(a *accountingRun) {
				a.fault(16,
					kfake.Fault{Keys: []kmsg.Key{kmsg.OffsetCommit}, Group: a.h.ingestConfig().Ingest.Group, Err: kerr.CoordinatorNotAvailable, Count: 8},
					kfake.Fault{Keys: []kmsg.Key{kmsg.OffsetCommit}, Group: a.h.scorerConfig().Scorer.Group, Err: kerr.RequestTimedOut, Count: 8})
			},
		},
		{name: "rebalance", fault: "a second ingest and a second scorer join while the first hold a batch in hand, then leave", inject: rebalance},
		{name: "kill", fault: "ingest and scorer killed (SIGKILL) while the scorer's outputs are in flight, then restarted", child: true, inject: kill},
		{
			name: "broker_down", fault: "broker stopped while the scorer's outputs are in flight, unreachable for 4s, restarted on the same port and data",
			opts: harnessOptions{persist: true}, inject: brokerDown,
		},
	}
}

// rebalance holds ingest's next features batch and the scorer's next scores
// in the broker, starts a second replica of each while the first holds
// that batch, lets the batch go once the newcomer has asked to join, and
// stops the newcomer once it has taken part: two rebalances mid-stream,
// the first mid-batch.
func rebalance(a *accountingRun) {
	h := a.h
	c := h.cluster()
	ig, sg := h.ingestConfig().Ingest.Group, h.scorerConfig().Scorer.Group
	joins := func(group string) *kfake.FaultHandle {
		return c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.JoinGroup}, Group: group, Observe: true, Count: -1})
	}
	ij, sj := joins(ig), joins(sg)
	heldF, releaseF := h.holdNextProduce(h.topics.Features())
	heldS, releaseS := h.holdNextProduce(h.topics.Scores())
	a.produceRest()

	ctx, cancel := context.WithTimeout(h.ctx, 30*time.Second)
	defer cancel()
	second := func(held <-chan struct{}, release func(), j *kfake.FaultHandle, start func(string) *replica, name string) *replica {
		waitChan(a.t, held, 30*time.Second, "no batch produced to hold")
		n := j.Hits()
		r := start(name)
		if err := j.Wait(ctx, n+1); err != nil {
			a.t.Fatalf("%s did not ask to join: %v", name, err)
		}
		release()
		return r
	}
	ing2 := second(heldF, releaseF, ij, h.startIngest, "ingest-2")
	sco2 := second(heldS, releaseS, sj, h.startScorer, "scorer-2")
	a.replicas = append(a.replicas, ing2, sco2)
	eventually(a.t, 30*time.Second, func() error {
		if !ing2.ready() || !sco2.ready() {
			return fmt.Errorf("second replicas not in their groups yet (ingest %v, scorer %v)", ing2.ready(), sco2.ready())
		}
		return nil
	})
	// Leave once the newcomer has scored, or the stream has run dry.
	eventually(a.t, 30*time.Second, func() error {
		settled, in := h.ledger.Settled()
		if sco2.metric("metaids_scorer_flows_total") > 0 || (in == settled && in > 0 && a.produced && settled >= a.flowsAll()) {
			return nil
		}
		return fmt.Errorf("scorer-2 has scored nothing yet; %d of %d settled", settled, in)
	})
	a.note("ingest-2 handled %.0f records, scorer-2 scored %.0f flows before leaving",
		ing2.metric("metaids_ingest_records_total"), sco2.metric("metaids_scorer_flows_total"))
	ing2.stop(a.t)
	sco2.stop(a.t)
	ij.Remove()
	sj.Remove()
}

// kill holds the child's next scores in the broker, kills the child with
// SIGKILL while they are held, and starts a new one.
func kill(a *accountingRun) {
	h := a.h
	held, release := h.holdNextProduce(h.topics.Scores())
	a.produceRest()
	waitChan(a.t, held, 30*time.Second, "the scorer produced no scores to hold")
	victim := a.children[len(a.children)-1]
	victim.kill(a.t)
	release() // the held request is appended for a process that is gone
	a.note("killed %s (SIGKILL) with its scores in flight", victim.name)
	a.children = append(a.children, h.startChild("node-2", a.spec))
}

// brokerOutage is how long the broker stays down: longer than any
// stage's produce retries (about 1.3s at the test timings) so that the
// stage holding a batch fails and is restarted, as in production.
const brokerOutage = 4 * time.Second

// brokerDown holds the scorer's next scores in the broker, stops the
// broker while they are held, keeps it down for brokerOutage and starts it
// again on the same port and data directory.
func brokerDown(a *accountingRun) {
	h := a.h
	held, release := h.holdNextProduce(h.topics.Scores())
	a.produceRest()
	waitChan(a.t, held, 30*time.Second, "the scorer produced no scores to hold")
	h.stopBroker()
	release()
	select { // the fault's duration, not a wait for something to happen
	case <-time.After(brokerOutage):
	case <-h.ctx.Done():
		a.t.Fatal(h.ctx.Err())
	}
	h.startBroker()
	a.note("broker down for %s", brokerOutage)
}

func (a *accountingRun) flowsAll() int {
	n := 0
	for _, e := range a.exp {
		n += e.flows
	}
	return n
}

// accountingResult is one scenario's line in the report.
type accountingResult struct {
	name, fault string
	b           integration.Balance
	restarts    string
	alerts      int64
}

func runAccounting(t *testing.T, sc accountingScenario, n int) accountingResult {
	h := newHarness(t, sc.opts)
	a := &accountingRun{t: t, h: h}
	var flowsFirst int
	a.msgs, a.exp, _ = accountingInput(n)
	a.third = len(a.msgs) / 3
	for _, e := range a.exp[:a.third] {
		flowsFirst += e.flows
	}
	if sc.child {
		ic, scfg := h.ingestConfig(), h.scorerConfig()
		a.spec = childSpec{Ingest: &ic, Scorer: &scfg}
		a.children = append(a.children, h.startChild("node-1", a.spec))
	} else {
		a.replicas = append(a.replicas, h.startIngest("ingest-1"), h.startScorer("scorer-1"))
	}
	a.replicas = append(a.replicas, h.startAdapter("adapter"))

	h.produce(a.msgs[:a.third], a.exp[:a.third])
	h.waitSettled(flowsFirst, 60*time.Second)
	sc.inject(a)
	a.produceRest()
	h.waitSettled(a.flowsAll(), 90*time.Second)
	h.waitDrained(60 * time.Second)

	var restarts []string
	for _, r := range a.replicas {
		r.stop(t)
		if n := r.restarts(); n > 0 {
			restarts = append(restarts, fmt.Sprintf("%s×%d", r.name, n))
			a.note("%s failed %d times; first: %s; last: %s", r.name, n, r.failure(0), r.failure(-1))
		}
	}
	for _, c := range a.children {
		c.stop(t)
	}
	if len(a.children) > 1 {
		restarts = append(restarts, fmt.Sprintf("child×%d", len(a.children)-1))
	}
	h.syncTails()
	b := h.ledger.Balance()
	res := accountingResult{name: sc.name, fault: sc.fault, b: b, restarts: strings.Join(restarts, " "), alerts: h.alerts.Load()}
	if res.restarts == "" {
		res.restarts = "none"
	}
	t.Logf("fault: %s", sc.fault)
	for _, note := range a.notes {
		t.Logf("  %s", note)
	}
	t.Logf("books: %v; restarts: %s; alert records: %d", b, res.restarts, res.alerts)
	if b.In != a.flowsAll() {
		t.Errorf("input flows read back = %d, want the %d produced", b.In, a.flowsAll())
	}
	if err := b.Err(); err != nil {
		t.Errorf("books do not balance:\n%v", err)
	}
	if b.Scored == 0 || len(b.DeadLettered) == 0 {
		t.Errorf("scored %d, dead-lettered %v: the run must exercise both paths", b.Scored, b.DeadLettered)
	}
	return res
}

// TestAccounting runs the accounting scenarios, one fault each, and logs
// the books of every one.
func TestAccounting(t *testing.T) {
	if testing.Short() {
		t.Skip("accounting: runs the pipeline over the embedded broker once per fault")
	}
	n := 3000
	if raceEnabled {
		n = 900
	}
	var results []accountingResult
	for _, sc := range accountingScenarios() {
		t.Run(sc.name, func(t *testing.T) {
			results = append(results, runAccounting(t, sc, n))
		})
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "%d input records per scenario, one in %d hostile\n", n, hostileEvery)
	fmt.Fprintf(&sb, "| scenario | flows in | scored (unique) | duplicates | dead-lettered by reason | lost | restarts |\n|---|---|---|---|---|---|---|\n")
	for _, r := range results {
		var dl []string
		for _, k := range slices.Sorted(maps.Keys(r.b.DeadLettered)) {
			dl = append(dl, fmt.Sprintf("%s %d", k, r.b.DeadLettered[k]))
		}
		fmt.Fprintf(&sb, "| %s | %d | %d | %d | %s | %d | %s |\n", r.name, r.b.In, r.b.Scored, r.b.Duplicates, strings.Join(dl, ", "), r.b.Lost, r.restarts)
	}
	t.Logf("accounting report:\n%s", sb.String())
}

// TestRedeliveryKeepsOutcome checks that a record redelivered after its
// batch failed to commit is judged as it was the first time: a flow eight
// days older than its partition's latest (ingest's -ingest.max-age is 7
// days, measured in replay mode against the partition's newest flow) is
// dead-lettered, and must not be scored when it comes back to a restarted
// ingest that has not seen the newer flow. The restarted ingest has the
// reference only from the offset commit's metadata, where ingest commits
// it with each offset.
func TestRedeliveryKeepsOutcome(t *testing.T) {
	if testing.Short() {
		t.Skip("accounting: runs the pipeline over the embedded broker")
	}
	h := newHarness(t, harnessOptions{})
	ing := h.startIngest("ingest-1")
	h.startScorer("scorer-1")
	host := netip.MustParseAddr("10.0.0.77")
	record := func(start time.Time) kafka.Message {
		f := schemas.Flow{StartNs: start.UnixNano(), EndNs: start.Add(time.Second).UnixNano(), SrcAddr: host,
			DstAddr: netip.MustParseAddr("10.0.1.20"), SrcPort: 40000, DstPort: 443, Proto: 6, BytesOut: 900, BytesIn: 4000, PktsOut: 8, PktsIn: 9, TCPFlags: 0x1b}
		return kafka.Message{Topic: h.input, Key: host.AppendTo(nil), Value: integration.AppendNProbeJSON(nil, &f)}
	}
	partition := stream.PartitionFor(host.AppendTo(nil), harnessPartitions)
	group := h.ingestConfig().Ingest.Group
	now := trafficStart.Add(time.Hour)

	h.produce([]kafka.Message{record(now)}, []expectation{{1, integration.OutcomeScored}})
	h.waitSettled(1, 30*time.Second)
	waitCommitted(t, h, group, partition, 1)

	// The next batch's commit fails more often than ingest retries it:
	// ingest stops, and its supervisor starts a fresh one.
	f := h.cluster().Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.OffsetCommit}, Group: group,
		Err: kerr.CoordinatorNotAvailable, Count: h.kafka.Group.CommitRetries + 1})
	h.produce([]kafka.Message{record(now.Add(-8 * 24 * time.Hour)), record(now.Add(time.Minute))},
		[]expectation{{1, string(ingest.ReasonTimeOutOfWindow)}, {1, integration.OutcomeScored}})
	ctx, cancel := context.WithTimeout(h.ctx, 30*time.Second)
	defer cancel()
	if err := f.Wait(ctx, h.kafka.Group.CommitRetries+1); err != nil {
		t.Fatalf("commit faults answered %d requests: %v", f.Hits(), err)
	}
	h.waitSettled(3, 30*time.Second)
	h.waitDrained(30 * time.Second)
	h.syncTails()
	b := h.ledger.Balance()
	t.Logf("books: %v; ingest restarts: %d (%s)", b, ing.restarts(), ing.failure(0))
	if ing.restarts() == 0 {
		t.Errorf("ingest did not fail on the commit faults: the batch was not redelivered")
	}
	if err := b.Err(); err != nil {
		t.Errorf("books do not balance:\n%v", err)
	}
}

// waitCommitted waits until group has committed offset on the input
// topic's partition.
func waitCommitted(t *testing.T, h *harness, group string, partition int, offset int64) {
	t.Helper()
	client := &kafka.Client{Addr: kafka.TCP(h.kafka.Brokers...), Timeout: 5 * time.Second}
	eventually(t, 30*time.Second, func() error {
		resp, err := client.OffsetFetch(h.ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{h.input: {partition}}})
		if err != nil {
			return err
		}
		for _, p := range resp.Topics[h.input] {
			if p.Partition == partition && p.CommittedOffset == offset {
				return nil
			}
		}
		return fmt.Errorf("%s has not committed offset %d of %s/%d: %+v", group, offset, h.input, partition, resp.Topics[h.input])
	})
}
