// Package adapter is the stage that learns from analysts: it joins their
// labels to the scored flows they name, fine-tunes the classifier head
// with the encoder frozen, gates the candidate against regressions, and
// publishes it signed on the models topic, from which every scorer
// hot-swaps it.
//
// # Topics
//
// It reads labels (Avro Label, JSON accepted), scores (the Arrow batches of
// features.DecodeScores, for the embeddings), alerts (to map an alert id to
// the flow that opened it: a label on an alert is a label on that flow) and
// models (the model to build on). It writes head-only ModelUpdates to
// models, keyed "<model>.head": were they keyed by the model's name, as
// full updates are, compaction would keep the head and drop the encoder it
// belongs to.
//
// # Adaptation
//
// Labels are joined by flow id (or alert id) to scores within a window; a
// label that comes before its score waits, one whose flow never comes
// expires. When one class has -adapter.min-labels joined labels, or
// -adapter.fit-interval passes, the adapter fits: a family new to the
// model gets a head row from its prototype, then the head is fine-tuned
// with AdamW on the new labels and the exemplars of every class replayed
// from the model. Benign labels on alerted flows are false positives; they
// pull those flows' class scores down like any other label. The gate then
// compares the candidate with the model in service on data held back from
// fitting (-adapter.gate.holdout of the new labels and of each class's
// exemplars, and the model's gate sets: benign validation flows and
// validation flows of each known attack class that train stored and no
// head was fitted on) and publishes only if no known class
// loses more recall than -adapter.gate.recall-tolerance, the held-back
// benign flows do not show with 90% confidence a rise of the false-positive
// rate beyond -adapter.gate.fpr-tolerance, and the candidate reproduces
// at least -adapter.gate.min-agreement of each class's held-back labels.
// A rejected candidate is logged with the gate's numbers, counted, and
// dropped with its labels.
//
// Campaigns: labels name attackers as well as flows. Each update carries,
// per host with attack labels, the family of its newest label over the span
// of those labels (model.Campaign); scorers name the host's class alerts by
// it until the host pauses for longer than -adapter.campaign-idle. Ten
// labels are often one kind of flow, which no head row generalises from to
// the attack's other kinds (CIC-IDS2017's first ten Slowloris flows are all
// 5/4 packets, 247 bytes; the head names the rest Slowhttptest), while the
// attacker goes on from the same address. When every fit of a new family's
// row costs a known class, the family is added dormant, named by its
// campaigns alone with the head unchanged, if the gate finds that its
// held-back labels are alerted on and so named; its next labels give it a
// row. A campaign renames alerts and never raises or drops one, so it
// cannot move detection or the false-positive rate.
//
// Defences against bad labels: per-analyst rate limits, labels on unknown
// flows expire and are counted, conflicting labels on one flow resolve to
// the latest, and the gate is the last line.
//
// # State and delivery
//
// The adapter holds no state that the topics cannot rebuild. The exemplars
// travel in each update, so the models topic holds the adapter's memory.
// Labels are exactly-once in effect: a label is done with only once the
// update that fits it is published (or it is rejected, expired, …), so
// the adapter keeps its own read positions instead of committing as it
// reads. Each update records in its Gate map, under
// "resume.labels.<partition>", the labels offset of each partition before
// which every label has been dealt with, and the adapter commits those
// offsets to -adapter.group (without joining it), together with the
// scores and alerts offsets from which the scores and alert ids it holds
// can be read again. A restarted adapter reads the labels from the larger
// of the committed and the published offset, and the scores and alerts
// from the committed ones (the window before now if there are none), so
// it neither loses a label nor fits one twice. For that to hold it takes
// labels for a fit only from the front of each partition, up to the first
// label still waiting for its score. Only one adapter may run per model:
// versions come from the models topic.
//
// # Metrics
//
//	metaids_adapter_labels_read_total
//	metaids_adapter_labels_total{outcome}       published, rejected, expired, superseded, invalid, malformed, rate_limited, overflow, stale
//	metaids_adapter_join_labels                 labels held (read = sum of outcomes + held)
//	metaids_adapter_join_scores                 scored flows held for joining
//	metaids_adapter_score_batches_total{outcome} ok, malformed, spec_mismatch
//	metaids_adapter_scored_flows_total
//	metaids_adapter_alerts_total{outcome}       ok, malformed
//	metaids_adapter_false_positive_labels_total
//	metaids_adapter_fits_total{trigger}         labels, timer
//	metaids_adapter_fit_seconds                 histogram
//	metaids_adapter_gate_decisions_total{result} accepted, rejected
//	metaids_adapter_updates_published_total
//	metaids_adapter_label_to_publish_seconds    histogram
//	metaids_adapter_model_version
//	metaids_adapter_model_updates_total{result} loaded, ignored, rejected
//	metaids_adapter_resume_commit_errors_total
//	metaids_stream_consumer_lag{group,topic,partition}  labels, scores and alerts, under -adapter.group
//
// The package also sends labels for `metaids label` (ReadLabels,
// SendLabels) and scripts an analyst for the demo (ScriptedAnalyst).
package adapter
