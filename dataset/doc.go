// Package dataset reads labelled flow datasets for `metaids train`: the
// CICFlowMeter CSV of CIC-IDS2017 (including the 91-column "improved"
// release), Zeek conn.log TSV with Stratosphere's label columns, LUFlow's
// Cisco Joy CSV, and the project's synthetic traffic generator. It turns them
// into what the trainer needs: raw feature vectors (features.Vector, the same
// function ingest uses), a split by time within each class, and per-host
// streams in time order with the per-host features (dt_prev, dst_repeat,
// dt_dst) filled the way the scorer fills them.
//
// Flows are decoded by the ingest decoders themselves (a header line, then
// one record per row, each with a Coord naming the file and line), so a
// model is trained on exactly the flows the pipeline would produce. Only the
// label columns, which ingest ignores, are read here. LUFlow is not an ingest
// format; its reader lives here (see ReadLUFlow).
//
// Splits (Build): within each class, the earliest TrainFraction of its flows
// (by start time) are for training and the rest are the test set; the latest
// ValFraction of the training part is carved off for validation (early
// stopping, thresholds). Families named in Holdout are kept out of training
// and validation entirely. The split is by time, not by host: in CIC-IDS2017
// every external attack comes from one address, so a host-disjoint split is
// impossible there, and addresses are used only to key per-host state, never
// as features.
//
// dt_prev, dst_repeat and dt_dst depend on which flows a stream holds, so
// they are filled per stream (Dataset.Streams), from the earlier flows of
// the same host in that stream: the training stream never sees a validation
// or test flow, not even its time. For per-class random samples (the CIC
// files), whose gaps are artefacts of each class's sampling rate, DeltaT
// "off" marks the three features missing instead (see Config.DeltaT).
//
// This package does no Kafka I/O and keeps no global state.
package dataset
