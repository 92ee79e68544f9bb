package telemetry

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
)

// Metrics holds stepflow's Prometheus metrics and updates them from what the engine tells it.
// Wire all four of its inputs where the engine is built:
//
//	m := telemetry.NewMetrics(reg)
//	runner := step.NewRunner(step.Options{..., ObserveEvaluation: m.ObserveEvaluation})
//	eng := engine.New(engine.Options{Store: m.Store(st), Observer: m, QueueObserver: m, ...})
//
// Its methods are safe for concurrent use. The counters count what this process saw: a run
// still in flight when a process stops is counted as started again by the next one, whose
// counters begin at zero, so that per process started − finished is the runs in flight.
type Metrics struct {
	runsStarted    *prometheus.CounterVec
	runsFinished   *prometheus.CounterVec
	slaBreaches    *prometheus.CounterVec
	stepDuration   *prometheus.HistogramVec
	stepsWaiting   prometheus.Gauge
	queueDepth     prometheus.Gauge
	queueWait      prometheus.Histogram
	cueEvaluation  *prometheus.HistogramVec
	providerErrors *prometheus.CounterVec
	timeouts       prometheus.Counter
	deaths         *prometheus.CounterVec

	mu   sync.Mutex
	runs *follower[runMetrics]
}

// runMetrics is what Metrics keeps of a run in flight.
type runMetrics struct {
	// started says that the run's start was counted.
	started bool
	// waiting is how many of its steps are counted in stepflow_steps_waiting.
	waiting int
	// breached says that the run's SLA breach was seen (counted when this process saw it
	// happen).
	breached bool
	// ended holds the steps (by status id) seen finished, with the version of the last report
	// that showed them finished: a step's duration is observed when it enters this set.
	ended map[string]int64
}

// NewMetrics creates stepflow's metrics and registers them with reg (nil: not registered, for a
// caller that collects them itself). Like prometheus.MustRegister it panics when reg already
// holds metrics of the same names.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	m := &Metrics{
		runsStarted: f.NewCounterVec(prometheus.CounterOpts{
			Name: "stepflow_runs_started_total",
			Help: "Runs this process started or took up, by template (the Workflow of spec.workflowRef; empty for inline steps).",
		}, []string{"template"}),
		runsFinished: f.NewCounterVec(prometheus.CounterOpts{
			Name: "stepflow_runs_finished_total",
			Help: "Runs this process saw finish, by template and phase (succeeded, failed, terminated).",
		}, []string{"template", "phase"}),
		slaBreaches: f.NewCounterVec(prometheus.CounterOpts{
			Name: "stepflow_sla_breaches_total",
			Help: "Runs this process saw breach their SLA (spec.sla or their template's), by template and onBreach (notify, fail, terminate).",
		}, []string{"template", "on_breach"}),
		stepDuration: f.NewHistogramVec(prometheus.HistogramOpts{
			Name: "stepflow_step_duration_seconds",
			Help: "Time from a step's first execution to its last (status firstExecuteTime to lastExecuteTime), when it finished, by step type and phase; step groups and sub-steps each count.",
			// From a message step to an approval that waits for hours.
			Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400},
		}, []string{"type", "phase"}),
		stepsWaiting: f.NewGauge(prometheus.GaugeOpts{
			Name: "stepflow_steps_waiting",
			Help: "Steps of the runs this process drives that wait: running with reason Wait, or suspending.",
		}),
		queueDepth: f.NewGauge(prometheus.GaugeOpts{
			Name: "stepflow_queue_depth",
			Help: "Runs waiting in the engine's work queue for a worker.",
		}),
		queueWait: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "stepflow_queue_wait_seconds",
			Help:    "Time a run waited in the engine's work queue before a worker took it.",
			Buckets: []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10},
		}),
		cueEvaluation: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "stepflow_cue_evaluation_seconds",
			Help:    "CUE time of one evaluation of a step's template, by step type: the evaluation less the time its actions ran and the time reading the definition took.",
			Buckets: []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5},
		}, []string{"type"}),
		providerErrors: f.NewCounterVec(prometheus.CounterOpts{
			Name: "stepflow_provider_errors_total",
			Help: "Action calls that ended in an error (each try of a retried step counts), by action (provider.do).",
		}, []string{"action"}),
		timeouts: f.NewCounter(prometheus.CounterOpts{
			Name: "stepflow_evaluation_timeouts_total",
			Help: "Step evaluations that ran past the limit of one evaluation (--eval-timeout) and failed the step.",
		}),
		deaths: f.NewCounterVec(prometheus.CounterOpts{
			Name: "stepflow_evaluator_deaths_total",
			Help: "Child CUE evaluators that ended under an evaluation, by cause: memory (past --eval-memory), signal (killed by the system: the OOM killer, a cgroup), crash.",
		}, []string{"cause"}),
		runs: newFollower[runMetrics](),
	}
	// Each cause from zero, so that an alert on its increase sees the first death.
	for _, cause := range []string{"memory", "signal", "crash"} {
		m.deaths.WithLabelValues(cause)
	}
	return m
}

