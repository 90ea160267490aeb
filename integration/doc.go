// Package integration holds the synthetic traffic generator that the demo,
// `metaids train --synthetic` and the end-to-end tests share, and (in its
// tests) the end-to-end checks of the whole pipeline over the embedded
// broker. The generator is ordinary, seeded, non-test code: the same seed
// always yields the same flows, labels and attack times.
package integration
