// Package schemas is the contract between the stages: the Go record types, their
// Avro schemas (the embedded *.avsc files), the codecs that turn one into the
// other inside Confluent wire framing, and the topic names.
//
// Every Avro value on a topic is framed as Confluent's serializers frame it: a
// zero magic byte, the writer schema's id as a 4-byte big-endian integer, then
// the Avro binary body. Ids come from a Registry. The built-in FixedRegistry
// numbers the records 1 (Flow) to 6 (Action); a Confluent Schema Registry
// client can take its place without touching the codecs, because subjects are
// the records' full names (RecordNameStrategy) and NewCodecs checks that the
// registry's schemas match the embedded ones.
//
// Decoders are the first thing that touches bytes from outside, so they never
// panic and never trust a length: every error wraps one of ErrBadMagic,
// ErrTruncated, ErrUnknownSchemaID, ErrSchemaMismatch, ErrMalformed or
// ErrInvalid, which a stage maps onto its dead-letter reason.
//
// The package also renders alerts for SIEMs (AlertECS, AlertOCSF), accepts
// analysts' labels as JSON, and signs and verifies model updates with Ed25519,
// so that a scorer runs only models that a configured key vouches for.
//
// The package holds no state: a Codecs value is immutable after NewCodecs and
// safe for concurrent use.
package schemas
