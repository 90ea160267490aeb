// Package pipeline runs the whole metaids pipeline in one process: the
// embedded broker (unless a cluster is named), the topics, a signed initial
// model on the models topic, and the ingest, scorer and adapter stages, each
// still talking to the broker over TCP through kafka-go. `metaids up`, the
// demo, eval's live mode and the end-to-end tests all start it the same way.
// It is separate from package integration because the stages' own tests use
// integration's traffic generator, and the generator must not depend on them.
package pipeline
