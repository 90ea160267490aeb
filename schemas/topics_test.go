package schemas

import (
	"strings"
	"testing"
)

func TestTopics(t *testing.T) {
	tests := []struct {
		prefix string
		got    func(Topics) string
		want   string
	}{
		{"", func(t Topics) string { return t.Input("goflow2") }, "flows.goflow2"},
		{"", Topics.DLQ, "flows.dlq"},
		{"", Topics.Features, "features"},
		{"", Topics.Scores, "scores"},
		{"", Topics.Alerts, "alerts"},
		{"", Topics.Actions, "actions"},
		{"", Topics.Labels, "labels"},
		{"", Topics.Models, "models"},
		{"", Topics.ScorerState, "scorer.state"},
		{"t1.", func(t Topics) string { return t.Input("zeek") }, "t1.flows.zeek"},
		{"t1.", Topics.DLQ, "t1.flows.dlq"},
		{"t1.", Topics.Models, "t1.models"},
		{"staging-", Topics.ScorerState, "staging-scorer.state"},
	}
	for _, tc := range tests {
		if got := tc.got(Topics{Prefix: tc.prefix}); got != tc.want {
			t.Errorf("Topics{%q} name = %q, want %q", tc.prefix, got, tc.want)
		}
	}
}

func TestTopicsValidate(t *testing.T) {
	tests := []struct {
		prefix string
		want   string // "" means valid
	}{
		{"", ""},
		{"TestPipeline_1.", ""},
		{"a-b_c.", ""},
		{"has space.", `character ' '`},
		{"slash/", `character '/'`},
		{"ünï.", `character 'ü'`},
		{strings.Repeat("p", 249-len("scorer.state")), ""},
		{strings.Repeat("p", 250-len("scorer.state")), "250-character topic names"},
	}
	for _, tc := range tests {
		err := Topics{Prefix: tc.prefix}.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("Validate(%q) = %v, want nil", tc.prefix, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("Validate(%q) = %v, want an error mentioning %q", tc.prefix, err, tc.want)
		}
	}
}
