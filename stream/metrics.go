package stream

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are shared by every Producer and Consumer registered on the same
// Registerer: a stage typically holds one of each, the demo several.
type metrics struct {
	produced       *prometheus.CounterVec
	produceErrors  *prometheus.CounterVec
	produceRetries *prometheus.CounterVec

	consumed      *prometheus.CounterVec
	commits       *prometheus.CounterVec
	commitErrors  *prometheus.CounterVec
	lag           *prometheus.GaugeVec
	batchRecords  *prometheus.HistogramVec
	handleSeconds *prometheus.HistogramVec
	generations   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		produced: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "metaids_stream_produced_messages_total",
			Help: "Messages acknowledged by the brokers, by topic.",
		}, []string{"topic"}),
		produceErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "metaids_stream_produce_errors_total",
			Help: "Messages that could not be produced after all retries, by topic.",
		}, []string{"topic"}),
		produceRetries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "metaids_stream_produce_retries_total",
			Help: "Messages produced again after a transient error, by topic.",
		}, []string{"topic"}),
		consumed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "metaids_stream_consumed_records_total",
			Help: "Records handed to a stage's handler, by consumer group and topic.",
		}, []string{"group", "topic"}),
		commits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "metaids_stream_commits_total",
			Help: "Offset commits accepted by the group coordinator, by consumer group and topic.",
		}, []string{"group", "topic"}),
		commitErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "metaids_stream_commit_errors_total",
			Help: "Offset commits that failed, by consumer group and reason (fenced: a rebalance revoked the partitions, so the records go to their next owner; error: any other failure).",
		}, []string{"group", "reason"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "metaids_stream_consumer_lag",
			Help: "Records between the last record handed to the handler and the partition's end offset, as of the latest fetch or poll (-kafka.reader.lag-interval), by consumer group, topic and partition.",
		}, []string{"group", "topic", "partition"}),
		batchRecords: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "metaids_stream_consumer_batch_records",
			Help:    "Records per batch handed to the handler, by consumer group.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 8), // 1 … 16384
		}, []string{"group"}),
		handleSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "metaids_stream_handler_seconds",
			Help:    "Time the handler took per batch, outputs acknowledged, by consumer group.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 8), // 1ms … 16s
		}, []string{"group"}),
		generations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "metaids_stream_group_generations_total",
			Help: "Consumer group generations joined (one per rebalance), by consumer group.",
		}, []string{"group"}),
	}
	if reg == nil {
		return m
	}
	m.produced = register(reg, m.produced)
	m.produceErrors = register(reg, m.produceErrors)
	m.produceRetries = register(reg, m.produceRetries)
	m.consumed = register(reg, m.consumed)
	m.commits = register(reg, m.commits)
	m.commitErrors = register(reg, m.commitErrors)
	m.lag = register(reg, m.lag)
	m.batchRecords = register(reg, m.batchRecords)
	m.handleSeconds = register(reg, m.handleSeconds)
	m.generations = register(reg, m.generations)
	return m
}

// register registers c, or returns the collector already registered under
// its name so that a second Producer or Consumer adds to the same series.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	err := reg.Register(c)
	if err == nil {
		return c
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing
		}
	}
	panic(err) // as MustRegister: a clash with a foreign collector is a programming error
}
