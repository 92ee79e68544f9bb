package engine_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
)

// slaLogs are the run's log lines of its SLA: the breach and the notification's.
func (h *harness) slaLogs(key engine.Key) []engine.LogEntry {
	h.store.mu.Lock()
	defer h.store.mu.Unlock()
	var out []engine.LogEntry
	for _, l := range h.store.logs[key] {
		if strings.HasPrefix(l.Message, "SLA breached") || l.Step == "sla-breach" {
			out = append(out, l)
		}
	}
	return out
}

// A run past its SLA's maxDuration, onBreach notify: the breach is logged, the notification
// sent once with the SLA's properties, and the run goes on to succeed.
func TestSLANotifyLetsTheRunGoOn(t *testing.T) {
	h := newHarness(t)
	key := h.start(`
metadata: {name: r}
spec:
  sla: {maxDuration: 10m, notify: {text: "r is late"}}
  workflowSpec:
    steps:
    - {name: approve, type: suspend}
    - {name: deploy, type: ok}`)
	h.waitSettled(key)
	h.clock.Advance(9 * time.Minute)
	h.waitSettled(key)
	if n := h.script.count("sla-breach"); n != 0 {
		t.Fatalf("notified %d times before maxDuration", n)
	}
	h.clock.Advance(time.Minute)
	h.waitFor(key, "breached", func(r *engine.Run) bool { return !r.SLABreachedAt.IsZero() && !h.eng.Busy(key) })
	if n := h.script.count("sla-breach"); n != 1 {
		t.Errorf("notified %d times, want once", n)
	}
	logs := h.slaLogs(key)
	var text []string
	for _, l := range logs {
		text = append(text, l.Severity+": "+l.Message)
	}
	want := []string{"warning: SLA breached: running for 10m0s, longer than its maxDuration 10m", ": sent r is late", "info: the SLA breach was notified"}
	if strings.Join(text, "\n") != strings.Join(want, "\n") {
		t.Errorf("log:\n%s\nwant:\n%s", strings.Join(text, "\n"), strings.Join(want, "\n"))
	}
	if err := h.operate(key, engine.Operation{Kind: engine.OpResume}); err != nil {
		t.Fatal(err)
	}
	run := h.waitPhase(key, v1alpha1.RunSucceeded)
	if got := phases(run); got != "approve=succeeded deploy=succeeded" {
		t.Errorf("steps: %s", got)
	}
	if n := h.script.count("sla-breach"); n != 1 {
		t.Errorf("notified %d times by the end, want once", n)
	}
}

// onBreach fail: the step under way fails with reason SLABreached, the steps after it are
// skipped but the one that runs always, and the run fails.
func TestSLAFailFailsTheRun(t *testing.T) {
	h := newHarness(t)
	key := h.start(`
metadata: {name: r}
spec:
  sla: {maxDuration: 1h, onBreach: fail}
  workflowSpec:
    steps:
    - {name: wait, type: wait, properties: {until: never}}
    - {name: deploy, type: ok}
    - {name: cleanup, type: ok, if: always}`)
	h.waitFor(key, "waiting", func(r *engine.Run) bool { return r.Object.Status.Steps[0].Message == "not yet" && !h.eng.Busy(key) })
	h.clock.Advance(time.Hour)
	run := h.waitFor(key, "finished", func(r *engine.Run) bool { return r.Object.Status.Finished && !h.eng.Busy(key) })
	if got := phases(run); got != "wait=failed/SLABreached deploy=skipped/Skip cleanup=succeeded" {
		t.Errorf("steps: %s", got)
	}
	if run.Object.Status.Phase != v1alpha1.RunFailed {
		t.Errorf("phase %s, want failed", run.Object.Status.Phase)
	}
	if n := h.script.count("sla-breach"); n != 0 {
		t.Errorf("notified %d times without notify properties", n)
	}
}

