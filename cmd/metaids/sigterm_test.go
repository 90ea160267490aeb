package main

import (
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/apache/arrow/go/v15/arrow/memory"
	"github.com/segmentio/kafka-go"

	"github.com/metaids/metaids/features"
	"github.com/metaids/metaids/schemas"
)

// helperEnv marks a re-executed test binary as the metaids command.
const helperEnv = "METAIDS_SIGTERM_HELPER"

// TestSigtermHelperProcess is not a test of its own: re-executed by
// startStage with helperEnv set, the test binary becomes `metaids` (main,
// signal handling included) with the arguments after "--".
func TestSigtermHelperProcess(t *testing.T) {
	if os.Getenv(helperEnv) != "1" {
		t.Skip("the metaids process of TestSigterm*: runs only when re-executed")
	}
	i := slices.Index(os.Args, "--")
	os.Args = append([]string{"metaids"}, os.Args[i+1:]...)
	main() // exits
}

// stageProc is a metaids subprocess.
type stageProc struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	err  error
}

func startStage(t testing.TB, args ...string) *stageProc {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"-test.run=^TestSigtermHelperProcess$", "--"}, args...)...)
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	p := &stageProc{cmd: cmd, out: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// sigterm sends SIGTERM and waits up to limit for the exit; it returns the
// exit code and how long the process took.
func (p *stageProc) sigterm(t *testing.T, limit time.Duration) (int, time.Duration) {
	t.Helper()
	start := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(limit):
		t.Fatalf("no exit %v after SIGTERM; output:\n%s", limit, p.out.String())
	}
	return p.cmd.ProcessState.ExitCode(), time.Since(start)
}

// committed returns the group's committed offset per partition of topic.
func committed(t *testing.T, addr, group, topic string, partitions int) map[int]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	ids := make([]int, partitions)
	for i := range ids {
		ids[i] = i
	}
	c := &kafka.Client{Addr: kafka.TCP(addr)}
	resp, err := c.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: ids}})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Error != nil {
		t.Fatal(resp.Error)
	}
	out := map[int]int64{}
	for _, p := range resp.Topics[topic] {
		if p.Error != nil {
			t.Fatal(p.Error)
		}
		out[p.Partition] = max(p.CommittedOffset, 0) // -1: nothing committed
	}
	return out
}

// featureRows counts the rows on the features topic by flow id.
func featureRows(t *testing.T, addr string) map[uint64]int {
	t.Helper()
	mem := memory.NewGoAllocator()
	rows := map[uint64]int{}
	for _, msgs := range topicMessages(t, addr, "features") {
		for _, m := range msgs {
			v, err := features.Decode(m.Value, mem)
			if err != nil {
				t.Fatalf("features message at offset %d: %v", m.Offset, err)
			}
			for i := range v.Len() {
				rows[v.FlowID(i)]++
			}
			v.Release()
		}
	}
	return rows
}

