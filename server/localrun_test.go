package server_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stepflow/stepflow/server"
	"github.com/stepflow/stepflow/server/servertest"
)

// localRun runs a script in the local sandbox and passes the file it wrote on as an output.
const localRun = `
apiVersion: core.oam.dev/v1alpha1
kind: WorkflowRun
metadata: {name: script}
spec:
  workflowSpec:
    steps:
    - name: build
      type: run
      properties: {script: "echo building; printf v7 > $STEPFLOW_OUTPUTS/tag", outputs: [tag]}
      outputs: [{name: tag, valueFrom: outputs.tag}]
`

// A server refuses a run with a run step, naming --allow-local-run, unless its operator gave
// it; given, the script runs and its output file is the run's output.
func TestLocalRunOnlyWhereAllowed(t *testing.T) {
	_, op, _ := start(t, servertest.Options{})
	problems := op.postYAML("/api/v1/runs", localRun).want(t, http.StatusBadRequest).problems(t)
	if msg := problems["spec.workflowSpec.steps[0].type"]; !strings.Contains(msg, "--allow-local-run") {
		t.Errorf("problems %v: want the run step's type refused naming --allow-local-run", problems)
	}
	_, op, _ = start(t, servertest.Options{Configure: func(o *server.Options) { o.Assembly.Providers.AllowLocalRun = true }})
	r := op.postYAML("/api/v1/runs?wait=30s", localRun).want(t, http.StatusOK).json(t)
	if got := at(r, "status.status"); got != "succeeded" {
		t.Fatalf("phase %v: %v", got, at(r, "status.message"))
	}
	if got := at(r, "stepflow.outputs.tag"); got != "v7" {
		t.Errorf("output tag = %v, want v7", got)
	}
}
