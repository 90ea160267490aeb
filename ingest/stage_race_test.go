//go:build race

package ingest

// RaceEnabled scales the dataset replays down under the race detector,
// which slows the stage about twentyfold: the samples still cross every
// file, and the full replays run without -race. It is exported for the
// ingest_test package's LUFlow replay.
const RaceEnabled = true
