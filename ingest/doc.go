// Package ingest is the pipeline's first stage: it reads the flow records
// that log shippers put on the flows.<source> topics, in each shipper's own
// format, decodes them into schemas.Flow, validates them, dead-letters bad
// records to flows.dlq with a reason, and builds the Arrow feature batches
// for the features topic. Delivery is at-least-once: input offsets are
// committed only after the features and dead letters are acknowledged.
//
// Decoding. NewDecoders builds a map from format name to Decoder (goflow2,
// pmacct, nprobe, zeek, zeek-json, zeek-tsv, suricata, vpc, cic, nfdump,
// avro, and auto, which sniffs each record); DecoderConfig.FormatFor picks
// the one for a topic. Decoders append into a caller-owned slice and never
// keep the record. A Decoder's error is one of two kinds:
//
//   - *RecordError: the record is dead-lettered with its Reason, one of
//     malformed, missing_field, bad_address, bad_port, bad_counter,
//     end_before_start, time_out_of_window, too_large, no_header,
//     unknown_format, bad_schema and internal (see the Reason constants).
//   - *Skip: the record is understood but carries no flow — a header line
//     (SkipHeader), a non-flow event (SkipNonFlow), a VPC NODATA/SKIPDATA line
//     (SkipNoData) or an empty record (SkipEmpty). Skips are counted, not
//     dead-lettered, so records in = ok + dead-lettered + skipped.
//
// Outcome maps an error to that outcome and its reason for metrics.
//
// Direction. Every decoder puts the originator in Src. Unidirectional
// formats (goflow2, pmacct, VPC, nfdump, Suricata netflow events) fill only
// the Out counters; each decoder's comment gives its field mapping.
//
// Validation. A Validator checks what single fields cannot show: addresses
// set, end not before start, and flow times within a window of now, or, in
// replay mode, of the latest flow seen on the same partition.
//
// The stage (Stage) reads the input topics as a consumer group, decodes and
// validates each record, dead-letters the bad ones to flows.dlq (Avro
// DeadLetter: reason, original bytes, topic/partition/offset) and produces
// one Arrow batch per features partition (murmur2 of the host), committing
// its input only after every batch and dead letter is acknowledged:
// at-least-once, and every record is processed, skipped or dead-lettered.
// It is stateless apart from header context, so replicas scale it. Metrics:
//
//	metaids_ingest_records_total{source,outcome}  outcome: ok, dead_lettered, skipped
//	metaids_ingest_dead_letters_total{reason}     reason: see Reasons
//	metaids_ingest_skipped_total{reason}          reason: see SkipReasons
//	metaids_ingest_flows_total                    rows produced to features
//	metaids_ingest_batches_total                  features messages produced
//	metaids_ingest_batch_rows                     histogram of rows per message
//
// plus the metaids_stream_* metrics of its consumer and producer.
package ingest
