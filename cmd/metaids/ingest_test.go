package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestIngestUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "-ingest.inputs: at least one input topic"},
		{[]string{"-ingest.formats", "flows.x=nosuch"}, "-ingest.formats"},
		{[]string{"-ingest.inputs", "flows.a", "-features.batch.max-rows", "0"}, "-features.batch.max-rows"},
		{[]string{"-ingest.inputs", "flows.a", "-ingest.batch.max-records", "0", "-ingest.max-age", "0s"}, "-ingest.max-age"},
	} {
		var out bytes.Buffer
		args := append([]string{"ingest"}, tc.args...)
		if code := run(t.Context(), args, &out); code != exitUsage || !strings.Contains(out.String(), tc.want) {
			t.Errorf("run(%q) = %d, %q; want %d and a message containing %q", args, code, out.String(), exitUsage, tc.want)
		}
	}
	var out bytes.Buffer
	if code := run(t.Context(), []string{"ingest", "-ingest.formats", "flows.goflow2=goflow2", "-config.check"}, &out); code != exitOK {
		t.Errorf("ingest -config.check = %d, want 0; output:\n%s", code, out.String())
	}
}

// TestIngestCommand runs `metaids ingest` against the embedded broker,
// feeds it with `metaids replay`, reads the outcome from its /metrics and
// stops it as SIGTERM would.
func TestIngestCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: starts a broker and the ingest command")
	}
	e := startEmbedded(t, 2, "flows.goflow2")
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	ctx, cancel := context.WithCancel(t.Context())
	var out syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"ingest", "-kafka.brokers", e.Addr(), "-ingest.inputs", "flows.goflow2",
			"-ingest.partitions", "2", "-http.addr", addr, "-kafka.writer.batch-timeout", "5ms", "-kafka.reader.max-wait", "50ms",
			"-ingest.replay", "-log.level", "debug"}, &out)
	}()
	stopped := false
	defer func() {
		if !stopped {
			cancel()
			<-done
		}
	}()
	metrics := func() (string, error) {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	eventually(t, 20*time.Second, func() error {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return errors.New(resp.Status)
		}
		return nil
	})

	path := filepath.Join(t.TempDir(), "flows.jsonl")
	os.WriteFile(path, fixture(t, "goflow2/flows.jsonl"), 0o644)
	var rout bytes.Buffer
	if code := run(t.Context(), []string{"replay", "-kafka.brokers", e.Addr(), "-replay.topic", "flows.goflow2", path}, &rout); code != exitOK {
		t.Fatalf("replay = %d; output:\n%s", code, rout.String())
	}
	want := len(nonEmptyLines(fixture(t, "goflow2/flows.jsonl")))
	eventually(t, 20*time.Second, func() error {
		m, err := metrics()
		if err != nil {
			return err
		}
		line := fmt.Sprintf(`metaids_ingest_records_total{outcome="ok",source="goflow2"} %d`, want)
		if !strings.Contains(m, line) {
			return fmt.Errorf("no %q in /metrics", line)
		}
		return nil
	})
	cancel()
	stopped = true
	if code := <-done; code != exitOK {
		t.Errorf("ingest exited %d after cancellation, want 0; output:\n%s", code, out.String())
	}
}
