package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/schedule"
)

// maxScheduleName bounds a WorkflowSchedule's name, as a CronJob's is bounded: its runs are
// named after it and a firing time, and carry it in a label.
const maxScheduleName = 52

// schedules reconciles WorkflowSchedules: at each firing it creates the WorkflowRun named after
// the schedule and the firing (so that a restarted controller, or a second one, never creates
// it twice: AlreadyExists means done), applies the concurrency policy to the schedule's runs
// not finished, runs the backfills asked for, and looks again at the next firing by a timer of
// the engine's Clock.
type schedules struct {
	c *Controller
	// wake hands the schedules whose timer fired to the reconciler.
	wake chan event.GenericEvent
	// timers are the pending wake-ups, one per schedule.
	timersMu sync.Mutex
	timers   map[types.NamespacedName]func() bool
}

// setupSchedules registers the WorkflowSchedule reconciler with mgr.
func (c *Controller) setupSchedules(mgr manager.Manager) error {
	s := &schedules{c: c, wake: make(chan event.GenericEvent), timers: map[types.NamespacedName]func() bool{}}
	if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		<-ctx.Done()
		s.timersMu.Lock()
		defer s.timersMu.Unlock()
		for k, stop := range s.timers {
			stop()
			delete(s.timers, k)
		}
		return nil
	})); err != nil {
		return err
	}
	err := builder.ControllerManagedBy(mgr).
		Named("workflowschedule").
		For(&v1alpha1.WorkflowSchedule{}).
		Owns(&v1alpha1.WorkflowRun{}).
		WatchesRawSource(source.Channel(s.wake, &handler.EnqueueRequestForObject{})).
		Complete(s)
	if err != nil {
		return fmt.Errorf("set up the WorkflowSchedule controller: %w", err)
	}
	return nil
}

// Reconcile implements reconcile.Reconciler for a WorkflowSchedule.
func (s *schedules) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	var ws v1alpha1.WorkflowSchedule
	if err := s.c.cache.Get(ctx, req.NamespacedName, &ws); err != nil {
		if apierrors.IsNotFound(err) {
			s.setTimer(req.NamespacedName, time.Time{}, time.Time{})
		}
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	now := s.c.clock.Now()
	st := ws.Status.DeepCopy()
	st.ObservedGeneration = ws.Generation
	sched, problems := checkSchedule(&ws)
	if len(problems) > 0 {
		st.NextScheduleTime = nil
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: v1alpha1.ConditionScheduled, Status: metav1.ConditionFalse,
			Reason: "InvalidSpec", Message: strings.Join(problems, "; "), ObservedGeneration: ws.Generation})
		s.setTimer(req.NamespacedName, time.Time{}, now)
		return reconcile.Result{}, s.writeStatus(ctx, &ws, st)
	}
	runs, err := s.runs(ctx, &ws)
	if err != nil {
		return reconcile.Result{}, err
	}
	if err := s.backfill(ctx, &ws, sched, runs, st, now); err != nil {
		return reconcile.Result{}, err
	}
	again := false
	if !ws.Spec.Suspend {
		base := ws.CreationTimestamp.Time
		if st.LastScheduleTime != nil {
			base = st.LastScheduleTime.Time
		}
		d := sched.DueAt(base, ws.Spec.StartingDeadlineSeconds, now)
		if !d.At.IsZero() {
			if err := s.fire(ctx, &ws, d, runs, st); err != nil {
				return reconcile.Result{}, err
			}
			again = d.Again
		}
	}
	st.Active = st.Active[:0]
	for _, r := range runs {
		if !r.Status.Finished {
			st.Active = append(st.Active, r.Name)
		}
	}
	if len(st.Active) == 0 {
		st.Active = nil
	}
	var next time.Time
	if !ws.Spec.Suspend {
		after := ws.CreationTimestamp.Time
		if st.LastScheduleTime != nil {
			after = st.LastScheduleTime.Time
		}
		next = sched.Next(after)
	}
	st.NextScheduleTime = nil
	cond := metav1.Condition{Type: v1alpha1.ConditionScheduled, Status: metav1.ConditionTrue, Reason: "Scheduling",
		Message: "the schedules are valid", ObservedGeneration: ws.Generation}
	if ws.Spec.Suspend {
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, "Suspended", "spec.suspend is true: no firing starts a run"
	} else if !next.IsZero() {
		st.NextScheduleTime = &metav1.Time{Time: next.UTC()}
	}
	meta.SetStatusCondition(&st.Conditions, cond)
	if err := s.writeStatus(ctx, &ws, st); err != nil {
		return reconcile.Result{}, err
	}
	if again {
		return reconcile.Result{RequeueAfter: time.Millisecond}, nil // more missed firings to count
	}
	s.setTimer(req.NamespacedName, next, now)
	return reconcile.Result{}, nil
}

