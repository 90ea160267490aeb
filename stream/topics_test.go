package stream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

// TestEnsureTopicsRetryWaitsForBroker starts EnsureTopicsRetry against a
// loopback port where no broker answers yet, then starts one there: the
// topics are created once it is up, and every failed attempt was logged,
// with backoffs that double up to the cap.
func TestEnsureTopicsRetryWaitsForBroker(t *testing.T) {
	addr, release := downBroker(t)
	cfg := DefaultConfig()
	cfg.Brokers = []string{addr}
	cfg.Timeout = time.Second
	cfg.RetryBackoff = 10 * time.Millisecond
	cfg.RetryBackoffMax = 40 * time.Millisecond
	topic := topicName(t, "out")
	rec := &recordingHandler{}

	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- EnsureTopicsRetry(ctx, cfg, []TopicSpec{{Name: topic, Partitions: 3}}, slog.New(rec))
	}()
	// Enough attempts to reach the cap before the broker starts.
	eventually(t, 30*time.Second, func() error {
		if n := len(rec.warnings()); n < 4 {
			return fmt.Errorf("%d failed attempts logged, want at least 4", n)
		}
		return nil
	})
	release()
	e := startBroker(t, EmbeddedConfig{Addr: addr})
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("EnsureTopicsRetry = %v, want nil once the broker is up", err)
		}
	case <-ctx.Done():
		t.Fatal("EnsureTopicsRetry still trying after the broker came up")
	}
	p := newProducer(t, fastConfig(e), nil)
	if n, err := p.Partitions(t.Context(), topic); err != nil || n != 3 {
		t.Errorf("Partitions(%s) = %d, %v, want 3", topic, n, err)
	}

	want := []time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond}
	for i, r := range rec.warnings() {
		attrs := map[string]slog.Value{}
		r.Attrs(func(a slog.Attr) bool {
			attrs[a.Key] = a.Value
			return true
		})
		if got := attrs["attempt"].Int64(); got != int64(i+1) {
			t.Errorf("warning %d: attempt %d, want %d", i, got, i+1)
		}
		wantWait := want[min(i, len(want)-1)]
		if got := attrs["backoff"].Duration(); got != wantWait {
			t.Errorf("warning %d: backoff %v, want %v", i, got, wantWait)
		}
		if attrs["err"].String() == "" {
			t.Errorf("warning %d (%q) does not say what failed", i, r.Message)
		}
	}
}

// TestEnsureTopicsRetryStops checks the two ways out besides success: a
// cancelled context, and a refusal no retry can change.
func TestEnsureTopicsRetryStops(t *testing.T) {
	t.Run("cancelled", func(t *testing.T) {
		cfg := DefaultConfig()
		addr, _ := downBroker(t)
		cfg.Brokers = []string{addr}
		cfg.RetryBackoff = 10 * time.Millisecond
		cfg.RetryBackoffMax = 40 * time.Millisecond
		rec := &recordingHandler{}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() {
			done <- EnsureTopicsRetry(ctx, cfg, []TopicSpec{{Name: topicName(t, "out")}}, slog.New(rec))
		}()
		eventually(t, 30*time.Second, func() error {
			if len(rec.warnings()) == 0 {
				return errors.New("no failed attempt logged yet")
			}
			return nil
		})
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("EnsureTopicsRetry after cancel = %v, want %v", err, context.Canceled)
		}
	})
	t.Run("invalid topic", func(t *testing.T) {
		e := startBroker(t, EmbeddedConfig{})
		rec := &recordingHandler{}
		// Kafka refuses names that differ only in '.' and '_': their
		// metric names would collide.
		specs := []TopicSpec{{Name: "out.a.b"}, {Name: "out.a_b"}}
		err := EnsureTopicsRetry(t.Context(), fastConfig(e), specs, slog.New(rec))
		if !errors.Is(err, kafka.InvalidTopic) {
			t.Errorf("EnsureTopicsRetry(out.a.b, out.a_b) = %v, want %v", err, kafka.InvalidTopic)
		}
		if n := len(rec.warnings()); n != 0 {
			t.Errorf("%d retries of a refused topic name, want none", n)
		}
	})
}

// downBroker holds a loopback port where no broker answers: it accepts
// connections and closes them at once, as a host whose broker process is
// starting does. Holding the port, rather than handing back a free one,
// keeps another test's broker from taking it meanwhile. release frees it
// for the broker the test then starts there.
func downBroker(t *testing.T) (addr string, release func()) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			conn.Close()
		}
	}()
	var once sync.Once
	release = func() {
		once.Do(func() {
			l.Close()
			<-done
		})
	}
	t.Cleanup(release)
	return l.Addr().String(), release
}

// recordingHandler keeps the Warn records logged through it.
type recordingHandler struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (h *recordingHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *recordingHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Level != slog.LevelWarn {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.recs = append(h.recs, r.Clone())
	return nil
}

func (h *recordingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recordingHandler) WithGroup(string) slog.Handler      { return h }

func (h *recordingHandler) warnings() []slog.Record {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]slog.Record(nil), h.recs...)
}