// onBreach terminate, with the SLA from the run's template: the run is terminated; a
// notification that fails is logged as an error and the run ends all the same.
func TestSLATerminateFromTheTemplate(t *testing.T) {
	h := newHarness(t)
	h.template("slow", `
sla: {maxDuration: 30m, onBreach: terminate, notify: {fail: true}}
steps:
- {name: approve, type: suspend}
- {name: cleanup, type: ok, if: always}`)
	key := h.start(`
metadata: {name: r}
spec: {workflowRef: slow}`)
	h.waitSettled(key)
	h.clock.Advance(30 * time.Minute)
	run := h.waitPhase(key, v1alpha1.RunTerminated)
	if got := phases(run); got != "approve=failed/Terminate cleanup=succeeded" {
		t.Errorf("steps: %s", got)
	}
	if msg := run.Object.Status.Message; !strings.HasPrefix(msg, "SLA breached: running for 30m0s") {
		t.Errorf("message %q", msg)
	}
	logs := h.slaLogs(key)
	if last := logs[len(logs)-1]; last.Severity != engine.SeverityError || !strings.Contains(last.Message, "webhook answered 503") {
		t.Errorf("last SLA log line %+v, want the failed notification as an error", last)
	}
}

// A run that finishes within its SLA is never breached, and its timer does not outlive it.
func TestSLANotBreachedWithinMaxDuration(t *testing.T) {
	h := newHarness(t)
	key := h.start(`
metadata: {name: r}
spec:
  sla: {maxDuration: 10m, onBreach: fail, notify: {text: late}}
  workflowSpec:
    steps:
    - {name: deploy, type: ok}`)
	h.waitPhase(key, v1alpha1.RunSucceeded)
	h.clock.Advance(time.Hour)
	time.Sleep(50 * time.Millisecond)
	run := h.saved(key)
	if !run.SLABreachedAt.IsZero() || h.script.count("sla-breach") != 0 {
		t.Errorf("a run finished within its SLA was breached at %s", run.SLABreachedAt)
	}
}

// A run's SLA counts from its creation, queued time included. A run that waited in line for
// its concurrency key and was admitted before its maxDuration breaches maxDuration after its
// creation, not after its admission; its queued message said by when it was due. A run still
// in line at its maxDuration breaches there: onBreach terminate ends it terminated without
// running a step, giving up its place, and notifies once; onBreach notify leaves it in line,
// its message saying when it breached.
func TestSLACountsQueuedTime(t *testing.T) {
	h, slots := slotsHarness(t)
	h.gatedTemplate("queue")
	created := h.clock.Now().UTC()
	holder := h.start(queuedRun("holder", "prod", 0))
	h.waitPhase(holder, v1alpha1.RunSuspending)
	withSLA := func(name, sla string) engine.Key {
		return h.start(queuedRun(name, "prod", 0) + "\n  sla: " + sla)
	}
	late := withSLA("late", `{maxDuration: 10m, onBreach: notify, notify: {text: "late is late"}}`)
	// doomed is started once late is in line: two runs started together ask in any order.
	h.waitMessage(late, v1alpha1.RunQueued, "queued on concurrency key deploy-prod: place 1; its SLA counts from the run's creation, queued time included: maxDuration 10m, due by "+
		created.Add(10*time.Minute).Format(time.RFC3339))
	doomed := withSLA("doomed", `{maxDuration: 5m, onBreach: terminate, notify: {text: "doomed is late"}}`)
	h.waitMessage(doomed, v1alpha1.RunQueued, "queued on concurrency key deploy-prod: place 2; its SLA counts from the run's creation, queued time included: maxDuration 5m, due by "+
		created.Add(5*time.Minute).Format(time.RFC3339))

	// 5 minutes in line: doomed breaches there and ends, having run no step.
	h.clock.Advance(5 * time.Minute)
	run := h.waitPhase(doomed, v1alpha1.RunTerminated)
	if want := "SLA breached: queued on concurrency key deploy-prod for 5m0s since the run was created, longer than its maxDuration 5m; the run was terminated without running a step"; run.Object.Status.Message != want {
		t.Errorf("doomed's message %q, want %q", run.Object.Status.Message, want)
	}
	if n := h.script.count("approve"); n != 1 {
		t.Errorf("approve evaluated %d times, want once (the holder's): a run terminated in line ran a step", n)
	}
	h.waitFor(doomed, "notified", func(*engine.Run) bool { return h.script.count("sla-breach") == 1 })
	if got, want := held(t, slots, 1), []string{"deploy-prod:holder"}; !slices.Equal(got, want) {
		t.Errorf("held %v, want %v", got, want)
	}
	h.waitMessage(late, v1alpha1.RunQueued, "queued on concurrency key deploy-prod: place 1; its SLA counts from the run's creation, queued time included: maxDuration 10m, due by "+
		created.Add(10*time.Minute).Format(time.RFC3339))

	// late is admitted 6 minutes after its creation, and breaches 4 minutes later.
	h.clock.Advance(time.Minute)
	if err := h.operate(holder, engine.Operation{Kind: engine.OpResume}); err != nil {
		t.Fatal(err)
	}
	h.waitPhase(holder, v1alpha1.RunSucceeded)
	h.waitPhase(late, v1alpha1.RunSuspending)
	h.clock.Advance(3 * time.Minute)
	h.waitSettled(late)
	if n := len(h.slaLogs(late)); n != 0 {
		t.Fatalf("late breached 9 minutes after its creation: %v", h.slaLogs(late))
	}
	h.clock.Advance(time.Minute)
	h.waitFor(late, "breached", func(r *engine.Run) bool { return !r.SLABreachedAt.IsZero() && !h.eng.Busy(late) })
	if logs := h.slaLogs(late); len(logs) == 0 || logs[0].Message != "SLA breached: running for 10m0s, longer than its maxDuration 10m" {
		t.Errorf("late's SLA log %v, want the breach 10 minutes after its creation", logs)
	}
	if n := h.script.count("sla-breach"); n != 2 {
		t.Errorf("notified %d times, want twice (doomed, late)", n)
	}
}

