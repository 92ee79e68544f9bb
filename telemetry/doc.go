// Package telemetry exports what the engine does: Prometheus metrics (Metrics: runs started and
// finished, step durations, waiting steps, the work queue, CUE evaluation time, provider errors)
// and OpenTelemetry traces (Tracer: a span per finished run, a child span per step).
//
// Both learn of runs as an engine.Observer, from the transitions the engine saved; Metrics also
// wraps the engine's Store (to count failed action calls in the saved log), observes the work
// queue (engine.QueueObserver) and the CUE runtime (step.Options.ObserveEvaluation). Nothing in
// the engine or the step runtime imports this package: it is wired where the engine is built.
//
// An observer is told of a run's transitions by whichever goroutine saved them, so a report can
// arrive after a later one; both keep the newest version of each run they follow and drop older
// reports. A run is followed from the first report of it until it finishes, so memory grows
// with the runs in flight, not with the runs ever seen.
package telemetry
