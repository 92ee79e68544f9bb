package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/schedule"
)

// specs are the trigger's schedules: Schedules, or the one Schedule.
func (t *trigger) specs() []string {
	if len(t.Schedules) > 0 {
		return t.Schedules
	}
	if t.Schedule != "" {
		return []string{t.Schedule}
	}
	return nil
}

// schedule parses a cron trigger's schedules in its time zone.
func (t *trigger) schedule() (schedule.Set, error) {
	specs := t.specs()
	if len(specs) == 0 {
		return nil, errors.New("schedule: a cron trigger needs a schedule, or schedules")
	}
	if len(specs) > schedule.MaxSchedules {
		return nil, fmt.Errorf("schedules: %d, at most %d", len(specs), schedule.MaxSchedules)
	}
	return schedule.Parse(specs, func(i int) string {
		if len(t.Schedules) > 0 {
			return fmt.Sprintf("schedules[%d]", i)
		}
		return "schedule"
	}, t.TimeZone, "timeZone")
}

// overlapPolicy returns the concurrency policy given (Allow, Forbid, Replace, or the issue's
// lower-case allow, forbid, replace) in its stored form; "" is Allow.
func overlapPolicy(given string) (string, error) {
	switch strings.ToLower(given) {
	case "", "allow":
		return policyAllow, nil
	case "forbid":
		return policyForbid, nil
	case "replace":
		return policyReplace, nil
	}
	return "", fmt.Errorf("concurrencyPolicy %q: want allow, forbid or replace", given)
}

// setCron fills a new cron trigger from the request, and checks it.
func (t *trigger) setCron(body *triggerRequest) error {
	if body.Schedule != "" && len(body.Schedules) > 0 {
		return errorf(http.StatusBadRequest, "give schedule or schedules, not both")
	}
	policy, err := overlapPolicy(body.ConcurrencyPolicy)
	if err != nil {
		return errorf(http.StatusBadRequest, "%v", err)
	}
	if d := body.StartingDeadlineSeconds; d != nil && *d < 0 {
		return errorf(http.StatusBadRequest, "startingDeadlineSeconds %d: want 0 or more", *d)
	}
	t.Schedule, t.Schedules, t.TimeZone = body.Schedule, body.Schedules, body.TimeZone
	t.ConcurrencyPolicy, t.StartingDeadlineSeconds, t.Paused = policy, body.StartingDeadlineSeconds, body.Paused
	if _, err := t.schedule(); err != nil {
		return errorf(http.StatusBadRequest, "%v", err)
	}
	return nil
}

// dueAt decides what the trigger's schedules make due at now, as a Kubernetes CronJob does:
// of the firings since the last one (or since the trigger was created) up to now, only the
// latest starts a run, and only if it is no later than startingDeadlineSeconds (when set).
func (t *trigger) dueAt(sched schedule.Set, now time.Time) schedule.Due {
	base := t.LastFire
	if base.IsZero() {
		base = t.Created
	}
	return sched.DueAt(base, t.StartingDeadlineSeconds, now)
}

// scheduledName is the name of the run a trigger of template starts for its firing at: the
// same for a firing and for a backfill of it, so that neither starts it twice.
func scheduledName(template string, at time.Time) string {
	return schedule.RunName(template, at)
}

// scheduledRun is the run of a trigger's firing at: its context with scheduledTime.
func (s *Server) scheduledRun(ctx context.Context, t *trigger, at time.Time) (*v1alpha1.WorkflowRun, error) {
	c := maps.Clone(t.Context)
	if c == nil {
		c = map[string]any{}
	}
	c[v1alpha1.ContextScheduledTime] = at.UTC().Format(time.RFC3339)
	return s.templateRunObject(ctx, &templateRun{Template: t.Template, Namespace: t.Namespace, Name: scheduledName(t.Template, at), Context: c}, field.NewPath("context"))
}

// cronTrigger reads the cron trigger id, as the caller may see it, with its record's version.
func (s *Server) cronTrigger(ctx context.Context, id string) (*trigger, int64, error) {
	rec, err := s.store.Record(ctx, recordTrigger, id)
	if errors.Is(err, engine.ErrNotFound) {
		return nil, 0, errorf(http.StatusNotFound, "trigger %s: not found", id)
	}
	if err != nil {
		return nil, 0, err
	}
	var t trigger
	if err := decodeRecord(recordTrigger, id, rec.Data, &t); err != nil {
		return nil, 0, err
	}
	if !identityOf(ctx).sees(t.Namespace) {
		return nil, 0, errorf(http.StatusNotFound, "trigger %s: not found", id)
	}
	if t.Type != triggerCron {
		return nil, 0, errorf(http.StatusBadRequest, "trigger %s is a %s trigger: only cron triggers pause and backfill", id, t.Type)
	}
	return &t, rec.Version, nil
}

