package telemetry

import (
	"context"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
)

// instrumentation is the name of the tracer the spans come from.
const instrumentation = "github.com/stepflow/stepflow/telemetry"

// The attributes of the spans.
const (
	AttrRunNamespace = attribute.Key("stepflow.run.namespace")
	AttrRunName      = attribute.Key("stepflow.run.name")
	AttrRunTemplate  = attribute.Key("stepflow.run.template")
	AttrRunPhase     = attribute.Key("stepflow.run.phase")
	AttrRunMessage   = attribute.Key("stepflow.run.message")
	AttrStepName     = attribute.Key("stepflow.step.name")
	AttrStepID       = attribute.Key("stepflow.step.id")
	AttrStepType     = attribute.Key("stepflow.step.type")
	AttrStepPhase    = attribute.Key("stepflow.step.phase")
	AttrStepReason   = attribute.Key("stepflow.step.reason")
	AttrStepMessage  = attribute.Key("stepflow.step.message")
)

// Tracer turns each run that finishes into a trace: a span for the run, from its start time to
// its end time, named "run <template>" ("run" for inline steps), and a child span per step that
// executed, named after the step, from its first execution to its last, with a child span per
// sub-step under a step group's. The times are those of the run's status, given to the spans
// explicitly, so a run that outlived the process that started it is traced right. A failed run
// or step has an error status with its message. Attributes: AttrRun* on the run's span
// (template and message only when set), AttrStep* on a step's (reason and message only when
// set).
//
// A run is traced when a report shows it finished after one that showed it unfinished, or
// finished in the transition that started it, as Metrics counts it. Its methods are safe for
// concurrent use.
type Tracer struct {
	tracer trace.Tracer
	mu     sync.Mutex
	runs   *follower[struct{}]
}

// NewTracer returns a Tracer whose spans go to tp (see OTLP).
func NewTracer(tp trace.TracerProvider) *Tracer {
	return &Tracer{tracer: tp.Tracer(instrumentation), runs: newFollower[struct{}]()}
}

// RunChanged implements engine.Observer.
func (t *Tracer) RunChanged(run *engine.Run) {
	st := &run.Object.Status
	t.mu.Lock()
	r, first := t.runs.see(run)
	finished := r != nil && st.Finished
	witnessed := finished && (!first || fresh(st))
	if finished {
		t.runs.end(run.Key(), run.Version)
	}
	t.mu.Unlock()
	if witnessed {
		t.trace(run)
	}
}

// trace emits the spans of a finished run.
func (t *Tracer) trace(run *engine.Run) {
	obj := run.Object
	st := &obj.Status
	start, end := st.StartTime.Time, st.EndTime.Time
	if start.IsZero() {
		start = end
	}
	if end.Before(start) {
		end = start
	}
	attrs := []attribute.KeyValue{
		AttrRunNamespace.String(obj.Namespace),
		AttrRunName.String(obj.Name),
		AttrRunPhase.String(string(st.Phase)),
	}
	name := "run"
	if tpl := template(run); tpl != "" {
		name += " " + tpl
		attrs = append(attrs, AttrRunTemplate.String(tpl))
	}
	if st.Message != "" {
		attrs = append(attrs, AttrRunMessage.String(st.Message))
	}
	ctx, span := t.tracer.Start(context.Background(), name, trace.WithNewRoot(), trace.WithTimestamp(start),
		trace.WithSpanKind(trace.SpanKindInternal), trace.WithAttributes(attrs...))
	if st.Phase == v1alpha1.RunFailed {
		span.SetStatus(codes.Error, st.Message)
	}
	for i := range st.Steps {
		s := &st.Steps[i]
		stepCtx, stepSpan := t.step(ctx, &s.StepStatus)
		if stepSpan == nil {
			continue
		}
		for j := range s.SubStepsStatus {
			if _, sub := t.step(stepCtx, &s.SubStepsStatus[j]); sub != nil {
				sub.End(trace.WithTimestamp(lastExecution(&s.SubStepsStatus[j])))
			}
		}
		stepSpan.End(trace.WithTimestamp(lastExecution(&s.StepStatus)))
	}
	span.End(trace.WithTimestamp(end))
}

// step starts the span of a step under ctx's; nil for a step that never executed (pending,
// skipped). The caller ends it.
func (t *Tracer) step(ctx context.Context, s *v1alpha1.StepStatus) (context.Context, trace.Span) {
	if s.FirstExecuteTime.IsZero() {
		return ctx, nil
	}
	attrs := []attribute.KeyValue{
		AttrStepName.String(s.Name),
		AttrStepID.String(s.ID),
		AttrStepType.String(s.Type),
		AttrStepPhase.String(string(s.Phase)),
	}
	if s.Reason != "" {
		attrs = append(attrs, AttrStepReason.String(s.Reason))
	}
	if s.Message != "" {
		attrs = append(attrs, AttrStepMessage.String(s.Message))
	}
	ctx, span := t.tracer.Start(ctx, s.Name, trace.WithTimestamp(s.FirstExecuteTime.Time),
		trace.WithSpanKind(trace.SpanKindInternal), trace.WithAttributes(attrs...))
	if s.Phase == v1alpha1.StepFailed {
		span.SetStatus(codes.Error, s.Message)
	}
	return ctx, span
}

// lastExecution is when a step last executed, not before its first execution.
func lastExecution(s *v1alpha1.StepStatus) time.Time {
	if s.LastExecuteTime.Before(&s.FirstExecuteTime) {
		return s.FirstExecuteTime.Time
	}
	return s.LastExecuteTime.Time
}
