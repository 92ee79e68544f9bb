package server_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/stepflow/stepflow/egress"
	"github.com/stepflow/stepflow/server"
	"github.com/stepflow/stepflow/server/servertest"
)

// A server whose operator denies the loopback network fails a step that calls a local
// service at once, naming the entry; nothing reaches the service.
func TestEgressDenyListStopsASteps(t *testing.T) {
	policy, err := egress.New(egress.Options{Deny: []string{"127.0.0.0/8"}})
	if err != nil {
		t.Fatal(err)
	}
	_, op, _ := start(t, servertest.Options{Configure: func(o *server.Options) { o.Assembly.Providers.Egress = policy }})
	svc, calls := service(t)
	r := op.postYAML("/api/v1/runs?wait=30s", fmt.Sprintf(`
apiVersion: core.oam.dev/v1alpha1
kind: WorkflowRun
metadata: {name: internal}
spec:
  workflowSpec:
    steps:
    - {name: call, type: request, properties: {url: %q}}
`, svc.URL)).want(t, http.StatusOK).json(t)
	msg, _ := at(r, "status.steps.0.message").(string)
	if at(r, "status.status") != "failed" || !strings.Contains(msg, `denied by the egress deny entry "127.0.0.0/8"`) {
		t.Errorf("phase %v, step message %q", at(r, "status.status"), msg)
	}
	if at(r, "status.steps.0.reason") == "FailedAfterRetries" {
		t.Error("a refused destination was retried")
	}
	if calls.Load() != 0 {
		t.Errorf("the denied service was called %d times", calls.Load())
	}
}
