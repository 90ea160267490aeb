package main

import (
	"bytes"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/metaids/metaids/schemas"
)

// TestLabelSends sends labels by flow id, by alert id and from a CSV file,
// and reads them back off the labels topic as the adapter would.
func TestLabelSends(t *testing.T) {
	e := startEmbedded(t, 2, "labels")
	csv := filepath.Join(t.TempDir(), "labels.csv")
	os.WriteFile(csv, []byte("target_id,verdict,analyst\n00000000000000ab,benign,carol\n"), 0o600)
	var out bytes.Buffer
	args := []string{"label", "-kafka.brokers", e.Addr(),
		"-label.flows", "0000000000000001,0000000000000002", "-label.alerts", "a1",
		"-label.verdict", "dns_tunnel", "-label.analyst", "alice", "-label.reason", "campaign 7",
		"-label.file", csv}
	if code := run(t.Context(), args, &out); code != exitOK {
		t.Fatalf("metaids label = %d, want 0; output:\n%s", code, out.String())
	}
	codecs, err := schemas.NewCodecs(nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, msgs := range topicMessages(t, e.Addr(), "labels") {
		for _, m := range msgs {
			l, err := codecs.DecodeLabel(m.Value)
			if err != nil {
				t.Fatalf("decode label: %v", err)
			}
			if l.TimeNs == 0 {
				t.Errorf("label %s has no time", l.TargetID)
			}
			got = append(got, strings.Join([]string{string(l.TargetKind), l.TargetID, l.Verdict, l.Analyst}, " "))
		}
	}
	sort.Strings(got)
	want := []string{
		"ALERT a1 dns_tunnel alice",
		"FLOW 0000000000000001 dns_tunnel alice",
		"FLOW 0000000000000002 dns_tunnel alice",
		"FLOW 00000000000000ab benign carol",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("labels on the topic:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestLabelUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"label", "-kafka.brokers", "127.0.0.1:9092"}, "nothing to send"},
		{[]string{"label", "-kafka.brokers", "127.0.0.1:9092", "-label.flows", "1"}, "-label.verdict"},
		{[]string{"label", "-kafka.brokers", "127.0.0.1:9092", "-label.flows", "xyz", "-label.verdict", "benign"}, "-label.flows"},
	} {
		var out bytes.Buffer
		if code := run(t.Context(), tc.args, &out); code != exitUsage || !strings.Contains(out.String(), tc.want) {
			t.Errorf("run(%q) = %d, %q; want %d and an error naming %q", tc.args, code, out.String(), exitUsage, tc.want)
		}
	}
}