// RunChanged implements engine.Observer. A run is counted started at its first report with a
// start time, or again after it finished and was restarted; it is counted finished when it
// finishes after a report that showed it unfinished (or finished in the very transition that
// started it), so that a run this process sees only once it has finished is not counted again.
// A step's duration is observed when a report shows it finished and the one before did not.
func (m *Metrics) RunChanged(run *engine.Run) {
	st := &run.Object.Status
	m.mu.Lock()
	defer m.mu.Unlock()
	r, first := m.runs.see(run)
	if r == nil {
		return
	}
	s := &r.state
	witnessed := !first || fresh(st)
	if first && st.Finished && !witnessed {
		m.runs.end(run.Key(), run.Version)
		return
	}
	m.steps(s, st, run.Version, witnessed)
	tpl := template(run)
	if !s.started && (!st.StartTime.IsZero() || st.Finished) {
		s.started = true
		m.runsStarted.WithLabelValues(tpl).Inc()
	}
	if !s.breached && !run.SLABreachedAt.IsZero() {
		// A run first seen breached was breached before this process followed it.
		s.breached = true
		if !first && run.SLA != nil {
			action := run.SLA.OnBreach
			if action == "" {
				action = v1alpha1.SLANotify
			}
			m.slaBreaches.WithLabelValues(tpl, string(action)).Inc()
		}
	}
	waiting := 0
	if !st.Finished {
		waiting = waitingSteps(st)
	}
	if waiting != s.waiting {
		m.stepsWaiting.Add(float64(waiting - s.waiting))
		s.waiting = waiting
	}
	if st.Finished {
		m.runsFinished.WithLabelValues(tpl, string(st.Phase)).Inc()
		m.runs.end(run.Key(), run.Version)
	}
}

// steps observes the durations of the steps that finished since the last report (of every step
// finished when observe is false: they finished before this process followed the run).
func (m *Metrics) steps(s *runMetrics, st *v1alpha1.WorkflowRunStatus, version int64, observe bool) {
	if s.ended == nil {
		s.ended = map[string]int64{}
	}
	step := func(ss *v1alpha1.StepStatus) {
		if !ss.Phase.Finished() {
			return
		}
		id := ss.ID
		if id == "" {
			id = "name:" + ss.Name
		}
		_, seen := s.ended[id]
		s.ended[id] = version
		if seen || !observe || ss.FirstExecuteTime.IsZero() {
			return // skipped steps never executed
		}
		last := ss.LastExecuteTime.Time
		if last.Before(ss.FirstExecuteTime.Time) {
			last = ss.FirstExecuteTime.Time
		}
		m.stepDuration.WithLabelValues(ss.Type, string(ss.Phase)).Observe(last.Sub(ss.FirstExecuteTime.Time).Seconds())
	}
	for i := range st.Steps {
		step(&st.Steps[i].StepStatus)
		for j := range st.Steps[i].SubStepsStatus {
			step(&st.Steps[i].SubStepsStatus[j])
		}
	}
	// A step no longer finished (restarted) is observed again when it finishes again.
	for id, v := range s.ended {
		if v != version {
			delete(s.ended, id)
		}
	}
}

// waitingSteps counts the steps of st that wait: running with reason Wait, or suspending. A
// step-group is suspending when one of its sub-steps is, so only the sub-steps are counted.
func waitingSteps(st *v1alpha1.WorkflowRunStatus) int {
	n := 0
	waits := func(s *v1alpha1.StepStatus) bool {
		return s.Phase == v1alpha1.StepSuspending || (s.Phase == v1alpha1.StepRunning && s.Reason == v1alpha1.ReasonWait)
	}
	for i := range st.Steps {
		s := &st.Steps[i]
		if len(s.SubStepsStatus) == 0 {
			if waits(&s.StepStatus) {
				n++
			}
			continue
		}
		for j := range s.SubStepsStatus {
			if waits(&s.SubStepsStatus[j]) {
				n++
			}
		}
	}
	return n
}

// Queued implements engine.QueueObserver.
func (m *Metrics) Queued(depth int) { m.queueDepth.Set(float64(depth)) }

// Taken implements engine.QueueObserver.
func (m *Metrics) Taken(depth int, waited time.Duration) {
	m.queueDepth.Set(float64(depth))
	m.queueWait.Observe(waited.Seconds())
}

// ObserveEvaluation records the CUE time of one evaluation of a step of type typ; it is the
// function for step.Options.ObserveEvaluation.
func (m *Metrics) ObserveEvaluation(typ string, d time.Duration) {
	m.cueEvaluation.WithLabelValues(typ).Observe(d.Seconds())
}

// Store returns s counting, in stepflow_provider_errors_total, the action calls that ended in an
// error among the log entries of each successful Save (a Save that fails wrote nothing, and the
// engine saves the same entries again). Give it to the engine as Options.Store; it has only
// Load and Save, so keep s for anything else.
func (m *Metrics) Store(s engine.Store) engine.Store { return &countingStore{Store: s, m: m} }

// countingStore is the Store Metrics.Store returns.
type countingStore struct {
	engine.Store
	m *Metrics
}

// Save implements engine.Store.
func (c *countingStore) Save(ctx context.Context, run *engine.Run, logs []engine.LogEntry) error {
	if err := c.Store.Save(ctx, run, logs); err != nil {
		return err
	}
	for i := range logs {
		// An action call that failed is logged with its action and the error severity.
		if logs[i].Action != "" && logs[i].Severity == engine.SeverityError {
			c.m.providerErrors.WithLabelValues(logs[i].Action).Inc()
		}
	}
	return nil
}

// ObserveBound counts an evaluation ended at a bound, as step.Options.ObserveBound reports it:
// "timeout" in stepflow_evaluation_timeouts_total, the others ("memory", "signal", "crash") in
// stepflow_evaluator_deaths_total by cause.
func (m *Metrics) ObserveBound(bound string) {
	if bound == "timeout" {
		m.timeouts.Inc()
		return
	}
	m.deaths.WithLabelValues(bound).Inc()
}
