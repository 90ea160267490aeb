package stream

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
)

// Logger adapts log to kafka-go's Logger at Debug: kafka-go reports every
// fetch, join and commit there, which is detail, not lifecycle.
func Logger(log *slog.Logger) kafka.Logger { return kafkaLogger(log, slog.LevelDebug) }

// ErrorLogger adapts log to kafka-go's ErrorLogger at Warn: kafka-go
// retries what it reports there, so it is not yet an error of ours.
func ErrorLogger(log *slog.Logger) kafka.Logger { return kafkaLogger(log, slog.LevelWarn) }

func kafkaLogger(log *slog.Logger, level slog.Level) kafka.Logger {
	log = orDiscard(log).With("component", "kafka-go")
	return kafka.LoggerFunc(func(format string, args ...any) {
		// Formatting costs more than the check: the reader logs per fetch.
		if !log.Enabled(context.Background(), level) {
			return
		}
		log.Log(context.Background(), level, strings.TrimSpace(fmt.Sprintf(format, args...)))
	})
}

// kfakeLogger adapts log to kfake's Logger, one level down from kfake's
// own: the embedded broker's errors are usually a client's mistake.
type kfakeLogger struct{ log *slog.Logger }

func (l kfakeLogger) Logf(level kfake.LogLevel, format string, args ...any) {
	lvl := slog.LevelDebug
	switch level {
	case kfake.LogLevelError:
		lvl = slog.LevelWarn
	case kfake.LogLevelWarn, kfake.LogLevelInfo:
		lvl = slog.LevelDebug
	}
	if !l.log.Enabled(context.Background(), lvl) {
		return
	}
	l.log.Log(context.Background(), lvl, strings.TrimSpace(fmt.Sprintf(format, args...)))
}

// orDiscard lets callers pass a nil logger; packages never fall back to
// slog.Default.
func orDiscard(log *slog.Logger) *slog.Logger {
	if log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return log
}
