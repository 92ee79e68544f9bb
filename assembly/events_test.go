package assembly_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/assembly"
	"github.com/stepflow/stepflow/events"
)

// TestEventSinksSeeARun drives a real run on the embedded engine with an HTTP events sink (a
// real server) and checks the CloudEvents it got, as a consumer of them would.
func TestEventSinksSeeARun(t *testing.T) {
	type got struct{ typ, subject, step string }
	var mu sync.Mutex
	var posted []got
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var data events.RunSummary
		if err := json.Unmarshal(body, &data); err != nil {
			t.Errorf("data %s: %v", body, err)
		}
		g := got{typ: r.Header.Get("Ce-Type"), subject: r.Header.Get("Ce-Subject")}
		if data.Step != nil {
			g.step = data.Step.Name
		}
		mu.Lock()
		posted = append(posted, g)
		mu.Unlock()
	}))
	defer srv.Close()

	a, run := start(t, assembly.Config{EventSinks: []string{srv.URL}}, `
apiVersion: core.oam.dev/v1alpha1
kind: WorkflowRun
metadata: {name: chain, namespace: default}
spec:
  workflowSpec:
    steps:
    - {name: first, type: print-message-in-status, properties: {message: one}}
    - {name: second, type: print-message-in-status, properties: {message: two}}
`, false)
	if run.Object.Status.Phase != v1alpha1.RunSucceeded {
		t.Fatalf("run %s: %s", run.Object.Status.Phase, run.Object.Status.Message)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	a.Close(ctx)

	mu.Lock()
	defer mu.Unlock()
	if len(posted) == 0 || posted[0].typ != events.RunStarted || posted[len(posted)-1].typ != events.RunSucceeded {
		t.Fatalf("events %v: want run.started first and run.succeeded last", posted)
	}
	for _, step := range []string{"first", "second"} {
		if !slices.Contains(posted, got{typ: "dev.stepflow.step.succeeded", subject: "default/chain", step: step}) {
			t.Errorf("no step.succeeded for %s in %v", step, posted)
		}
	}
	for _, g := range posted {
		if g.subject != "default/chain" {
			t.Errorf("event %v: subject want default/chain", g)
		}
	}
}
