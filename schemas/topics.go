package schemas

import "fmt"

// Topics names the pipeline's Kafka topics. Prefix is prepended verbatim,
// separator included ("staging." gives "staging.features"), so several
// pipelines or tests can share one cluster. The zero value gives the default
// names of the DESIGN topic table.
type Topics struct {
	Prefix string `yaml:"prefix"`
}

// Input is the topic a log shipper writes source's flows to: "flows.<source>".
// The source "dlq" is taken by DLQ.
func (t Topics) Input(source string) string { return t.Prefix + "flows." + source }

// DLQ receives dead letters from ingest: "flows.dlq".
func (t Topics) DLQ() string { return t.Prefix + "flows.dlq" }

// Features carries Arrow feature batches keyed by host: "features".
func (t Topics) Features() string { return t.Prefix + "features" }

// Scores carries the scorer's Arrow score batches: "scores".
func (t Topics) Scores() string { return t.Prefix + "scores" }

// Alerts carries Avro Alerts keyed by host: "alerts".
func (t Topics) Alerts() string { return t.Prefix + "alerts" }

// Actions carries Avro block and rate-limit Actions: "actions".
func (t Topics) Actions() string { return t.Prefix + "actions" }

// Labels carries analysts' Labels, Avro or JSON: "labels".
func (t Topics) Labels() string { return t.Prefix + "labels" }

// Models is the compacted topic of signed ModelUpdates keyed by model name:
// "models".
func (t Topics) Models() string { return t.Prefix + "models" }

// ScorerState is where the scorer checkpoints per-host state so a
// replacement replica can rebuild it: "scorer.state".
func (t Topics) ScorerState() string { return t.Prefix + "scorer.state" }

// maxTopicLen is Kafka's limit on a topic name's length.
const maxTopicLen = 249

// longestSuffix is the longest fixed name a prefix is put before.
const longestSuffix = len("scorer.state")

// Validate checks that every fixed topic name the prefix makes is a legal
// Kafka topic name: ASCII letters, digits, '.', '_' and '-', at most 249
// characters. Input names also depend on the source, which the caller checks.
func (t Topics) Validate() error {
	for _, r := range t.Prefix {
		if !legalTopicRune(r) {
			return fmt.Errorf("topic prefix %q: character %q is not allowed in a Kafka topic name (letters, digits, '.', '_', '-')", t.Prefix, r)
		}
	}
	if n := len(t.Prefix) + longestSuffix; n > maxTopicLen {
		return fmt.Errorf("topic prefix %q: makes %d-character topic names, Kafka allows %d", t.Prefix, n, maxTopicLen)
	}
	return nil
}

func legalTopicRune(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-'
}
