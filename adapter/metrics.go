package adapter

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	labelsRead      prometheus.Counter
	labels          *prometheus.CounterVec // outcome
	heldLabels      prometheus.Gauge
	heldScores      prometheus.Gauge
	scoreBatches    *prometheus.CounterVec // outcome
	scoredFlows     prometheus.Counter
	alerts          *prometheus.CounterVec // outcome
	falsePositives  prometheus.Counter
	fits            *prometheus.CounterVec // trigger
	fitSeconds      prometheus.Histogram
	gate            *prometheus.CounterVec // result
	published       prometheus.Counter
	labelToPublish  prometheus.Histogram
	modelVersion    prometheus.Gauge
	modelUpdates    *prometheus.CounterVec // result
	resumeCommitErr prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	const ns, sub = "metaids", "adapter"
	counter := func(name, help string) prometheus.Counter {
		return register(reg, prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help}))
	}
	counterVec := func(name, help, label string) *prometheus.CounterVec {
		return register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help}, []string{label}))
	}
	gauge := func(name, help string) prometheus.Gauge {
		return register(reg, prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help}))
	}
	m := &metrics{
		labelsRead: counter("labels_read_total", "Label records read from the labels topic."),
		labels: counterVec("labels_total",
			"Labels by what became of them: published, rejected, expired, superseded, invalid, malformed, rate_limited, overflow or stale.", "outcome"),
		heldLabels:   gauge("join_labels", "Labels held by the join, waiting for their flow's score or for a fit."),
		heldScores:   gauge("join_scores", "Scored flows held for labels to join."),
		scoreBatches: counterVec("score_batches_total", "Records read from the scores topic, by outcome: ok, malformed or spec_mismatch.", "outcome"),
		scoredFlows:  counter("scored_flows_total", "Scored flows read from the scores topic."),
		alerts:       counterVec("alerts_total", "Records read from the alerts topic, by outcome: ok or malformed.", "outcome"),
		falsePositives: counter("false_positive_labels_total",
			"Benign labels on alerted flows that went into a fit."),
		fits: counterVec("fits_total", "Head fits, by trigger: labels (a class reached -adapter.min-labels) or timer.", "trigger"),
		fitSeconds: register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "fit_seconds",
			Help:    "Time to fit and gate a candidate head.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
		})),
		gate:      counterVec("gate_decisions_total", "Gate decisions on candidate heads, by result: accepted or rejected.", "result"),
		published: counter("updates_published_total", "Signed head updates published to the models topic."),
		labelToPublish: register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "label_to_publish_seconds",
			Help:    "Time from the record time of the newest label in an update to the update's acknowledgement on the models topic.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 14),
		})),
		modelVersion: gauge("model_version", "Version of the model the adapter builds on."),
		modelUpdates: counterVec("model_updates_total",
			"Records read from the models topic, by result: loaded, ignored (another model, or not newer) or rejected (bad signature or shape).", "result"),
		resumeCommitErr: counter("resume_commit_errors_total",
			"Failed commits of the labels resume offsets; the next commit or update carries them."),
	}
	// Dashboards and alert rules can rate() the gate's decisions from the
	// start, before the first fit.
	for _, r := range []string{"accepted", "rejected"} {
		m.gate.WithLabelValues(r)
	}
	return m
}

// register registers c, or returns the collector already registered under
// its name, so that a restarted Stage on the same registry carries on the
// same series.
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
