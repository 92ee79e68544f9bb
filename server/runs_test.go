package server_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stepflow/stepflow/server/servertest"
)

// start starts a server and returns it with an operator's and an admin's callers.
func start(t *testing.T, opts servertest.Options) (*servertest.Server, caller, caller) {
	t.Helper()
	srv := servertest.Start(t, opts)
	return srv, caller{t: t, base: srv.URL, token: srv.Token(t, "operator")}, caller{t: t, base: srv.URL, token: srv.Token(t, "admin")}
}

// service is a local HTTP service the runs' request steps call; it counts its calls.
func service(t *testing.T) (*httptest.Server, *atomic.Int64) {
	var calls atomic.Int64
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		calls.Add(1)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"tag": "v1.2.3"}`)
	}))
	t.Cleanup(hs.Close)
	return hs, &calls
}

func TestRunOverTheAPI(t *testing.T) {
	testRunOverTheAPI(t, servertest.Options{})
}

func testRunOverTheAPI(t *testing.T, opts servertest.Options) {
	_, op, _ := start(t, opts)
	svc, calls := service(t)
	doc := fmt.Sprintf(`
apiVersion: core.oam.dev/v1alpha1
kind: WorkflowRun
metadata: {name: release, namespace: team-a}
spec:
  workflowSpec:
    steps:
    - name: get-version
      type: request
      properties: {url: %q}
      outputs: [{name: tag, valueFrom: response.tag}]
    - name: show
      type: print-message-in-status
      inputs: [{from: tag, parameterKey: message}]
`, svc.URL)
	r := op.postYAML("/api/v1/runs?wait=30s", doc).want(t, http.StatusOK).json(t)
	if got := at(r, "status.status"); got != "succeeded" {
		t.Fatalf("phase %v: %v", got, at(r, "status.message"))
	}
	if got := at(r, "stepflow.outputs.tag"); got != "v1.2.3" {
		t.Errorf("outputs.tag = %v", got)
	}
	if got := at(r, "status.steps.1.message"); got != "v1.2.3" {
		t.Errorf("show's message = %v", got)
	}
	if calls.Load() != 1 {
		t.Errorf("the service was called %d times", calls.Load())
	}

	got := op.get("/api/v1/runs/team-a/release").want(t, http.StatusOK).json(t)
	if at(got, "metadata.name") != "release" || at(got, "kind") != "WorkflowRun" || at(got, "stepflow.steps.0.name") != "get-version" {
		t.Errorf("get: %v", got)
	}
	list := op.get("/api/v1/runs?namespace=team-a&phase=succeeded").want(t, http.StatusOK).json(t)
	if at(list, "total") != 1.0 || at(list, "items.0.name") != "release" || at(list, "items.0.steps.succeeded") != 2.0 {
		t.Errorf("list: %v", list)
	}
	if n := at(op.get("/api/v1/runs?phase=failed").json(t), "total"); n != 0.0 {
		t.Errorf("failed runs: %v", n)
	}
	logs := op.get("/api/v1/runs/team-a/release/logs?step=get-version").want(t, http.StatusOK).json(t)
	if items, _ := logs["items"].([]any); len(items) == 0 || at(items[0], "step") != "get-version" {
		t.Errorf("logs: %v", logs)
	}

	// Created again once it has finished: replaced. A run that has not finished is not.
	op.postYAML("/api/v1/runs?wait=30s", doc).want(t, http.StatusOK)
	op.postYAML("/api/v1/runs?wait=30s", approvalRun).want(t, http.StatusOK)
	op.postYAML("/api/v1/runs", approvalRun).want(t, http.StatusConflict)

	op.do("DELETE", "/api/v1/runs/team-a/release", "", nil).want(t, http.StatusNoContent)
	op.get("/api/v1/runs/team-a/release").want(t, http.StatusNotFound)
}

func TestInvalidRunsAnswer400WithTheirPlace(t *testing.T) {
	_, op, _ := start(t, servertest.Options{})
	r := op.postYAML("/api/v1/runs", `
apiVersion: core.oam.dev/v1alpha1
kind: WorkflowRun
metadata: {name: bad}
spec:
  workflowSpec:
    steps:
    - name: a
      type: no-such-type
    - name: b
      type: request
      properties: {url: 42}
