package main

import (
	"bytes"
	"context"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer lets the test read what the broker command writes from
// another goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestBrokerWithKcat checks the standalone broker against librdkafka (Debian's
// kcat), a client nobody on this project wrote.
func TestBrokerWithKcat(t *testing.T) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Skip("kcat not installed (apt-get install kcat); .ci/run installs it")
	}
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	ctx, cancel := context.WithCancel(t.Context())
	var out syncBuffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"broker", "--addr", addr, "--topics", "kcat-test"}, &out) }()
	defer func() {
		cancel()
		if code := <-done; code != exitOK {
			t.Errorf("broker exited %d, want 0; output:\n%s", code, out.String())
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "listening on "+addr) {
		if time.Now().After(deadline) {
			t.Fatalf("broker did not print its address; output:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	prod := exec.CommandContext(ctx, kcat, "-b", addr, "-t", "kcat-test", "-P", "-K:", "-z", "gzip")
	prod.Stdin = strings.NewReader("k1:hello\nk2:{\"src_addr\":\"10.0.0.1\"}\n")
	if b, err := prod.CombinedOutput(); err != nil {
		t.Fatalf("kcat produce: %v\n%s", err, b)
	}
	cons := exec.CommandContext(ctx, kcat, "-b", addr, "-t", "kcat-test", "-C", "-e", "-q", "-f", "%k=%s\n")
	b, err := cons.CombinedOutput()
	if err != nil {
		t.Fatalf("kcat consume: %v\n%s", err, b)
	}
	got := string(b)
	for _, want := range []string{"k1=hello\n", "k2={\"src_addr\":\"10.0.0.1\"}\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("kcat consumed %q, want it to contain %q", got, want)
		}
	}
}
