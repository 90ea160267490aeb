package ingest

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Outcomes of an input record, the values of the outcome label of
// metaids_ingest_records_total. They are the first result of Outcome.
const (
	outcomeOK           = "ok"
	outcomeDeadLettered = "dead_lettered"
	outcomeSkipped      = "skipped"
)

// metrics are the stage's Prometheus series. They are registered on the
// Registerer handed to New, never on the default one, so that tests and
// several stages in one process (metaids up) each count their own.
//
// Every counter is advanced only once the batch's outputs have been
// acknowledged, so the counters describe what the pipeline downstream has
// received: records in (by outcome) always equal ok + dead_lettered +
// skipped, and flows_total equals the rows on the features topic.
type metrics struct {
	records     *prometheus.CounterVec // input records by source and outcome
	deadLetters *prometheus.CounterVec // by reason
	skips       *prometheus.CounterVec // by skip reason
	flows       prometheus.Counter     // feature rows produced
	batches     prometheus.Counter     // features messages produced
	batchRows   prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer, sources []string) *metrics {
	m := &metrics{
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "metaids_ingest_records_total",
			Help: "Input records handled, by source (the input topic without prefix and \"flows.\") and outcome: ok (flows produced), dead_lettered (sent to flows.dlq) or skipped (understood, no flow: headers, non-flow events).",
		}, []string{"source", "outcome"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "metaids_ingest_dead_letters_total",
			Help: "Input records sent to flows.dlq, by reason.",
		}, []string{"reason"}),
		skips: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "metaids_ingest_skipped_total",
			Help: "Input records that held no flow, by reason: header, non_flow, no_data or empty.",
		}, []string{"reason"}),
		flows: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "metaids_ingest_flows_total",
			Help: "Flows produced to the features topic as feature rows.",
		}),
		batches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "metaids_ingest_batches_total",
			Help: "Features messages (Arrow record batches) produced.",
		}),
		batchRows: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "metaids_ingest_batch_rows",
			Help:    "Rows per features message produced.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 8), // 1 … 16384
		}),
	}
	if reg != nil {
		m.records = register(reg, m.records)
		m.deadLetters = register(reg, m.deadLetters)
		m.skips = register(reg, m.skips)
		m.flows = register(reg, m.flows)
		m.batches = register(reg, m.batches)
		m.batchRows = register(reg, m.batchRows)
	}
	// Pre-create every series of the fixed label sets, so that a reason
	// never seen still shows as zero and a rate() over it works from the
	// start.
	for _, src := range sources {
		for _, o := range []string{outcomeOK, outcomeDeadLettered, outcomeSkipped} {
			m.records.WithLabelValues(src, o)
		}
	}
	for _, r := range Reasons() {
		m.deadLetters.WithLabelValues(string(r))
	}
	for _, r := range SkipReasons() {
		m.skips.WithLabelValues(string(r))
	}
	return m
}

// register registers c, or returns the collector already registered under
// its name, so that two stages on one Registerer (ingest replicas in one
// test process) add to the same series instead of panicking.
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
