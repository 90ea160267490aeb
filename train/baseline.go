package train

// BaselinePerFlow names the per-flow baseline, the value of `metaids train
// -baseline` and `metaids eval -baseline` that sets Config.PerFlow.
const BaselinePerFlow = "per-flow"

// perFlowConfig returns cfg as the per-flow baseline trains it. The
// baseline is the same model with its state reset before every flow
// (model.Config.PerFlow), trained on the same windows with the same
// objectives, so that a difference in the numbers is the sequence's and
// nothing else's. Where an objective or setting only exists for the
// sequence, it is adjusted:
//   - burn-in, state replay and cold starts are off: every flow of a window
//     is scored from a zero state anyway, so burn-in flows would only lose
//     their loss, and there are no final states to replay;
//   - the self-supervised pretraining phase is skipped (when the multi-task
//     phase runs): the next-flow predictor reads h_{t−1}, which is always
//     zero, so it can only fit its bias, the typical normalised benign flow,
//     which the multi-task phase's prediction loss fits as well. The anomaly
//     score is then the squared distance of a flow from that centre;
//   - classification, episodic prototypical meta-training and adversarial
//     augmentation apply unchanged, on embeddings of single flows.
//
// Thresholds are set as for the LSTM, on the validation split, through the
// deployed path (model.Step), which resets the state itself.
func perFlowConfig(cfg Config) Config {
	if !cfg.PerFlow {
		return cfg
	}
	cfg.BurnIn, cfg.StateReplay, cfg.ColdStart = 0, 0, 0
	if cfg.Epochs > 0 {
		cfg.PretrainEpochs = 0
	}
	return cfg
}