// checkSchedule parses the schedules and checks the rest of the spec; each problem starts with
// its field path.
func checkSchedule(ws *v1alpha1.WorkflowSchedule) (schedule.Set, []string) {
	spec := field.NewPath("spec")
	var errs field.ErrorList
	if n := len(ws.Name); n > maxScheduleName {
		errs = append(errs, field.TooLong(field.NewPath("metadata", "name"), ws.Name, maxScheduleName))
	}
	switch {
	case len(ws.Spec.Schedules) == 0:
		errs = append(errs, field.Required(spec.Child("schedules"), "at least one cron schedule"))
	case len(ws.Spec.Schedules) > schedule.MaxSchedules:
		errs = append(errs, field.TooMany(spec.Child("schedules"), len(ws.Spec.Schedules), schedule.MaxSchedules))
	}
	sched, err := schedule.Parse(ws.Spec.Schedules, func(i int) string { return spec.Child("schedules").Index(i).String() },
		ws.Spec.TimeZone, spec.Child("timeZone").String())
	var problems []string
	if err != nil {
		problems = append(problems, err.Error()) // it starts with the field path and the value
	}
	switch ws.Spec.ConcurrencyPolicy {
	case "", v1alpha1.ConcurrencyAllow, v1alpha1.ConcurrencyForbid, v1alpha1.ConcurrencyReplace:
	default:
		errs = append(errs, field.NotSupported(spec.Child("concurrencyPolicy"), ws.Spec.ConcurrencyPolicy,
			[]string{v1alpha1.ConcurrencyAllow, v1alpha1.ConcurrencyForbid, v1alpha1.ConcurrencyReplace}))
	}
	if d := ws.Spec.StartingDeadlineSeconds; d != nil && *d < 0 {
		errs = append(errs, field.Invalid(spec.Child("startingDeadlineSeconds"), *d, "want 0 or more"))
	}
	for i, b := range ws.Spec.Backfills {
		at := spec.Child("backfills").Index(i)
		if b.From.IsZero() {
			errs = append(errs, field.Required(at.Child("from"), "the interval's start, RFC 3339"))
		}
		if b.To.IsZero() {
			errs = append(errs, field.Required(at.Child("to"), "the interval's end, RFC 3339"))
		}
	}
	// The run template, checked as the run a firing makes.
	run, err := runFor(ws, time.Unix(0, 0))
	if err != nil {
		errs = append(errs, field.Invalid(spec.Child("runTemplate", "spec", "context"), field.OmitValueType{}, err.Error()))
	} else {
		for _, e := range v1alpha1.ValidateWorkflowRun(run) {
			if strings.HasPrefix(e.Field, "metadata") {
				continue // the run's name and namespace are the schedule's: checked above
			}
			e.Field = "spec.runTemplate." + e.Field
			errs = append(errs, e)
		}
	}
	for _, e := range errs {
		problems = append(problems, e.Error())
	}
	return sched, problems
}

