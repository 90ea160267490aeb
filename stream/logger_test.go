package stream

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestKafkaLoggers(t *testing.T) {
	for _, tc := range []struct {
		name      string
		minLevel  slog.Level
		wantDebug bool
	}{
		{"debug enabled", slog.LevelDebug, true},
		{"debug disabled", slog.LevelInfo, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: tc.minLevel}))
			Logger(log).Printf("joined group %s in generation %d\n", "g", 3)
			ErrorLogger(log).Printf("fetch failed: %v", "boom")
			out := buf.String()
			if got := strings.Contains(out, `level=DEBUG msg="joined group g in generation 3" component=kafka-go`); got != tc.wantDebug {
				t.Errorf("debug line logged = %v, want %v; output:\n%s", got, tc.wantDebug, out)
			}
			if !strings.Contains(out, `level=WARN msg="fetch failed: boom" component=kafka-go`) {
				t.Errorf("error line not logged at WARN; output:\n%s", out)
			}
		})
	}
	// A nil logger is allowed and discards.
	Logger(nil).Printf("ignored")
}
