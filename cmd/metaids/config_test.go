package main

import (
	"bytes"
	"context"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type testSub struct {
	Brokers []string      `yaml:"brokers"`
	Linger  time.Duration `yaml:"linger"`
}

type testConfig struct {
	Kafka  testSub           `yaml:"kafka"`
	Rows   int               `yaml:"rows"`
	Name   string            `yaml:"name"`
	Debug  bool              `yaml:"debug"`
	Topics map[string]string `yaml:"topics"`
}

func TestBinderPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "c.yaml")
	os.WriteFile(file, []byte("kafka:\n  brokers: [file:1]\n  linger: 2s\nrows: 5\nname: fromfile\n"), 0o600)
	cfg := testConfig{Rows: 1, Name: "default", Kafka: testSub{Linger: time.Second}}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	b := bind(fs, &cfg)
	env := map[string]string{"METAIDS_ROWS": "7", "METAIDS_NAME": "fromenv"}
	b.getenv = func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	if err := b.load([]string{"-config.file", file, "-name", "fromflag", "-topics", "a=b, c=d", "-debug"}); err != nil {
		t.Fatal(err)
	}
	if cfg.Kafka.Brokers[0] != "file:1" || cfg.Kafka.Linger != 2*time.Second {
		t.Errorf("file layer: got %+v", cfg.Kafka)
	}
	if cfg.Rows != 7 {
		t.Errorf("rows = %d, want 7 (env beats file)", cfg.Rows)
	}
	if cfg.Name != "fromflag" {
		t.Errorf("name = %q, want fromflag (flag beats env)", cfg.Name)
	}
	if !cfg.Debug || cfg.Topics["c"] != "d" {
		t.Errorf("debug=%v topics=%v", cfg.Debug, cfg.Topics)
	}
}

func TestBinderErrorsNameTheSetting(t *testing.T) {
	dir := t.TempDir()
	unknown := filepath.Join(dir, "unknown.yaml")
	os.WriteFile(unknown, []byte("kafka:\n  brokerz: [x]\n"), 0o600)
	badval := filepath.Join(dir, "bad.yaml")
	os.WriteFile(badval, []byte("rows: many\n"), 0o600)
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"unknown yaml key", []string{"-config.file", unknown}, nil, "brokerz"},
		{"bad yaml value", []string{"-config.file", badval}, nil, "many"},
		{"missing file", []string{"-config.file", filepath.Join(dir, "nope.yaml")}, nil, "-config.file"},
		{"bad flag", []string{"-rows", "x"}, nil, "-rows"},
		{"bad env", nil, map[string]string{"METAIDS_KAFKA_LINGER": "soon"}, "METAIDS_KAFKA_LINGER (-kafka.linger)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var cfg testConfig
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			b := bind(fs, &cfg)
			b.getenv = func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok }
			err := b.load(tc.args)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("load(%v) = %v, want an error containing %q", tc.args, err, tc.want)
			}
		})
	}
}

func TestRunExitCodes(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want int
	}{
		{nil, exitUsage},
		{[]string{"nosuch"}, exitUsage},
		{[]string{"--help"}, exitOK},
	} {
		var buf bytes.Buffer
		if got := run(context.Background(), tc.args, &buf); got != tc.want {
			t.Errorf("run(%v) = %d, want %d; output:\n%s", tc.args, got, tc.want, buf.String())
		}
	}
}
