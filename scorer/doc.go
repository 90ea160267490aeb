// Package scorer is the scorer stage: it reads feature batches from the
// features topic in a consumer group, advances each host's LSTM state by one
// step per flow, and publishes a score for every flow, alerts for flows that
// pass a threshold, and block or rate-limit recommendations for hosts that
// keep alerting.
//
// Topics: it reads features (Arrow, keyed by host, so all flows of a host
// reach one replica in order), scorer.state (when it takes a partition
// over) and models (compacted, signed ModelUpdates, read from the start by
// every replica with plain partition readers). It writes scores (Arrow in
// the features.ScoresSchema layout, assembled from the input's and the
// model's buffers without copying; one or more messages per features
// message, keyed alike), alerts (Avro schemas.Alert in Confluent framing by
// default; ECS or OCSF JSON per topic with -scorer.alerts.outputs), actions
// (Avro schemas.Action) and scorer.state (host checkpoints).
//
// State: per features partition, a store of host states (h and c in two
// contiguous float32 slabs, about 650 bytes per host at H=64) bounded by an
// idle TTL and a cap with least-recently-seen eviction. Time for the TTL,
// alert windows, hysteresis and calm-down is event time (flow end times),
// so a replay ages hosts as the original traffic did; only the republish
// interval of a growing alert is wall time.
//
// Warm restarts: every -scorer.state.checkpoint-interval, and when its
// partitions are revoked (a rebalance, or the replica stopping), a replica writes the states of the hosts that changed to the
// compacted scorer.state topic, keyed by host, in the partition numbered
// like their features partition: a small versioned binary record with h
// and c, the host's counters and times, the features offset the state is
// as of, and the identity of the encoder that wrote it. A replica that
// gets a partition (at start or in a rebalance) reads that scorer.state
// partition to its end before scoring, restores the hosts written by its
// own encoder, and silently replays the features between the checkpoint
// and the offset it starts at, so its hosts continue exactly where the
// previous owner left them. Open alerts and episodes are not checkpointed.
//
// Inference: a message's rows are planned into waves (the k-th flow of every
// host in wave k); each wave gathers its hosts' states, steps them through
// the model in one batched call, and scatters them back. The result equals
// feeding the flows one at a time.
//
// Alerts: a flow alerts when its most probable attack class reaches that
// class's threshold, or its anomaly score (the next-flow predictor's error)
// reaches the model's anomaly threshold after the host's warm-up. Alerts are
// aggregated per host and class over -scorer.alerts.window: the first flow
// opens the alert, whose id derives from that flow's id and the class, and
// later flows raise its Count; the grown alert is re-published under the
// same id at most every -scorer.alerts.republish. Each alert lists the
// features that moved its score most: gradient × input on the classifier
// head for a class, each feature's share of the prediction error for an
// anomaly. A class alert of a host that analysts labelled is named by its
// campaign (model.Campaign, carried in the model) while the host keeps
// alerting with no pause longer than the campaign's; probability and
// explanation stay the head's. How far each campaign has run is
// checkpointed with its host's state, so a takeover names the host's next
// alerts as the previous owner would have (flows replayed after a
// checkpoint step the state but do not extend the campaign).
//
// Models: an update is served only if it is signed by a key of
// -scorer.model.keys, is for this build's feature spec, has the right shapes
// and finite numbers, and has a version above the one serving. It is swapped
// in atomically between batches; a head-only update (or any update with an
// unchanged encoder) keeps host states, any other resets them. A rejected
// update is logged with its reason and counted, and the last good model
// keeps serving.
//
// Delivery: at-least-once. The handler returns only after every score, alert
// and action of the batch is acknowledged; the stream consumer commits only
// then. Redelivered flows yield the same scores and, for alerts opened in the
// redelivered batch, the same alert ids. Alert updates held back by the
// republish interval are published later by a flush loop and on shutdown;
// they carry no input offsets, and a lost one is superseded by the next.
//
// Bad batches: the scorer has no dead-letter topic of its own in the design
// (features are produced by ingest, which already dead-letters bad input).
// A features message that does not decode (corrupt Arrow, another schema or
// feature spec) or that makes the scorer panic is therefore counted in
// metaids_scorer_bad_batches_total{reason}, logged at a rate-limited Warn,
// and skipped, so its offset is committed with the batch; the bytes remain
// in the features topic for as long as it retains them.
//
// Metrics:
//
//	metaids_scorer_records_total{outcome}          ok | bad
//	metaids_scorer_bad_batches_total{reason}       corrupt | schema | spec_mismatch | internal
//	metaids_scorer_flows_total
//	metaids_scorer_batch_flows                     histogram
//	metaids_scorer_batch_waves                     histogram
//	metaids_scorer_step_seconds                    histogram
//	metaids_scorer_invalid_features_total
//	metaids_scorer_alerts_total{event}             opened | updated
//	metaids_scorer_alert_flows_total{kind}         class | anomaly
//	metaids_scorer_actions_total{event}            issued | renewed | withdrawn
//	metaids_scorer_model_updates_total{result}     applied | malformed | unsigned | unknown_key |
//	                                               bad_signature | stale | spec_mismatch | shape |
//	                                               non_finite | no_base | invalid
//	metaids_scorer_model_version
//	metaids_scorer_states_reset_total
//	metaids_scorer_hosts
//	metaids_scorer_hosts_evicted_total{reason}     ttl | capacity | revoked | reset
//	metaids_scorer_state_bytes
//	metaids_scorer_state_bytes_per_host
//	metaids_scorer_output_records_total{output}    scores | alerts | actions
//	metaids_scorer_state_checkpoint_records_total{kind}  state | tombstone
//	metaids_scorer_state_restores_total{result}    ok | failed | no_topic
//	metaids_scorer_state_restored_hosts_total{result}  restored | other_encoder | malformed
//	metaids_scorer_state_replayed_flows_total
//	metaids_scorer_state_restore_seconds           histogram
//
// The stream consumer and producer add the metaids_stream_* series.
package scorer
