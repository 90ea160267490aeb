package adapter

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/metaids/metaids/schemas"
)

// loadConfig decodes a YAML file over the defaults strictly, as cmd does.
func loadConfig(path string) (Config, error) {
	cfg := DefaultConfig()
	b, err := os.ReadFile(path)
	if err != nil {
		return cfg, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		return cfg, err
	}
	return cfg, cfg.Validate()
}

func TestConfig(t *testing.T) {
	tests := []struct {
		file    string
		wantErr []string // substrings; none for a good file
	}{
		{"default.good.yaml", nil},
		{"tuned.good.yaml", nil},
		{"no-key.bad.yaml", []string{"-adapter.signing-key: required"}},
		{"zero-min-labels.bad.yaml", []string{"-adapter.min-labels: must be between 1 and 10000, got 0"}},
		{"many.bad.yaml", []string{
			"-adapter.fit-interval: must not be negative, got -1s",
			"-adapter.new-label-weight: must be in (0, 100], got 0",
			"-adapter.join.window: must be positive, got 0s",
			"-adapter.gate.holdout: must be between 0 and 0.9, got 0.95",
			"-adapter.gate.recall-tolerance: must be between 0 and 1, got -0.1",
			"-adapter.finetune.steps: must be between 1 and 100000, got 0",
			"-adapter.finetune.lr: must be in (0, 1], got 2",
			"-adapter.rate-limit.per-minute: must be in (0, 1e6], got 0",
		}},
		{"unknown-key.bad.yaml", []string{"min_labels"}},
		{"kafka.bad.yaml", []string{"-kafka.brokers"}},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			cfg, err := loadConfig(filepath.Join("testdata", "config", tc.file))
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatalf("load %s: %v, want no error", tc.file, err)
				}
				if cfg.Adapter.SigningKey == "" || len(cfg.Brokers) == 0 {
					t.Errorf("load %s: signing key %q, brokers %q: the file's values were not read", tc.file, cfg.Adapter.SigningKey, cfg.Brokers)
				}
				return
			}
			if err == nil {
				t.Fatalf("load %s: no error, want %q", tc.file, tc.wantErr)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("load %s: %v, want it to contain %q", tc.file, err, w)
				}
			}
		})
	}
}

// TestConfigFilesListed keeps the table and testdata in step.
func TestConfigFilesListed(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("testdata", "config", "*.yaml"))
	if len(files) != 7 {
		t.Errorf("testdata/config has %d files, the table lists 7", len(files))
	}
}

// TestConfigTuned checks that nested keys land in their fields.
func TestConfigTuned(t *testing.T) {
	cfg, err := loadConfig(filepath.Join("testdata", "config", "tuned.good.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Adapter
	if cfg.TopicPrefix != "staging." || s.Join.MaxScores != 500000 || s.Gate.MinAgreement != 0.75 ||
		s.FineTune.BatchSize != 0 || s.RateLimit.MaxAnalysts != 100 || len(s.TrustedKeys) != 1 {
		t.Errorf("tuned config read as %+v (prefix %q)", s, cfg.TopicPrefix)
	}
	p := paramsFrom(cfg)
	if p.ft.Steps != 100 || p.ft.AdamW.LR != 0.003 || p.ft.AdamW.WeightDecay != 0 || p.minAgreement != 0.75 || p.exemplarsPerClass != 128 {
		t.Errorf("fit parameters %+v do not follow the config", p)
	}
}

func TestNewErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.key")
	if err := os.WriteFile(bad, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, privPEM, err := schemas.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(dir, "good.key")
	if err := os.WriteFile(good, privPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		edit    func(*Config)
		wantErr string
	}{
		{"invalid config", func(c *Config) { c.Adapter.MinLabels = 0 }, "-adapter.min-labels"},
		{"missing key file", func(c *Config) { c.Adapter.SigningKey = filepath.Join(dir, "none.key") }, "-adapter.signing-key"},
		{"unparsable key", func(c *Config) { c.Adapter.SigningKey = bad }, "-adapter.signing-key"},
		{"unparsable trusted key", func(c *Config) { c.Adapter.SigningKey = good; c.Adapter.TrustedKeys = []string{bad} }, "-adapter.trusted-keys"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Adapter.SigningKey = "x"
			tc.edit(&cfg)
			if _, err := New(cfg, nil, nil); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("New = %v, want an error naming %s", err, tc.wantErr)
			}
		})
	}
	cfg := DefaultConfig()
	cfg.Adapter.SigningKey = good
	if _, err := New(cfg, nil, nil); err != nil {
		t.Errorf("New with a good key, no logger and no registry = %v, want nil", err)
	}
}
