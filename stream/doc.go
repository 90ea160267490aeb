// Package stream is the Kafka plumbing every metaids stage shares, on
// kafka-go: the connection settings (Config: brokers, TLS, SASL PLAIN and
// SCRAM), topic creation (EnsureTopics, PipelineTopics), the Producer, the
// at-least-once consume loop (Consumer) and an in-process broker for the
// demo and the tests (Embedded, on kfake). It reads and writes whichever
// topics its callers name; it knows no record formats.
//
// # Delivery
//
// At-least-once. Produce returns only after every in-sync replica has
// acknowledged (RequiredAcks: all). A Consumer hands a batch to its Handler
// and commits the offset after each partition's last record only when the
// Handler has returned nil, having produced and had acknowledged all its
// outputs. A crash therefore duplicates records but never loses one;
// downstream ids are deterministic, so duplicates can be dropped.
//
// # Why the Consumer drives kafka.ConsumerGroup itself
//
// kafka-go's Reader with a GroupID commits with whatever generation is
// current when the commit is sent and reads ahead into a queue that
// survives rebalances, so a commit can land for a partition that a
// rebalance has just given to another member, over that member's progress.
// The Consumer instead uses kafka.ConsumerGroup and its Generation: one
// partition Reader (no group) per assigned partition, starting at the
// committed offset, and offset commits that carry the generation's id and
// member id, so that the coordinator refuses a commit from a generation
// that is over. (They go through a kafka.Client rather than
// Generation.CommitOffsets, which cannot carry the metadata that
// ConsumerConfig.State commits with each offset.) While a batch is being handled the Consumer holds the
// generation open (kafka-go does not rejoin until every function started
// on the generation returns), so a rebalance waits for the batch in hand
// to finish and be committed; the coordinator accepts that commit because
// the group is still preparing the rebalance and nobody else owns the
// partitions yet. If we were evicted meanwhile (the handler outlived
// -kafka.group.rebalance-timeout), the commit is fenced, counted, and the
// records go to the partitions' next owner. A batch still being gathered
// when the generation ends is dropped uncommitted. Between the last commit
// and the rejoin, with the generation still held, the Consumer calls
// ConsumerConfig.Revoked, so a stage can hand per-partition state to the
// next owner (the scorer checkpoints its hosts there).
//
// On cancellation Run finishes the batch in hand, commits under a context
// that outlives the cancellation by ConsumerConfig.ShutdownTimeout, leaves
// the group (so the others take over at once) and returns nil.
//
// # Partitioning
//
// The Producer hashes keys with murmur2, as Kafka's default partitioner
// does, so every producer of a keyed topic agrees: kafka-go's default
// RoundRobin and its Hash balancer (FNV-1a) do not. AtPartition pins a
// message to a partition instead; ingest uses it with PartitionFor and
// Producer.Partitions to build one batch per features partition.
//
// # Metrics
//
//	metaids_stream_produced_messages_total{topic}
//	metaids_stream_produce_errors_total{topic}
//	metaids_stream_produce_retries_total{topic}
//	metaids_stream_consumed_records_total{group,topic}
//	metaids_stream_commits_total{group,topic}
//	metaids_stream_commit_errors_total{group,reason}   reason: fenced, error
//	metaids_stream_consumer_lag{group,topic,partition}
//	metaids_stream_consumer_batch_records{group}        histogram
//	metaids_stream_handler_seconds{group}               histogram
//	metaids_stream_group_generations_total{group}
//
// Producers and Consumers registered on the same Registerer share these
// series. The lag counts from the record last handed to the stage to the
// partition's end offset, polled from the brokers every
// -kafka.reader.lag-interval; a stage that reads partitions outside a group
// (the adapter) reports its own with PartitionLag.
package stream
