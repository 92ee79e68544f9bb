package controller_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/controller"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/schedule"
)

// createSchedule applies a WorkflowSchedule written in YAML to the test's namespace and shard.
func (e *env) createSchedule(doc string) *v1alpha1.WorkflowSchedule {
	e.t.Helper()
	var ws v1alpha1.WorkflowSchedule
	if err := yaml.UnmarshalStrict([]byte(doc), &ws); err != nil {
		e.t.Fatal(err)
	}
	ws.Namespace = e.ns
	if ws.Labels == nil {
		ws.Labels = map[string]string{}
	}
	ws.Labels[controller.ShardLabel] = e.shard
	if err := e.c.Create(context.Background(), &ws); err != nil {
		e.t.Fatal(err)
	}
	return &ws
}

// waitSchedule polls the schedule until ok holds.
func (e *env) waitSchedule(name, what string, ok func(*v1alpha1.WorkflowSchedule) bool) *v1alpha1.WorkflowSchedule {
	e.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var ws v1alpha1.WorkflowSchedule
	for {
		err := e.c.Get(context.Background(), client.ObjectKey{Namespace: e.ns, Name: name}, &ws)
		if err == nil && ok(&ws) {
			return &ws
		}
		if time.Now().After(deadline) {
			y, _ := yaml.Marshal(ws.Status)
			e.t.Fatalf("schedule %s: timed out waiting for %s (err %v); status:\n%s", name, what, err, y)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// nextFiring waits for the schedule's status to announce its next firing after the one at
// after (zero: any) and returns it.
func (e *env) nextFiring(name string, after time.Time) time.Time {
	e.t.Helper()
	ws := e.waitSchedule(name, "a next schedule time after "+after.String(), func(ws *v1alpha1.WorkflowSchedule) bool {
		return ws.Status.NextScheduleTime != nil && ws.Status.NextScheduleTime.After(after)
	})
	return ws.Status.NextScheduleTime.Time
}

// scheduleRuns lists the runs labelled as the schedule's, by name.
func (e *env) scheduleRuns(name string) []v1alpha1.WorkflowRun {
	e.t.Helper()
	var list v1alpha1.WorkflowRunList
	if err := e.c.List(context.Background(), &list, client.InNamespace(e.ns), client.MatchingLabels{v1alpha1.LabelSchedule: name}); err != nil {
		e.t.Fatal(err)
	}
	slices.SortFunc(list.Items, func(a, b v1alpha1.WorkflowRun) int { return strings.Compare(a.Name, b.Name) })
	return list.Items
}

// advanceTo moves the fake clock to at.
func advanceTo(clock *engine.FakeClock, at time.Time) {
	if d := at.Sub(clock.Now()); d > 0 {
		clock.Advance(d)
	}
}

// scheduledTime is the run's spec.context.scheduledTime.
func scheduledTime(t *testing.T, wr *v1alpha1.WorkflowRun) string {
	t.Helper()
	var c map[string]any
	if wr.Spec.Context == nil || json.Unmarshal(wr.Spec.Context.Raw, &c) != nil {
		t.Fatalf("run %s: no context object", wr.Name)
	}
	s, _ := c["scheduledTime"].(string)
	return s
}

// A schedule creates at each firing a run named after it and the firing, owned by the
// schedule, labelled with its name, keeping the template's context and given scheduledTime,
// which runs to success; the status says the last firing, the last run and the next firing.
func TestScheduleFiresRunsWithScheduledTime(t *testing.T) {
	e := newEnv(t)
	clock := engine.NewFakeClock(time.Now())
	e.start(controllerOptions{schedules: true, clock: clock})
	ws := e.createSchedule(`
metadata: {name: nightly}
spec:
  schedules: ["* * * * *"]
  runTemplate:
    metadata: {labels: {team: data}}
    spec:
      context: {env: prod}
      workflowSpec:
        steps:
        - {name: msg, type: print-message-in-status, properties: {message: hi}}
`)
	first := e.nextFiring("nightly", time.Time{})
	if first.Second() != 0 || first.Before(ws.CreationTimestamp.Time) {
		t.Fatalf("next schedule time %s: want the first minute after the creation at %s", first, ws.CreationTimestamp)
	}
	advanceTo(clock, first)
	name := schedule.RunName("nightly", first)
	wr := e.waitPhase(name, v1alpha1.RunSucceeded)
	if got := scheduledTime(t, wr); got != first.UTC().Format(time.RFC3339) {
		t.Errorf("scheduledTime %q, want %s", got, first.UTC().Format(time.RFC3339))
	}
	if !strings.Contains(string(wr.Spec.Context.Raw), `"env":"prod"`) {
		t.Errorf("context %s lost the template's env", wr.Spec.Context.Raw)
	}
	if wr.Labels["team"] != "data" || wr.Labels[v1alpha1.LabelSchedule] != "nightly" {
		t.Errorf("labels %v: want the template's and the schedule's", wr.Labels)
	}
	if ref := metav1.GetControllerOf(wr); ref == nil || ref.Kind != v1alpha1.KindWorkflowSchedule || ref.Name != "nightly" {
		t.Errorf("owner %v: want the WorkflowSchedule nightly", wr.OwnerReferences)
	}
	second := e.nextFiring("nightly", first)
	if !second.Equal(first.Add(time.Minute)) {
		t.Errorf("next schedule time %s after %s: want a minute later", second, first)
	}
	advanceTo(clock, second)
	e.waitPhase(schedule.RunName("nightly", second), v1alpha1.RunSucceeded)
	got := e.waitSchedule("nightly", "the second firing recorded", func(ws *v1alpha1.WorkflowSchedule) bool {
		return ws.Status.LastScheduleTime != nil && ws.Status.LastScheduleTime.Equal(&metav1.Time{Time: second})
	})
	if got.Status.LastRun != schedule.RunName("nightly", second) {
		t.Errorf("lastRun %q, want %q", got.Status.LastRun, schedule.RunName("nightly", second))
	}
	if c := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionScheduled); c == nil || c.Status != metav1.ConditionTrue {
		t.Errorf("conditions %+v: want Scheduled True", got.Status.Conditions)
	}
	if n := len(e.scheduleRuns("nightly")); n != 2 {
		t.Errorf("%d runs, want 2", n)
	}
}

// heldSchedule is a minute schedule whose runs wait at a suspend step: they stay unfinished.
const heldSchedule = `
metadata: {name: held}
spec:
  schedules: ["* * * * *"]
  concurrencyPolicy: %s
  runTemplate:
    spec:
      workflowSpec:
        steps:
        - {name: gate, type: suspend}
`

// With concurrencyPolicy Forbid a firing while the last run has not finished starts none and
// says why; with Replace it terminates that run and starts its own.
func TestScheduleConcurrencyPolicy(t *testing.T) {
	for _, policy := range []string{"Forbid", "Replace"} {
		t.Run(policy, func(t *testing.T) {
			e := newEnv(t)
			clock := engine.NewFakeClock(time.Now())
			e.start(controllerOptions{schedules: true, clock: clock})
			e.createSchedule(fmt.Sprintf(heldSchedule, policy))
			first := e.nextFiring("held", time.Time{})
			advanceTo(clock, first)
			run1 := schedule.RunName("held", first)
			e.waitFor(run1, "suspended at its gate", func(wr *v1alpha1.WorkflowRun) bool { return wr.Status.Suspend })
			e.waitSchedule("held", "the run active", func(ws *v1alpha1.WorkflowSchedule) bool { return slices.Contains(ws.Status.Active, run1) })
			second := e.nextFiring("held", first)
			advanceTo(clock, second)
			ws := e.waitSchedule("held", "the second firing acted on", func(ws *v1alpha1.WorkflowSchedule) bool {
				return ws.Status.LastScheduleTime != nil && ws.Status.LastScheduleTime.Equal(&metav1.Time{Time: second})
			})
			run2 := schedule.RunName("held", second)
			switch policy {
			case "Forbid":
				if !strings.Contains(ws.Status.LastSkipped, "concurrencyPolicy Forbid") || !strings.Contains(ws.Status.LastSkipped, run1) {
					t.Errorf("lastSkipped %q: want the Forbid policy and run %s", ws.Status.LastSkipped, run1)
				}
				if runs := e.scheduleRuns("held"); len(runs) != 1 || runs[0].Name != run1 || runs[0].Status.Finished {
					t.Errorf("runs %v: want only %s, not finished", names(runs), run1)
				}
			case "Replace":
				e.waitFor(run1, "terminated", func(wr *v1alpha1.WorkflowRun) bool { return wr.Status.Terminated && wr.Status.Finished })
				e.waitFor(run2, "suspended at its gate", func(wr *v1alpha1.WorkflowRun) bool { return wr.Status.Suspend && !wr.Status.Finished })
				if ws.Status.LastSkipped != "" {
					t.Errorf("lastSkipped %q, want none", ws.Status.LastSkipped)
				}
			}
		})
	}
}

func names(runs []v1alpha1.WorkflowRun) []string {
	out := make([]string, len(runs))
	for i, r := range runs {
		out[i] = r.Name
	}
	return out
}

// A suspended schedule starts no run; unsuspended, its missed firings past
// startingDeadlineSeconds start none either, and the status says so.
func TestScheduleSuspendStopsFiring(t *testing.T) {
	e := newEnv(t)
	clock := engine.NewFakeClock(time.Now())
	e.start(controllerOptions{schedules: true, clock: clock})
	e.createSchedule(`
metadata: {name: paused}
spec:
  schedules: ["* * * * *"]
  suspend: true
  startingDeadlineSeconds: 30
  runTemplate:
    spec:
      workflowSpec:
        steps:
        - {name: msg, type: print-message-in-status, properties: {message: hi}}
`)
	ws := e.waitSchedule("paused", "the Suspended condition", func(ws *v1alpha1.WorkflowSchedule) bool {
		c := meta.FindStatusCondition(ws.Status.Conditions, v1alpha1.ConditionScheduled)
		return c != nil && c.Reason == "Suspended"
	})
	if ws.Status.NextScheduleTime != nil {
		t.Errorf("nextScheduleTime %s while suspended, want none", ws.Status.NextScheduleTime)
	}
	// Three firings go by; the latest is 45s late when the schedule is unsuspended.
	first := ws.CreationTimestamp.Truncate(time.Minute).Add(time.Minute)
	advanceTo(clock, first.Add(2*time.Minute+45*time.Second))
	ws.Spec.Suspend = false
	if err := e.c.Update(context.Background(), ws); err != nil {
		t.Fatal(err)
	}
	got := e.waitSchedule("paused", "the unsuspended schedule's look at its missed firings", func(ws *v1alpha1.WorkflowSchedule) bool {
		return ws.Status.ObservedGeneration == ws.Generation && ws.Status.LastScheduleTime != nil
	})
	if !strings.Contains(got.Status.LastSkipped, "past startingDeadlineSeconds (30)") {
		t.Errorf("lastSkipped %q: want the latest missed firing past the deadline", got.Status.LastSkipped)
	}
	if runs := e.scheduleRuns("paused"); len(runs) != 0 {
		t.Errorf("runs %v: a suspended schedule, and firings missed past the deadline, start none", names(runs))
	}
}

// A controller started again after missing firings starts the run of the latest one only,
// within startingDeadlineSeconds; past it, none.
func TestScheduleCatchesUpAfterRestart(t *testing.T) {
	e := newEnv(t)
	clock := engine.NewFakeClock(time.Now())
	stop := e.start(controllerOptions{schedules: true, clock: clock})
	e.createSchedule(`
metadata: {name: catchup}
spec:
  schedules: ["* * * * *"]
  startingDeadlineSeconds: 40
  runTemplate:
    spec:
      workflowSpec:
        steps:
        - {name: msg, type: print-message-in-status, properties: {message: hi}}
`)
	first := e.nextFiring("catchup", time.Time{})
	stop()
	// Down over three firings; the latest is 30s late, within the deadline.
	latest := first.Add(2 * time.Minute)
	advanceTo(clock, latest.Add(30*time.Second))
	stop = e.start(controllerOptions{schedules: true, clock: clock})
	e.waitPhase(schedule.RunName("catchup", latest), v1alpha1.RunSucceeded)
	e.waitSchedule("catchup", "the catch-up recorded", func(ws *v1alpha1.WorkflowSchedule) bool {
		return ws.Status.LastScheduleTime != nil && ws.Status.LastScheduleTime.Equal(&metav1.Time{Time: latest})
	})
	if runs := e.scheduleRuns("catchup"); len(runs) != 1 {
		t.Errorf("runs %v: want only the latest missed firing's", names(runs))
	}
	stop()
	// Down again; now the latest missed firing is 50s late, past the deadline.
	late := latest.Add(3 * time.Minute)
	advanceTo(clock, late.Add(50*time.Second))
	e.start(controllerOptions{schedules: true, clock: clock})
	ws := e.waitSchedule("catchup", "the late firing acted on", func(ws *v1alpha1.WorkflowSchedule) bool {
		return ws.Status.LastScheduleTime != nil && ws.Status.LastScheduleTime.Equal(&metav1.Time{Time: late})
	})
	if !strings.Contains(ws.Status.LastSkipped, "past startingDeadlineSeconds (40)") {
		t.Errorf("lastSkipped %q: want the firing past the deadline", ws.Status.LastSkipped)
	}
	if runs := e.scheduleRuns("catchup"); len(runs) != 1 {
		t.Errorf("runs %v: a firing past the deadline starts none", names(runs))
	}
}

// The backfills of spec create the runs of an interval's firings once, named as the firings'
// own: a controller started again does not create them again, and an overlapping interval
// creates only the runs that were not there.
func TestScheduleBackfillOnce(t *testing.T) {
	e := newEnv(t)
	now := time.Now()
	clock := engine.NewFakeClock(now)
	stop := e.start(controllerOptions{schedules: true, clock: clock})
	hour := now.UTC().Truncate(time.Hour)
	from, to := hour.Add(-4*time.Hour), hour.Add(-time.Hour)
	e.createSchedule(fmt.Sprintf(`
metadata: {name: hourly}
spec:
  schedules: ["0 * * * *"]
  backfills:
  - {from: %q, to: %q}
  - {from: %q, to: %q}
  runTemplate:
    spec:
      workflowSpec:
        steps:
        - {name: msg, type: print-message-in-status, properties: {message: hi}}
`, from.Format(time.RFC3339), to.Format(time.RFC3339), to.Format(time.RFC3339), hour.Add(time.Hour).Format(time.RFC3339)))
	ws := e.waitSchedule("hourly", "the backfills done", func(ws *v1alpha1.WorkflowSchedule) bool { return len(ws.Status.Backfills) == 2 })
	if b := ws.Status.Backfills[0]; b.Runs != 4 || b.Created != 4 || b.Error != "" {
		t.Errorf("backfill %+v: want 4 runs created", b)
	}
	if b := ws.Status.Backfills[1]; b.Runs != 0 || !strings.Contains(b.Error, "a backfill is of past firings") {
		t.Errorf("backfill %+v: want refused, its end after now", b)
	}
	var want []string
	for at := from; !at.After(to); at = at.Add(time.Hour) {
		want = append(want, schedule.RunName("hourly", at))
	}
	if got := names(e.scheduleRuns("hourly")); !slices.Equal(got, want) {
		t.Fatalf("runs %v, want %v", got, want)
	}
	for _, name := range want {
		wr := e.waitPhase(name, v1alpha1.RunSucceeded)
		at, _ := time.Parse(time.RFC3339, scheduledTime(t, wr))
		if schedule.RunName("hourly", at) != name {
			t.Errorf("run %s: scheduledTime %s", name, at)
		}
	}
	stop()
	e.start(controllerOptions{schedules: true, clock: clock})
	// Another interval, overlapping the first by two firings.
	ws = e.waitSchedule("hourly", "read", func(*v1alpha1.WorkflowSchedule) bool { return true })
	ws.Spec.Backfills = append(ws.Spec.Backfills, v1alpha1.ScheduleBackfill{From: metav1.NewTime(from.Add(-time.Hour)), To: metav1.NewTime(from.Add(time.Hour))})
	if err := e.c.Update(context.Background(), ws); err != nil {
		t.Fatal(err)
	}
	ws = e.waitSchedule("hourly", "the third backfill done", func(ws *v1alpha1.WorkflowSchedule) bool { return len(ws.Status.Backfills) == 3 })
	if b := ws.Status.Backfills[0]; b.Runs != 4 || b.Created != 4 {
		t.Errorf("first backfill %+v after the restart: want it as it was", b)
	}
	if b := ws.Status.Backfills[2]; b.Runs != 3 || b.Created != 1 {
		t.Errorf("third backfill %+v: want 3 firings, 1 run created", b)
	}
	want = append([]string{schedule.RunName("hourly", from.Add(-time.Hour))}, want...)
	if got := names(e.scheduleRuns("hourly")); !slices.Equal(got, want) {
		t.Errorf("runs %v, want %v", got, want)
	}
}

// A schedule the controller cannot follow (a bad cron expression, an unknown time zone, a
// run template without steps) gets the condition Scheduled False, InvalidSpec, naming the
// field, and starts no run.
func TestScheduleInvalidSpecCondition(t *testing.T) {
	e := newEnv(t)
	e.start(controllerOptions{schedules: true})
	e.createSchedule(`
metadata: {name: badcron}
spec:
  schedules: ["@hourly", "61 * * * *"]
  runTemplate:
    spec: {context: {a: 1}}
`)
	e.createSchedule(`
metadata: {name: badzone}
spec:
  schedules: ["@hourly"]
  timeZone: Mars/Olympus
  runTemplate:
    spec: {workflowRef: nightly}
`)
	for name, wants := range map[string][]string{
		"badcron": {`spec.schedules[1] "61 * * * *"`, "spec.runTemplate.spec.workflowSpec: Required"},
		"badzone": {`spec.timeZone "Mars/Olympus"`},
	} {
		ws := e.waitSchedule(name, "the InvalidSpec condition", func(ws *v1alpha1.WorkflowSchedule) bool {
			c := meta.FindStatusCondition(ws.Status.Conditions, v1alpha1.ConditionScheduled)
			return c != nil && c.Reason == "InvalidSpec"
		})
		c := meta.FindStatusCondition(ws.Status.Conditions, v1alpha1.ConditionScheduled)
		for _, want := range wants {
			if !strings.Contains(c.Message, want) {
				t.Errorf("%s: condition message %q does not say %q", name, c.Message, want)
			}
		}
		if c.Status != metav1.ConditionFalse || ws.Status.NextScheduleTime != nil {
			t.Errorf("%s: condition %s, next %v: want False and no next firing", name, c.Status, ws.Status.NextScheduleTime)
		}
	}
}
