package scorer

import "github.com/prometheus/client_golang/prometheus"

// metrics are the scorer's Prometheus series. They are registered on the
// Registerer handed to New, never on the default one, so tests and several
// stages in one process (metaids up) each count their own.
type metrics struct {
	records       *prometheus.CounterVec // features messages by outcome
	badBatches    *prometheus.CounterVec // by reason
	flows         prometheus.Counter
	batchFlows    prometheus.Histogram
	waves         prometheus.Histogram
	stepSeconds   prometheus.Histogram
	invalid       prometheus.Counter
	alerts        *prometheus.CounterVec // publications by event
	alertFlows    *prometheus.CounterVec // alerting flows by kind
	actions       *prometheus.CounterVec // by event
	modelUpdates  *prometheus.CounterVec // by result
	modelVersion  prometheus.Gauge
	statesReset   prometheus.Counter
	hosts         prometheus.Gauge
	evicted       *prometheus.CounterVec // by reason
	stateBytes    prometheus.Gauge
	bytesPerHost  prometheus.Gauge
	outputRecords *prometheus.CounterVec // by topic kind

	checkpointRecords *prometheus.CounterVec // by kind
	restores          *prometheus.CounterVec // partitions, by result
	restored          *prometheus.CounterVec // hosts, by result
	replayed          prometheus.Counter
	restoreSeconds    prometheus.Histogram
}

// Label values, fixed sets so that no series is made from data.
const (
	outcomeOK  = "ok"
	outcomeBad = "bad"

	eventOpened    = "opened"
	eventUpdated   = "updated"
	eventIssued    = "issued"
	eventRenewed   = "renewed"
	eventWithdrawn = "withdrawn"

	kindClass   = "class"
	kindAnomaly = "anomaly"

	evictTTL      = "ttl"
	evictCapacity = "capacity"
	evictRevoked  = "revoked"
	evictReset    = "reset"

	kindState     = "state"
	kindTombstone = "tombstone"
)

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "metaids_scorer_records_total",
			Help: "Features messages handled, by outcome: ok (scored) or bad (undecodable, skipped).",
		}, []string{"outcome"}),
		badBatches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "metaids_scorer_bad_batches_total",
			Help: "Features messages skipped because they could not be decoded, by reason.",
		}, []string{"reason"}),
		flows: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "metaids_scorer_flows_total",
			Help: "Flows scored; each yields one row on the scores topic.",
		}),
		batchFlows: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "metaids_scorer_batch_flows",
			Help:    "Flows per features message.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 9),
		}),
		waves: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "metaids_scorer_batch_waves",
			Help:    "Waves per features message: the most flows any one host has in it.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 12),
		}),
		stepSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "metaids_scorer_step_seconds",
			Help:    "Time to advance one features message's hosts through the model, gather and scatter included.",
			Buckets: prometheus.ExponentialBuckets(1e-5, 4, 10),
		}),
		invalid: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "metaids_scorer_invalid_features_total",
			Help: "Non-finite feature values the model treated as missing.",
		}),
		alerts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "metaids_scorer_alerts_total",
			Help: "Alert publications, by event: opened (a new alert id) or updated (the same id with a larger count).",
		}, []string{"event"}),
		alertFlows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "metaids_scorer_alert_flows_total",
			Help: "Flows that passed a threshold, by kind: class or anomaly.",
		}, []string{"kind"}),
		actions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "metaids_scorer_actions_total",
			Help: "Block or rate-limit recommendations, by event: issued, renewed or withdrawn.",
		}, []string{"event"}),
		modelUpdates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "metaids_scorer_model_updates_total",
			Help: "Model updates read from the models topic or file, by result: applied or the reason for rejecting it.",
		}, []string{"result"}),
		modelVersion: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "metaids_scorer_model_version",
			Help: "Version of the model being served; 0 before the first.",
		}),
		statesReset: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "metaids_scorer_states_reset_total",
			Help: "Times host states were reset because a new model changed the encoder.",
		}),
		hosts: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "metaids_scorer_hosts",
			Help: "Hosts with state held, over every partition this replica holds.",
		}),
		evicted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "metaids_scorer_hosts_evicted_total",
			Help: "Host states dropped, by reason: ttl (idle), capacity (least recently seen past the cap), revoked (partition reassigned) or reset (a new encoder).",
		}, []string{"reason"}),
		stateBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "metaids_scorer_state_bytes",
			Help: "Estimated memory held by host state: state slabs, slot metadata, index and keys.",
		}),
		bytesPerHost: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "metaids_scorer_state_bytes_per_host",
			Help: "metaids_scorer_state_bytes divided by metaids_scorer_hosts.",
		}),
		outputRecords: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "metaids_scorer_output_records_total",
			Help: "Records produced and acknowledged, by output: scores, alerts or actions.",
		}, []string{"output"}),
		checkpointRecords: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "metaids_scorer_state_checkpoint_records_total",
			Help: "Records written to the scorer.state topic and acknowledged, by kind: state (a host's checkpoint) or tombstone (a checkpointed host dropped).",
		}, []string{"kind"}),
		restores: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "metaids_scorer_state_restores_total",
			Help: "Features partitions taken over and restored from their checkpoints, by result: ok, failed (hosts start from what could be read) or no_topic (no co-partitioned scorer.state partition; not checkpointed).",
		}, []string{"result"}),
		restored: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "metaids_scorer_state_restored_hosts_total",
			Help: "Checkpointed hosts read at a restore, by result: restored, other_encoder (written by another encoder, ignored) or malformed.",
		}, []string{"result"}),
		replayed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "metaids_scorer_state_replayed_flows_total",
			Help: "Flows stepped silently at a restore to bring checkpointed states up to the offset the partition was taken over at.",
		}),
		restoreSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "metaids_scorer_state_restore_seconds",
			Help:    "Time to restore one features partition: read its checkpoints and replay the features since.",
			Buckets: prometheus.ExponentialBuckets(1e-3, 4, 10),
		}),
	}
	if reg != nil {
		reg.MustRegister(m.records, m.badBatches, m.flows, m.batchFlows, m.waves, m.stepSeconds,
			m.invalid, m.alerts, m.alertFlows, m.actions, m.modelUpdates, m.modelVersion,
			m.statesReset, m.hosts, m.evicted, m.stateBytes, m.bytesPerHost, m.outputRecords,
			m.checkpointRecords, m.restores, m.restored, m.replayed, m.restoreSeconds)
	}
	// Pre-create the fixed label values so that dashboards and tests see
	// zeros rather than missing series.
	for _, o := range []string{outcomeOK, outcomeBad} {
		m.records.WithLabelValues(o)
	}
	for _, e := range []string{eventOpened, eventUpdated} {
		m.alerts.WithLabelValues(e)
	}
	for _, k := range []string{kindClass, kindAnomaly} {
		m.alertFlows.WithLabelValues(k)
	}
	for _, e := range []string{eventIssued, eventRenewed, eventWithdrawn} {
		m.actions.WithLabelValues(e)
	}
	for _, r := range []string{evictTTL, evictCapacity, evictRevoked, evictReset} {
		m.evicted.WithLabelValues(r)
	}
	for _, k := range []string{kindState, kindTombstone} {
		m.checkpointRecords.WithLabelValues(k)
	}
	for _, r := range []string{restoreOK, restoreFailed, restoreNoTopic} {
		m.restores.WithLabelValues(r)
	}
	for _, r := range []string{restoredOK, restoredOtherModel, restoredMalformed} {
		m.restored.WithLabelValues(r)
	}
	return m
}
