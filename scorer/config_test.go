package scorer

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
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

var configTests = []struct {
	file    string
	wantErr []string // substrings; none for a good file
}{
	{"default.good.yaml", nil},
	{"full.good.yaml", nil},
	{"no-keys.bad.yaml", []string{"-scorer.model.keys: at least one trusted public key is required"}},
	{"zero-flows.bad.yaml", []string{"-scorer.batch.max-flows: must be between 1 and 65536, got 0"}},
	{"bad-format.bad.yaml", []string{
		`-scorer.alerts.outputs: topic "alerts": format must be avro, ecs or ocsf, got "cef"`,
		`-scorer.alerts.outputs: topic "bad topic": may hold only letters`,
	}},
	{"many.bad.yaml", []string{
		"-kafka.brokers", "-scorer.state.ttl: must be positive, got 0s",
		"-scorer.state.checkpoint-interval: must be 0 (off) or at least 100ms, got 10ms",
		"-scorer.alerts.window: must be positive, got -1m0s", "-scorer.alerts.explain: must be between 0 and 32, got 99",
		`-scorer.actions.block-severity: must be low, medium, high or critical, got "urgent"`,
		"-scorer.actions.calm: must be positive, got 0s",
	}},
	{"actions-clash.bad.yaml", []string{`-scorer.actions.topic: "alerts" is also an alerts topic`}},
	{"unknown-key.bad.yaml", []string{"max_flows"}},
}

func TestConfig(t *testing.T) {
	for _, tc := range configTests {
		t.Run(tc.file, func(t *testing.T) {
			_, err := loadConfig(filepath.Join("testdata", "config", tc.file))
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatalf("load %s: %v, want no error", tc.file, err)
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
	full, err := loadConfig(filepath.Join("testdata", "config", "full.good.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if full.TopicPrefix != "prod." || len(full.Scorer.Alerts.Outputs) != 3 || full.Scorer.State.TTL != 30*time.Minute || full.Scorer.State.CheckpointInterval != time.Minute || full.Scorer.Actions.Topic != "" {
		t.Errorf("full.good.yaml decoded to %+v", full.Scorer)
	}
	if err := DefaultConfig().Validate(); err == nil || !strings.Contains(err.Error(), "-scorer.model.keys") {
		t.Errorf("DefaultConfig().Validate() = %v, want only the missing keys", err)
	}
	cfg := DefaultConfig()
	cfg.Scorer.Model.Keys = []string{"k.pub"}
	if err := cfg.Validate(); err != nil {
		t.Errorf("DefaultConfig() with a key: Validate() = %v, want nil", err)
	}
}

// TestConfigFilesListed keeps the table and testdata in step.
func TestConfigFilesListed(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("testdata", "config", "*.yaml"))
	if len(files) != len(configTests) {
		t.Errorf("testdata/config has %d files, the table lists %d", len(files), len(configTests))
	}
}
