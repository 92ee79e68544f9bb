package telemetry_test

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/telemetry"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// at is t0 plus s seconds, as a status time.
func at(s int) metav1.Time { return metav1.NewTime(t0.Add(time.Duration(s) * time.Second)) }

// report is a run as the engine reports it: its status at a version.
func report(name string, version int64, st v1alpha1.WorkflowRunStatus) *engine.Run {
	obj := &v1alpha1.WorkflowRun{Status: st}
	obj.Namespace, obj.Name = "default", name
	obj.Spec.WorkflowRef = "tpl"
	return &engine.Run{Object: obj, Version: version}
}

// stepAt is a step's status: executed from first to last (seconds after t0; negative: never).
func stepAt(id string, phase v1alpha1.WorkflowStepPhase, reason string, first, last int) v1alpha1.WorkflowStepStatus {
	s := v1alpha1.StepStatus{ID: id, Name: id, Type: "request", Phase: phase, Reason: reason}
	if first >= 0 {
		s.FirstExecuteTime, s.LastExecuteTime = at(first), at(last)
	}
	return v1alpha1.WorkflowStepStatus{StepStatus: s}
}

func gather(t *testing.T, reg *prometheus.Registry) map[string]*dto.MetricFamily {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*dto.MetricFamily{}
	for _, f := range fams {
		byName[f.GetName()] = f
	}
	return byName
}

