package stream

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go/sasl/plain"
	"gopkg.in/yaml.v3"
)

func TestDefaultConfigIsValid(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("DefaultConfig().Validate() = %v, want nil", err)
	}
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")

	for _, tc := range []struct {
		name string
		edit func(*Config)
		want []string // substrings, each naming the setting
	}{
		{"no brokers", func(c *Config) { c.Brokers = nil }, []string{"-kafka.brokers: at least one broker is required"}},
		{"broker without port", func(c *Config) { c.Brokers = []string{"kafka"} }, []string{`-kafka.brokers: "kafka" is not host:port`}},
		{"broker with bad port", func(c *Config) { c.Brokers = []string{"kafka:0"} }, []string{`-kafka.brokers: "kafka:0" is not host:port with a port in 1-65535`}},
		{"unreadable CA file", func(c *Config) { c.TLS.Enabled, c.TLS.CAFile = true, missing },
			[]string{"-kafka.tls.ca: read " + missing + ": no such file or directory"}},
		{"CA file without certificates", func(c *Config) { c.TLS.Enabled, c.TLS.CAFile = true, garbage },
			[]string{"-kafka.tls.ca: no PEM certificates in " + garbage}},
		{"CA file with TLS off", func(c *Config) { c.TLS.CAFile = garbage }, []string{"-kafka.tls.ca: set, but -kafka.tls.enabled is false"}},
		{"cert without key", func(c *Config) { c.TLS.Enabled, c.TLS.CertFile = true, garbage }, []string{"-kafka.tls.key: required with -kafka.tls.cert"}},
		{"bad cert pair", func(c *Config) { c.TLS.Enabled, c.TLS.CertFile, c.TLS.KeyFile = true, garbage, garbage },
			[]string{"-kafka.tls.cert: load key pair " + garbage}},
		{"unknown SASL mechanism", func(c *Config) { c.SASL = SASLConfig{Mechanism: "GSSAPI", Username: "u", Password: "p"} },
			[]string{`-kafka.sasl.mechanism: unknown mechanism "GSSAPI", want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512`}},
		{"SASL without user or password", func(c *Config) { c.SASL.Mechanism = MechanismPLAIN },
			[]string{"-kafka.sasl.username: required", "-kafka.sasl.password: required"}},
		{"SASL password file unreadable", func(c *Config) {
			c.SASL = SASLConfig{Mechanism: MechanismSCRAMSHA256, Username: "u", PasswordFile: missing}
		}, []string{"-kafka.sasl.password-file: read " + missing}},
		{"SASL credentials without mechanism", func(c *Config) { c.SASL.Username = "u" }, []string{"-kafka.sasl.mechanism: required"}},
		{"bad topic prefix", func(c *Config) { c.TopicPrefix = "prod/" }, []string{`-kafka.topic-prefix: "prod/"`}},
		{"bad compression", func(c *Config) { c.Writer.Compression = "brotli" }, []string{`-kafka.writer.compression: unknown codec "brotli"`}},
		{"zero batch timeout", func(c *Config) { c.Writer.BatchTimeout = 0 }, []string{"-kafka.writer.batch-timeout: must be positive, got 0s"}},
		{"zero lag interval", func(c *Config) { c.Reader.LagInterval = 0 }, []string{"-kafka.reader.lag-interval: must be positive, got 0s"}},
		{"max bytes below min", func(c *Config) { c.Reader.MinBytes, c.Reader.MaxBytes = 10, 5 }, []string{"-kafka.reader.max-bytes: must be at least"}},
		{"slow heartbeat", func(c *Config) { c.Group.HeartbeatInterval = 20 * time.Second },
			[]string{"-kafka.group.heartbeat-interval: must be at most a third of -kafka.group.session-timeout"}},
		{"negative commit retries", func(c *Config) { c.Group.CommitRetries = -1 }, []string{"-kafka.group.commit-retries: must not be negative"}},
		{"every problem at once", func(c *Config) {
			c.Brokers = nil
			c.SASL = SASLConfig{Mechanism: "X", Username: "u", Password: "p"}
			c.Writer.BatchSize = 0
		}, []string{"-kafka.brokers:", "-kafka.sasl.mechanism:", "-kafka.writer.batch-size:"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tc.edit(&cfg)
			err := cfg.Validate()
			if err == nil {
				t.Fatalf("Validate() = nil, want errors %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q, want it to contain %q", err, w)
				}
			}
			if n := len(strings.Split(err.Error(), "\n")); n != len(tc.want) {
				t.Errorf("Validate() reported %d problems, want %d: %q", n, len(tc.want), err)
			}
		})
	}
}

