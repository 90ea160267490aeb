// Package eval is the evaluation harness behind `metaids eval`: it replays a
// labelled flow dataset through the detector, plays the analyst who labels
// the first K flows of each attack family the model has never seen, and
// measures what an operator would see: detection quality before and after
// the few-shot update, the false-positive rate at the deployed thresholds,
// how long an update takes to go live, alert latency and throughput.
//
// It is a tool, not a stage: like `metaids up` it wires the stage packages
// (ingest, scorer, adapter) together, and nothing imports it but cmd.
//
// # Data and model
//
// Rows and their ground truth come from package dataset (CICFlowMeter
// Label, Stratosphere label/detailed-label of Zeek conn.log, LUFlow label).
// The model is a file (Config.Model), or is trained with package train's
// standard settings on Config.Train (all of its rows, split into training
// and validation only: the evaluated data is other data), or by default on
// the evaluated data itself: the flows not of a new family, earliest
// TrainFraction of each class, in which case only the rest (each class's
// latest flows and every flow of the new families) is evaluated. No
// threshold, normalisation or model choice is fitted on evaluated rows:
// thresholds are the model's own, set by the trainer on its validation
// split.
//
// # Modes
//
// Live (the default) starts an embedded broker (stream.StartEmbedded) and
// the real ingest, scorer and adapter stages in this process, replays the
// evaluated rows in time order onto an input topic in their native format
// (CSV lines, Zeek TSV lines; LUFlow, which no shipper writes, as Avro
// schemas.Flow), reads every score back from the scores topic and every
// alert from the alerts topic, and, once a new family's first K flows are
// scored, sends K labels on the labels topic as an analyst would. The
// adapter fits, gates and publishes a head update; the scorer swaps it in.
// By default (LiveConfig.Sync) the replay waits after the K-th flow until
// the update serves or the gate rejects it, then goes on, so that which
// flows the update scores does not depend on the replay rate; the wait is
// the adaptation latency reported. Without Sync the replay runs on and the
// flows in between are scored by the old model.
//
// Offline (Config.Offline) runs the same model code in this process without
// Kafka: per-host LSTM state stepped with model.Step exactly as the scorer
// steps it (dt_prev start to start, dst_repeat and dt_dst from the host's
// recent responders, the warm-up before anomaly alerts, the
// idle TTL in event time), the scorer's alert rule, and the adapter's fit
// and gate on the K labelled flows' embeddings, swapped in from the next
// flow on. Both modes feed one metrics computation, so their numbers agree
// up to the flows a live update takes to reach the scorer.
//
// # Report
//
// Report is the JSON report: binary detection over every evaluated flow,
// per-class support, recall and precision, each new family's recall before
// the labels and after the update, the benign false-positive rate and known
// families' recall of the starting and the final model on the same flows,
// adaptation latency (K-th label sent to first score by the new model),
// alert latency and throughput. WriteTable prints its summary and WritePlots
// draws ROC, precision-recall and recall over time around each adaptation.
//
// Report.Headline gathers the numbers models are compared on: binary F1 at
// the deployed thresholds; recall at a benign false-positive rate
// (Config.FixedFPR) whose threshold on the starting model's attack score
// 1 − p(benign) is set on the training data's benign validation flows
// before anything evaluated is scored (so the measured FPR is reported
// beside it); and few-shot recall at K. With Config.Baseline (the per-flow
// model, trained on the same data with the same settings and seed) or
// Config.BaselineModel, the baseline replays the same rows in the same mode
// and Report.Baseline holds its headline and, for each direction, the
// flows one model flags and the other does not, with the number of hosts
// they come from: a gain on one host is one finding, however many flows
// it has.
//
// The package holds no global state; randomness (training, the adapter's
// fit) is seeded.
package eval
