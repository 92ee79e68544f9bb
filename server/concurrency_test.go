package server_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/server/servertest"
)

// Through the API: a second run of a template with a concurrency key of limit 1 shows phase
// queued with the key and its place; once the first is deleted (terminated first, or its slot
// given up by the server's sweep) it starts.
func TestConcurrencyKeyQueuesThroughTheAPI(t *testing.T) {
	clock := engine.NewFakeClock(time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC))
	srv := servertest.Start(t, servertest.Options{Clock: clock})
	op := caller{t: t, base: srv.URL, token: srv.Token(t, "operator")}
	admin := caller{t: t, base: srv.URL, token: srv.Token(t, "admin")}
	admin.postYAML("/api/v1/templates", `
apiVersion: core.oam.dev/v1alpha1
kind: Workflow
metadata: {name: deploy}
parameters: [{name: env}]
concurrency: {key: '"deploy-" + parameter.env', limit: 1}
steps:
- {name: approve, type: suspend}
`).want(t, http.StatusCreated)
	status := func(name, phase, msg string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			r := op.get("/api/v1/runs/default/"+name).want(t, http.StatusOK).json(t)
			if at(r, "status.status") == phase && (msg == "" || at(r, "status.message") == msg) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("run %s: %v (%v), want %s (%s)", name, at(r, "status.status"), at(r, "status.message"), phase, msg)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	run := func(name string) {
		op.postYAML("/api/v1/runs", retentionRun(name, "workflowRef: deploy\n  context: {env: prod}")).want(t, http.StatusCreated)
	}
	run("a")
	status("a", "suspending", "")
	run("b")
	status("b", "queued", "queued on concurrency key deploy-prod: place 1")
	op.do("DELETE", "/api/v1/runs/default/a", "", nil).want(t, http.StatusNoContent)
	clock.Advance(time.Minute) // the sweep, should the delete not have given the slot up
	status("b", "suspending", "")
}
