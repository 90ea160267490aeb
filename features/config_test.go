package features

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

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

func TestConfig(t *testing.T) {
	tests := []struct {
		file    string
		wantErr []string // substrings; none for a good file
	}{
		{"default.good.yaml", nil},
		{"unbatched.good.yaml", nil},
		{"zero-rows.bad.yaml", []string{"-features.batch.max-rows: must be between 1 and 1048576, got 0"}},
		{"both.bad.yaml", []string{"-features.batch.max-rows", "got 2000000", "-features.batch.linger", "got -1ms"}},
		{"long-linger.bad.yaml", []string{"-features.batch.linger: must be between 0s and 1m0s, got 2m0s"}},
		{"unknown-key.bad.yaml", []string{"max_rows"}},
	}
	for _, tc := range tests {
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
	if err := DefaultConfig().Validate(); err != nil {
		t.Errorf("DefaultConfig().Validate() = %v, want nil", err)
	}
}

// TestConfigFilesListed keeps the table and testdata in step.
func TestConfigFilesListed(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("testdata", "config", "*.yaml"))
	if len(files) != 6 {
		t.Errorf("testdata/config has %d files, the table lists 6", len(files))
	}
}
