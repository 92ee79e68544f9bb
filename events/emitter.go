// Package events emits a run's lifecycle as CloudEvents 1.0 to the operator's sinks (HTTP in
// binary or structured mode, NATS subjects): an engine.Observer that turns each saved transition
// into `dev.stepflow.run.*` and `dev.stepflow.step.*` events and hands them to a bounded queue
// per sink, drained by its own goroutine with retries, so that a slow or absent sink never holds
// the engine.
package events

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
)

// Source is the CloudEvents source of the events a run emits: Source + "/" + namespace.
const Source = "stepflow.dev/runs"

// The event types. A step's event type is StepPrefix + its phase (running, succeeded, failed,
// skipped, suspending).
const (
	RunStarted    = "dev.stepflow.run.started"
	RunSucceeded  = "dev.stepflow.run.succeeded"
	RunFailed     = "dev.stepflow.run.failed"
	RunTerminated = "dev.stepflow.run.terminated"
	RunSuspended  = "dev.stepflow.run.suspended"
	StepPrefix    = "dev.stepflow.step."
)

// RunSummary is the data of a run's events.
type RunSummary struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	UID       string `json:"uid,omitempty"`
	// Template is the Workflow the run refers to, if any.
	Template  string                    `json:"template,omitempty"`
	Phase     v1alpha1.WorkflowRunPhase `json:"phase"`
	Message   string                    `json:"message,omitempty"`
	StartTime *time.Time                `json:"startTime,omitempty"`
	EndTime   *time.Time                `json:"endTime,omitempty"`
	// Steps are the top-level steps' names and phases, in spec order.
	Steps []StepSummary `json:"steps,omitempty"`
	// Step is the step a step event is about.
	Step *StepSummary `json:"step,omitempty"`
}

// StepSummary is a step's part of an event's data.
type StepSummary struct {
	ID      string                     `json:"id,omitempty"`
	Name    string                     `json:"name"`
	Type    string                     `json:"type,omitempty"`
	Phase   v1alpha1.WorkflowStepPhase `json:"phase"`
	Reason  string                     `json:"reason,omitempty"`
	Message string                     `json:"message,omitempty"`
}

// Options configure an Emitter.
type Options struct {
	// Sinks are where events go: http(s)://… (binary mode; a `#structured` fragment for
	// structured mode) or nats://host:port/subject.
	Sinks []string
	// QueueSize bounds the events waiting for each sink; when full, new events are dropped
	// (counted and logged). Zero is DefaultQueueSize.
	QueueSize int
	// Retry is the backoff between tries of one event; the zero value is DefaultRetry.
	Retry Retry
	// Timeout bounds one try; zero is 10 seconds.
	Timeout time.Duration
	// Metrics, when set, receives stepflow_events_sent_total and stepflow_events_dropped_total.
	Metrics prometheus.Registerer
	// Logger receives a line per dropped or undeliverable event; nil discards them.
	Logger *slog.Logger
}

// DefaultQueueSize is how many events wait for a sink by default.
const DefaultQueueSize = 1024

// Emitter is the engine.Observer that emits runs' events. Close it to flush.
type Emitter struct {
	sinks []*sink
	log   *slog.Logger

	mu     sync.Mutex
	runs   map[engine.Key]*seen
	closed bool

	sent, dropped *prometheus.CounterVec
}

// seen is what the emitter last saw of a run it follows.
type seen struct {
	version int64
	phase   v1alpha1.WorkflowRunPhase
	steps   map[string]v1alpha1.WorkflowStepPhase
}

// New starts an Emitter for opts' sinks; a bad sink URL is an error naming it.
func New(opts Options) (*Emitter, error) {
	e := &Emitter{log: opts.Logger, runs: map[engine.Key]*seen{}}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	e.sent = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stepflow_events_sent_total",
		Help: "CloudEvents delivered to a sink, by sink."}, []string{"sink"})
	e.dropped = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stepflow_events_dropped_total",
		Help: "CloudEvents dropped, by sink and why (queue_full, undeliverable)."}, []string{"sink", "reason"})
	if opts.Metrics != nil {
		for _, c := range []prometheus.Collector{e.sent, e.dropped} {
			if err := opts.Metrics.Register(c); err != nil {
				return nil, fmt.Errorf("events: %w", err)
			}
		}
	}
	for _, raw := range opts.Sinks {
		s, err := newSink(raw, opts, e)
		if err != nil {
			e.Close(context.Background())
			return nil, err
		}
		e.sinks = append(e.sinks, s)
	}
	return e, nil
}

// RunChanged implements engine.Observer: it queues the events of what changed since the run
// was last seen. A run first seen finished emits nothing, unless it finished in the transition
// that started it; one first seen under way emits its start (at least once: a process taking
// over a run may emit it again).
func (e *Emitter) RunChanged(run *engine.Run) {
	if len(e.sinks) == 0 {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return
	}
	for _, ev := range e.diff(run) {
		for _, s := range e.sinks {
			s.enqueue(ev)
		}
	}
}

