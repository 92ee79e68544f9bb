package server

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
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
	"github.com/stepflow/stepflow/redact"
	"github.com/stepflow/stepflow/schedule"
)

// recordTrigger is the record kind of triggers, keyed by their id.
const recordTrigger = "trigger"

// The trigger types and cron concurrency policies.
const (
	triggerWebhook = "webhook"
	triggerCron    = "cron"

	policyAllow   = "Allow"
	policyForbid  = "Forbid"
	policyReplace = "Replace"
)

// trigger starts runs of a template: on a webhook request, or on a cron schedule.
type trigger struct {
	ID        string         `json:"id"`
	Namespace string         `json:"namespace"`
	Template  string         `json:"template"`
	Type      string         `json:"type"`
	Context   map[string]any `json:"context,omitempty"`
	// Secret authenticates a webhook's requests: as ?token= or as the HMAC key of the
	// signature header. Kept in the store (a signature needs it), never shown after creation.
	Secret string `json:"secret,omitempty"`
	// Schedule is a cron trigger's one schedule, as it was given; Schedules its several (a
	// firing whenever any of them comes round).
	Schedule  string   `json:"schedule,omitempty"`
	Schedules []string `json:"schedules,omitempty"`
	TimeZone  string   `json:"timeZone,omitempty"`
	// ConcurrencyPolicy (Allow, Forbid or Replace) says what a firing does while the run of the
	// last one has not finished.
	ConcurrencyPolicy string `json:"concurrencyPolicy,omitempty"`
	// StartingDeadlineSeconds, when set, is how late a firing missed while no server ran may
	// still start its run; unset, the latest missed firing always starts.
	StartingDeadlineSeconds *int64 `json:"startingDeadlineSeconds,omitempty"`
	// Filter is a cloudevents trigger's CUE expression over context.event: only the events
	// it is true for start a run; "" takes every event.
	Filter string `json:"filter,omitempty"`
	// Paused stops a cron trigger's firings until it is unpaused.
	Paused  bool      `json:"paused,omitempty"`
	Created time.Time `json:"created"`
	// LastFire is the schedule time a cron trigger last came round (kept so that a server
	// started later catches up from it); LastRun the run it started then, and LastError why it
	// could not, or why it started none.
	LastFire  time.Time `json:"lastFire,omitzero"`
	LastRun   string    `json:"lastRun,omitempty"`
	LastError string    `json:"lastError,omitempty"`
	// Starting says that a server claimed the firing at LastFire and has not yet recorded
	// that its run LastRun was created: a server that finds it so (the claimer stopped in
	// between) creates the run, if it is not there, within startingDeadlineSeconds.
	Starting bool `json:"starting,omitempty"`
	// NextFire is when a cron trigger fires next, as listed (not stored).
	NextFire time.Time `json:"nextFire,omitzero"`
}

// public is the trigger as listed: without its secret.
func (t trigger) public() trigger {
	t.Secret = ""
	return t
}

func (s *Server) triggers(ctx context.Context) ([]trigger, []int64, error) {
	recs, err := s.store.Records(ctx, recordTrigger, "")
	if err != nil {
		return nil, nil, err
	}
	out := make([]trigger, 0, len(recs))
	versions := make([]int64, 0, len(recs))
	for _, r := range recs {
		var t trigger
		if err := decodeRecord(recordTrigger, r.Key, r.Data, &t); err != nil {
			return nil, nil, err
		}
		out = append(out, t)
		versions = append(versions, r.Version)
	}
	return out, versions, nil
}

