package stream

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"
)

// SASL mechanisms accepted by SASLConfig.Mechanism.
const (
	MechanismPLAIN       = "PLAIN"
	MechanismSCRAMSHA256 = "SCRAM-SHA-256"
	MechanismSCRAMSHA512 = "SCRAM-SHA-512"
)

// Config holds the Kafka settings every stage shares. Stages embed it under
// the `kafka` YAML key; each field names the flag it maps onto.
type Config struct {
	// Brokers are the bootstrap brokers as host:port (-kafka.brokers).
	// Default: localhost:9092.
	Brokers []string `yaml:"brokers"`

	// ClientID identifies this process in broker logs and quotas
	// (-kafka.client-id). Default: metaids.
	ClientID string `yaml:"client-id"`

	// TopicPrefix is prepended to every topic name, so several pipelines
	// can share a cluster (-kafka.topic-prefix). Default: "".
	TopicPrefix string `yaml:"topic-prefix"`

	// Timeout bounds dialling and each request to a broker, including the
	// group coordinator (-kafka.timeout). Default: 10s.
	Timeout time.Duration `yaml:"timeout"`

	// RetryBackoff is the first wait before retrying a failed produce,
	// commit or fetch; it doubles up to RetryBackoffMax
	// (-kafka.retry.backoff). Default: 100ms.
	RetryBackoff time.Duration `yaml:"retry-backoff"`

	// RetryBackoffMax caps the retry wait, and is the wait before
	// rejoining after a failed group join (-kafka.retry.backoff-max).
	// Default: 5s.
	RetryBackoffMax time.Duration `yaml:"retry-backoff-max"`

	TLS    TLSConfig    `yaml:"tls"`
	SASL   SASLConfig   `yaml:"sasl"`
	Writer WriterConfig `yaml:"writer"`
	Reader ReaderConfig `yaml:"reader"`
	Group  GroupConfig  `yaml:"group"`
}

// TLSConfig configures TLS to the brokers.
type TLSConfig struct {
	// Enabled turns TLS on (-kafka.tls.enabled). Default: false.
	Enabled bool `yaml:"enabled"`

	// CAFile is a PEM bundle of CAs to trust instead of the system pool
	// (-kafka.tls.ca). Default: "" (system pool).
	CAFile string `yaml:"ca"`

	// CertFile and KeyFile are a PEM client certificate and key for mutual
	// TLS (-kafka.tls.cert, -kafka.tls.key). Default: "" (none).
	CertFile string `yaml:"cert"`
	KeyFile  string `yaml:"key"`

	// InsecureSkipVerify disables verification of the broker's
	// certificate; for tests only (-kafka.tls.insecure-skip-verify).
	// Default: false.
	InsecureSkipVerify bool `yaml:"insecure-skip-verify"`

	// ServerName overrides the name checked against the broker's
	// certificate (-kafka.tls.server-name). Default: "" (the broker's
	// host).
	ServerName string `yaml:"server-name"`
}

// SASLConfig configures SASL authentication.
type SASLConfig struct {
	// Mechanism is "", PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512
	// (-kafka.sasl.mechanism). Default: "" (no SASL).
	Mechanism string `yaml:"mechanism"`

	// Username is the SASL user (-kafka.sasl.username). Default: "".
	Username string `yaml:"username"`

	// Password is the SASL password. It has no flag, so that it never
	// shows in a process listing: set it with METAIDS_KAFKA_SASL_PASSWORD,
	// the YAML file or PasswordFile. It is never logged. Default: "".
	Password Secret `yaml:"password"`

	// PasswordFile names a file holding the password, as mounted from a
	// Kubernetes secret; surrounding whitespace is trimmed
	// (-kafka.sasl.password-file). Default: "".
	PasswordFile string `yaml:"password-file"`
}

// WriterConfig tunes producers.
type WriterConfig struct {
	// BatchTimeout is how long a partially filled batch waits for more
	// messages before it is sent. kafka-go's default of 1s would add a
	// second to every synchronous produce (-kafka.writer.batch-timeout).
	// Default: 20ms.
	BatchTimeout time.Duration `yaml:"batch-timeout"`

	// BatchSize is the most messages in one produce batch
	// (-kafka.writer.batch-size). Default: 1000.
	BatchSize int `yaml:"batch-size"`

	// BatchBytes is the largest produce request in bytes; a single larger
	// message is rejected (-kafka.writer.batch-bytes). Default: 1048576.
	BatchBytes int64 `yaml:"batch-bytes"`

	// Compression is none, gzip, snappy, lz4 or zstd
	// (-kafka.writer.compression). Default: none.
	Compression string `yaml:"compression"`

	// Retries is how many times a produce that failed with a transient
	// error is retried before Produce gives up (-kafka.writer.retries).
	// Default: 5.
	Retries int `yaml:"retries"`
}

