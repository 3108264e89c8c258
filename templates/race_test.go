//go:build race

package templates

// raceEnabled: the race detector multiplies allocations and time, which some tests measure.
const raceEnabled = true
