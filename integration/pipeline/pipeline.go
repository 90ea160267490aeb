package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/metaids/metaids/adapter"
	"github.com/metaids/metaids/features"
	"github.com/metaids/metaids/ingest"
	"github.com/metaids/metaids/model"
	"github.com/metaids/metaids/schemas"
	"github.com/metaids/metaids/scorer"
	"github.com/metaids/metaids/stream"
)

// Config configures every stage in one process, on the embedded
// broker unless Kafka.Brokers points at a cluster: `metaids up` and the
// demo bind it to flags, the end-to-end tests and eval set it directly.
// Each stage keeps its own settings (-ingest.*, -scorer.*, -adapter.*) as
// when it runs alone.
type Config struct {
	Kafka    stream.Config         `yaml:"kafka"`
	Broker   BrokerConfig          `yaml:"broker"`
	Model    ModelConfig           `yaml:"model"`
	Ingest   ingest.Settings       `yaml:"ingest"`
	Features features.Config       `yaml:"features"`
	Scorer   scorer.Settings       `yaml:"scorer"`
	Adapter  adapter.Settings      `yaml:"adapter"`
	Shutdown ingest.ShutdownConfig `yaml:"shutdown"`
	// SchemaRegistry is shared by the three stages (-schema-registry.*).
	SchemaRegistry schemas.RegistryConfig `yaml:"schema-registry"`
}

// BrokerConfig configures the embedded broker.
type BrokerConfig struct {
	// Addr of the embedded broker (loopback only); used when -kafka.brokers is empty.
	Addr string `yaml:"addr" help:"embedded broker address when -kafka.brokers is empty (loopback only; port 0 picks a free one)"`
	// DataDir keeps topics, offsets and models across restarts of `up`.
	DataDir string `yaml:"data-dir" help:"directory where the embedded broker keeps topics, offsets and models across restarts (empty: memory only)"`
	// Partitions of the pipeline topics.
	Partitions int `yaml:"partitions" help:"partitions of the pipeline topics"`
}

// ModelConfig says which model to serve and how to sign.
type ModelConfig struct {
	// File is a model written by `metaids train`, published signed to the
	// models topic when the topic holds no model yet.
	File string `yaml:"file" help:"model file from 'metaids train', published to the models topic when it holds none"`
	// SigningKey signs that model and the adapter's updates; created (with
	// its .pub beside it) when missing.
	SigningKey string `yaml:"signing-key" help:"Ed25519 PEM private key signing models (created with its .pub when missing)"`
}

// DefaultConfig returns the defaults of every stage, with the
// conventional flows.<format> input topics.
func DefaultConfig() Config {
	ic := ingest.DefaultSettings()
	ic.Inputs = []string{"flows.goflow2", "flows.pmacct", "flows.nprobe", "flows.zeek", "flows.suricata", "flows.vpc", "flows.cic", "flows.avro"}
	ic.Partitions = 4
	kc := stream.DefaultConfig()
	kc.Brokers = nil
	return Config{
		Kafka:    kc,
		Broker:   BrokerConfig{Addr: "127.0.0.1:0", Partitions: 4},
		Ingest:   ic,
		Features: features.DefaultConfig(),
		Scorer:   scorer.DefaultSettings(),
		Adapter:  adapter.DefaultConfig().Adapter,
		Shutdown: ingest.ShutdownConfig{Timeout: 30 * time.Second},

		SchemaRegistry: schemas.DefaultRegistryConfig(),
	}
}

// Pipeline is a running pipeline: the broker (if embedded) and the three
// stages.
type Pipeline struct {
	Broker  *stream.Embedded // nil when Kafka.Brokers named a cluster
	Kafka   stream.Config    // what the stages use, brokers filled in
	Ingest  *ingest.Stage
	Scorer  *scorer.Stage
	Adapter *adapter.Stage

	tmpDir string // the ephemeral signing key's, removed by Close
}

// Ready reports whether every stage is ready.
func (p *Pipeline) Ready() bool {
	return p.Ingest.Ready() && p.Scorer.Ready() && p.Adapter.Ready()
}

// Close stops the embedded broker; call it after Run has returned.
func (p *Pipeline) Close() {
	if p.Broker != nil {
		p.Broker.Close()
	}
	if p.tmpDir != "" {
		os.RemoveAll(p.tmpDir)
	}
}