// pauseTrigger and unpauseTrigger set a cron trigger's paused. A trigger unpaused catches up
// as after a server's downtime: its latest missed firing starts, within its
// startingDeadlineSeconds.
func (s *Server) pauseTrigger(w http.ResponseWriter, r *http.Request) error {
	return s.setPaused(w, r, true)
}

func (s *Server) unpauseTrigger(w http.ResponseWriter, r *http.Request) error {
	return s.setPaused(w, r, false)
}

func (s *Server) setPaused(w http.ResponseWriter, r *http.Request, paused bool) error {
	id := r.PathValue("id")
	// A compare-and-swap, against the scheduler of every server writing the record's
	// firings: tried again when one did meanwhile.
	for range 10 {
		t, version, err := s.cronTrigger(r.Context(), id)
		if err != nil {
			return err
		}
		t.Paused = paused
		data, err := json.Marshal(t)
		if err != nil {
			return err
		}
		_, err = s.store.PutRecord(r.Context(), recordTrigger, id, data, version)
		if errors.Is(err, engine.ErrConflict) {
			continue
		}
		if err != nil {
			return err
		}
		s.crons.poke()
		view, err := s.triggerView(r.Context(), *t)
		if err != nil {
			return err
		}
		send(w, http.StatusOK, view)
		return nil
	}
	return errorf(http.StatusConflict, "trigger %s kept changing: try again", id)
}

// backfillRequest asks for the runs of a cron trigger's firings in [from, to].
type backfillRequest struct {
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
}

// backfillRun is one firing of a backfill and its run.
type backfillRun struct {
	ScheduledTime time.Time `json:"scheduledTime"`
	Namespace     string    `json:"namespace"`
	Name          string    `json:"name"`
	// Existed says that the run was there already (started by the schedule, or by an earlier
	// backfill), and that this backfill started none.
	Existed bool `json:"existed,omitempty"`
}

// backfillAnswer lists a backfill's firings, oldest first.
type backfillAnswer struct {
	Runs []backfillRun `json:"runs"`
}

// backfillTrigger starts a run for each time in [from, to] that the trigger's schedules come
// round, named as the schedule names its runs, so that a firing that has a run (of the
// schedule or of an earlier backfill) gets no second one. Paused or not, whatever its
// concurrency policy: a backfill is asked for.
func (s *Server) backfillTrigger(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	var body backfillRequest
	if err := decodeJSON(r, &body); err != nil {
		return err
	}
	t, _, err := s.cronTrigger(r.Context(), id)
	if err != nil {
		return err
	}
	var errs field.ErrorList
	if body.From.IsZero() {
		errs = append(errs, field.Required(field.NewPath("from"), "the interval's start, RFC 3339"))
	}
	if body.To.IsZero() {
		errs = append(errs, field.Required(field.NewPath("to"), "the interval's end, RFC 3339"))
	}
	now := s.clock.Now()
	if len(errs) == 0 && body.To.Before(body.From) {
		errs = append(errs, field.Invalid(field.NewPath("to"), body.To.Format(time.RFC3339), "before from"))
	}
	if body.To.After(now) {
		errs = append(errs, field.Invalid(field.NewPath("to"), body.To.Format(time.RFC3339), "after the server's time now ("+now.UTC().Format(time.RFC3339)+"): a backfill is of past firings"))
	}
	if len(errs) > 0 {
		return invalidFields(errs)
	}
	sched, err := t.schedule()
	if err != nil {
		return err
	}
	times, err := sched.Between(body.From, body.To, schedule.MaxBackfill)
	if err != nil {
		return errorf(http.StatusBadRequest, "%v", err)
	}
	out := backfillAnswer{Runs: []backfillRun{}}
	for _, at := range times {
		obj, err := s.scheduledRun(r.Context(), t, at)
		if err != nil {
			return err
		}
		item := backfillRun{ScheduledTime: at.UTC(), Namespace: obj.Namespace, Name: obj.Name}
		_, err = s.store.Load(r.Context(), engine.Key{Namespace: obj.Namespace, Name: obj.Name})
		switch {
		case err == nil:
			item.Existed = true
		case !errors.Is(err, engine.ErrNotFound):
			return err
		default:
			_, err = s.createRun(r.Context(), obj, nil)
			var ae *apiError
			if errors.As(err, &ae) && ae.status == http.StatusConflict {
				// Another backfill, or the schedule, created it meanwhile.
				item.Existed, err = true, nil
			}
			if err != nil {
				return fmt.Errorf("the run for %s: %w", at.UTC().Format(time.RFC3339), err)
			}
		}
		out.Runs = append(out.Runs, item)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
