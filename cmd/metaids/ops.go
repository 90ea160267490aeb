package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// OpsConfig is the operational surface every long-running subcommand shares.
type OpsConfig struct {
	// HTTPAddr serves /metrics, /healthz and /readyz; empty disables it. Default 127.0.0.1:9464.
	HTTPAddr string `yaml:"addr" help:"address for /metrics, /healthz and /readyz (empty disables)"`
}

// LogConfig selects the log format and level.
type LogConfig struct {
	// Format is json (default, for log shippers) or text (for people).
	Format string `yaml:"format" help:"log format: json or text"`
	// Level is debug, info (default), warn or error.
	Level string `yaml:"level" help:"log level: debug, info, warn or error"`
}

func newLogger(w io.Writer, c LogConfig) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.Level)); err != nil {
		return nil, errors.New("-log.level: want debug, info, warn or error, got " + c.Level)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch c.Format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, errors.New("-log.format: want json or text, got " + c.Format)
}

// newRegistry returns a fresh registry with the Go and process collectors, so
// each subcommand (and each test) has its own metrics and nothing is global.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// serveOps serves the ops endpoints until ctx is done. ready reports
// readiness; liveness is the process answering at all.
func serveOps(ctx context.Context, addr string, reg *prometheus.Registry, ready func() bool, log *slog.Logger) error {
	if addr == "" {
		<-ctx.Done()
		return nil
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if ready != nil && !ready() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ready\n")
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return errors.New("-http.addr: " + err.Error())
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	log.Info("ops server listening", "addr", ln.Addr().String())
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
