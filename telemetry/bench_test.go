package telemetry_test

import (
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/telemetry"
)

// lifecycle is the reports of a run of five steps run one after the other, as the engine
// makes them: each step starts, then finishes, then the run finishes.
func lifecycle(name string) []*engine.Run {
	const steps = 5
	var reports []*engine.Run
	st := v1alpha1.WorkflowRunStatus{Phase: v1alpha1.RunExecuting, StartTime: at(0)}
	for i := range steps {
		st.Steps = append(st.Steps, stepAt(fmt.Sprintf("s%d", i), v1alpha1.StepPending, "", -1, -1))
	}
	for i := range steps {
		st.Steps[i] = stepAt(fmt.Sprintf("s%d", i), v1alpha1.StepRunning, "", i, i)
		reports = append(reports, report(name, int64(len(reports)+1), *st.DeepCopy()))
		st.Steps[i] = stepAt(fmt.Sprintf("s%d", i), v1alpha1.StepSucceeded, "", i, i+1)
		if i == steps-1 {
			st.Phase, st.Finished, st.EndTime = v1alpha1.RunSucceeded, true, at(steps)
		}
		reports = append(reports, report(name, int64(len(reports)+1), *st.DeepCopy()))
	}
	return reports
}

// BenchmarkObservers measures what an observer adds to each transition the engine saves, over
// the reports of whole runs (ns/op is per report; a run makes ten).
func BenchmarkObservers(b *testing.B) {
	runs := make([][]*engine.Run, 1000)
	for i := range runs {
		runs[i] = lifecycle(fmt.Sprintf("run-%d", i))
	}
	bench := func(b *testing.B, fresh func() engine.Observer) {
		b.ReportAllocs()
		obs := fresh()
		n := 0
		for b.Loop() {
			r := runs[(n/10)%len(runs)]
			obs.RunChanged(r[n%10])
			n++
			if n%(10*len(runs)) == 0 {
				b.StopTimer() // the same runs again: a fresh observer, as for new runs
				obs = fresh()
				b.StartTimer()
			}
		}
	}
	b.Run("metrics", func(b *testing.B) {
		bench(b, func() engine.Observer { return telemetry.NewMetrics(prometheus.NewRegistry()) })
	})
	b.Run("tracer", func(b *testing.B) {
		tp := trace.NewTracerProvider(trace.WithBatcher(tracetest.NewNoopExporter()))
		defer func() { _ = tp.Shutdown(b.Context()) }()
		bench(b, func() engine.Observer { return telemetry.NewTracer(tp) })
	})
}
