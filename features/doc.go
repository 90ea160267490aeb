// Package features turns flows into the model's input and carries them
// between stages.
//
// Role in the pipeline: ingest decodes shipper records into schemas.Flow and
// calls this package to compute each flow's feature vector (Vector), to pick
// the features partition for its host (Partition: murmur2(host) mod N, the
// same as Kafka's default partitioner and kafka.Murmur2Balancer), and to
// build one Arrow record batch per target partition (Batcher, Builder). Each
// batch is written as one Arrow IPC stream (Encode), which is the value of
// one message on the features topic, keyed by a host of the batch. The
// scorer reads it back without copying the feature columns (Decode, View),
// fills the three features that need per-host state (dt_prev through
// DeltaT; dst_repeat and dt_dst through PeerMemory), and
// writes the scores topic with the schema defined here too (ScoresBuilder,
// DecodeScores), so the scorer and the adapter share one definition.
//
// The feature spec (Default) is versioned and hashed. Every features batch
// carries the hash in its schema metadata and Decode rejects a batch whose
// hash differs from this build's, so a model is never fed vectors whose
// meaning changed under it; models record the hash they were trained with.
//
// Delivery: this package does no I/O. Its guarantees are about data: the
// same flow always yields the same vector, the same host always the same
// partition, and each flushed batch lists the input coordinates it covers
// (PartitionBatch.Spans), so the ingest stage can commit input offsets only
// once the batches holding their flows are acknowledged.
//
// Bytes from the topics are untrusted: Decode and DecodeScores validate the
// stream and return ErrCorrupt, ErrSchemaMismatch or ErrSpecMismatch; they
// never panic and never allocate more than the input's size. They use a
// strict reader of their own rather than arrow's ipc.Reader, because that
// reader sizes allocations from length fields in the input before checking
// them against the input (a 12-byte message can ask for gigabytes).
package features
