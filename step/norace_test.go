//go:build !race

package step_test

const raceDetector = false
