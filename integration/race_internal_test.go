//go:build race

package integration

// raceEnabled skips, under the race detector, the single-goroutine
// studies of the generated traffic: it has nothing to find there.
const raceEnabled = true
