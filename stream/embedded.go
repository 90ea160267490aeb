package stream

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// EmbeddedConfig configures an in-process broker.
type EmbeddedConfig struct {
	// Addr is where the broker listens. kfake binds 127.0.0.1 only, which
	// keeps a demo broker off the network; the port may be 0 for any free
	// one. Default: 127.0.0.1:0.
	Addr string

	// DataDir, if set, persists topics, records and committed offsets
	// there, so a broker restarted on the same directory carries on where
	// it stopped. Default: "" (in memory).
	DataDir string

	// Partitions is the count for SeedTopics and for topics created
	// without one. Default: 4.
	Partitions int

	// SeedTopics are created at start (unless DataDir already holds
	// state) with Partitions partitions each.
	SeedTopics []string

	// Users, if any, turn on SASL: clients must authenticate as one of
	// them.
	Users []SASLUser

	// TLS, if set, makes the broker accept TLS connections only.
	TLS *tls.Config

	// GroupMinSessionTimeout is the smallest session timeout a group
	// member may ask for; lower than Kafka's 6s so that tests can detect a
	// dead member quickly. Default: 100ms.
	GroupMinSessionTimeout time.Duration

	// AutoCreateTopics creates a topic on first use, as Kafka's
	// auto.create.topics.enable does. The standalone broker turns it on so
	// third-party shippers can write to any flows.* topic; the stages
	// themselves create their topics explicitly. Default: false.
	AutoCreateTopics bool

	// Log receives the broker's own logs, at Debug (its errors at Warn).
	// Default: none.
	Log *slog.Logger
}

// SASLUser is a user of the embedded broker.
type SASLUser struct {
	Mechanism string // PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512
	Username  string
	Password  string
}

// Embedded is a single Kafka broker running in this process (kfake). The
// demo and the tests use it; stages still talk to it over TCP with
// kafka-go, exactly as they talk to a real cluster.
type Embedded struct {
	c    *kfake.Cluster
	addr string
}

// StartEmbedded starts a broker. Close it when done.
func StartEmbedded(cfg EmbeddedConfig) (*Embedded, error) {
	port, err := embeddedPort(cfg.Addr)
	if err != nil {
		return nil, err
	}
	if cfg.Partitions <= 0 {
		cfg.Partitions = 4
	}
	if cfg.GroupMinSessionTimeout <= 0 {
		cfg.GroupMinSessionTimeout = 100 * time.Millisecond
	}
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.DefaultNumPartitions(cfg.Partitions),
		kfake.GroupMinSessionTimeout(cfg.GroupMinSessionTimeout),
		kfake.ClusterID("metaids-embedded"),
	}
	if port != 0 {
		opts = append(opts, kfake.Ports(port))
	}
	if cfg.DataDir != "" {
		opts = append(opts, kfake.DataDir(cfg.DataDir))
	}
	if len(cfg.SeedTopics) > 0 {
		opts = append(opts, kfake.SeedTopics(int32(cfg.Partitions), cfg.SeedTopics...))
	}
	if len(cfg.Users) > 0 {
		opts = append(opts, kfake.EnableSASL())
		for _, u := range cfg.Users {
			switch u.Mechanism {
			case MechanismPLAIN, MechanismSCRAMSHA256, MechanismSCRAMSHA512:
			default:
				return nil, fmt.Errorf("embedded broker user %q: unknown mechanism %q, want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", u.Username, u.Mechanism)
			}
			opts = append(opts, kfake.Superuser(u.Mechanism, u.Username, u.Password))
		}
	}
	if cfg.AutoCreateTopics {
		opts = append(opts, kfake.AllowAutoTopicCreation())
	}
	if cfg.TLS != nil {
		opts = append(opts, kfake.TLS(cfg.TLS))
	}
	if cfg.Log != nil {
		opts = append(opts, kfake.WithLogger(kfakeLogger{cfg.Log.With("component", "kfake")}))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("start embedded broker: %w", err)
	}
	addrs := c.ListenAddrs()
	if len(addrs) != 1 {
		c.Close()
		return nil, fmt.Errorf("start embedded broker: listening on %d addresses, want 1", len(addrs))
	}
	return &Embedded{c: c, addr: addrs[0]}, nil
}

func embeddedPort(addr string) (int, error) {
	if addr == "" {
		return 0, nil
	}
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, fmt.Errorf("embedded broker address %q: %w", addr, err)
	}
	if host != "" && host != "127.0.0.1" && host != "localhost" {
		return 0, fmt.Errorf("embedded broker address %q: %w", addr, ErrNotLoopback)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return 0, fmt.Errorf("embedded broker address %q: bad port", addr)
	}
	return port, nil
}

// Addr returns the broker's host:port.
func (e *Embedded) Addr() string { return e.addr }

// Config returns DefaultConfig pointed at the broker.
func (e *Embedded) Config() Config {
	cfg := DefaultConfig()
	cfg.Brokers = []string{e.addr}
	return cfg
}

// Cluster returns the underlying kfake cluster, for tests that inject
// faults with ControlKey.
func (e *Embedded) Cluster() *kfake.Cluster { return e.c }

// Close stops the broker, first saving its state when DataDir is set.
func (e *Embedded) Close() { e.c.Close() }
