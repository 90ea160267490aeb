//go:build !race

package ingest

// RaceEnabled: see stage_race_test.go.
const RaceEnabled = false