func (s *Server) listTriggers(w http.ResponseWriter, r *http.Request) error {
	ns, name := r.PathValue("namespace"), r.PathValue("name")
	if err := seesOrNotFound(r.Context(), "template", ns, name); err != nil {
		return err
	}
	all, _, err := s.triggers(r.Context())
	if err != nil {
		return err
	}
	items := []json.RawMessage{}
	for _, t := range all {
		if t.Namespace == ns && t.Template == name {
			item, err := s.triggerView(r.Context(), t)
			if err != nil {
				return err
			}
			items = append(items, item)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": items})
	return nil
}

// triggerView is a trigger as the API shows it: without its secret, with when it fires next
// (a cron trigger not paused), and with the values its context gives the template's
// sensitive parameters redacted, as the runs it starts hide them (lastError may quote them
// too).
func (s *Server) triggerView(ctx context.Context, t trigger) ([]byte, error) {
	t = t.public()
	if sched, err := t.schedule(); t.Type == triggerCron && !t.Paused && err == nil {
		base := t.LastFire
		if base.IsZero() {
			base = t.Created
		}
		t.NextFire = sched.Next(base)
	}
	var params []v1alpha1.Parameter
	if wf, err := s.store.Workflow(ctx, t.Namespace, t.Template); err == nil {
		params = wf.Parameters
	}
	item, err := json.Marshal(t)
	if err != nil {
		return nil, err
	}
	return redact.New(redact.Leaves(v1alpha1.SensitiveValues(params, t.Context))...).JSON(item), nil
}

func (s *Server) createTrigger(w http.ResponseWriter, r *http.Request) error {
	ns, name := r.PathValue("namespace"), r.PathValue("name")
	if err := seesOrNotFound(r.Context(), "template", ns, name); err != nil {
		return err
	}
	var body triggerRequest
	if err := decodeJSON(r, &body); err != nil {
		return err
	}
	wf, err := s.store.Workflow(r.Context(), ns, name)
	if err != nil {
		return err
	}
	t := trigger{ID: randomHex(8), Namespace: ns, Template: name, Type: body.Type, Context: body.Context, Created: s.clock.Now().UTC()}
	switch body.Type {
	case triggerWebhook, triggerCloudEvents:
		if body.Schedule != "" || len(body.Schedules) > 0 || body.TimeZone != "" || body.ConcurrencyPolicy != "" || body.StartingDeadlineSeconds != nil || body.Paused {
			return errorf(http.StatusBadRequest, "a %s trigger takes no schedule, schedules, timeZone, concurrencyPolicy, startingDeadlineSeconds or paused", body.Type)
		}
		if body.Filter != "" {
			if body.Type != triggerCloudEvents {
				return errorf(http.StatusBadRequest, "filter: only a cloudevents trigger takes one")
			}
			if err := s.runner.CheckKey(r.Context(), body.Filter); err != nil {
				return errorf(http.StatusBadRequest, "filter: not a CUE expression over context.event: %v", err)
			}
			t.Filter = body.Filter
		}
		t.Secret = randomString(24)
	case triggerCron:
		if body.Filter != "" {
			return errorf(http.StatusBadRequest, "filter: only a cloudevents trigger takes one")
		}
		if err := t.setCron(&body); err != nil {
			return err
		}
		// A schedule's runs get nothing but this context: it must fit the parameters now.
		if _, errs := v1alpha1.ApplyParameters(wf.Parameters, t.Context, field.NewPath("context")); len(errs) > 0 {
			return invalidFields(errs)
		}
	default:
		return errorf(http.StatusBadRequest, "type %q: want webhook, cloudevents or cron", body.Type)
	}
	data, err := json.Marshal(t)
	if err != nil {
		return err
	}
	if _, err := s.store.PutRecord(r.Context(), recordTrigger, t.ID, data, 0); err != nil {
		return err
	}
	s.crons.poke()
	out := triggerCreated{ID: t.ID, Type: t.Type}
	if t.Type == triggerWebhook || t.Type == triggerCloudEvents {
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		out.URL = fmt.Sprintf("%s://%s/api/v1/hooks/%s", scheme, r.Host, t.ID)
		out.Secret = t.Secret
	}
	writeJSON(w, http.StatusCreated, out)
	return nil
}

// updateTrigger changes what a trigger was created with (a cron trigger's schedules, time
// zone, policies, paused and context; a webhook's context; a cloudevents trigger's context
// and filter, none when the body gives none), keeping its id, its secret and,
// for a cron trigger, its last firing: the new schedules fire from there. The type cannot
// change. A compare-and-swap against the schedulers writing the record's firings.
func (s *Server) updateTrigger(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	var body triggerRequest
	if err := decodeJSON(r, &body); err != nil {
		return err
	}
	for range 10 {
		rec, err := s.store.Record(r.Context(), recordTrigger, id)
		if errors.Is(err, engine.ErrNotFound) {
			return errorf(http.StatusNotFound, "trigger %s: not found", id)
		}
		if err != nil {
			return err
		}
		var t trigger
		if err := decodeRecord(recordTrigger, id, rec.Data, &t); err != nil {
			return err
		}
		if err := seesOrNotFound(r.Context(), "trigger", t.Namespace, id); err != nil {
			return err
		}
		if body.Type != "" && body.Type != t.Type {
			return errorf(http.StatusBadRequest, "type %q: trigger %s is a %s trigger, and a trigger's type cannot change (delete it and add another)", body.Type, id, t.Type)
		}
		t.Context = body.Context
		switch t.Type {
		case triggerWebhook, triggerCloudEvents:
			if body.Schedule != "" || len(body.Schedules) > 0 || body.TimeZone != "" || body.ConcurrencyPolicy != "" || body.StartingDeadlineSeconds != nil || body.Paused {
				return errorf(http.StatusBadRequest, "a %s trigger takes no schedule, schedules, timeZone, concurrencyPolicy, startingDeadlineSeconds or paused", t.Type)
			}
			if body.Filter != "" && t.Type != triggerCloudEvents {
				return errorf(http.StatusBadRequest, "filter: only a cloudevents trigger takes one")
			}
			if body.Filter != "" {
				if err := s.runner.CheckKey(r.Context(), body.Filter); err != nil {
					return errorf(http.StatusBadRequest, "filter: not a CUE expression over context.event: %v", err)
				}
			}
			t.Filter = body.Filter
		case triggerCron:
			if body.Filter != "" {
				return errorf(http.StatusBadRequest, "filter: only a cloudevents trigger takes one")
			}
			if err := t.setCron(&body); err != nil {
				return err
			}
			wf, err := s.store.Workflow(r.Context(), t.Namespace, t.Template)
			if err != nil {
				return err
			}
			if _, errs := v1alpha1.ApplyParameters(wf.Parameters, t.Context, field.NewPath("context")); len(errs) > 0 {
				return invalidFields(errs)
			}
			t.LastError = ""
		}
		data, err := json.Marshal(t)
		if err != nil {
			return err
		}
		_, err = s.store.PutRecord(r.Context(), recordTrigger, id, data, rec.Version)
		if errors.Is(err, engine.ErrConflict) {
			continue
		}
		if err != nil {
			return err
		}
		s.crons.poke()
		view, err := s.triggerView(r.Context(), t)
		if err != nil {
			return err
		}
		send(w, http.StatusOK, view)
		return nil
	}
	return errorf(http.StatusConflict, "trigger %s kept changing: try again", id)
}

func (s *Server) deleteTrigger(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	rec, err := s.store.Record(r.Context(), recordTrigger, id)
	if err != nil {
		return err
	}
	var t trigger
	if err := decodeRecord(recordTrigger, id, rec.Data, &t); err != nil {
		return err
	}
	if err := seesOrNotFound(r.Context(), "trigger", t.Namespace, id); err != nil {
		return err
	}
	if err := s.store.DeleteRecord(r.Context(), recordTrigger, id); err != nil {
		return err
	}
	s.crons.poke()
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// deleteTriggersOf deletes the triggers of a template.
func (s *Server) deleteTriggersOf(ctx context.Context, namespace, template string) error {
	all, _, err := s.triggers(ctx)
	if err != nil {
		return err
	}
	for _, t := range all {
		if t.Namespace == namespace && t.Template == template {
			if err := s.store.DeleteRecord(ctx, recordTrigger, t.ID); err != nil && !errors.Is(err, engine.ErrNotFound) {
				return err
			}
		}
	}
	s.crons.poke()
	return nil
}

// webhook starts a run of a webhook trigger's template, its JSON body as the context. A
// request that carries a delivery id, or signs a timestamp, is a delivery: its repeats are
// answered as it was, and start nothing.
func (s *Server) webhook(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	body, err := readBody(r)
	if err != nil {
		return err
	}
	rec, err := s.store.Record(r.Context(), recordTrigger, id)
	if errors.Is(err, engine.ErrNotFound) {
		return errorf(http.StatusUnauthorized, "unknown webhook or bad credentials")
	}
	if err != nil {
		return err
	}
	var t trigger
	if err := decodeRecord(recordTrigger, id, rec.Data, &t); err != nil {
		return err
	}
	ts, timed, err := signedTime(r, s.clock.Now())
	if err != nil {
		return err
	}
	sig, ok := webhookAuthentic(r, body, t.Secret, ts)
	if (t.Type != triggerWebhook && t.Type != triggerCloudEvents) || !ok {
		return errorf(http.StatusUnauthorized, "unknown webhook or bad credentials: give ?token=SECRET or an X-Stepflow-Signature: sha256=HMAC header")
	}
	if t.Type == triggerCloudEvents {
		// A CloudEvent's (source, id) is its delivery.
		return s.cloudEvent(w, r, &t, body)
	}
	delivery, err := deliveryID(r, timed, sig)
	if err != nil {
		return err
	}
	if delivery == "" {
		return s.startFromHook(w, r, &t, body)
	}
	ttl := deliveryTTL
	if timed {
		ttl = timedDeliveryTTL
	}
	first, version, err := s.claimDelivery(r.Context(), t.ID, delivery, ttl)
	if err != nil {
		return err
	}
	if first != nil {
		send(w, first.Status, first.Body)
		return nil
	}
	a := newAnswer()
	if err := s.startFromHook(a, r, &t, body); err != nil {
		s.writeError(a, r, err)
	}
	s.answerDelivery(r.Context(), t.ID, delivery, version, ttl, a)
	send(w, a.status, a.body.Bytes())
	return nil
}

// startFromHook starts the run of an authenticated webhook request and answers 202 with its
// name.
func (s *Server) startFromHook(w http.ResponseWriter, r *http.Request, t *trigger, body []byte) error {
	ctx := maps.Clone(t.Context)
	if ctx == nil {
		ctx = map[string]any{}
	}
	if len(strings.TrimSpace(string(body))) > 0 {
		var given map[string]any
		if err := json.Unmarshal(body, &given); err != nil {
			return errorf(http.StatusBadRequest, "the body must be a JSON object, which becomes the run's context: %v", err)
		}
		maps.Copy(ctx, given)
	}
	obj, err := s.templateRunObject(r.Context(), &templateRun{Template: t.Template, Namespace: t.Namespace, Context: ctx}, field.NewPath("context"))
	if err != nil {
		return err
	}
	run, err := s.createRun(r.Context(), obj, nil)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, runRef{Namespace: run.Object.Namespace, Name: run.Object.Name})
	return nil
}

// webhookAuthentic checks a webhook request's token or signature against the secret, and
// returns the signature it checked. With a timestamp (ts, X-Stepflow-Timestamp), the signature
// is of "TIMESTAMP.BODY", so that the time cannot be changed or left out.
func webhookAuthentic(r *http.Request, body []byte, secret, ts string) ([]byte, bool) {
	if secret == "" {
		return nil, false
	}
	if tok := r.URL.Query().Get("token"); tok != "" {
		return nil, subtle.ConstantTimeCompare([]byte(tok), []byte(secret)) == 1
	}
	sig := r.Header.Get("X-Stepflow-Signature")
	if sig == "" {
		sig = r.Header.Get("X-Hub-Signature-256")
	}
	hexSig, ok := strings.CutPrefix(sig, "sha256=")
	if !ok {
		return nil, false
	}
	got, err := hex.DecodeString(hexSig)
	if err != nil {
		return nil, false
	}
	mac := hmac.New(sha256.New, []byte(secret))
	if ts != "" {
		mac.Write([]byte(ts + "."))
	}
	mac.Write(body)
	return got, hmac.Equal(got, mac.Sum(nil))
}

// scheduler starts the runs of cron triggers, and deletes the expired webhook deliveries every
// pruneEvery. Several servers may share a store: each firing is claimed by a compare-and-swap
// of the trigger's record, so only one starts it.
type scheduler struct {
	s    *Server
	wake chan struct{}
	// pruned is when the expired webhook deliveries were last deleted.
	pruned time.Time
}

func newScheduler(s *Server) *scheduler {
	return &scheduler{s: s, wake: make(chan struct{}, 1)}
}

// poke has the scheduler read the triggers again (one was added or deleted).
func (c *scheduler) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// rescan bounds how long a trigger added by another server goes unnoticed.
const rescan = 30 * time.Second

func (c *scheduler) run(ctx context.Context) error {
	for {
		next := c.tick(ctx)
		now := c.s.clock.Now()
		if now.Sub(c.pruned) >= pruneEvery {
			c.pruned = now
			if err := c.s.pruneDeliveries(ctx); err != nil {
				c.s.log.Error("webhook deliveries", "err", err)
			}
		}
		wait := rescan
		if !next.IsZero() && next.Sub(now) < wait {
			wait = max(next.Sub(now), 0)
		}
		stop := c.s.clock.AfterFunc(wait, c.poke)
		if !next.IsZero() && !c.s.clock.Now().Before(next) {
			// The clock passed the next firing while this tick ran (a test's fake clock
			// moved before the timer was set): tick again.
			c.poke()
		}
		select {
		case <-ctx.Done():
			stop()
			return nil
		case <-c.wake:
			stop()
		}
	}
}

// tick fires the cron triggers that are due and returns when the next one is.
func (c *scheduler) tick(ctx context.Context) time.Time {
	all, versions, err := c.s.triggers(ctx)
	if err != nil {
		c.s.log.Error("read the triggers", "err", err)
		return time.Time{}
	}
	now := c.s.clock.Now()
	var next time.Time
	for i, t := range all {
		if t.Type != triggerCron || t.Paused {
			continue
		}
		if t.Starting {
			if c.finishStarting(ctx, t, versions[i], now) {
				next = now // look at it again, as it is now
			}
			continue
		}
		sched, err := t.schedule()
		if err != nil {
			continue
		}
		d := t.dueAt(sched, now)
		after := t.LastFire
		if !d.At.IsZero() {
			c.fire(ctx, t, versions[i], d)
			after = d.At
		}
		if after.IsZero() {
			after = t.Created
		}
		upcoming := sched.Next(after)
		if d.Again {
			upcoming = now
		}
		if !upcoming.IsZero() && (next.IsZero() || upcoming.Before(next)) {
			next = upcoming
		}
	}
	return next
}

// fire claims a cron trigger's firing d and starts its run, as d and the trigger's
// concurrency policy say.
func (c *scheduler) fire(ctx context.Context, t trigger, version int64, d schedule.Due) {
	s := c.s
	prev := t.LastRun
	name := scheduledName(t.Template, d.At)
	t.LastFire, t.LastError = d.At, d.Skipped
	running := false
	if prev != "" && d.Start {
		if run, err := s.store.Load(ctx, engine.Key{Namespace: t.Namespace, Name: prev}); err == nil && !run.Object.Status.Finished {
			running = true
		}
	}
	start := d.Start && (!running || t.ConcurrencyPolicy != policyForbid)
	t.Starting = start
	if start {
		t.LastRun = name
	} else if d.Start {
		t.LastError = fmt.Sprintf("skipped the firing at %s: run %s has not finished (concurrencyPolicy Forbid)", d.At.UTC().Format(time.RFC3339), prev)
	}
	data, err := json.Marshal(t)
	if err != nil {
		return
	}
	claimed, err := s.store.PutRecord(ctx, recordTrigger, t.ID, data, version)
	if err != nil {
		// Another server claimed it, or the trigger is gone.
		return
	}
	if !start {
		s.log.Info("cron trigger started no run", "trigger", t.ID, "reason", t.LastError)
		return
	}
	if running && t.ConcurrencyPolicy == policyReplace {
		op := engine.Operation{Kind: engine.OpTerminate, By: "trigger " + t.ID, Reason: "replaced by the next scheduled run"}
		if _, err := s.eng.Operate(ctx, engine.Key{Namespace: t.Namespace, Name: prev}, op); err != nil && !errors.Is(err, engine.ErrInvalidOperation) {
			s.log.Error("cron trigger: terminate the last run", "trigger", t.ID, "run", prev, "err", err)
		}
	}
	obj, err := s.scheduledRun(ctx, &t, d.At)
	if err == nil {
		_, err = s.createRun(ctx, obj, nil)
	}
	if err != nil {
		s.log.Error("cron trigger: start a run", "trigger", t.ID, "run", name, "err", err)
		c.recordError(ctx, t.ID, err)
		return
	}
	// Started: the record says so (a conflict, the trigger changed meanwhile, leaves it to
	// the next tick, which finds the run).
	t.Starting = false
	if data, err := json.Marshal(t); err == nil {
		_, _ = s.store.PutRecord(ctx, recordTrigger, t.ID, data, claimed)
	}
}

// finishStarting takes up a firing a server claimed without recording that its run was
// created: it creates the run unless it exists (named after the firing, so never twice) or
// the firing is past the trigger's startingDeadlineSeconds, and records it. It says whether
// it wrote the record.
func (c *scheduler) finishStarting(ctx context.Context, t trigger, version int64, now time.Time) bool {
	s := c.s
	t.Starting = false
	if d := t.StartingDeadlineSeconds; d != nil && now.Sub(t.LastFire) > time.Duration(*d)*time.Second {
		t.LastError = fmt.Sprintf("the run of the firing at %s was not started, and it is now past startingDeadlineSeconds (%d)", t.LastFire.UTC().Format(time.RFC3339), *d)
	} else {
		obj, err := s.scheduledRun(ctx, &t, t.LastFire)
		if err == nil {
			_, err = s.store.Load(ctx, engine.Key{Namespace: obj.Namespace, Name: obj.Name})
			if errors.Is(err, engine.ErrNotFound) {
				_, err = s.createRun(ctx, obj, nil)
				var ae *apiError
				if errors.As(err, &ae) && ae.status == http.StatusConflict {
					err = nil // another server created it meanwhile
				}
			}
		}
		if err != nil {
			var ae *apiError
			if !errors.As(err, &ae) || ae.status >= http.StatusInternalServerError {
				// The store or the checks did not answer: try again at a later tick.
				s.log.Error("cron trigger: start a claimed run", "trigger", t.ID, "run", t.LastRun, "err", err)
				return false
			}
			t.LastError = err.Error()
		}
	}
	data, err := json.Marshal(t)
	if err != nil {
		return false
	}
	_, err = s.store.PutRecord(ctx, recordTrigger, t.ID, data, version)
	return err == nil
}

// recordError keeps why a cron trigger could not start its run, for the API to show.
func (c *scheduler) recordError(ctx context.Context, id string, cause error) {
	rec, err := c.s.store.Record(ctx, recordTrigger, id)
	if err != nil {
		return
	}
	var t trigger
	if decodeRecord(recordTrigger, id, rec.Data, &t) != nil {
		return
	}
	t.LastError, t.Starting = cause.Error(), false
	if data, err := json.Marshal(t); err == nil {
		_, _ = c.s.store.PutRecord(ctx, recordTrigger, id, data, rec.Version)
	}
}
