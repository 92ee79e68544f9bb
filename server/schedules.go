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

	"github.com/robfig/cron/v3"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
)

// Bounds of a cron trigger.
const (
	// maxSchedules is how many schedules one trigger may have.
	maxSchedules = 20
	// maxBackfill is how many runs one backfill may start.
	maxBackfill = 100
	// maxMissed is how many missed firings one tick of the scheduler counts before it moves
	// the trigger's last firing on and counts again (a minute schedule missed for a week is
	// ten ticks), so that no tick takes unbounded time.
	maxMissed = 1000
)

var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// cronSchedules are a trigger's schedules as one: each time comes round when one of them does.
type cronSchedules []cron.Schedule

// Next is the first time after t that one of the schedules comes round; zero when none does
// (within the five years robfig/cron looks ahead).
func (ss cronSchedules) Next(t time.Time) time.Time {
	var next time.Time
	for _, s := range ss {
		if n := s.Next(t); !n.IsZero() && (next.IsZero() || n.Before(next)) {
			next = n
		}
	}
	return next
}

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
func (t *trigger) schedule() (cronSchedules, error) {
	specs := t.specs()
	if len(specs) == 0 {
		return nil, errors.New("schedule: a cron trigger needs a schedule, or schedules")
	}
	if len(specs) > maxSchedules {
		return nil, fmt.Errorf("schedules: %d, at most %d", len(specs), maxSchedules)
	}
	if t.TimeZone != "" {
		if _, err := time.LoadLocation(t.TimeZone); err != nil {
			return nil, fmt.Errorf("timeZone %q: %w", t.TimeZone, err)
		}
	}
	out := make(cronSchedules, 0, len(specs))
	for i, spec := range specs {
		at := "schedule"
		if len(t.Schedules) > 0 {
			at = fmt.Sprintf("schedules[%d]", i)
		}
		if strings.HasPrefix(strings.TrimSpace(spec), "CRON_TZ=") || strings.HasPrefix(strings.TrimSpace(spec), "TZ=") {
			return nil, fmt.Errorf("%s %q: give the time zone as timeZone", at, spec)
		}
		if t.TimeZone != "" {
			spec = "CRON_TZ=" + t.TimeZone + " " + spec
		}
		s, err := cronParser.Parse(spec)
		if err != nil {
			return nil, fmt.Errorf("%s %q: %w", at, specs[i], err)
		}
		out = append(out, s)
	}
	return out, nil
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

// due is what a tick of the scheduler does with a cron trigger at now.
type due struct {
	// at is the firing to act on; zero when none is due.
	at time.Time
	// start says whether at starts a run; when it does not, skipped says why.
	start   bool
	skipped string
	// again says that the scheduler should look at the trigger again at once (it counted
	// maxMissed firings and has not reached now).
	again bool
}

// dueAt decides what the trigger's schedules make due at now, as a Kubernetes CronJob does:
// of the firings since the last one (or since the trigger was created) up to now, only the
// latest starts a run, and only if it is no later than startingDeadlineSeconds (when set).
func (t *trigger) dueAt(sched cronSchedules, now time.Time) due {
	base := t.LastFire
	if base.IsZero() {
		base = t.Created
	}
	latest := sched.Next(base)
	if latest.IsZero() || latest.After(now) {
		return due{}
	}
	missed := 1
	for {
		later := sched.Next(latest)
		if later.IsZero() || later.After(now) {
			break
		}
		if missed == maxMissed {
			return due{at: latest, skipped: fmt.Sprintf("more than %d firings were missed; only the latest starts a run", maxMissed), again: true}
		}
		latest, missed = later, missed+1
	}
	if d := t.StartingDeadlineSeconds; d != nil && now.Sub(latest) > time.Duration(*d)*time.Second {
		return due{at: latest, skipped: fmt.Sprintf("missed the firing at %s: %s late, past startingDeadlineSeconds (%d)",
			latest.UTC().Format(time.RFC3339), now.Sub(latest).Truncate(time.Second), *d)}
	}
	return due{at: latest, start: true}
}

// scheduledName is the name of the run a trigger of template starts for its firing at: the
// same for a firing and for a backfill of it, so that neither starts it twice.
func scheduledName(template string, at time.Time) string {
	if at.Second() == 0 && at.Nanosecond() == 0 {
		return fmt.Sprintf("%s-%d", template, at.Unix()/60)
	}
	return fmt.Sprintf("%s-%ds", template, at.Unix())
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
	var times []time.Time
	for at := sched.Next(body.From.Add(-time.Nanosecond)); !at.IsZero() && !at.After(body.To); at = sched.Next(at) {
		if len(times) == maxBackfill {
			return errorf(http.StatusBadRequest, "from %s to %s the schedules come round more than %d times: backfill at most %d runs at once, over shorter intervals",
				body.From.Format(time.RFC3339), body.To.Format(time.RFC3339), maxBackfill, maxBackfill)
		}
		times = append(times, at)
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