// runs lists the schedule's WorkflowRuns (labelled with its name and owned by it) from the
// cache, by name.
func (s *schedules) runs(ctx context.Context, ws *v1alpha1.WorkflowSchedule) ([]v1alpha1.WorkflowRun, error) {
	var list v1alpha1.WorkflowRunList
	if err := s.c.cache.List(ctx, &list, client.InNamespace(ws.Namespace), client.MatchingLabels{v1alpha1.LabelSchedule: ws.Name}); err != nil {
		return nil, fmt.Errorf("list the runs of WorkflowSchedule %s/%s: %w", ws.Namespace, ws.Name, err)
	}
	out := slices.DeleteFunc(list.Items, func(r v1alpha1.WorkflowRun) bool { return !metav1.IsControlledBy(&r, ws) })
	slices.SortFunc(out, func(a, b v1alpha1.WorkflowRun) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// fire acts on the firing d: it starts its run as the concurrency policy says, or records why
// it did not, and moves the last schedule time to it.
func (s *schedules) fire(ctx context.Context, ws *v1alpha1.WorkflowSchedule, d schedule.Due, runs []v1alpha1.WorkflowRun, st *v1alpha1.WorkflowScheduleStatus) error {
	st.LastScheduleTime = &metav1.Time{Time: d.At.UTC()}
	st.LastSkipped = d.Skipped
	if !d.Start {
		s.c.log.Info("WorkflowSchedule started no run", "schedule", client.ObjectKeyFromObject(ws), "reason", d.Skipped)
		return nil
	}
	name := schedule.RunName(ws.Name, d.At)
	var active []string
	for _, r := range runs {
		if r.Name == name {
			st.LastRun = name // created before (its status write was lost, or the cache lags)
			return nil
		}
		if !r.Status.Finished {
			active = append(active, r.Name)
		}
	}
	if len(active) > 0 {
		switch ws.Spec.ConcurrencyPolicy {
		case v1alpha1.ConcurrencyForbid:
			st.LastSkipped = fmt.Sprintf("skipped the firing at %s: run %s has not finished (concurrencyPolicy Forbid)",
				d.At.UTC().Format(time.RFC3339), strings.Join(active, ", "))
			s.c.log.Info("WorkflowSchedule started no run", "schedule", client.ObjectKeyFromObject(ws), "reason", st.LastSkipped)
			return nil
		case v1alpha1.ConcurrencyReplace:
			for _, prev := range active {
				op := engine.Operation{Kind: engine.OpTerminate, By: "WorkflowSchedule " + ws.Name, Reason: "replaced by the next scheduled run " + name}
				if _, err := s.c.engine.Operate(ctx, engine.Key{Namespace: ws.Namespace, Name: prev}, op); err != nil &&
					!errors.Is(err, engine.ErrInvalidOperation) && !errors.Is(err, engine.ErrNotFound) {
					return fmt.Errorf("WorkflowSchedule %s/%s: terminate run %s it replaces: %w", ws.Namespace, ws.Name, prev, err)
				}
			}
		}
	}
	if _, err := s.create(ctx, ws, d.At); err != nil {
		return err
	}
	st.LastRun = name
	return nil
}

// create creates the run of the firing at; created is false when it was there already.
func (s *schedules) create(ctx context.Context, ws *v1alpha1.WorkflowSchedule, at time.Time) (created bool, err error) {
	run, err := runFor(ws, at)
	if err != nil {
		return false, err
	}
	if err := controllerutil.SetControllerReference(ws, run, s.c.direct.Scheme()); err != nil {
		return false, err
	}
	err = s.c.direct.Create(ctx, run)
	if apierrors.IsAlreadyExists(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("WorkflowSchedule %s/%s: create run %s: %w", ws.Namespace, ws.Name, run.Name, err)
	}
	s.c.log.Info("WorkflowSchedule started a run", "schedule", client.ObjectKeyFromObject(ws), "run", run.Name, "scheduledTime", at.UTC())
	return true, nil
}

// runFor makes the WorkflowRun of the schedule's firing at: the run template with the
// schedule's label (and its shard's), and scheduledTime in its spec.context.
func runFor(ws *v1alpha1.WorkflowSchedule, at time.Time) (*v1alpha1.WorkflowRun, error) {
	tpl := ws.Spec.RunTemplate.DeepCopy()
	run := &v1alpha1.WorkflowRun{
		ObjectMeta: metav1.ObjectMeta{
			Namespace:   ws.Namespace,
			Name:        schedule.RunName(ws.Name, at),
			Labels:      tpl.Metadata.Labels,
			Annotations: tpl.Metadata.Annotations,
		},
		Spec: tpl.Spec,
	}
	if run.Labels == nil {
		run.Labels = map[string]string{}
	}
	run.Labels[v1alpha1.LabelSchedule] = ws.Name
	if shard, ok := ws.Labels[ShardLabel]; ok {
		run.Labels[ShardLabel] = shard
	}
	c := map[string]any{}
	if run.Spec.Context != nil && len(run.Spec.Context.Raw) > 0 && string(run.Spec.Context.Raw) != "null" {
		if err := json.Unmarshal(run.Spec.Context.Raw, &c); err != nil {
			return nil, fmt.Errorf("context must be an object of keys for the steps' CUE context: %w", err)
		}
	}
	c[v1alpha1.ContextScheduledTime] = at.UTC().Format(time.RFC3339)
	raw, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	run.Spec.Context = &runtime.RawExtension{Raw: raw}
	return run, nil
}

// backfill runs the intervals of spec.backfills not yet in the status, each once, and records
// them there. The runs are named as the firings' own, so an interval done again (its status
// write was lost) creates nothing twice.
func (s *schedules) backfill(ctx context.Context, ws *v1alpha1.WorkflowSchedule, sched schedule.Set, runs []v1alpha1.WorkflowRun, st *v1alpha1.WorkflowScheduleStatus, now time.Time) error {
	for _, b := range ws.Spec.Backfills {
		if slices.ContainsFunc(st.Backfills, func(d v1alpha1.ScheduleBackfillStatus) bool { return d.From.Equal(&b.From) && d.To.Equal(&b.To) }) {
			continue
		}
		done := v1alpha1.ScheduleBackfillStatus{From: b.From, To: b.To}
		var times []time.Time
		var err error
		switch {
		case b.To.Before(&b.From):
			done.Error = fmt.Sprintf("to %s is before from", b.To.UTC().Format(time.RFC3339))
		case b.To.After(now):
			done.Error = fmt.Sprintf("to %s is after the controller's time now (%s): a backfill is of past firings", b.To.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
		default:
			times, err = sched.Between(b.From.Time, b.To.Time, schedule.MaxBackfill)
			if err != nil {
				done.Error = err.Error()
			}
		}
		for _, at := range times {
			created, err := s.create(ctx, ws, at)
			if err != nil {
				return err
			}
			done.Runs++
			if created {
				done.Created++
			}
		}
		st.Backfills = append(st.Backfills, done)
		if done.Error != "" {
			s.c.log.Info("WorkflowSchedule refused a backfill", "schedule", client.ObjectKeyFromObject(ws), "reason", done.Error)
		}
	}
	return nil
}

// writeStatus writes st as ws's status, when it changed, against the resourceVersion read
// (a conflict is retried by the reconciler, which reads the schedule again).
func (s *schedules) writeStatus(ctx context.Context, ws *v1alpha1.WorkflowSchedule, st *v1alpha1.WorkflowScheduleStatus) error {
	if apiequality.Semantic.DeepEqual(&ws.Status, st) {
		return nil
	}
	out := ws.DeepCopy()
	out.Status = *st
	if err := s.c.direct.Status().Update(ctx, out); err != nil {
		return fmt.Errorf("WorkflowSchedule %s/%s: write the status: %w", ws.Namespace, ws.Name, err)
	}
	return nil
}

// setTimer has the schedule reconciled again at next by the engine's Clock, replacing the
// timer set before; a zero next only stops it.
func (s *schedules) setTimer(key types.NamespacedName, next, now time.Time) {
	s.timersMu.Lock()
	defer s.timersMu.Unlock()
	if stop, ok := s.timers[key]; ok {
		stop()
		delete(s.timers, key)
	}
	if next.IsZero() {
		return
	}
	obj := &v1alpha1.WorkflowSchedule{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}
	s.timers[key] = s.c.clock.AfterFunc(next.Sub(now), func() {
		select {
		case s.wake <- event.GenericEvent{Object: obj}:
		case <-s.c.stopped:
		}
	})
}