// ReaderConfig tunes fetching.
type ReaderConfig struct {
	// MinBytes is the least data a fetch waits for, up to MaxWait
	// (-kafka.reader.min-bytes). Default: 1.
	MinBytes int `yaml:"min-bytes"`

	// MaxBytes is the most data one fetch returns
	// (-kafka.reader.max-bytes). Default: 10485760.
	MaxBytes int `yaml:"max-bytes"`

	// MaxWait bounds how long a fetch waits for MinBytes, and how long a
	// Consumer waits to fill a batch after its first record
	// (-kafka.reader.max-wait). Default: 250ms.
	MaxWait time.Duration `yaml:"max-wait"`

	// LagInterval is how often a Consumer asks the brokers for its
	// partitions' end offsets to report metaids_stream_consumer_lag
	// (-kafka.reader.lag-interval). A fetch's own high watermark is as
	// old as the fetch, and a stage slowly working through a full one
	// would report the records still in it, not the backlog behind it.
	// Default: 5s.
	LagInterval time.Duration `yaml:"lag-interval"`
}

// GroupConfig tunes consumer-group membership and commits.
type GroupConfig struct {
	// SessionTimeout is how long the coordinator waits for a heartbeat
	// before it evicts a member; it must lie within the broker's group
	// session bounds (-kafka.group.session-timeout). Default: 30s.
	SessionTimeout time.Duration `yaml:"session-timeout"`

	// HeartbeatInterval is how often a member heartbeats, at most a third
	// of SessionTimeout (-kafka.group.heartbeat-interval). Default: 3s.
	HeartbeatInterval time.Duration `yaml:"heartbeat-interval"`

	// RebalanceTimeout is how long the coordinator waits for every member
	// to rejoin during a rebalance. A member finishes the batch in hand
	// and commits before it rejoins, so this must exceed the slowest
	// batch (-kafka.group.rebalance-timeout). Default: 60s.
	RebalanceTimeout time.Duration `yaml:"rebalance-timeout"`

	// CommitRetries is how many times a failed offset commit is retried
	// before Run fails (-kafka.group.commit-retries). Default: 5.
	CommitRetries int `yaml:"commit-retries"`
}

// DefaultConfig returns the defaults documented on each field.
func DefaultConfig() Config {
	return Config{
		Brokers:         []string{"localhost:9092"},
		ClientID:        "metaids",
		Timeout:         10 * time.Second,
		RetryBackoff:    100 * time.Millisecond,
		RetryBackoffMax: 5 * time.Second,
		Writer: WriterConfig{
			BatchTimeout: 20 * time.Millisecond,
			BatchSize:    1000,
			BatchBytes:   1 << 20,
			Compression:  "none",
			Retries:      5,
		},
		Reader: ReaderConfig{
			MinBytes:    1,
			MaxBytes:    10 << 20,
			MaxWait:     250 * time.Millisecond,
			LagInterval: 5 * time.Second,
		},
		Group: GroupConfig{
			SessionTimeout:    30 * time.Second,
			HeartbeatInterval: 3 * time.Second,
			RebalanceTimeout:  60 * time.Second,
			CommitRetries:     5,
		},
	}
}

// Topic returns name with the configured TopicPrefix.
func (c Config) Topic(name string) string { return c.TopicPrefix + name }