`).want(t, http.StatusBadRequest)
	probs := r.problems(t)
	if msg := probs["spec.workflowSpec.steps[0].type"]; !strings.Contains(msg, "no-such-type") {
		t.Errorf("unknown type: %q (all: %v)", msg, probs)
	}
	if msg := probs["spec.workflowSpec.steps[1].properties"]; !strings.Contains(msg, "parameter.url") {
		t.Errorf("bad property not reported: %v", probs)
	}
	if !strings.Contains(string(r.body), `"line":8`) {
		t.Errorf("no line for the unknown type: %s", r.body)
	}

	// Unknown fields and YAML syntax are located too.
	r = op.postYAML("/api/v1/runs", "apiVersion: core.oam.dev/v1alpha1\nkind: WorkflowRun\nmetadata: {name: x}\nspec:\n  workflowSpek: {}\n").want(t, http.StatusBadRequest)
	if !strings.Contains(string(r.body), "workflowSpek") || !strings.Contains(string(r.body), `"line":5`) {
		t.Errorf("unknown field: %s", r.body)
	}
	op.do("POST", "/api/v1/runs", "application/json", []byte(`{"apiVersion": `)).want(t, http.StatusBadRequest)
	if n := at(op.get("/api/v1/runs").json(t), "total"); n != 0.0 {
		t.Errorf("%v runs stored after invalid requests", n)
	}
	op.get("/api/v1/runs/default/nothing").want(t, http.StatusNotFound)
	op.get("/api/v1/runs?since=yesterday").want(t, http.StatusBadRequest)
	op.postJSON("/api/v1/runs/default/nothing/resume", nil).want(t, http.StatusNotFound)
}

const approvalRun = `
apiVersion: core.oam.dev/v1alpha1
kind: WorkflowRun
metadata: {name: gated}
spec:
  workflowSpec:
    steps:
    - {name: before, type: print-message-in-status, properties: {message: one}}
    - {name: approve, type: suspend}
    - {name: after, type: print-message-in-status, properties: {message: two}}
`

func TestOperationsAndTheEventStream(t *testing.T) {
	_, op, _ := start(t, servertest.Options{})
	r := op.postYAML("/api/v1/runs?wait=30s", approvalRun).want(t, http.StatusOK).json(t)
	if at(r, "status.status") != "suspending" || at(r, "status.steps.1.phase") != "suspending" {
		t.Fatalf("not suspended: %v", at(r, "status"))
	}

	next := op.events("/api/v1/runs/default/gated/events")
	next("the snapshot", func(n, d string) bool { return n == "run" && strings.Contains(d, `"status":"suspending"`) })

	op.postJSON("/api/v1/runs/default/gated/resume", map[string]string{"step": "approve"}).want(t, http.StatusOK)
	next("after's log line", func(n, d string) bool { return n == "log" && strings.Contains(d, `"step":"after"`) })
	next("the run succeeded", func(n, d string) bool { return n == "run" && strings.Contains(d, `"status":"succeeded"`) })

	// Operations the state does not allow answer 409; unknown ones 404.
	op.postJSON("/api/v1/runs/default/gated/resume", nil).want(t, http.StatusConflict)
	op.postJSON("/api/v1/runs/default/gated/explode", nil).want(t, http.StatusNotFound)

	op.do("DELETE", "/api/v1/runs/default/gated", "", nil).want(t, http.StatusNoContent)
	next("deleted", func(n, _ string) bool { return n == "deleted" })
}

func TestTerminateAndRetryFromTheFailedStep(t *testing.T) {
	_, op, _ := start(t, servertest.Options{})
	var fail atomic.Bool
	fail.Store(true)
	var calls atomic.Int64
	svc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		calls.Add(1)
		if fail.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, `{}`)
	}))
	defer svc.Close()
	doc := fmt.Sprintf(`
apiVersion: core.oam.dev/v1alpha1
kind: WorkflowRun
metadata: {name: flaky}
spec:
  workflowSpec:
    steps:
    - {name: first, type: print-message-in-status, properties: {message: ok}}
    - name: call
      type: webhook
      properties: {url: {value: %q}}
`, svc.URL)
	r := op.postYAML("/api/v1/runs?wait=30s", doc).want(t, http.StatusOK).json(t)
	if at(r, "status.status") != "failed" || at(r, "status.steps.1.phase") != "failed" {
		t.Fatalf("want failed: %v", at(r, "status"))
	}
	first := at(r, "status.steps.0.lastExecuteTime")
	fail.Store(false)
	op.postJSON("/api/v1/runs/default/flaky/restart", map[string]string{"step": "call"}).want(t, http.StatusOK)
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := op.get("/api/v1/runs/default/flaky").json(t)
		if at(got, "status.status") == "succeeded" {
			if at(got, "status.steps.0.lastExecuteTime") != first {
				t.Errorf("the step that succeeded ran again")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not succeeded: %v", at(got, "status"))
		}
		time.Sleep(20 * time.Millisecond)
	}

	op.postYAML("/api/v1/runs", strings.Replace(approvalRun, "gated", "to-stop", 1)).want(t, http.StatusCreated)
	waitPhase(t, op, "default/to-stop", "suspending")
	op.postJSON("/api/v1/runs/default/to-stop/terminate", nil).want(t, http.StatusOK)
	waitPhase(t, op, "default/to-stop", "terminated")
}

// waitPhase polls a run until it is in phase.
func waitPhase(t *testing.T, c caller, run, phase string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := c.get("/api/v1/runs/" + run).json(t)
		if at(got, "status.status") == phase {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %s is %v, want %s: %v", run, at(got, "status.status"), phase, at(got, "status.message"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
