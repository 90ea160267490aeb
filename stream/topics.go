package stream

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/segmentio/kafka-go"
)

// TopicSpec describes a topic to create.
type TopicSpec struct {
	// Name is the full topic name, prefix included.
	Name string
	// Partitions is the partition count; 0 takes the broker's default.
	Partitions int
	// ReplicationFactor is the replica count; 0 takes the broker's
	// default (default.replication.factor).
	ReplicationFactor int
	// Configs are topic-level settings such as cleanup.policy.
	Configs map[string]string
}

// TopicNames are the pipeline's topic names without the prefix, as the
// schemas package defines them.
type TopicNames struct {
	Features, Scores, Alerts, Actions, Labels string // keyed streams
	Models, ScorerState                       string // compacted tables
	DLQ                                       string // dead letters from ingest
}

// PipelineTopics returns the specs of the topics the stages write, each
// name with prefix. The keyed streams get partitions partitions (the
// ceiling on each stage's replicas). models has one partition, so every
// scorer and adapter sees updates in a single order, and is compacted to
// the latest update per model name; scorer.state is compacted to the
// latest state per host and co-partitioned with features so a scorer
// restores exactly the hosts it is assigned. Empty names are skipped;
// flows.<source> topics belong to the shippers and are not listed.
func PipelineTopics(prefix string, names TopicNames, partitions, replicationFactor int) []TopicSpec {
	compact := map[string]string{"cleanup.policy": "compact"}
	var specs []TopicSpec
	add := func(name string, parts int, configs map[string]string) {
		if name == "" {
			return
		}
		specs = append(specs, TopicSpec{
			Name:              prefix + name,
			Partitions:        parts,
			ReplicationFactor: replicationFactor,
			Configs:           maps.Clone(configs),
		})
	}
	for _, name := range []string{names.Features, names.Scores, names.Alerts, names.Actions, names.Labels, names.DLQ} {
		add(name, partitions, nil)
	}
	add(names.Models, 1, compact)
	add(names.ScorerState, partitions, compact)
	return specs
}

// EnsureTopics creates the topics in specs that do not exist yet, in one
// request to the controller. Topics that already exist are left as they
// are, whatever their partition count or settings: changing a live topic
// is an operator's decision, not a side effect of starting a stage.
func EnsureTopics(ctx context.Context, cfg Config, specs []TopicSpec) error {
	if len(specs) == 0 {
		return nil
	}
	tr, err := cfg.Transport()
	if err != nil {
		return fmt.Errorf("ensure topics: %w", err)
	}
	defer tr.CloseIdleConnections()
	client := &kafka.Client{Addr: kafka.TCP(cfg.Brokers...), Transport: tr, Timeout: cfg.Timeout}

	req := &kafka.CreateTopicsRequest{}
	for _, s := range specs {
		tc := kafka.TopicConfig{
			Topic:             s.Name,
			NumPartitions:     orBrokerDefault(s.Partitions),
			ReplicationFactor: orBrokerDefault(s.ReplicationFactor),
		}
		for _, k := range slices.Sorted(maps.Keys(s.Configs)) {
			tc.ConfigEntries = append(tc.ConfigEntries, kafka.ConfigEntry{ConfigName: k, ConfigValue: s.Configs[k]})
		}
		req.Topics = append(req.Topics, tc)
	}
	resp, err := client.CreateTopics(ctx, req)
	if err != nil {
		// The Transport reports a rejected login as "Broker Not
		// Available"; the Dialer says what really went wrong.
		if d, derr := cfg.Dialer(); derr == nil {
			if perr := probe(ctx, d, cfg.Brokers); perr != nil {
				return fmt.Errorf("ensure topics: %w (create topics: %v)", perr, err)
			}
		}
		return fmt.Errorf("ensure topics: %w", err)
	}
	var errs []error
	for _, s := range specs {
		if err := resp.Errors[s.Name]; err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
			errs = append(errs, fmt.Errorf("create topic %s: %w", s.Name, err))
		}
	}
	return errors.Join(errs...)
}

// orBrokerDefault maps an unset count to -1, which CreateTopics v4+ reads
// as "use the broker's default".
func orBrokerDefault(n int) int {
	if n <= 0 {
		return -1
	}
	return n
}
