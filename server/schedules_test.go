package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/server"
	"github.com/stepflow/stepflow/server/servertest"
	"github.com/stepflow/stepflow/store/postgres"
	"github.com/stepflow/stepflow/store/sqlite"
)

// gateTemplate is a template whose runs wait for approval: a run that has not finished.
func gateTemplate(name string) string {
	gate := strings.Replace(strings.Replace(approvalRun, "WorkflowRun", "Workflow", 1), "metadata: {name: gated}\nspec:\n  workflowSpec:\n", "metadata: {name: "+name+"}\n", 1)
	return strings.ReplaceAll(gate, "\n    ", "\n")
}

// runsOf lists the runs of a template, oldest first, as name → the run's scheduledTime.
func runsOf(t *testing.T, c caller, template string) map[string]string {
	t.Helper()
	out := map[string]string{}
	items, _ := c.get("/api/v1/runs?template="+template).want(t, http.StatusOK).json(t)["items"].([]any)
	for _, it := range items {
		name := at(it, "name").(string)
		run := c.get("/api/v1/runs/default/"+name).want(t, http.StatusOK).json(t)
		st, _ := at(run, "spec.context.scheduledTime").(string)
		out[name] = st
	}
	return out
}

// waitRunsOf waits until the template has n runs and returns their scheduled times, sorted.
func waitRunsOf(t *testing.T, c caller, template string, n int) []string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		runs := runsOf(t, c, template)
		if len(runs) == n {
			var times []string
			for _, st := range runs {
				times = append(times, st)
			}
			sort.Strings(times)
			return times
		}
		if len(runs) > n || time.Now().After(deadline) {
			t.Fatalf("%s has %d runs, want %d: %v", template, len(runs), n, runs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stillRunsOf checks, after a moment, that the template has n runs: that a firing started
// none.
func stillRunsOf(t *testing.T, c caller, template string, n int) {
	t.Helper()
	time.Sleep(300 * time.Millisecond)
	if runs := runsOf(t, c, template); len(runs) != n {
		t.Fatalf("%s has %d runs, want %d: %v", template, len(runs), n, runs)
	}
}

// triggerOf is the template's one trigger as listed.
func triggerOf(t *testing.T, c caller, template string) map[string]any {
	t.Helper()
	items := c.get("/api/v1/templates/default/"+template+"/triggers").want(t, http.StatusOK).json(t)
	tr, _ := at(items, "items.0").(map[string]any)
	if tr == nil {
		t.Fatalf("%s has no trigger: %v", template, items)
	}
	return tr
}

// Several schedules in a time zone: a run whenever one comes round, with its scheduledTime in
// the context, checked against the template's parameters.
func TestCronSchedulesInATimeZone(t *testing.T) {
	clock := engine.NewFakeClock(time.Date(2026, 3, 2, 7, 0, 0, 0, time.UTC)) // 08:00 in Paris
	_, op, admin := start(t, servertest.Options{Clock: clock})
	admin.postYAML("/api/v1/templates", deployTemplate).want(t, http.StatusCreated)
	base := map[string]any{"type": "cron", "context": map[string]any{"image": "nginx"}, "timeZone": "Europe/Paris"}
	with := func(kv ...any) map[string]any {
		m := maps.Clone(base)
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	for _, bad := range []map[string]any{
		with("schedules", []string{"0 9 * * *", "every evening"}),
		with("schedule", "0 9 * * *", "schedules", []string{"30 17 * * *"}),
		with("schedules", []string{"CRON_TZ=UTC 0 9 * * *"}),
		with("schedules", []string{}),
		with("schedules", []string{"0 9 * * *"}, "timeZone", "Mars/Olympus"),
		with("schedules", []string{"0 9 * * *"}, "concurrencyPolicy", "sometimes"),
		with("schedules", []string{"0 9 * * *"}, "startingDeadlineSeconds", -1),
	} {
		admin.postJSON("/api/v1/templates/default/deploy/triggers", bad).want(t, http.StatusBadRequest)
	}
	admin.postJSON("/api/v1/templates/default/deploy/triggers", map[string]any{"type": "webhook", "paused": true}).want(t, http.StatusBadRequest)
	admin.postJSON("/api/v1/templates/default/deploy/triggers", with("schedules", []string{"0 9 * * 1-5", "30 17 * * *"}, "concurrencyPolicy", "forbid")).
		want(t, http.StatusCreated)
	tr := triggerOf(t, op, "deploy")
	if tr["concurrencyPolicy"] != "Forbid" || tr["nextFire"] != "2026-03-02T08:00:00Z" {
		t.Errorf("trigger as listed: %v", tr)
	}

	clock.Advance(time.Hour) // 09:00 in Paris, 08:00 UTC
	if got := waitRunsOf(t, op, "deploy", 1); got[0] != "2026-03-02T08:00:00Z" {
		t.Errorf("scheduled times %v", got)
	}
	// The policy is forbid: the next firing starts only once this run has finished.
	for name := range runsOf(t, op, "deploy") {
		waitPhase(t, op, "default/"+name, "succeeded")
	}
	clock.Advance(8*time.Hour + 30*time.Minute) // 17:30 in Paris
	if got := waitRunsOf(t, op, "deploy", 2); got[1] != "2026-03-02T16:30:00Z" {
		t.Errorf("scheduled times %v", got)
	}
	names := runsOf(t, op, "deploy")
	if _, ok := names[fmt.Sprintf("deploy-%d", time.Date(2026, 3, 2, 16, 30, 0, 0, time.UTC).Unix()/60)]; !ok {
		t.Errorf("runs are not named after their firing's minute: %v", names)
	}
}

// A server started after others stopped catches up the latest firing missed meanwhile,
// within the trigger's startingDeadlineSeconds, and not beyond; a trigger without one always
// catches up.
func TestCronCatchUpAfterARestart(t *testing.T) {
	clock := engine.NewFakeClock(time.Date(2026, 3, 1, 10, 0, 30, 0, time.UTC))
	st, err := sqlite.Open(context.Background(), sqlite.Options{Path: filepath.Join(t.TempDir(), "stepflow.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	serve := func(t *testing.T) caller {
		srv := servertest.Start(t, servertest.Options{Store: st, Clock: clock})
		return caller{t: t, base: srv.URL, token: srv.Token(t, "admin")}
	}
	t.Run("create", func(t *testing.T) {
		admin := serve(t)
		for _, name := range []string{"deadline", "always"} {
			admin.postYAML("/api/v1/templates", strings.Replace(deployTemplate, "name: deploy", "name: "+name, 1)).want(t, http.StatusCreated)
		}
		hourly := map[string]any{"type": "cron", "schedule": "@hourly", "context": map[string]any{"image": "nginx"}}
		admin.postJSON("/api/v1/templates/default/always/triggers", hourly).want(t, http.StatusCreated)
		hourly["startingDeadlineSeconds"] = 600
		admin.postJSON("/api/v1/templates/default/deadline/triggers", hourly).want(t, http.StatusCreated)
	})
	// Down over 11:00, 12:00 and 13:00; up at 13:05.
	clock.Advance(3*time.Hour + 4*time.Minute + 30*time.Second)
	t.Run("within the deadline", func(t *testing.T) {
		c := serve(t)
		for _, name := range []string{"deadline", "always"} {
			if got := waitRunsOf(t, c, name, 1); got[0] != "2026-03-01T13:00:00Z" {
				t.Errorf("%s caught up %v, want the latest missed firing only", name, got)
			}
			if tr := triggerOf(t, c, name); tr["lastFire"] != "2026-03-01T13:00:00Z" || tr["lastError"] != nil {
				t.Errorf("%s: %v", name, tr)
			}
		}
	})
	// Down over 14:00 and 15:00; up at 15:20, 20 minutes past the last firing.
	clock.Advance(2*time.Hour + 15*time.Minute)
	t.Run("beyond the deadline", func(t *testing.T) {
		c := serve(t)
		if got := waitRunsOf(t, c, "always", 2); got[1] != "2026-03-01T15:00:00Z" {
			t.Errorf("always caught up %v", got)
		}
		stillRunsOf(t, c, "deadline", 1)
		tr := triggerOf(t, c, "deadline")
		if tr["lastFire"] != "2026-03-01T15:00:00Z" || !strings.Contains(fmt.Sprint(tr["lastError"]), "past startingDeadlineSeconds") {
			t.Errorf("deadline: %v", tr)
		}
		// The next firing, on time, starts its run.
		clock.Advance(40 * time.Minute)
		if got := waitRunsOf(t, c, "deadline", 2); got[1] != "2026-03-01T16:00:00Z" {
			t.Errorf("deadline's next firing %v", got)
		}
	})
}

// replace terminates the last run that has not finished and starts the next.
func TestCronReplace(t *testing.T) {
	clock := engine.NewFakeClock(time.Date(2026, 3, 1, 10, 0, 30, 0, time.UTC))
	_, op, admin := start(t, servertest.Options{Clock: clock})
	admin.postYAML("/api/v1/templates", gateTemplate("gate")).want(t, http.StatusCreated)
	admin.postJSON("/api/v1/templates/default/gate/triggers", map[string]any{"type": "cron", "schedule": "* * * * *", "concurrencyPolicy": "replace"}).want(t, http.StatusCreated)
	clock.Advance(time.Minute)
	waitRunsOf(t, op, "gate", 1)
	first := fmt.Sprintf("gate-%d", time.Date(2026, 3, 1, 10, 1, 0, 0, time.UTC).Unix()/60)
	waitPhase(t, op, "default/"+first, "suspending")
	clock.Advance(time.Minute)
	waitRunsOf(t, op, "gate", 2)
	waitPhase(t, op, "default/"+first, "terminated")
	second := fmt.Sprintf("gate-%d", time.Date(2026, 3, 1, 10, 2, 0, 0, time.UTC).Unix()/60)
	waitPhase(t, op, "default/"+second, "suspending")
}

// A paused trigger fires no more; unpaused, it catches up its latest missed firing within its
// startingDeadlineSeconds, as after a restart.
func TestCronPause(t *testing.T) {
	clock := engine.NewFakeClock(time.Date(2026, 3, 1, 10, 0, 30, 0, time.UTC))
	srv, op, admin := start(t, servertest.Options{Clock: clock})
	viewer := caller{t: t, base: srv.URL, token: srv.Token(t, "viewer")}
	admin.postYAML("/api/v1/templates", deployTemplate).want(t, http.StatusCreated)
	tr := admin.postJSON("/api/v1/templates/default/deploy/triggers", map[string]any{
		"type": "cron", "schedule": "*/10 * * * *", "startingDeadlineSeconds": 300, "context": map[string]any{"image": "nginx"},
	}).want(t, http.StatusCreated).json(t)
	id := tr["id"].(string)
	hook := admin.postJSON("/api/v1/templates/default/deploy/triggers", map[string]any{"type": "webhook"}).want(t, http.StatusCreated).json(t)
	op.postJSON("/api/v1/triggers/"+hook["id"].(string)+"/pause", nil).want(t, http.StatusBadRequest)
	viewer.postJSON("/api/v1/triggers/"+id+"/pause", nil).want(t, http.StatusForbidden)
	op.postJSON("/api/v1/triggers/nope/pause", nil).want(t, http.StatusNotFound)
	// An operator of another namespace does not see it.
	elsewhere := caller{t: t, base: srv.URL, token: srv.Token(t, "operator", "elsewhere")}
	elsewhere.postJSON("/api/v1/triggers/"+id+"/pause", nil).want(t, http.StatusNotFound)
	elsewhere.postJSON("/api/v1/triggers/"+id+"/backfill", map[string]any{"from": "2026-03-01T09:00:00Z", "to": "2026-03-01T10:00:00Z"}).want(t, http.StatusNotFound)

	paused := op.postJSON("/api/v1/triggers/"+id+"/pause", nil).want(t, http.StatusOK).json(t)
	if paused["paused"] != true || paused["nextFire"] != nil {
		t.Errorf("paused trigger: %v", paused)
	}
	clock.Advance(10 * time.Minute) // 10:10:30
	stillRunsOf(t, op, "deploy", 0)
	clock.Advance(10 * time.Minute) // 10:20:30: 10:20 missed by 30 s
	stillRunsOf(t, op, "deploy", 0)
	unpaused := op.postJSON("/api/v1/triggers/"+id+"/unpause", nil).want(t, http.StatusOK).json(t)
	if unpaused["paused"] != nil {
		t.Errorf("unpaused trigger: %v", unpaused)
	}
	if got := waitRunsOf(t, op, "deploy", 1); got[0] != "2026-03-01T10:20:00Z" {
		t.Errorf("caught up %v, want the latest firing missed while paused", got)
	}
	clock.Advance(10 * time.Minute)
	waitRunsOf(t, op, "deploy", 2)
}

// A backfill starts one run per firing in [from, to], named as the schedule names them, so
// that a repeated or overlapping backfill, or one over firings the schedule ran, starts no
// duplicate; its bounds are clear errors.
func TestCronBackfill(t *testing.T) {
	clock := engine.NewFakeClock(time.Date(2026, 3, 1, 10, 0, 30, 0, time.UTC))
	srv, op, admin := start(t, servertest.Options{Clock: clock})
	viewer := caller{t: t, base: srv.URL, token: srv.Token(t, "viewer")}
	admin.postYAML("/api/v1/templates", deployTemplate).want(t, http.StatusCreated)
	tr := admin.postJSON("/api/v1/templates/default/deploy/triggers", map[string]any{
		"type": "cron", "schedules": []string{"0 * * * *", "30 9 * * *"}, "paused": true, "context": map[string]any{"image": "nginx"},
	}).want(t, http.StatusCreated).json(t)
	path := "/api/v1/triggers/" + tr["id"].(string) + "/backfill"
	interval := func(from, to string) map[string]any { return map[string]any{"from": from, "to": to} }

	viewer.postJSON(path, interval("2026-03-01T07:00:00Z", "2026-03-01T10:00:00Z")).want(t, http.StatusForbidden)
	for _, bad := range []map[string]any{
		interval("2026-03-01T09:00:00Z", "2026-03-01T08:00:00Z"), // to before from
		interval("2026-03-01T09:00:00Z", "2026-03-01T11:00:00Z"), // to in the future
		interval("2026-02-20T00:00:00Z", "2026-03-01T10:00:00Z"), // past the bound
		{"from": "2026-03-01T09:00:00Z"},
		{"from": "yesterday", "to": "2026-03-01T10:00:00Z"},
	} {
		op.postJSON(path, bad).want(t, http.StatusBadRequest)
	}
	if got := runsOf(t, op, "deploy"); len(got) != 0 {
		t.Fatalf("a refused backfill started runs: %v", got)
	}

	ans := op.postJSON(path, interval("2026-03-01T08:00:00Z", "2026-03-01T10:00:00Z")).want(t, http.StatusOK).json(t)
	want := []string{"2026-03-01T08:00:00Z", "2026-03-01T09:00:00Z", "2026-03-01T09:30:00Z", "2026-03-01T10:00:00Z"}
	items, _ := ans["runs"].([]any)
	if len(items) != len(want) {
		t.Fatalf("backfill answered %v, want %v", ans, want)
	}
	for i, w := range want {
		at0, _ := time.Parse(time.RFC3339, w)
		if at(items[i], "scheduledTime") != w || at(items[i], "name") != fmt.Sprintf("deploy-%d", at0.Unix()/60) || at(items[i], "existed") != nil {
			t.Errorf("run %d: %v, want %s", i, items[i], w)
		}
	}
	if got := waitRunsOf(t, op, "deploy", 4); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("runs' scheduled times %v, want %v", got, want)
	}

	// Again, overlapping: only 07:00 is new.
	ans = op.postJSON(path, interval("2026-03-01T07:00:00Z", "2026-03-01T09:00:00Z")).want(t, http.StatusOK).json(t)
	if at(ans, "runs.0.existed") != nil || at(ans, "runs.1.existed") != true || at(ans, "runs.2.existed") != true {
		t.Errorf("overlapping backfill: %v", ans)
	}
	waitRunsOf(t, op, "deploy", 5)
	op.postJSON(path, interval("2026-03-01T07:00:00Z", "2026-03-01T10:00:00Z")).want(t, http.StatusOK)
	stillRunsOf(t, op, "deploy", 5)

	// A firing the schedule ran is not backfilled again.
	op.postJSON("/api/v1/triggers/"+tr["id"].(string)+"/unpause", nil).want(t, http.StatusOK)
	clock.Advance(time.Hour) // 11:00:30
	waitRunsOf(t, op, "deploy", 6)
	ans = op.postJSON(path, interval("2026-03-01T10:30:00Z", "2026-03-01T11:00:00Z")).want(t, http.StatusOK).json(t)
	if at(ans, "runs.0.scheduledTime") != "2026-03-01T11:00:00Z" || at(ans, "runs.0.existed") != true {
		t.Errorf("backfill over a scheduled firing: %v", ans)
	}
	stillRunsOf(t, op, "deploy", 6)
}

// Two servers on one PostgreSQL, on one clock: each firing starts one run, whichever server
// claims it.
func TestCronFiresOnceWithReplicas(t *testing.T) {
	if pg == nil {
		t.Skip("-short: no PostgreSQL")
	}
	url := pg.NewDatabase(t)
	clock := engine.NewFakeClock(time.Date(2026, 3, 1, 10, 0, 30, 0, time.UTC))
	var callers []caller
	for _, name := range []string{"a", "b"} {
		st, err := postgres.Open(context.Background(), postgres.Options{URL: url, Replica: name})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		leases, err := st.Leases(postgres.LeaseOptions{TTL: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		srv := servertest.Start(t, servertest.Options{Store: st, Clock: clock, Configure: func(o *server.Options) { o.Replicas = leases }})
		callers = append(callers, caller{t: t, base: srv.URL, token: srv.Token(t, "admin")})
	}
	a, b := callers[0], callers[1]
	a.postYAML("/api/v1/templates", deployTemplate).want(t, http.StatusCreated)
	b.postJSON("/api/v1/templates/default/deploy/triggers", map[string]any{
		"type": "cron", "schedule": "* * * * *", "context": map[string]any{"image": "nginx"},
	}).want(t, http.StatusCreated)
	for i := 1; i <= 5; i++ {
		clock.Advance(time.Minute)
		waitRunsOf(t, a, "deploy", i)
	}
	stillRunsOf(t, b, "deploy", 5)
}

// A server that claimed a firing and stopped before it created the run leaves the trigger's
// record saying so: the next server creates that run (within the deadline) and only once.
func TestCronClaimedFiringSurvivesACrash(t *testing.T) {
	clock := engine.NewFakeClock(time.Date(2026, 3, 1, 10, 0, 30, 0, time.UTC))
	st, err := sqlite.Open(context.Background(), sqlite.Options{Path: filepath.Join(t.TempDir(), "stepflow.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	serve := func(t *testing.T) caller {
		srv := servertest.Start(t, servertest.Options{Store: st, Clock: clock})
		return caller{t: t, base: srv.URL, token: srv.Token(t, "admin")}
	}
	ids := map[string]string{}
	t.Run("create", func(t *testing.T) {
		admin := serve(t)
		for _, name := range []string{"soon", "late"} {
			admin.postYAML("/api/v1/templates", strings.Replace(deployTemplate, "name: deploy", "name: "+name, 1)).want(t, http.StatusCreated)
			tr := admin.postJSON("/api/v1/templates/default/"+name+"/triggers", map[string]any{
				"type": "cron", "schedule": "@hourly", "startingDeadlineSeconds": 600, "context": map[string]any{"image": "nginx"},
			}).want(t, http.StatusCreated).json(t)
			ids[name] = tr["id"].(string)
		}
	})
	// What a server leaves when it stops between its claim of 11:00 and the run's creation:
	// the stand-in for that crash is the record written as fire writes it.
	claim := func(template string) {
		rec, err := st.Record(t.Context(), "trigger", ids[template])
		if err != nil {
			t.Fatal(err)
		}
		var tr map[string]any
		if err := json.Unmarshal(rec.Data, &tr); err != nil {
			t.Fatal(err)
		}
		fire := time.Date(2026, 3, 1, 11, 0, 0, 0, time.UTC)
		tr["lastFire"], tr["lastRun"], tr["starting"] = fire, fmt.Sprintf("%s-%d", template, fire.Unix()/60), true
		data, _ := json.Marshal(tr)
		if _, err := st.PutRecord(t.Context(), "trigger", ids[template], data, rec.Version); err != nil {
			t.Fatal(err)
		}
	}
	claim("soon")
	claim("late")
	clock.Advance(time.Hour + 4*time.Minute) // 11:04:30, 4.5 minutes after the claimed firing
	t.Run("within the deadline", func(t *testing.T) {
		c := serve(t)
		if got := waitRunsOf(t, c, "soon", 1); got[0] != "2026-03-01T11:00:00Z" {
			t.Errorf("the claimed firing's run: %v", got)
		}
		waitRunsOf(t, c, "late", 1)
		if tr := triggerOf(t, c, "soon"); tr["starting"] != nil {
			t.Errorf("the record still says starting: %v", tr)
		}
	})
	// late's run went; claimed again, and found 20 minutes later, past its deadline.
	if err := st.Delete(t.Context(), engine.Key{Namespace: "default", Name: fmt.Sprintf("late-%d", time.Date(2026, 3, 1, 11, 0, 0, 0, time.UTC).Unix()/60)}); err != nil {
		t.Fatal(err)
	}
	claim("late")
	clock.Advance(16 * time.Minute) // 11:20:30
	t.Run("beyond the deadline", func(t *testing.T) {
		c := serve(t)
		stillRunsOf(t, c, "late", 0)
		stillRunsOf(t, c, "soon", 1)
		if tr := triggerOf(t, c, "late"); tr["starting"] != nil || !strings.Contains(fmt.Sprint(tr["lastError"]), "past startingDeadlineSeconds") {
			t.Errorf("late: %v", tr)
		}
	})
}

// A trigger changed in place keeps its id, its secret and its last firing: a cron trigger's
// new schedules fire from its last firing, a webhook's new context reaches the runs its old
// URL and secret start. Its type cannot change; viewers and other namespaces cannot change it.
func TestTriggerUpdate(t *testing.T) {
	clock := engine.NewFakeClock(time.Date(2026, 3, 1, 10, 0, 30, 0, time.UTC))
	srv, op, admin := start(t, servertest.Options{Clock: clock})
	admin.postYAML("/api/v1/templates", deployTemplate).want(t, http.StatusCreated)
	put := func(c caller, id string, v any) reply {
		b, _ := json.Marshal(v)
		return c.do(http.MethodPut, "/api/v1/triggers/"+id, "application/json", b)
	}
	cron := admin.postJSON("/api/v1/templates/default/deploy/triggers", map[string]any{
		"type": "cron", "schedule": "*/10 * * * *", "context": map[string]any{"image": "nginx"},
	}).want(t, http.StatusCreated).json(t)
	id := cron["id"].(string)
	clock.Advance(10 * time.Minute) // 10:10:30: fires 10:10
	waitRunsOf(t, op, "deploy", 1)

	put(op, id, map[string]any{"type": "cron", "schedule": "0 * * * *"}).want(t, http.StatusForbidden)
	elsewhere := caller{t: t, base: srv.URL, token: srv.Token(t, "admin", "elsewhere")}
	put(elsewhere, id, map[string]any{"type": "cron", "schedule": "0 * * * *"}).want(t, http.StatusNotFound)
	put(admin, id, map[string]any{"type": "webhook"}).want(t, http.StatusBadRequest)
	put(admin, id, map[string]any{"type": "cron", "schedules": []string{"every hour"}}).want(t, http.StatusBadRequest)
	put(admin, id, map[string]any{"type": "cron", "schedule": "0 * * * *", "context": map[string]any{"image": 3}}).want(t, http.StatusBadRequest)
	got := put(admin, id, map[string]any{
		"schedules": []string{"15 * * * *", "45 * * * *"}, "concurrencyPolicy": "forbid", "context": map[string]any{"image": "caddy"},
	}).want(t, http.StatusOK).json(t)
	if got["id"] != id || got["lastFire"] != "2026-03-01T10:10:00Z" || got["nextFire"] != "2026-03-01T10:15:00Z" || got["concurrencyPolicy"] != "Forbid" {
		t.Errorf("changed trigger: %v", got)
	}
	clock.Advance(5 * time.Minute) // 10:15:30
	runs := runsOf(t, op, "deploy")
	deadline := time.Now().Add(20 * time.Second)
	for len(runs) < 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		runs = runsOf(t, op, "deploy")
	}
	name := fmt.Sprintf("deploy-%d", time.Date(2026, 3, 1, 10, 15, 0, 0, time.UTC).Unix()/60)
	if _, ok := runs[name]; !ok {
		t.Fatalf("no run %s of the new schedule: %v", name, runs)
	}
	if img := at(op.get("/api/v1/runs/default/"+name).want(t, http.StatusOK).json(t), "spec.context.image"); img != "caddy" {
		t.Errorf("the new schedule's run has image %v, want the new context's caddy", img)
	}

	hook := admin.postJSON("/api/v1/templates/default/deploy/triggers", map[string]any{"type": "webhook", "context": map[string]any{"env": "staging"}}).
		want(t, http.StatusCreated).json(t)
	put(admin, hook["id"].(string), map[string]any{"type": "webhook", "schedule": "0 * * * *"}).want(t, http.StatusBadRequest)
	put(admin, hook["id"].(string), map[string]any{"context": map[string]any{"env": "prod"}}).want(t, http.StatusOK)
	_, rest, _ := strings.Cut(hook["url"].(string), "/api/")
	anon := caller{t: t, base: op.base}
	started := anon.do("POST", "/api/"+rest+"?token="+hook["secret"].(string), "application/json", []byte(`{"image": "app:7"}`)).want(t, http.StatusAccepted).json(t)
	if env := at(op.get("/api/v1/runs/default/"+at(started, "name").(string)).want(t, http.StatusOK).json(t), "spec.context.env"); env != "prod" {
		t.Errorf("the webhook's run has env %v, want the changed context's prod", env)
	}
	put(admin, "nope", map[string]any{"type": "cron", "schedule": "0 * * * *"}).want(t, http.StatusNotFound)
}
