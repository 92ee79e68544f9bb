package server_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/server"
	"github.com/stepflow/stepflow/server/servertest"
)

// retentionRun is a run of one quick step; spec is what its spec adds.
func retentionRun(name, spec string) string {
	return fmt.Sprintf(`
apiVersion: core.oam.dev/v1alpha1
kind: WorkflowRun
metadata: {name: %s}
spec:
  %s`, name, spec)
}

// Finished runs are deleted with their logs once their retention has passed: a run's own
// ttlSecondsAfterFinished, its template's, or the server's default; the API says when
// (stepflow.expiresAt). Before, every run and its log stayed for ever.
func TestFinishedRunsAreDeletedAfterTheirRetention(t *testing.T) {
	clock := engine.NewFakeClock(time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC))
	srv := servertest.Start(t, servertest.Options{Clock: clock, Configure: func(o *server.Options) {
		o.Assembly.Retention = engine.Retention{TTL: 24 * time.Hour}
	}})
	op := caller{t: t, base: srv.URL, token: srv.Token(t, "operator")}
	admin := caller{t: t, base: srv.URL, token: srv.Token(t, "admin")}
	admin.postYAML("/api/v1/templates", `
apiVersion: core.oam.dev/v1alpha1
kind: Workflow
metadata: {name: hourly}
ttlSecondsAfterFinished: 3600
steps:
- {name: hello, type: print-message-in-status, properties: {message: hi}}
`).want(t, http.StatusCreated)
	inline := "workflowSpec: {steps: [{name: hello, type: print-message-in-status, properties: {message: hi}}]}"
	expires := map[string]string{
		"from-template": "2026-03-01T11:00:00Z",
		"by-default":    "2026-03-02T10:00:00Z",
		"at-once":       "2026-03-01T10:00:00Z",
	}
	for name, spec := range map[string]string{
		"from-template": "workflowRef: hourly",
		"by-default":    inline,
		"at-once":       "ttlSecondsAfterFinished: 0\n  " + inline,
	} {
		r := op.postYAML("/api/v1/runs?wait=30s", retentionRun(name, spec)).want(t, http.StatusOK).json(t)
		if at(r, "status.status") != "succeeded" || at(r, "stepflow.expiresAt") != expires[name] {
			t.Errorf("run %s: %v, expires at %v, want %s", name, at(r, "status.status"), at(r, "stepflow.expiresAt"), expires[name])
		}
	}
	r := op.postYAML("/api/v1/runs", retentionRun("negative", "ttlSecondsAfterFinished: -1\n  "+inline)).want(t, http.StatusBadRequest)
	if _, ok := r.problems(t)["spec.ttlSecondsAfterFinished"]; !ok {
		t.Errorf("a negative TTL: %s", r.body)
	}

	gone := func(name string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for op.get("/api/v1/runs/default/"+name).status != http.StatusNotFound {
			if time.Now().After(deadline) {
				t.Fatalf("run %s was not deleted", name)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if logs, err := srv.Store.Logs(context.Background(), engine.Key{Namespace: "default", Name: name}, ""); err != nil || len(logs) != 0 {
			t.Errorf("run %s's log: %d entries, %v", name, len(logs), err)
		}
	}
	kept := func(names ...string) {
		t.Helper()
		for _, name := range names {
			op.get("/api/v1/runs/default/"+name).want(t, http.StatusOK)
		}
	}
	clock.Advance(time.Minute)
	gone("at-once")
	kept("from-template", "by-default")
	clock.Advance(time.Hour)
	gone("from-template")
	kept("by-default")
	clock.Advance(24 * time.Hour)
	gone("by-default")
}
