// sla.go: a run's SLA (v1alpha1.SLA): when it is breached, and what the engine does then.

package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stepflow/stepflow/api/v1alpha1"
)

// SLANotifyTimeout bounds the evaluation of the notification sent at an SLA breach.
const SLANotifyTimeout = 30 * time.Second

// slaStep is the name the notification sent at a breach goes by in the run's log.
const slaStep = "sla-breach"

// The SLA's clock starts when the run is created (status.startTime), not when it is admitted
// by its concurrency key: time queued counts, as it does in Temporal's workflow execution
// timeout and Airflow's SLA, because an SLA is a promise about when the work asked for is done.
// A run queued past its maxDuration breaches while it waits (enforceQueuedSLA), and its queued
// message says by when it is due.

// slaDeadline answers when the run's SLA is breached, if it has one that can be.
func slaDeadline(run *Run) (time.Time, bool) {
	if run.SLA == nil {
		return time.Time{}, false
	}
	d, err := time.ParseDuration(run.SLA.MaxDuration)
	if err != nil || d <= 0 {
		return time.Time{}, false // refused when the run was made (v1alpha1.ValidateWorkflowRun)
	}
	return run.Object.Status.StartTime.Add(d), true
}

// enforceSLA breaches the run's SLA once the run has run longer than its maxDuration: it logs
// the breach, fails or terminates the run as onBreach says, and marks the notification due
// (t.notifySLA). Before then it asks to be woken at that time.
func (m *machine) enforceSLA(run *Run, g *graph, now time.Time, t *transition) {
	sla := run.SLA
	deadline, ok := slaDeadline(run)
	if !ok || !run.SLABreachedAt.IsZero() {
		return
	}
	start := run.Object.Status.StartTime.Time
	if now.Before(deadline) {
		t.wakeAt(deadline)
		return
	}
	run.SLABreachedAt = now
	t.changed = true
	msg := fmt.Sprintf("SLA breached: running for %s, longer than its maxDuration %s", now.Sub(start).Round(time.Second), sla.MaxDuration)
	t.logs = append(t.logs, LogEntry{Time: now, Severity: SeverityWarning, Message: msg})
	switch sla.OnBreach {
	case v1alpha1.SLAFail:
		g.each(func(n *node) {
			if n.active() && !runsAlways(n) {
				m.fail(run, n, v1alpha1.ReasonSLABreached, msg, now, t)
			}
		})
	case v1alpha1.SLATerminate:
		// As the terminate operation does, its child runs too; the steps under way fail as
		// terminated in advance, which goes on from here.
		st := &run.Object.Status
		st.Terminated, st.Suspend, run.ManualSuspend = true, false, false
		st.Message = msg + "; the run was terminated"
		run.pass = &Operation{Kind: OpTerminate, By: "its SLA", Reason: msg}
	}
	if sla.Notify != nil && len(sla.Notify.Raw) > 0 {
		t.notifySLA = true
	}
}

// slaNotePrefix begins what a queued run's message says of its SLA.
const slaNotePrefix = "; its SLA"

// slaNote is what a queued run's message says of its SLA, which counts already: by when it
// is due, or when it was breached. "" without an SLA.
func slaNote(run *Run) string {
	due, ok := slaDeadline(run)
	switch {
	case !ok:
		return ""
	case run.SLABreachedAt.IsZero():
		return fmt.Sprintf("%s counts from the run's creation, queued time included: maxDuration %s, due by %s",
			slaNotePrefix, run.SLA.MaxDuration, due.UTC().Format(time.RFC3339))
	default:
		return fmt.Sprintf("%s (maxDuration %s, counted from the run's creation) was breached at %s",
			slaNotePrefix, run.SLA.MaxDuration, run.SLABreachedAt.UTC().Format(time.RFC3339))
	}
}