// onBreach notify while still in line: the breach is logged and notified once, the run stays
// queued, its message saying when it breached, and runs when its turn comes.
func TestSLABreachedInLineStaysQueued(t *testing.T) {
	h, _ := slotsHarness(t)
	h.gatedTemplate("queue")
	holder := h.start(queuedRun("holder", "prod", 0))
	h.waitPhase(holder, v1alpha1.RunSuspending)
	late := h.start(queuedRun("late", "prod", 0) + "\n  sla: {maxDuration: 1m, notify: {text: late}}")
	h.waitPhase(late, v1alpha1.RunQueued)
	h.clock.Advance(time.Minute)
	breached := h.clock.Now().UTC()
	h.waitMessage(late, v1alpha1.RunQueued, "queued on concurrency key deploy-prod: place 1; its SLA (maxDuration 1m, counted from the run's creation) was breached at "+breached.Format(time.RFC3339))
	h.clock.Advance(engine.QueuedRecheck)
	h.waitMessage(late, v1alpha1.RunQueued, "queued on concurrency key deploy-prod: place 1; its SLA (maxDuration 1m, counted from the run's creation) was breached at "+breached.Format(time.RFC3339))
	if err := h.operate(holder, engine.Operation{Kind: engine.OpResume}); err != nil {
		t.Fatal(err)
	}
	h.waitPhase(late, v1alpha1.RunSuspending)
	if err := h.operate(late, engine.Operation{Kind: engine.OpResume}); err != nil {
		t.Fatal(err)
	}
	h.waitPhase(late, v1alpha1.RunSucceeded)
	if n := h.script.count("sla-breach"); n != 1 {
		t.Errorf("notified %d times, want once", n)
	}
	if logs := h.slaLogs(late); len(logs) == 0 || !strings.HasPrefix(logs[0].Message, "SLA breached: queued on concurrency key deploy-prod for 1m0s since the run was created") {
		t.Errorf("late's SLA log %v", logs)
	}
}