// Start starts the broker, creates the topics, publishes the model
// if the topic has none, and builds the stages; Run starts them.
func Start(ctx context.Context, cfg *Config, m *model.Model, log *slog.Logger, reg prometheus.Registerer) (*Pipeline, error) {
	p := &Pipeline{Kafka: cfg.Kafka}
	if len(p.Kafka.Brokers) == 0 {
		if err := LoopbackAddr(cfg.Broker.Addr); err != nil {
			return nil, fmt.Errorf("-broker.addr: %w", err)
		}
		e, err := stream.StartEmbedded(stream.EmbeddedConfig{
			Addr: cfg.Broker.Addr, DataDir: cfg.Broker.DataDir, Partitions: cfg.Broker.Partitions, AutoCreateTopics: true,
		})
		if err != nil {
			return nil, err
		}
		p.Broker = e
		p.Kafka.Brokers = []string{e.Addr()}
		log.Info("embedded broker started", "addr", e.Addr(), "data_dir", cfg.Broker.DataDir)
	}
	fail := func(err error) (*Pipeline, error) { p.Close(); return nil, err }

	keyPath := cfg.Model.SigningKey
	if keyPath == "" {
		dir := cfg.Broker.DataDir
		if dir == "" {
			// An in-memory broker forgets the models signed with this
			// key when it stops, so the key goes with it (Close).
			d, err := os.MkdirTemp("", "metaids-keys-")
			if err != nil {
				return fail(err)
			}
			dir, p.tmpDir = d, d
		}
		keyPath = filepath.Join(dir, "signing-key.pem")
	}
	priv, pubPath, err := KeyPair(keyPath)
	if err != nil {
		return fail(fmt.Errorf("-model.signing-key: %w", err))
	}
	topics := schemas.Topics{Prefix: p.Kafka.TopicPrefix}
	names := stream.TopicNames{Features: "features", Scores: "scores", Alerts: "alerts", Actions: "actions", Labels: "labels", Models: "models", ScorerState: "scorer.state", DLQ: "flows.dlq"}
	specs := stream.PipelineTopics(p.Kafka.TopicPrefix, names, cfg.Broker.Partitions, 1)
	for _, in := range cfg.Ingest.Inputs {
		specs = append(specs, stream.TopicSpec{Name: p.Kafka.TopicPrefix + in, Partitions: cfg.Broker.Partitions, ReplicationFactor: 1})
	}
	if err := stream.EnsureTopics(ctx, p.Kafka, specs); err != nil {
		return fail(err)
	}
	if m == nil && cfg.Model.File != "" {
		if m, err = model.Load(cfg.Model.File, features.Default().Hash()); err != nil {
			return fail(fmt.Errorf("-model.file: %w", err))
		}
	}
	empty, err := TopicEmpty(ctx, p.Kafka, topics.Models())
	if err != nil {
		return fail(err)
	}
	switch {
	case empty && m != nil:
		v, err := PublishModel(ctx, p.Kafka, m, priv)
		if err != nil {
			return fail(err)
		}
		log.Info("model published", "model", m.Name, "model_version", v, "classes", m.Classes())
	case empty:
		return fail(errors.New("-model.file: the models topic holds no model: train one with 'metaids train' and pass it here"))
	default:
		log.Info("models topic already holds a model; serving the newest that verifies")
	}

	ic := ingest.Config{Config: p.Kafka, Ingest: cfg.Ingest, Features: cfg.Features, Shutdown: cfg.Shutdown, SchemaRegistry: cfg.SchemaRegistry}
	if p.Ingest, err = ingest.New(ic, log.With("stage", "ingest"), reg); err != nil {
		return fail(err)
	}
	sc := scorer.Config{Config: p.Kafka, Scorer: cfg.Scorer, Shutdown: scorer.ShutdownConfig{Timeout: cfg.Shutdown.Timeout}, SchemaRegistry: cfg.SchemaRegistry}
	sc.Scorer.Model.Keys = append(sc.Scorer.Model.Keys, pubPath)
	if m != nil {
		sc.Scorer.Model.Name = m.Name
	}
	if p.Scorer, err = scorer.New(sc, log, reg); err != nil {
		return fail(err)
	}
	ac := adapter.Config{Config: p.Kafka, Adapter: cfg.Adapter, SchemaRegistry: cfg.SchemaRegistry, Shutdown: adapter.ShutdownConfig{Timeout: cfg.Shutdown.Timeout}}
	ac.Adapter.SigningKey = keyPath
	ac.Adapter.Model = sc.Scorer.Model.Name
	if p.Adapter, err = adapter.New(ac, log, reg); err != nil {
		return fail(err)
	}
	return p, nil
}

// Run runs the three stages until ctx ends or one fails.
func (p *Pipeline) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return p.Ingest.Run(gctx) })
	g.Go(func() error { return p.Scorer.Run(gctx) })
	g.Go(func() error { return p.Adapter.Run(gctx) })
	return g.Wait()
}

// Validate checks the stage settings the way each stage does on its own.
// Brokers are only required when not embedded, so a placeholder stands in
// for the embedded broker's address.
func (c *Config) Validate() error {
	kc := c.Kafka
	if len(kc.Brokers) == 0 {
		kc.Brokers = []string{"127.0.0.1:9092"} // stands in for the embedded broker's address
	}
	var errs []error
	if c.Broker.Partitions < 1 {
		errs = append(errs, fmt.Errorf("-broker.partitions: must be at least 1, got %d", c.Broker.Partitions))
	}
	errs = append(errs, ingest.Config{Config: kc, Ingest: c.Ingest, Features: c.Features, Shutdown: c.Shutdown, SchemaRegistry: c.SchemaRegistry}.Validate())
	sc := scorer.Config{Config: kc, Scorer: c.Scorer, SchemaRegistry: c.SchemaRegistry}
	sc.Scorer.Model.Keys = append(sc.Scorer.Model.Keys, "placeholder.pub") // up makes its own
	errs = append(errs, sc.Validate())
	ac := adapter.Config{Config: kc, Adapter: c.Adapter, SchemaRegistry: c.SchemaRegistry, Shutdown: adapter.ShutdownConfig{Timeout: c.Shutdown.Timeout}}
	ac.Adapter.SigningKey = "placeholder.pem"
	errs = append(errs, ac.Validate())
	return errors.Join(errs...)
}
