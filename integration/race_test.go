//go:build race

package integration_test

// raceEnabled scales the accounting and burst tests down under the race
// detector, which slows the stages about tenfold on CI's two cores: the
// same faults are injected into fewer flows.
const raceEnabled = true
