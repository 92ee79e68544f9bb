// sla.go: a run's SLA (v1alpha1.SLA): when it is breached, and what the engine does then.

package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/stepflow/stepflow/api/v1alpha1"
)

// SLANotifyTimeout bounds the evaluation of the notification sent at an SLA breach.
const SLANotifyTimeout = 30 * time.Second

// slaStep is the name the notification sent at a breach goes by in the run's log.
const slaStep = "sla-breach"

// enforceSLA breaches the run's SLA once the run has run longer than its maxDuration: it logs
// the breach, fails or terminates the run as onBreach says, and marks the notification due
// (t.notifySLA). Before then it asks to be woken at that time.
func (m *machine) enforceSLA(run *Run, g *graph, now time.Time, t *transition) {
	sla := run.SLA
	if sla == nil || !run.SLABreachedAt.IsZero() {
		return
	}
	d, err := time.ParseDuration(sla.MaxDuration)
	if err != nil || d <= 0 {
		return // refused when the run was made (v1alpha1.ValidateWorkflowRun)
	}
	start := run.Object.Status.StartTime.Time
	if deadline := start.Add(d); now.Before(deadline) {
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