// Validate reports every problem in c, each naming the flag to fix.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if len(c.Brokers) == 0 {
		bad("-kafka.brokers: at least one broker is required")
	}
	for _, b := range c.Brokers {
		host, port, err := net.SplitHostPort(b)
		if err != nil {
			bad("-kafka.brokers: %q is not host:port: %v", b, errors.Unwrap(err))
			continue
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || host == "" {
			bad("-kafka.brokers: %q is not host:port with a port in 1-65535", b)
		}
	}
	if !validTopicChars(c.TopicPrefix) {
		bad("-kafka.topic-prefix: %q holds characters Kafka does not allow in topic names, want letters, digits, '.', '_' or '-'", c.TopicPrefix)
	}
	positive := func(flag string, d time.Duration) {
		if d <= 0 {
			bad("%s: must be positive, got %v", flag, d)
		}
	}
	positive("-kafka.timeout", c.Timeout)
	positive("-kafka.retry.backoff", c.RetryBackoff)
	if c.RetryBackoffMax < c.RetryBackoff {
		bad("-kafka.retry.backoff-max: must be at least -kafka.retry.backoff (%v), got %v", c.RetryBackoff, c.RetryBackoffMax)
	}

	errs = append(errs, c.TLS.validate()...)
	errs = append(errs, c.SASL.validate()...)

	w := c.Writer
	positive("-kafka.writer.batch-timeout", w.BatchTimeout)
	if w.BatchSize < 1 {
		bad("-kafka.writer.batch-size: must be at least 1, got %d", w.BatchSize)
	}
	if w.BatchBytes < 1 {
		bad("-kafka.writer.batch-bytes: must be at least 1, got %d", w.BatchBytes)
	}
	if _, err := compression(w.Compression); err != nil {
		bad("-kafka.writer.compression: %v", err)
	}
	if w.Retries < 0 {
		bad("-kafka.writer.retries: must not be negative, got %d", w.Retries)
	}

	r := c.Reader
	if r.MinBytes < 1 {
		bad("-kafka.reader.min-bytes: must be at least 1, got %d", r.MinBytes)
	}
	if r.MaxBytes < r.MinBytes {
		bad("-kafka.reader.max-bytes: must be at least -kafka.reader.min-bytes (%d), got %d", r.MinBytes, r.MaxBytes)
	}
	positive("-kafka.reader.max-wait", r.MaxWait)
	positive("-kafka.reader.lag-interval", r.LagInterval)

	g := c.Group
	positive("-kafka.group.session-timeout", g.SessionTimeout)
	positive("-kafka.group.heartbeat-interval", g.HeartbeatInterval)
	// Kafka's guidance: a heartbeat interval above a third of the session
	// timeout lets one lost heartbeat evict a healthy member.
	if g.HeartbeatInterval > 0 && g.SessionTimeout > 0 && g.HeartbeatInterval*3 > g.SessionTimeout {
		bad("-kafka.group.heartbeat-interval: must be at most a third of -kafka.group.session-timeout (%v), got %v", g.SessionTimeout, g.HeartbeatInterval)
	}
	positive("-kafka.group.rebalance-timeout", g.RebalanceTimeout)
	if g.CommitRetries < 0 {
		bad("-kafka.group.commit-retries: must not be negative, got %d", g.CommitRetries)
	}
	return errors.Join(errs...)
}

func (t TLSConfig) validate() []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if !t.Enabled {
		// Files given without TLS on are almost always a forgotten flag;
		// connecting in plaintext instead would be a silent downgrade.
		for _, f := range []struct{ flag, v string }{
			{"-kafka.tls.ca", t.CAFile}, {"-kafka.tls.cert", t.CertFile}, {"-kafka.tls.key", t.KeyFile},
		} {
			if f.v != "" {
				bad("%s: set, but -kafka.tls.enabled is false", f.flag)
			}
		}
		return errs
	}
	if t.CAFile != "" {
		if _, err := loadCAs(t.CAFile); err != nil {
			bad("-kafka.tls.ca: %v", err)
		}
	}
	switch {
	case t.CertFile != "" && t.KeyFile == "":
		bad("-kafka.tls.key: required with -kafka.tls.cert")
	case t.CertFile == "" && t.KeyFile != "":
		bad("-kafka.tls.cert: required with -kafka.tls.key")
	case t.CertFile != "":
		if _, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile); err != nil {
			bad("-kafka.tls.cert: load key pair %s, %s: %v", t.CertFile, t.KeyFile, err)
		}
	}
	return errs
}

func (s SASLConfig) validate() []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	switch s.Mechanism {
	case "":
		if s.Username != "" || s.Password != "" || s.PasswordFile != "" {
			bad("-kafka.sasl.mechanism: required when a SASL username or password is set")
		}
		return errs
	case MechanismPLAIN, MechanismSCRAMSHA256, MechanismSCRAMSHA512:
	default:
		bad("-kafka.sasl.mechanism: unknown mechanism %q, want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", s.Mechanism)
	}
	if s.Username == "" {
		bad("-kafka.sasl.username: required with -kafka.sasl.mechanism")
	}
	switch {
	case s.Password != "" && s.PasswordFile != "":
		bad("-kafka.sasl.password-file: set together with a password; use one")
	case s.PasswordFile != "":
		if _, err := s.password(); err != nil {
			bad("-kafka.sasl.password-file: %v", err)
		}
	case s.Password == "":
		bad("-kafka.sasl.password: required with -kafka.sasl.mechanism (set METAIDS_KAFKA_SASL_PASSWORD or -kafka.sasl.password-file)")
	}
	return errs
}

