package server_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"

	"github.com/stepflow/stepflow/server/servertest"
)

// Two hundred concurrent creates of one name, a finished run of that name stored: each is
// answered 201 or 409, and every 201 is the run that is stored and runs (its request's
// number is in its context). Before, the creates each loaded the finished run and replaced
// it unconditionally: 35 were answered 201, of which 3 ran.
func TestConcurrentCreatesOfOneNameRunWhatTheyAcknowledge(t *testing.T) {
	testConcurrentCreates(t, servertest.Options{})
}

func TestConcurrentCreatesOfOneNameRunWhatTheyAcknowledgeOnPostgres(t *testing.T) {
	testConcurrentCreates(t, onPostgres(t))
}

func testConcurrentCreates(t *testing.T, opts servertest.Options) {
	srv, op, _ := start(t, opts)
	// The run of the name, finished: the creates below may replace it.
	op.postYAML("/api/v1/runs?wait=30s", `
apiVersion: core.oam.dev/v1alpha1
kind: WorkflowRun
metadata: {name: contested}
spec:
  workflowSpec:
    steps: [{name: only, type: print-message-in-status, properties: {message: first}}]
`).want(t, http.StatusOK)
	waitPhase(t, op, "default/contested", "succeeded")

	// Each new run waits at its suspend step until resumed, so that it is the stored run when
	// the requests are done.
	const requests = 200
	statuses := make([]int, requests)
	numbers := make([]any, requests)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: requests}}
	defer client.CloseIdleConnections()
	var wg sync.WaitGroup
	for i := range requests {
		wg.Go(func() {
			run := fmt.Sprintf(`{"apiVersion": "core.oam.dev/v1alpha1", "kind": "WorkflowRun",
				"metadata": {"name": "contested"},
				"spec": {"context": {"request": %d}, "workflowSpec": {"steps": [
					{"name": "hold", "type": "suspend"},
					{"name": "show", "type": "print-message-in-status", "properties": {"message": "request %d"}}]}}}`, i, i)
			req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+"/api/v1/runs", bytes.NewReader([]byte(run)))
			if err != nil {
				t.Error(err)
				return
			}
			req.Header.Set("Authorization", "Bearer "+op.token)
			req.Header.Set("Content-Type", "application/json")
			resp, err := client.Do(req)
			if err != nil {
				t.Errorf("request %d: %v", i, err)
				return
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			statuses[i] = resp.StatusCode
			var answer map[string]any
			if resp.StatusCode == http.StatusCreated && json.Unmarshal(body, &answer) == nil {
				numbers[i] = at(answer, "spec.context.request")
			}
			if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusConflict {
				t.Errorf("request %d: %d %s", i, resp.StatusCode, body)
			}
		})
	}
	wg.Wait()

	stored := op.get("/api/v1/runs/default/contested").want(t, http.StatusOK).json(t)
	created := 0
	for i, status := range statuses {
		if status != http.StatusCreated {
			continue
		}
		created++
		if numbers[i] != float64(i) {
			t.Errorf("request %d was answered 201 with the run of request %v", i, numbers[i])
		}
		if got := at(stored, "spec.context.request"); got != float64(i) {
			t.Errorf("request %d was answered 201, but the stored run is request %v's", i, got)
		}
	}
	if created < 1 {
		t.Fatalf("no create was answered 201: %v", statuses)
	}
	t.Logf("%d of %d creates answered 201", created, requests)

	// The acknowledged run is the one that runs, to the end.
	waitPhase(t, op, "default/contested", "suspending")
	op.postJSON("/api/v1/runs/default/contested/resume", map[string]string{"step": "hold"}).want(t, http.StatusOK)
	done := waitPhase(t, op, "default/contested", "succeeded")
	want := fmt.Sprintf("request %v", at(stored, "spec.context.request"))
	if got := at(done, "status.steps.1.message"); got != want {
		t.Errorf("the run that finished says %v, want %q", got, want)
	}
}
