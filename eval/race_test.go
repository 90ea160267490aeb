//go:build race

package eval

// raceEnabled skips, under the race detector, the tests that train and
// score on one goroutine: it has nothing to find there and slows them
// tenfold. The README's test command runs them without it.
const raceEnabled = true