// diff returns the events of run's transition and records what it saw; e.mu is held.
func (e *Emitter) diff(run *engine.Run) []cloudevents.Event {
	st := &run.Object.Status
	key := run.Key()
	prev := e.runs[key]
	if prev != nil && run.Version <= prev.version {
		return nil
	}
	if prev == nil {
		if st.Finished && !oneTransition(st) {
			// It finished before this process followed it: its events were emitted then.
			return nil
		}
		prev = &seen{steps: map[string]v1alpha1.WorkflowStepPhase{}}
		e.runs[key] = prev
	}
	prev.version = run.Version
	summary := summarize(run)
	var out []cloudevents.Event
	add := func(typ, step string, data RunSummary) {
		out = append(out, newEvent(run, typ, step, data))
	}
	if prev.phase == "" && st.Phase != "" && st.Phase != v1alpha1.RunInitializing {
		add(RunStarted, "", summary)
	}
	forEachStep(st, func(s *v1alpha1.StepStatus) {
		id := s.ID
		if id == "" {
			id = "name:" + s.Name
		}
		if s.Phase == "" || s.Phase == v1alpha1.StepPending || prev.steps[id] == s.Phase {
			return
		}
		prev.steps[id] = s.Phase
		data := summary
		data.Step = &StepSummary{ID: s.ID, Name: s.Name, Type: s.Type, Phase: s.Phase, Reason: s.Reason, Message: s.Message}
		add(StepPrefix+string(s.Phase), id, data)
	})
	if st.Phase != prev.phase {
		switch st.Phase {
		case v1alpha1.RunSucceeded:
			add(RunSucceeded, "", summary)
		case v1alpha1.RunFailed:
			add(RunFailed, "", summary)
		case v1alpha1.RunTerminated:
			add(RunTerminated, "", summary)
		case v1alpha1.RunSuspending:
			add(RunSuspended, "", summary)
		}
		prev.phase = st.Phase
	}
	if st.Finished {
		delete(e.runs, key)
	}
	return out
}

// oneTransition reports whether everything in st happened in the transition that started the
// run (a run of quick steps finishes in its first save).
func oneTransition(st *v1alpha1.WorkflowRunStatus) bool {
	same := func(t metav1.Time) bool { return t.IsZero() || t.Equal(&st.StartTime) }
	ok := same(st.EndTime)
	forEachStep(st, func(s *v1alpha1.StepStatus) {
		ok = ok && same(s.FirstExecuteTime) && same(s.LastExecuteTime)
	})
	return ok
}

// forEachStep calls f with every top-level step and sub-step of st.
func forEachStep(st *v1alpha1.WorkflowRunStatus, f func(*v1alpha1.StepStatus)) {
	for i := range st.Steps {
		f(&st.Steps[i].StepStatus)
		for j := range st.Steps[i].SubStepsStatus {
			f(&st.Steps[i].SubStepsStatus[j])
		}
	}
}

// summarize is a run's event data, from its status (saved redacted: no sensitive value).
func summarize(run *engine.Run) RunSummary {
	obj := run.Object
	st := &obj.Status
	s := RunSummary{Namespace: obj.Namespace, Name: obj.Name, UID: string(obj.UID), Phase: st.Phase, Message: st.Message}
	if ref := obj.Spec.WorkflowRef; ref != "" {
		s.Template = ref
	}
	if !st.StartTime.IsZero() {
		t := st.StartTime.UTC()
		s.StartTime = &t
	}
	if !st.EndTime.IsZero() {
		t := st.EndTime.UTC()
		s.EndTime = &t
	}
	for i := range st.Steps {
		ss := &st.Steps[i]
		s.Steps = append(s.Steps, StepSummary{ID: ss.ID, Name: ss.Name, Type: ss.Type, Phase: ss.Phase, Reason: ss.Reason})
	}
	return s
}

// newEvent makes the CloudEvent of type typ about run (and step, for a step's event). Its id
// is the same for the same transition of the same run wherever it is emitted, so that a
// consumer can drop repeats by (source, id).
func newEvent(run *engine.Run, typ, step string, data RunSummary) cloudevents.Event {
	ev := cloudevents.NewEvent()
	uid := string(run.Object.UID)
	if uid == "" {
		uid = run.Key().String()
	}
	id := []string{uid, fmt.Sprint(run.Version), strings.TrimPrefix(typ, "dev.stepflow.")}
	if step != "" {
		id = append(id, step)
	}
	ev.SetID(strings.Join(id, "/"))
	ev.SetSource(Source + "/" + run.Object.Namespace)
	ev.SetType(typ)
	ev.SetSubject(run.Key().String())
	ev.SetTime(time.Now().UTC())
	// Marshalling a struct of strings and times cannot fail.
	_ = ev.SetData(cloudevents.ApplicationJSON, data)
	return ev
}
