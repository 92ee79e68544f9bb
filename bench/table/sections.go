package main

import (
	"fmt"
	"strings"
)

// section is one `go test -bench` invocation and the lines of the table its results fill.
type section struct {
	name     string   // what -only selects
	pkg      string   // the package whose benchmarks it runs
	flags    []string // the go test flags after -run '^$'
	measures []measure
}

// measure is one line of the table: a figure one benchmark reports, how it is shown, and the
// target beside it.
type measure struct {
	bench  string // the benchmark's name without its -GOMAXPROCS suffix
	unit   string // the unit it reports the figure in: "ns/op", "transitions/s"
	label  string
	show   func(float64) string
	target target
}

// target is the goal for a figure; a zero target is none.
type target struct {
	text string
	met  func(float64) bool
}

func below(limit float64, text string) target {
	return target{text: text, met: func(v float64) bool { return v < limit }}
}

func atMost(limit float64, text string) target {
	return target{text: text, met: func(v float64) bool { return v <= limit }}
}

func atLeast(limit float64, text string) target {
	return target{text: text, met: func(v float64) bool { return v >= limit }}
}

// sizes are the numbers of runs the sections measure.
type sizes struct {
	engineRuns     int   // the embedded engine's concurrent runs, and the runs woken at once
	controllerRuns []int // the controller benchmark's sizes
}

func fullSizes() sizes  { return sizes{engineRuns: 10000, controllerRuns: []int{200, 1000}} }
func quickSizes() sizes { return sizes{engineRuns: 1000, controllerRuns: []int{200}} }

const (
	stepPkg  = "github.com/stepflow/stepflow/step"
	benchPkg = "github.com/stepflow/stepflow/bench"
)

// sections are issue 7's four measurements, at the sizes given.
func sections(sz sizes) []section {
	return []section{cueSection(), embeddedSection(sz.engineRuns), wakeSection(sz.engineRuns), controllerSection(sz.controllerRuns)}
}

// cueSection is a warm evaluation of one step of each definition (step/bench_test.go), then
// the bound under them: one fill in CUE's evaluator alone (BenchmarkCUEFill).
func cueSection() section {
	s := section{name: "cue", pkg: stepPkg, flags: []string{"-bench", "^(BenchmarkWarmEval|BenchmarkCUEFill)", "-benchmem", "-timeout", "10m"}}
	for _, d := range []struct{ bench, label string }{
		{"BenchmarkWarmEvalApplyObject", "apply-object"},
		{"BenchmarkWarmEvalRequest", "request"},
		{"BenchmarkWarmEval", "print-message-in-status"},
		{"BenchmarkWarmEvalDisjunction20", "20-way disjunction"},
	} {
		s.measures = append(s.measures,
			measure{bench: d.bench, unit: "ns/op", label: d.label + ": time per step", show: nanos, target: below(100_000, "< 100 µs")},
			measure{bench: d.bench, unit: "B/op", label: d.label + ": memory per step", show: bytesKB, target: below(30*1024, "< 30 KB")},
			measure{bench: d.bench, unit: "allocs/op", label: d.label + ": allocations per step", show: count},
		)
	}
	for _, d := range []struct{ bench, label string }{
		{"BenchmarkCUEFill/tiny", "CUE alone, one fill of a two-field template"},
		{"BenchmarkCUEFill/action", "CUE alone, one fill of a one-action template"},
	} {
		s.measures = append(s.measures,
			measure{bench: d.bench, unit: "ns/op", label: d.label + ": time", show: nanos},
			measure{bench: d.bench, unit: "B/op", label: d.label + ": memory", show: bytesKB},
		)
	}
	return s
}

// embeddedSection is BenchmarkEmbeddedThroughput (bench/engine_test.go) at runs runs.
func embeddedSection(runs int) section {
	b := fmt.Sprintf("BenchmarkEmbeddedThroughput/runs=%d", runs)
	return section{
		name: "embedded", pkg: benchPkg,
		flags: []string{"-bench", fmt.Sprintf("^BenchmarkEmbeddedThroughput/runs=%d$", runs), "-benchtime", "1x", "-timeout", "30m"},
		measures: []measure{
			{bench: b, unit: "ns/op", label: fmt.Sprintf("%s runs × 5 steps: wall time", count(float64(runs))), show: nanos},
			{bench: b, unit: "runs/s", label: "runs/s", show: count},
			{bench: b, unit: "transitions/s", label: "durable step transitions/s", show: count, target: atLeast(5000, ">= 5,000")},
			{bench: b, unit: "cpu-µs/transition", label: "CPU per transition", show: us},
			{bench: b, unit: "p50-step-gap-ms", label: "p50 step finished → next started", show: ms},
			{bench: b, unit: "p99-step-gap-ms", label: "p99 step finished → next started", show: ms, target: below(10, "< 10 ms")},
			{bench: b, unit: "peak-rss-MB", label: "peak RSS", show: mb},
			{bench: b, unit: "rss-KB/run", label: "RSS per in-flight run", show: kb, target: below(20, "< 20 KB")},
			{bench: b, unit: "peak-heap-KB/run", label: "peak Go heap per run", show: kb},
		},
	}
}

// wakeSection is BenchmarkWakeUp (bench/wake_test.go) at runs runs.
func wakeSection(runs int) section {
	b := fmt.Sprintf("BenchmarkWakeUp/runs=%d", runs)
	return section{
		name: "wake", pkg: benchPkg,
		flags: []string{"-bench", fmt.Sprintf("^BenchmarkWakeUp/runs=%d$", runs), "-benchtime", "1x", "-timeout", "30m"},
		measures: []measure{
			{bench: b, unit: "s-to-resume-all", label: fmt.Sprintf("resuming all %s (64 callers)", count(float64(runs))), show: secs},
			{bench: b, unit: "p50-wake-ms", label: "p50 resume → next step started", show: ms},
			{bench: b, unit: "p99-wake-ms", label: "p99 resume → next step started", show: ms, target: below(50, "< 50 ms")},
		},
	}
}

// controllerSection is BenchmarkController (bench/controller_test.go) at each size.
func controllerSection(sizes []int) section {
	names := make([]string, len(sizes))
	for i, n := range sizes {
		names[i] = fmt.Sprint(n)
	}
	s := section{
		name: "controller", pkg: benchPkg,
		flags: []string{"-bench", fmt.Sprintf("^BenchmarkController/runs=(%s)$", strings.Join(names, "|")), "-benchtime", "1x", "-timeout", "30m"},
	}
	for _, n := range sizes {
		b := fmt.Sprintf("BenchmarkController/runs=%d", n)
		var limit target
		switch n {
		case 200:
			limit = below(5, "< 5 s")
		case 1000:
			limit = below(30, "< 30 s")
		}
		s.measures = append(s.measures,
			measure{bench: b, unit: "s/all-succeeded", label: fmt.Sprintf("%s runs: seconds to all succeeded", count(float64(n))), show: secs, target: limit},
			measure{bench: b, unit: "requests/run", label: fmt.Sprintf("%s runs: API requests per run", count(float64(n))), show: decimal, target: atMost(8, "<= 8")},
			measure{bench: b, unit: "cpu-s", label: fmt.Sprintf("%s runs: controller CPU", count(float64(n))), show: secs},
			measure{bench: b, unit: "peak-rss-MB", label: fmt.Sprintf("%s runs: peak RSS", count(float64(n))), show: mb},
		)
	}
	return s
}
