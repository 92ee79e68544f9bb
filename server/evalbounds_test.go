package server_test

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stepflow/stepflow/cputime"
	"github.com/stepflow/stepflow/server"
	"github.com/stepflow/stepflow/server/servertest"
)

// rangeDoc is issue 19's inline definition, whose work grows with parameter.n, and a run
// giving n: checking the run evaluates the template with it.
const rangeDoc = `
apiVersion: core.oam.dev/v1beta1
kind: WorkflowStepDefinition
metadata: {name: range}
spec:
  schematic:
    cue:
      template: |
        import "list"

        parameter: n: int
        numbers: list.Range(0, parameter.n, 1)
        total: list.Sum([for i in numbers {i * 2}])
---
apiVersion: core.oam.dev/v1alpha1
kind: WorkflowRun
metadata: {name: range}
spec:
  workflowSpec:
    steps:
    - {name: sum, type: range, properties: {n: 1000000}}
`

// A viewer's POST /api/v1/validate of that definition with n = 1e6 answers 400 at the time
// bound, naming it and its flag; before, the server kept a core busy for minutes.
func TestValidateOfABombAnswersAtTheTimeBound(t *testing.T) {
	srv := servertest.Start(t, servertest.Options{Configure: func(o *server.Options) { o.Assembly.EvalTimeout = 2 * time.Second }})
	viewer := caller{t: t, base: srv.URL, token: srv.Token(t, "viewer")}
	begin := time.Now()
	r := viewer.postYAML("/api/v1/validate", rangeDoc).want(t, http.StatusBadRequest)
	if d := time.Since(begin); d > 30*time.Second {
		t.Errorf("answered after %s", d)
	}
	if !strings.Contains(string(r.body), "took longer than 2s, the limit of one evaluation") || !strings.Contains(string(r.body), "--eval-timeout") {
		t.Errorf("answer %s", r.body)
	}
	assertCPUFree(t)
}

// xBombDoc is a ComponentDefinition whose template builds a list of 200 million items, and
// an Application of it: checking either evaluates the template.
const xBombDoc = `
apiVersion: core.oam.dev/v1beta1
kind: ComponentDefinition
metadata: {name: doubled}
spec:
  workload: {definition: {apiVersion: v1, kind: ConfigMap}}
  schematic:
    cue:
      template: |
        import "list"

        parameter: {}
        output: {
        	apiVersion: "v1"
        	kind:       "ConfigMap"
        	data: n: "\(len([for i in list.Range(0, 200000000, 1) {i * 2}]))"
        }
`

// A viewer's POST /api/v1/validate of a hostile ComponentDefinition answers 400 at the time
// bound, naming it and its flag, and the server goes on answering with its CPU free; before,
// the template was evaluated in the server's own process, for minutes and gigabytes.
func TestValidateOfAnXDefinitionBombAnswersAtTheTimeBound(t *testing.T) {
	srv := servertest.Start(t, servertest.Options{Configure: func(o *server.Options) { o.Assembly.EvalTimeout = 2 * time.Second }})
	viewer := caller{t: t, base: srv.URL, token: srv.Token(t, "viewer")}
	r := viewer.postYAML("/api/v1/validate", xBombDoc).want(t, http.StatusBadRequest)
	if body := string(r.body); !strings.Contains(body, "ComponentDefinition doubled: evaluating the template of an X-Definition took longer than 2s, the limit of one evaluation") ||
		!strings.Contains(body, "--eval-timeout") {
		t.Errorf("answer %s", body)
	}
	assertCPUFree(t)
	viewer.postYAML("/api/v1/validate", strings.Replace(xBombDoc, "200000000", "2", 1)).want(t, http.StatusOK)
}

// A client that leaves before the answer cancels the evaluation: its evaluator is killed at
// once, though the time bound is minutes away.
func TestValidateCancelledByTheClientStopsEvaluating(t *testing.T) {
	srv := servertest.Start(t, servertest.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/api/v1/validate", bytes.NewReader([]byte(rangeDoc)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+srv.Token(t, "viewer"))
	req.Header.Set("Content-Type", "application/yaml")
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("answered %s before the client left", resp.Status)
	}
	time.Sleep(500 * time.Millisecond) // the server sees the connection closed
	assertCPUFree(t)
}

// assertCPUFree checks that this process and its children use less than half a core over a
// second: no evaluation goes on computing (one that did would take a whole core; the server's
// own background work, under -race on a busy CI machine, was once measured at 300 ms).
func assertCPUFree(t *testing.T) {
	t.Helper()
	before := cpuTime(t)
	time.Sleep(time.Second)
	if used := cpuTime(t) - before; used > 500*time.Millisecond {
		t.Errorf("%s of CPU used in a second with nothing to evaluate", used)
	}
}

// cpuTime is the CPU time of this process and of its child evaluators (package cputime).
func cpuTime(t *testing.T) time.Duration {
	t.Helper()
	d, err := cputime.Live()
	if err != nil {
		t.Fatal(err)
	}
	return d
}
