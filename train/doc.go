// Package train fits the metaids model for `metaids train`: the initial
// model of the models topic, which the scorer serves and the adapter later
// extends from analyst labels. It reads nothing from Kafka; the command
// publishes its output.
//
// Data come from package dataset: per-host streams in time order, split by
// time within each class. Training sees only the Train split; early stopping,
// the class thresholds and the anomaly threshold are chosen on the Val split
// (the latest part of each class's training flows); the Test split and
// held-out families are read only by the evaluation (Score, Evaluate,
// EvalFewShot, EvalRobustness). Normalisation is fitted on the training
// flows the next-flow predictor models (benign and unlabelled).
//
// Objectives, each weighted (Config.Weights) and all on by default, in two
// phases: self-supervised pretraining (next-flow prediction alone), then
// multi-task training of
//   - next-flow prediction: the predictor's squared error against the next
//     normalised flow of the host, which is the scorer's anomaly score;
//     every flow is context, and benign and unlabelled flows are targets;
//   - classification of benign vs the known families (cross-entropy), on
//     windows sampled to balance the classes;
//   - episodic N-way K-shot meta-training with the prototypical loss on the
//     embedding, so that families form tight, separable clusters and a new
//     one can start from the mean of a few labelled embeddings;
//   - adversarial augmentation: FGSM/PGD within an L∞ budget (in standard
//     deviations) on the features the spec marks attacker-controlled, of
//     attack flows only, inside the range of the training data.
//
// Windows are Config.Window flows of one host (truncated backpropagation
// through time) batched Config.Batch at a time; windows that start mid-stream
// warm up for Config.BurnIn flows without loss. The optimizer is AdamW with
// weight decay, dropout is applied to the classifier input, and everything
// random is seeded from Config.Seed.
//
// Evaluation runs the deployed path, model.Step over every host's stream, so
// the reported numbers and the thresholds belong to what the scorer
// computes. Run ties training and evaluation into a Report (JSON) and
// WritePlots draws it.
package train
