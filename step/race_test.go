//go:build race

package step_test

// raceDetector is set in a test binary built with -race, whose shadow memory adds to every
// process's RSS without being part of the Go heap the memory bound watches.
const raceDetector = true
