package stream

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

// TestEmbeddedDataDirSurvivesRestart checks that a broker restarted on its
// DataDir keeps the topic's records and the group's committed offsets.
func TestEmbeddedDataDirSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	e, err := StartEmbedded(EmbeddedConfig{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	cfg := fastConfig(e)
	topic := topicName(t, "in")
	createTopic(t, cfg, topic, 2)
	p, err := NewProducer(cfg, testLog(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	produceN(t, p, topic, "before", 10)
	cc := ConsumerConfig{Group: t.Name(), Topics: []string{topic}}
	var ga collector
	a := startConsumer(t, cfg, cc, nil, ga.handle)
	eventually(t, 10*time.Second, wantCount(&ga, 10))
	if err := a.stop(t); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	produceN(t, p, topic, "unread", 5)
	p.Close()
	e.Close()

	e2 := startBroker(t, EmbeddedConfig{DataDir: dir})
	cfg2 := fastConfig(e2)
	if got := sumOffsets(committed(t, cfg2, t.Name(), topic, 2)); got != 10 {
		t.Fatalf("committed offsets after restart sum to %d, want 10", got)
	}
	var gb collector
	b := startConsumer(t, cfg2, cc, nil, gb.handle)
	eventually(t, 10*time.Second, wantCount(&gb, 5))
	if err := b.stop(t); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	for _, v := range gb.values() {
		if !strings.HasPrefix(v, "unread-") {
			t.Errorf("group resumed with %q, want only unread-* records", v)
		}
	}
	// A new group reads the whole retained topic.
	var gc collector
	c := startConsumer(t, cfg2, ConsumerConfig{Group: t.Name() + ".fresh", Topics: []string{topic}}, nil, gc.handle)
	eventually(t, 10*time.Second, wantCount(&gc, 15))
	if err := c.stop(t); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
}

func TestEmbeddedSeedsTopics(t *testing.T) {
	e := startBroker(t, EmbeddedConfig{Partitions: 3, SeedTopics: []string{"seeded"}})
	p := newProducer(t, fastConfig(e), nil)
	if n, err := p.Partitions(t.Context(), "seeded"); err != nil || n != 3 {
		t.Fatalf("Partitions(seeded) = %d, %v, want 3", n, err)
	}
	if !strings.HasPrefix(e.Addr(), "127.0.0.1:") {
		t.Errorf("Addr() = %q, want 127.0.0.1:port", e.Addr())
	}
}

func TestEmbeddedRejectsNonLoopback(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", "10.1.2.3:9092", "kafka:9092"} {
		if _, err := StartEmbedded(EmbeddedConfig{Addr: addr}); !errors.Is(err, ErrNotLoopback) {
			t.Errorf("StartEmbedded(%q) = %v, want %v", addr, err, ErrNotLoopback)
		}
	}
	if _, err := StartEmbedded(EmbeddedConfig{Users: []SASLUser{{Mechanism: "GSSAPI", Username: "u"}}}); err == nil || !strings.Contains(err.Error(), `unknown mechanism "GSSAPI"`) {
		t.Errorf("StartEmbedded with a GSSAPI user = %v, want the mechanism named", err)
	}
}

func TestEnsurePipelineTopics(t *testing.T) {
	e := startBroker(t, EmbeddedConfig{})
	cfg := fastConfig(e)
	cfg.TopicPrefix = "t1."
	names := TopicNames{
		Features: "features", Scores: "scores", Alerts: "alerts", Actions: "actions", Labels: "labels",
		Models: "models", ScorerState: "scorer.state", DLQ: "flows.dlq",
	}
	specs := PipelineTopics(cfg.TopicPrefix, names, 6, 1)
	if len(specs) != 8 {
		t.Fatalf("PipelineTopics gave %d specs, want 8", len(specs))
	}
	for range 2 { // the second call finds them all and must succeed
		if err := EnsureTopics(t.Context(), cfg, specs); err != nil {
			t.Fatalf("EnsureTopics: %v", err)
		}
	}

	tr, err := cfg.Transport()
	if err != nil {
		t.Fatal(err)
	}
	defer tr.CloseIdleConnections()
	client := &kafka.Client{Addr: kafka.TCP(cfg.Brokers...), Transport: tr}
	md, err := client.Metadata(t.Context(), &kafka.MetadataRequest{})
	if err != nil {
		t.Fatal(err)
	}
	parts := map[string]int{}
	for _, tp := range md.Topics {
		parts[tp.Name] = len(tp.Partitions)
	}
	for name, want := range map[string]int{
		"t1.features": 6, "t1.scores": 6, "t1.alerts": 6, "t1.actions": 6, "t1.labels": 6,
		"t1.flows.dlq": 6, "t1.models": 1, "t1.scorer.state": 6,
	} {
		if got := parts[name]; got != want {
			t.Errorf("topic %s has %d partitions, want %d", name, got, want)
		}
	}

	desc, err := client.DescribeConfigs(t.Context(), &kafka.DescribeConfigsRequest{Resources: []kafka.DescribeConfigRequestResource{
		{ResourceType: kafka.ResourceTypeTopic, ResourceName: "t1.models", ConfigNames: []string{"cleanup.policy"}},
		{ResourceType: kafka.ResourceTypeTopic, ResourceName: "t1.scorer.state", ConfigNames: []string{"cleanup.policy"}},
		{ResourceType: kafka.ResourceTypeTopic, ResourceName: "t1.alerts", ConfigNames: []string{"cleanup.policy"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"t1.models": "compact", "t1.scorer.state": "compact", "t1.alerts": "delete"}
	checked := 0
	for _, r := range desc.Resources {
		if r.Error != nil {
			t.Fatalf("DescribeConfigs %s: %v", r.ResourceName, r.Error)
		}
		for _, c := range r.ConfigEntries {
			if c.ConfigName != "cleanup.policy" {
				continue
			}
			checked++
			if c.ConfigValue != want[r.ResourceName] {
				t.Errorf("%s cleanup.policy = %q, want %q", r.ResourceName, c.ConfigValue, want[r.ResourceName])
			}
		}
	}
	if checked != len(want) {
		t.Errorf("DescribeConfigs returned cleanup.policy for %d topics, want %d", checked, len(want))
	}
}