// TestSigtermIngest stops a running `metaids ingest` process with SIGTERM
// while records keep arriving. The process must exit 0 within the drain
// timeout with its last outputs committed: the features topic then holds
// exactly the flows of the committed input records. A restarted process
// must carry on from there, so that in the end every input record has its
// flow, and none more than once beyond the one batch in hand.
func TestSigtermIngest(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: starts a broker and the ingest command as a process, twice")
	}
	const (
		topic      = "flows.goflow2"
		partitions = 2
		maxBatch   = 20
		group      = "metaids-ingest"
	)
	e := startEmbedded(t, partitions, topic)
	lines := nonEmptyLines(fixture(t, "goflow2/flows.jsonl"))
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	args := append([]string{"ingest", "-kafka.brokers", e.Addr(), "-ingest.inputs", topic, "-ingest.partitions", "2",
		"-ingest.replay", "-ingest.batch.max-records", strconv.Itoa(maxBatch), "-shutdown.timeout", "10s",
		"-http.addr", addr, "-log.level", "debug"}, fastArgs...)

	// A shipper that keeps writing, a few records at a time.
	w := &kafka.Writer{Addr: kafka.TCP(e.Addr()), Balancer: &kafka.RoundRobin{}, RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond}
	defer w.Close()
	stopShipper := make(chan struct{})
	var shipper sync.WaitGroup
	shipper.Add(1)
	var shipErr error
	go func() {
		defer shipper.Done()
		for i := 0; ; i++ {
			select {
			case <-stopShipper:
				return
			case <-time.After(2 * time.Millisecond):
			}
			msgs := make([]kafka.Message, 10)
			for j := range msgs {
				msgs[j] = kafka.Message{Topic: topic, Value: []byte(lines[(i*10+j)%len(lines)])}
			}
			if err := w.WriteMessages(t.Context(), msgs...); err != nil {
				shipErr = err
				return
			}
		}
	}()
	defer func() {
		select {
		case <-stopShipper:
		default:
			close(stopShipper)
		}
		shipper.Wait()
	}()

	p := startStage(t, args...)
	waitReady(t, addr, p.out)
	eventually(t, 30*time.Second, func() error {
		text, err := scrape(addr)
		if err != nil {
			return err
		}
		if n := metricSum(parseMetrics(t, text)["metaids_ingest_flows_total"], nil); n < 300 {
			return fmt.Errorf("%v flows so far", n)
		}
		return nil
	})
	code, took := p.sigterm(t, 20*time.Second)
	if code != exitOK {
		t.Fatalf("ingest exited %d after SIGTERM, want 0; output:\n%s", code, p.out.String())
	}
	t.Logf("ingest stopped %v after SIGTERM", took.Round(time.Millisecond))

	// The features topic must hold exactly the committed input records.
	first := committed(t, e.Addr(), group, topic, partitions)
	rows := featureRows(t, e.Addr())
	var n1 int64
	for part, off := range first {
		n1 += off
		for o := range off {
			if rows[schemas.FlowID(schemas.Coord{Topic: topic, Partition: int32(part), Offset: o})] == 0 {
				t.Errorf("record %d/%d is committed but its flow is not on the features topic", part, o)
			}
		}
	}
	if len(rows) != int(n1) {
		t.Errorf("features holds %d flows after SIGTERM, committed input records %d: outputs beyond the commit (offsets %v)", len(rows), n1, first)
	}

	close(stopShipper)
	shipper.Wait()
	if shipErr != nil {
		t.Fatalf("shipper: %v", shipErr)
	}
	input := topicMessages(t, e.Addr(), topic)
	var total int64
	for _, msgs := range input {
		total += int64(len(msgs))
	}
	if n1 >= total {
		t.Fatalf("all %d records were handled before SIGTERM: not a mid-stream stop", total)
	}
	t.Logf("first run committed %d of %d records", n1, total)

	// A restarted process carries on and catches up.
	p = startStage(t, args...)
	eventually(t, 60*time.Second, func() error {
		got := committed(t, e.Addr(), group, topic, partitions)
		for part, msgs := range input {
			if end := msgs[len(msgs)-1].Offset + 1; got[part] != end {
				return fmt.Errorf("partition %d committed %d, want %d", part, got[part], end)
			}
		}
		return nil
	})
	if code, _ := p.sigterm(t, 20*time.Second); code != exitOK {
		t.Fatalf("restarted ingest exited %d after SIGTERM, want 0; output:\n%s", code, p.out.String())
	}

	rows = featureRows(t, e.Addr())
	want := map[uint64]bool{}
	for part, msgs := range input {
		for _, m := range msgs {
			id := schemas.FlowID(schemas.Coord{Topic: topic, Partition: int32(part), Offset: m.Offset})
			want[id] = true
			if rows[id] == 0 {
				t.Errorf("record %d/%d was lost: no flow on the features topic", part, m.Offset)
			}
		}
	}
	dups := 0
	for id, n := range rows {
		if !want[id] {
			t.Errorf("flow %x on the features topic is from no input record", id)
		}
		dups += n - 1
	}
	if dups > maxBatch {
		t.Errorf("%d flows duplicated across the restart, want at most the batch in hand (%d)", dups, maxBatch)
	}
	t.Logf("%d records, %d flows on features, %d duplicated; partitions %v", total, len(rows), dups, slices.Sorted(maps.Keys(input)))
}