// password returns the password, reading PasswordFile if it is set.
func (s SASLConfig) password() (string, error) {
	if s.PasswordFile == "" {
		return string(s.Password), nil
	}
	b, err := readFile(s.PasswordFile)
	if err != nil {
		return "", err
	}
	p := strings.TrimSpace(string(b))
	if p == "" {
		return "", fmt.Errorf("%s is empty", s.PasswordFile)
	}
	return p, nil
}

// readFile is os.ReadFile with an error that names the path once.
func readFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return b, nil
}

func loadCAs(path string) (*x509.CertPool, error) {
	pem, err := readFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no PEM certificates in %s", path)
	}
	return pool, nil
}

// tlsConfig builds the client TLS configuration, or nil when TLS is off.
func (t TLSConfig) tlsConfig() (*tls.Config, error) {
	if !t.Enabled {
		return nil, nil
	}
	tc := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         t.ServerName,
		InsecureSkipVerify: t.InsecureSkipVerify, //nolint:gosec // opt-in, for tests
	}
	if t.CAFile != "" {
		pool, err := loadCAs(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("-kafka.tls.ca: %w", err)
		}
		tc.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("-kafka.tls.cert: load key pair: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// mechanism builds the SASL mechanism, or nil when SASL is off.
func (s SASLConfig) mechanism() (sasl.Mechanism, error) {
	if s.Mechanism == "" {
		return nil, nil
	}
	pass, err := s.password()
	if err != nil {
		return nil, fmt.Errorf("-kafka.sasl.password-file: %w", err)
	}
	switch s.Mechanism {
	case MechanismPLAIN:
		return plain.Mechanism{Username: s.Username, Password: pass}, nil
	case MechanismSCRAMSHA256, MechanismSCRAMSHA512:
		algo := scram.SHA256
		if s.Mechanism == MechanismSCRAMSHA512 {
			algo = scram.SHA512
		}
		m, err := scram.Mechanism(algo, s.Username, pass)
		if err != nil {
			return nil, fmt.Errorf("-kafka.sasl.username: %w", err)
		}
		return m, nil
	default:
		return nil, fmt.Errorf("-kafka.sasl.mechanism: unknown mechanism %q, want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", s.Mechanism)
	}
}

// Dialer returns a kafka-go Dialer with the configured TLS and SASL, for
// Conn-level work and the Readers and consumer groups a Consumer builds.
func (c Config) Dialer() (*kafka.Dialer, error) {
	tc, err := c.TLS.tlsConfig()
	if err != nil {
		return nil, err
	}
	mech, err := c.SASL.mechanism()
	if err != nil {
		return nil, err
	}
	return &kafka.Dialer{
		ClientID:      c.ClientID,
		Timeout:       c.Timeout,
		DualStack:     true,
		KeepAlive:     30 * time.Second,
		TLS:           tc,
		SASLMechanism: mech,
	}, nil
}

// Transport returns a kafka-go Transport with the configured TLS and SASL,
// for Writers and Clients. Share one per process: it pools connections.
func (c Config) Transport() (*kafka.Transport, error) {
	tc, err := c.TLS.tlsConfig()
	if err != nil {
		return nil, err
	}
	mech, err := c.SASL.mechanism()
	if err != nil {
		return nil, err
	}
	return &kafka.Transport{
		ClientID:    c.ClientID,
		DialTimeout: c.Timeout,
		IdleTimeout: 5 * time.Minute,
		MetadataTTL: 30 * time.Second,
		TLS:         tc,
		SASL:        mech,
	}, nil
}

func compression(name string) (kafka.Compression, error) {
	switch strings.ToLower(name) {
	case "", "none":
		return 0, nil
	case "gzip":
		return kafka.Gzip, nil
	case "snappy":
		return kafka.Snappy, nil
	case "lz4":
		return kafka.Lz4, nil
	case "zstd":
		return kafka.Zstd, nil
	default:
		return 0, fmt.Errorf("unknown codec %q, want none, gzip, snappy, lz4 or zstd", name)
	}
}

func validTopicChars(s string) bool {
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
		default:
			return false
		}
	}
	return true
}

// Secret is a string that never prints: fmt, slog, YAML and JSON all see
// "REDACTED", so a Config can be logged or dumped whole.
type Secret string

const redacted = "REDACTED"

func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString keeps %#v from printing the value.
func (s Secret) GoString() string { return strconv.Quote(s.String()) }

// LogValue implements slog.LogValuer.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalYAML implements yaml.Marshaler.
func (s Secret) MarshalYAML() (any, error) { return s.String(), nil }

// MarshalText implements encoding.TextMarshaler, which JSON uses.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }
