package stream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
// is an operator's decision, not a side effect of starting a stage. It
// tries once; stages use EnsureTopicsRetry.
func EnsureTopics(ctx context.Context, cfg Config, specs []TopicSpec) error {
	_, err := ensureTopics(ctx, cfg, specs)
	return err
}

// EnsureTopicsRetry is EnsureTopics for a stage starting up, when the
// brokers may not be up yet: it tries until the topics exist, ctx ends, or
// a failure that retrying cannot fix (authentication, authorisation, TLS,
// a topic's name or settings refused). It waits -kafka.retry.backoff after
// the first failure, doubling up to -kafka.retry.backoff-max, and logs
// each failure at Warn. ctx bounds it; if ctx ends first it returns ctx's
// error wrapped with the last failure.
func EnsureTopicsRetry(ctx context.Context, cfg Config, specs []TopicSpec, log *slog.Logger) error {
	log = orDiscard(log)
	for attempt := 0; ; attempt++ {
		permanent, err := ensureTopics(ctx, cfg, specs)
		if err == nil {
			if attempt > 0 {
				log.Info("topics ensured", "attempts", attempt+1)
			}
			return nil
		}
		if permanent {
			return err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%w (after %d attempts: %v)", ctx.Err(), attempt+1, err)
		}
		wait := backoff(attempt, cfg.RetryBackoff, cfg.RetryBackoffMax)
		log.Warn("create topics failed, retrying", "attempt", attempt+1, "backoff", wait, "brokers", cfg.Brokers, "err", err)
		if !sleep(ctx, wait) {
			return fmt.Errorf("%w (after %d attempts: %v)", ctx.Err(), attempt+1, err)
		}
	}
}

// ensureTopics makes one attempt at EnsureTopics and says whether its
// failure is permanent.
func ensureTopics(ctx context.Context, cfg Config, specs []TopicSpec) (permanent bool, err error) {
	if len(specs) == 0 {
		return false, nil
	}
	tr, err := cfg.Transport()
	if err != nil {
		return true, fmt.Errorf("ensure topics: %w", err)
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
				return securityError(perr), fmt.Errorf("ensure topics: %w (create topics: %v)", perr, err)
			}
		}
		// Anything else (refused connections, timeouts, a broker with
		// no controller yet) may pass once the brokers are up.
		return securityError(err), fmt.Errorf("ensure topics: %w", err)
	}
	var errs []error
	for _, s := range specs {
		err := resp.Errors[s.Name]
		if err == nil || errors.Is(err, kafka.TopicAlreadyExists) {
			continue
		}
		errs = append(errs, fmt.Errorf("create topic %s: %w", s.Name, err))
		permanent = permanent || !topicRetriable(err)
	}
	return permanent, errors.Join(errs...)
}

// topicRetriable reports whether a broker's answer for one topic may
// change on retry. A cluster still starting has fewer brokers registered
// than the replication factor asks for, so that refusal is retried too.
func topicRetriable(err error) bool {
	var kerr kafka.Error
	if !errors.As(err, &kerr) {
		return true
	}
	return kerr.Temporary() || kerr == kafka.InvalidReplicationFactor || kerr == kafka.BrokerNotAvailable
}

// orBrokerDefault maps an unset count to -1, which CreateTopics v4+ reads
// as "use the broker's default".
func orBrokerDefault(n int) int {
	if n <= 0 {
		return -1
	}
	return n
}
