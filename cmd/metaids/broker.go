package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/metaids/metaids/stream"
)

// brokerConfig is `metaids broker`: the embedded Kafka-protocol broker on its
// own, for trying metaids or pointing third-party shippers (kcat, goflow2,
// pmacct) at it without a Kafka installation.
type brokerConfig struct {
	// Addr to listen on; only loopback addresses are accepted. Default 127.0.0.1:9092.
	Addr string `yaml:"addr" help:"listen address (loopback only; port 0 picks a free one)"`
	// DataDir keeps topics, records and offsets across restarts; empty keeps them in memory.
	DataDir string `yaml:"data-dir" help:"directory that keeps topics, records and offsets across restarts (empty: memory only)"`
	// Partitions for topics created without an explicit count. Default 4.
	Partitions int `yaml:"partitions" help:"partitions of auto-created and seeded topics"`
	// Topics to create at start.
	Topics []string `yaml:"topics" help:"topics to create at start, comma-separated"`
	// AutoCreate creates topics on first use, as Kafka's auto.create.topics.enable. Default true.
	AutoCreate bool      `yaml:"auto-create-topics" help:"create topics on first produce or fetch, like auto.create.topics.enable"`
	Log        LogConfig `yaml:"log"`
}

func runBroker(ctx context.Context, args []string, stderr io.Writer) int {
	cfg := brokerConfig{Addr: "127.0.0.1:9092", Partitions: 4, AutoCreate: true, Log: LogConfig{Format: "text", Level: "info"}}
	fs := flag.NewFlagSet("metaids broker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	b := bind(fs, &cfg)
	if err := b.load(args); err != nil {
		if err == flag.ErrHelp {
			return exitOK
		}
		fmt.Fprintf(stderr, "metaids broker: %v\n", err)
		return exitUsage
	}
	log, err := newLogger(stderr, cfg.Log)
	if err != nil {
		fmt.Fprintf(stderr, "metaids broker: %v\n", err)
		return exitUsage
	}
	if cfg.Partitions < 1 {
		fmt.Fprintf(stderr, "metaids broker: -partitions: must be at least 1, got %d\n", cfg.Partitions)
		return exitUsage
	}
	if b.check {
		fmt.Fprintln(stderr, "metaids broker: configuration OK")
		return exitOK
	}
	e, err := stream.StartEmbedded(stream.EmbeddedConfig{Addr: cfg.Addr, DataDir: cfg.DataDir, Partitions: cfg.Partitions, SeedTopics: cfg.Topics, AutoCreateTopics: cfg.AutoCreate})
	if err != nil {
		fmt.Fprintf(stderr, "metaids broker: %v\n", err)
		return exitRuntime
	}
	// The address goes to stdout-like stderr as a plain line too, so scripts
	// can pick it up whatever the log format.
	fmt.Fprintf(stderr, "metaids broker listening on %s\n", e.Addr())
	log.Info("embedded broker started", "addr", e.Addr(), "data_dir", cfg.DataDir, "partitions", cfg.Partitions)
	<-ctx.Done()
	log.Info("stopping embedded broker")
	e.Close()
	return exitOK
}
