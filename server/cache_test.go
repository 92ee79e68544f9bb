package server_test

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/stepflow/stepflow/server/servertest"
)

// The step cache over the API: a run's cached step is taken by the next run with its key
// (Cached, the service not called again); the entry is listed to those who see its namespace,
// dropped by an operator (not a viewer), after which the step runs again.
func TestStepCacheOverTheAPI(t *testing.T) {
	srv, op, _ := start(t, servertest.Options{})
	svc, calls := service(t)
	run := func(name string) map[string]any {
		t.Helper()
		doc := fmt.Sprintf(`
apiVersion: core.oam.dev/v1alpha1
kind: WorkflowRun
metadata: {name: %s, namespace: team-a}
spec:
  workflowSpec:
    steps:
    - name: get-version
      type: request
      properties: {url: %q}
      cache: {key: parameter.url, maxAge: 1h}
      outputs: [{name: tag, valueFrom: response.tag}]
    - name: show
      type: print-message-in-status
      inputs: [{from: tag, parameterKey: message}]
`, name, svc.URL)
		r := op.postYAML("/api/v1/runs?wait=30s", doc).want(t, http.StatusOK).json(t)
		if got := at(r, "status.status"); got != "succeeded" {
			t.Fatalf("run %s: phase %v: %v", name, got, at(r, "status.message"))
		}
		return r
	}
	run("first")
	second := run("second")
	if got := at(second, "status.steps.0.reason"); got != "Cached" {
		t.Fatalf("second run's get-version: reason %v, want Cached", got)
	}
	if got := at(second, "status.steps.1.message"); got != "v1.2.3" {
		t.Errorf("show's message = %v, want the cached output", got)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("the service was called %d times", n)
	}

	list := op.get("/api/v1/cache?namespace=team-a").want(t, http.StatusOK).json(t)
	items, _ := at(list, "items").([]any)
	if len(items) != 1 || at(list, "items.0.run") != "first" || at(list, "items.0.step") != "get-version" ||
		at(list, "items.0.stepType") != "request" || at(list, "items.0.outputs.tag") != "v1.2.3" {
		t.Fatalf("cache list: %v", list)
	}
	key := at(list, "items.0.key").(string)

	elsewhere := caller{t: t, base: srv.URL, token: srv.Token(t, "operator", "team-b")}
	if items, _ := at(elsewhere.get("/api/v1/cache").want(t, http.StatusOK).json(t), "items").([]any); len(items) != 0 {
		t.Errorf("an operator of team-b sees team-a's cache: %v", items)
	}
	elsewhere.do("DELETE", "/api/v1/cache/team-a/"+key, "", nil).want(t, http.StatusNotFound)
	viewer := caller{t: t, base: srv.URL, token: srv.Token(t, "viewer")}
	viewer.do("DELETE", "/api/v1/cache/team-a/"+key, "", nil).want(t, http.StatusForbidden)

	op.do("DELETE", "/api/v1/cache/team-a/"+key, "", nil).want(t, http.StatusNoContent)
	op.do("DELETE", "/api/v1/cache/team-a/"+key, "", nil).want(t, http.StatusNotFound)
	third := run("third")
	if got := at(third, "status.steps.0.reason"); got == "Cached" || calls.Load() != 2 {
		t.Fatalf("after the drop: reason %v, service called %d times; want the step run", got, calls.Load())
	}
	dropped := op.do("DELETE", "/api/v1/cache/team-a", "", nil).want(t, http.StatusOK).json(t)
	if at(dropped, "dropped") != 1.0 {
		t.Errorf("dropping team-a's cache: %v, want 1 dropped", dropped)
	}
}