// enforceQueuedSLA breaches the SLA of a run waiting in line for its concurrency key once it
// was created longer than maxDuration ago, and before then asks to be woken at that time. The
// breach is logged and notified as a running run's; onBreach fail ends the run failed and
// terminate ends it terminated, running no step and giving up its place in line; notify
// leaves it in line.
func enforceQueuedSLA(run *Run, now time.Time, t *transition) {
	deadline, ok := slaDeadline(run)
	if !ok || !run.SLABreachedAt.IsZero() {
		return
	}
	if now.Before(deadline) {
		t.wakeAt(deadline)
		return
	}
	st := &run.Object.Status
	run.SLABreachedAt = now
	t.changed = true
	msg := fmt.Sprintf("SLA breached: queued on concurrency key %s for %s since the run was created, longer than its maxDuration %s",
		run.SlotKey, now.Sub(st.StartTime.Time).Round(time.Second), run.SLA.MaxDuration)
	t.logs = append(t.logs, LogEntry{Time: now, Severity: SeverityWarning, Message: msg})
	switch run.SLA.OnBreach {
	case v1alpha1.SLAFail:
		st.Phase, st.Message = v1alpha1.RunFailed, msg+"; the run failed without running a step"
		st.Finished, st.Suspend, st.EndTime = true, false, metav1.NewTime(now)
	case v1alpha1.SLATerminate:
		st.Phase, st.Message = v1alpha1.RunTerminated, msg+"; the run was terminated without running a step"
		st.Terminated, st.Finished, st.Suspend, st.EndTime = true, true, false, metav1.NewTime(now)
	default:
		queued, _, _ := strings.Cut(st.Message, slaNotePrefix)
		st.Message = queued + slaNote(run)
	}
	if run.SLA.Notify != nil && len(run.SLA.Notify.Raw) > 0 {
		t.notifySLA = true
	}
}

// slaFailed reports whether the run breached an SLA whose onBreach is fail: its steps that
// have not started are skipped, but those that run always.
func (r *Run) slaFailed() bool {
	return r.SLA != nil && r.SLA.OnBreach == v1alpha1.SLAFail && !r.SLABreachedAt.IsZero()
}

// notifySLA sends the notification of the run's SLA breach: the built-in `notification` step
// type evaluated once with the SLA's notify properties, under SLANotifyTimeout, its log lines
// added to the run's under the step name sla-breach. It is sent before the transition that
// recorded the breach is saved, so a process that dies in between sends it again (at least
// once). A notification that fails is logged as an error and not tried again.
func (e *Engine) notifySLA(ctx context.Context, run *Run, now time.Time, t *transition) {
	ctx, cancel := context.WithTimeout(ctx, SLANotifyTimeout)
	defer cancel()
	obj := run.Object
	req := &StepRequest{
		Run:        run.Key(),
		Step:       v1alpha1.WorkflowStepBase{Name: slaStep, Type: "notification"},
		StepID:     slaStep,
		Properties: json.RawMessage(run.SLA.Notify.Raw),
		Context: map[string]any{
			"name": obj.Name, "namespace": obj.Namespace, "workflowName": obj.Name,
			"stepName": slaStep, "stepSessionID": slaStep,
		},
		Vars:      run.Vars,
		Now:       now,
		Sensitive: run.Sensitive,
	}
	res, err := e.opts.Runner.RunStep(ctx, req)
	if res != nil {
		for _, l := range res.Logs {
			l.Step = slaStep
			t.logs = append(t.logs, l)
		}
		run.learn(res.Sensitive...)
	}
	entry := LogEntry{Time: now, Step: slaStep, Severity: SeverityInfo, Message: "the SLA breach was notified"}
	switch {
	case err != nil:
		entry.Severity, entry.Message = SeverityError, "the SLA breach could not be notified: "+err.Error()
	case res.Outcome != Succeeded:
		entry.Severity, entry.Message = SeverityError, fmt.Sprintf("the SLA breach could not be notified: %s: %s", res.Outcome, res.Message)
	}
	t.logs = append(t.logs, entry)
	t.changed = true
}
