package ingest

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// loadConfig decodes a YAML file over the defaults as cmd/metaids does:
// strictly, so that an unknown key is an error.
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

func TestConfigFiles(t *testing.T) {
	cases := []struct {
		file string
		want string // a substring of the error; "" for a good file
	}{
		{"minimal.good.yaml", ""},
		{"full.good.yaml", ""},
		{"no-inputs.bad.yaml", "-ingest.inputs: at least one input topic"},
		{"unknown-format.bad.yaml", `-ingest.formats: topic "flows.netflow": unknown format "netflow-v9"`},
		{"unknown-key.bad.yaml", "field formatz not found"},
		{"input-is-output.bad.yaml", `-ingest.inputs: "features" is an output topic`},
		{"bad-topic.bad.yaml", `-ingest.inputs: topic "flows goflow2": character ' '`},
		{"oversized-batches.bad.yaml", "-features.batch.max-rows: 16384 rows"},
		{"zero-batch.bad.yaml", "-ingest.batch.max-records: must be between 1 and 65536, got 0"},
		{"zero-shutdown.bad.yaml", "-shutdown.timeout: must be positive"},
		{"no-brokers.bad.yaml", "-kafka.brokers"},
		{"bad-window.bad.yaml", "-ingest.max-age: must be positive"},
		{"bad-window.bad.yaml", `-ingest.time-zone: unknown zone "Mars/Olympus"`}, // every problem, not the first
	}
	files, _ := filepath.Glob(filepath.Join("testdata", "config", "*.yaml"))
	for _, f := range files {
		if !slices.ContainsFunc(cases, func(c struct{ file, want string }) bool { return c.file == filepath.Base(f) }) {
			t.Errorf("%s has no case in TestConfigFiles", f)
		}
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			_, err := loadConfig(filepath.Join("testdata", "config", tc.file))
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("load = %v, want no error", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("load = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestConfigFullFile(t *testing.T) {
	cfg, err := loadConfig(filepath.Join("testdata", "config", "full.good.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cfg.Ingest.InputTopics(), []string{"flows.auto", "flows.cic", "flows.goflow2", "flows.vpc", "flows.zeek"}; !slices.Equal(got, want) {
		t.Errorf("InputTopics() = %v, want %v (inputs and the topics of formats, sorted)", got, want)
	}
	in := cfg.Ingest
	if in.Group != "ingest-eu" || in.MaxRecordBytes != 65536 || in.TimeZone != "Europe/Berlin" || in.MaxAge != 24*time.Hour ||
		in.MaxFuture != time.Minute || !in.Replay || in.Batch.MaxRecords != 8192 || in.CreateTopics || in.Partitions != 48 ||
		cfg.Features.Batch.MaxRows != 15360 || cfg.Shutdown.Timeout != 10*time.Second || cfg.TopicPrefix != "prod." {
		t.Errorf("full.good.yaml decoded to %+v", cfg)
	}
	// A topic that formats does not name is sniffed per record, or named by
	// its flows.<format> convention.
	if got := in.FormatFor("flows.vpc"); got != FormatVPC {
		t.Errorf("FormatFor(flows.vpc) = %q, want vpc", got)
	}
}

func TestDefaultConfigNeedsInputs(t *testing.T) {
	err := DefaultConfig().Validate()
	if err == nil || strings.Count(err.Error(), "\n") != 0 || !strings.Contains(err.Error(), "-ingest.inputs") {
		t.Errorf("DefaultConfig().Validate() = %v, want exactly the missing -ingest.inputs", err)
	}
	cfg := DefaultConfig()
	cfg.Ingest.Inputs = []string{"flows.goflow2"}
	if err := cfg.Validate(); err != nil {
		t.Errorf("defaults with an input: Validate() = %v, want nil", err)
	}
}

func TestSourceOf(t *testing.T) {
	for topic, want := range map[string]string{
		"flows.goflow2": "goflow2", "flows.zeek.site-a": "zeek.site-a", "netflow": "netflow", "flows.": "flows.",
	} {
		if got := sourceOf(topic); got != want {
			t.Errorf("sourceOf(%q) = %q, want %q", topic, got, want)
		}
	}
}