// TestMetricsCountWhatTheySaw feeds Metrics the reports a process can get: a run first seen
// finished (after a restart of the process), a late report arriving after a newer one, a run
// taken up in flight, a run restarted after it finished, and a run that failed in the
// transition that started it.
func TestMetricsCountWhatTheySaw(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := telemetry.NewMetrics(reg)
	check := func(what string, want float64, name string, labels ...string) {
		t.Helper()
		if got := value(gather(t, reg), name, labels...); got != want {
			t.Errorf("%s: %s%v = %v, want %v", what, name, labels, got, want)
		}
	}
	finished := func(phase v1alpha1.WorkflowRunPhase, start, end int, steps ...v1alpha1.WorkflowStepStatus) v1alpha1.WorkflowRunStatus {
		return v1alpha1.WorkflowRunStatus{Phase: phase, Finished: true, StartTime: at(start), EndTime: at(end), Steps: steps}
	}
	executing := func(start int, steps ...v1alpha1.WorkflowStepStatus) v1alpha1.WorkflowRunStatus {
		return v1alpha1.WorkflowRunStatus{Phase: v1alpha1.RunExecuting, StartTime: at(start), Steps: steps}
	}

	// Finished before this process followed it: the process that saw it finish counted it.
	m.RunChanged(report("old", 5, finished(v1alpha1.RunSucceeded, 0, 9, stepAt("o1", v1alpha1.StepSucceeded, "", 1, 9))))
	check("a run first seen finished", -1, "stepflow_runs_finished_total", "template=tpl", "phase=succeeded")
	check("a run first seen finished", -1, "stepflow_runs_started_total", "template=tpl")
	check("a run first seen finished", -1, "stepflow_step_duration_seconds", "type=request", "phase=succeeded")

	// Started, waiting, finished; then the report of the waiting step arrives late.
	waiting := executing(0, stepAt("a1", v1alpha1.StepRunning, v1alpha1.ReasonWait, 0, 1))
	m.RunChanged(report("a", 2, waiting))
	check("a run waiting", 1, "stepflow_runs_started_total", "template=tpl")
	check("a run waiting", 1, "stepflow_steps_waiting")
	m.RunChanged(report("a", 4, finished(v1alpha1.RunSucceeded, 0, 3, stepAt("a1", v1alpha1.StepSucceeded, "", 0, 3))))
	check("a run finished", 0, "stepflow_steps_waiting")
	check("a run finished", 1, "stepflow_runs_finished_total", "template=tpl", "phase=succeeded")
	check("a run finished", 1, "stepflow_step_duration_seconds", "type=request", "phase=succeeded")
	m.RunChanged(report("a", 3, waiting))
	m.RunChanged(report("a", 4, finished(v1alpha1.RunSucceeded, 0, 3, stepAt("a1", v1alpha1.StepSucceeded, "", 0, 3))))
	check("late and repeated reports", 0, "stepflow_steps_waiting")
	check("late and repeated reports", 1, "stepflow_runs_started_total", "template=tpl")
	check("late and repeated reports", 1, "stepflow_runs_finished_total", "template=tpl", "phase=succeeded")
	check("late and repeated reports", 1, "stepflow_step_duration_seconds", "type=request", "phase=succeeded")

	// Taken up in flight with a step finished already: counted started; only the step that
	// finishes from now on is observed.
	m.RunChanged(report("b", 7, executing(0, stepAt("b1", v1alpha1.StepFailed, "Action", 1, 2), stepAt("b2", v1alpha1.StepSuspending, v1alpha1.ReasonSuspend, 2, 2))))
	check("a run taken up", 2, "stepflow_runs_started_total", "template=tpl")
	check("a run taken up", 1, "stepflow_steps_waiting")
	m.RunChanged(report("b", 8, finished(v1alpha1.RunFailed, 0, 60, stepAt("b1", v1alpha1.StepFailed, "Action", 1, 2), stepAt("b2", v1alpha1.StepSucceeded, "", 2, 60))))
	check("a run taken up, finished", -1, "stepflow_step_duration_seconds", "type=request", "phase=failed")
	check("a run taken up, finished", 2, "stepflow_step_duration_seconds", "type=request", "phase=succeeded")
	check("a run taken up, finished", 1, "stepflow_runs_finished_total", "template=tpl", "phase=failed")
	check("a run taken up, finished", 0, "stepflow_steps_waiting")

	// Restarted after it finished: a new start and a new finish, its step observed again.
	m.RunChanged(report("a", 9, v1alpha1.WorkflowRunStatus{Phase: v1alpha1.RunInitializing}))
	check("a run restarted, not initialized", 2, "stepflow_runs_started_total", "template=tpl")
	m.RunChanged(report("a", 10, executing(100, stepAt("a1", v1alpha1.StepRunning, "", 100, 100))))
	m.RunChanged(report("a", 11, finished(v1alpha1.RunSucceeded, 100, 101, stepAt("a1", v1alpha1.StepSucceeded, "", 100, 101))))
	check("a run restarted", 3, "stepflow_runs_started_total", "template=tpl")
	check("a run restarted", 2, "stepflow_runs_finished_total", "template=tpl", "phase=succeeded")
	check("a run restarted", 3, "stepflow_step_duration_seconds", "type=request", "phase=succeeded")

	// Failed in the transition that started it (no times at all): counted.
	m.RunChanged(report("bad-ref", 2, v1alpha1.WorkflowRunStatus{Phase: v1alpha1.RunFailed, Finished: true, Message: "spec.workflowRef: not found"}))
	check("a run that failed to start", 4, "stepflow_runs_started_total", "template=tpl")
	check("a run that failed to start", 2, "stepflow_runs_finished_total", "template=tpl", "phase=failed")
}

// A run's SLA breach is counted once by the process that saw it happen, by template and
// onBreach; a run first seen breached was counted by the process that breached it.
func TestMetricsCountSLABreaches(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := telemetry.NewMetrics(reg)
	running := v1alpha1.WorkflowRunStatus{Phase: v1alpha1.RunExecuting, StartTime: at(0)}
	breached := func(name string, version int64, action v1alpha1.SLAAction) *engine.Run {
		r := report(name, version, running)
		r.SLA = &v1alpha1.SLA{MaxDuration: "1m", OnBreach: action}
		r.SLABreachedAt = t0.Add(time.Minute)
		return r
	}
	m.RunChanged(report("a", 1, running))
	m.RunChanged(breached("a", 2, ""))
	m.RunChanged(breached("a", 3, ""))
	m.RunChanged(breached("old", 7, v1alpha1.SLAFail))
	fams := gather(t, reg)
	if got := value(fams, "stepflow_sla_breaches_total", "template=tpl", "on_breach=notify"); got != 1 {
		t.Errorf("breaches seen happen: %v, want 1", got)
	}
	if got := value(fams, "stepflow_sla_breaches_total", "template=tpl", "on_breach=fail"); got != -1 {
		t.Errorf("breaches of a run first seen breached: %v, want none counted", got)
	}
}
