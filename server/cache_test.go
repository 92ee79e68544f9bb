package server_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/server/servertest"
	"github.com/stepflow/stepflow/store/postgres"
)

// The step cache over the API: a run's cached step is taken by the next run with its key
// (Cached, the service not called again); the entry is listed to those who see its namespace,
// dropped by an operator (not a viewer), after which the step runs again.
func TestStepCacheOverTheAPI(t *testing.T) {
	testStepCacheOverTheAPI(t, servertest.Options{})
}

// The same over a real PostgreSQL.
func TestStepCacheOverTheAPIOnPostgres(t *testing.T) {
	testStepCacheOverTheAPI(t, onPostgres(t))
}

func testStepCacheOverTheAPI(t *testing.T, opts servertest.Options) {
	srv, op, _ := start(t, opts)
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

// Two server replicas on one PostgreSQL share the cache: a run either replica drives takes
// the result a run of the other kept.
func TestReplicasShareTheStepCache(t *testing.T) {
	if pg == nil {
		t.Skip("-short: no PostgreSQL")
	}
	url := pg.NewDatabase(t)
	a, la := replicaServer(t, url, "a", 2*time.Second)
	_, lb := replicaServer(t, url, "b", 2*time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for len(la.Shards()) != postgres.Shards/2 || len(lb.Shards()) != postgres.Shards/2 {
		if time.Now().After(deadline) {
			t.Fatalf("the shards were not divided: a holds %d, b %d", len(la.Shards()), len(lb.Shards()))
		}
		time.Sleep(20 * time.Millisecond)
	}
	op := caller{t: t, base: a.URL, token: a.Token(t, "operator")}
	svc, calls := service(t)
	drivers := map[bool]int{} // runs taking the cached result, by whether a drove them
	var first bool
	for i := range 8 {
		name := fmt.Sprintf("c-%d", i)
		doc := fmt.Sprintf(`
apiVersion: core.oam.dev/v1alpha1
kind: WorkflowRun
metadata: {name: %s, namespace: default}
spec:
  workflowSpec:
    steps:
    - name: get-version
      type: request
      properties: {url: %q}
      cache: {key: parameter.url, maxAge: 1h}
`, name, svc.URL)
		r := op.postYAML("/api/v1/runs?wait=30s", doc).want(t, http.StatusOK).json(t)
		if at(r, "status.status") != "succeeded" {
			t.Fatalf("%s: %v", name, at(r, "status"))
		}
		byA := la.Owns(engine.Key{Namespace: "default", Name: name})
		if i == 0 {
			first = byA
			continue
		}
		if got := at(r, "status.steps.0.reason"); got != "Cached" {
			t.Fatalf("%s (driven by a: %v): reason %v, want Cached", name, byA, got)
		}
		drivers[byA]++
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("the service was called %d times, want once", n)
	}
	if drivers[!first] == 0 {
		t.Skip("every run fell to the shards of the replica that kept the result")
	}
}