// TestConfigFiles decodes testdata/config/*.yaml strictly, as cmd does, and
// validates them.
func TestConfigFiles(t *testing.T) {
	for _, tc := range []struct {
		file string
		want string // "" for a good file
	}{
		{"full.good.yaml", ""},
		{"minimal.good.yaml", ""},
		{"no-brokers.bad.yaml", "-kafka.brokers: at least one broker is required"},
		{"unknown-mechanism.bad.yaml", `-kafka.sasl.mechanism: unknown mechanism "GSSAPI"`},
		{"missing-ca.bad.yaml", "-kafka.tls.ca: read testdata/config/does-not-exist.pem: no such file or directory"},
		{"unknown-key.bad.yaml", "field linger not found"},
		{"bad-duration.bad.yaml", "cannot unmarshal !!str `soon` into time.Duration"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			err := loadConfigFile(t, filepath.Join("testdata", "config", tc.file))
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("load %s = %v, want nil", tc.file, err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("load %s = %v, want an error containing %q", tc.file, err, tc.want)
			}
		})
	}

	var f struct {
		Kafka Config `yaml:"kafka"`
	}
	f.Kafka = DefaultConfig()
	b, err := os.ReadFile("testdata/config/full.good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	if got, want := f.Kafka.Group.RebalanceTimeout, 2*time.Minute; got != want {
		t.Errorf("group.rebalance_timeout = %v, want %v", got, want)
	}
	if got, want := f.Kafka.Topic("alerts"), "prod.alerts"; got != want {
		t.Errorf("Topic(alerts) = %q, want %q", got, want)
	}
}

func loadConfigFile(t *testing.T, path string) error {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f := struct {
		Kafka Config `yaml:"kafka"`
	}{DefaultConfig()}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return err
	}
	return f.Kafka.Validate()
}

func TestPasswordNeverPrinted(t *testing.T) {
	const secret = "hunter2-s3cret"
	cfg := DefaultConfig()
	cfg.SASL = SASLConfig{Mechanism: MechanismPLAIN, Username: "u", Password: secret}

	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("config", "kafka", cfg, "password", cfg.SASL.Password)
	y, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	j, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for name, out := range map[string]string{
		"%v":   fmt.Sprintf("%v", cfg),
		"%+v":  fmt.Sprintf("%+v", cfg),
		"%#v":  fmt.Sprintf("%#v", cfg),
		"%s":   fmt.Sprintf("%s", cfg.SASL.Password),
		"slog": logged.String(),
		"yaml": string(y),
		"json": string(j),
	} {
		if strings.Contains(out, secret) {
			t.Errorf("%s output holds the password: %s", name, out)
		}
		if !strings.Contains(out, "REDACTED") {
			t.Errorf("%s output does not say REDACTED: %s", name, out)
		}
	}
}

func TestPasswordFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(path, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.SASL = SASLConfig{Mechanism: MechanismPLAIN, Username: "u", PasswordFile: path}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate() = %v, want nil", err)
	}
	d, err := cfg.Dialer()
	if err != nil {
		t.Fatalf("Dialer() = %v", err)
	}
	if got := d.SASLMechanism.(plain.Mechanism).Password; got != "from-file" {
		t.Errorf("password from file = %q, want %q", got, "from-file")
	}

	cfg.SASL.Password = "also"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "-kafka.sasl.password-file: set together with a password") {
		t.Errorf("Validate() with password and file = %v, want the conflict named", err)
	}
}
