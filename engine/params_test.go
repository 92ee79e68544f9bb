package engine_test

import (
	"strings"
	"testing"

	"github.com/stepflow/stepflow/api/v1alpha1"
)

// A run of a template with parameters sees their defaults in its context; a run whose context
// does not fit them fails before any step runs, naming the parameter.
func TestTemplateParameters(t *testing.T) {
	h := newHarness(t)
	h.template("deploy", `
parameters:
- {name: image, type: string, required: true}
- {name: env, type: string, enum: [staging, prod], default: staging}
steps:
- {name: to-staging, type: ok, if: 'context.env == "staging"'}
- {name: to-prod, type: ok, if: 'context.env == "prod"'}`)
	ok := h.start(`
metadata: {name: with-defaults}
spec: {workflowRef: deploy, context: {image: app}}`)
	run := h.waitSettled(ok)
	if got := phases(run); got != "to-staging=succeeded to-prod=skipped/Skip" {
		t.Errorf("steps: %s", got)
	}
	if got := string(run.Context); got != `{"env":"staging","image":"app"}` {
		t.Errorf("context %s", got)
	}

	bad := h.start(`
metadata: {name: missing-image}
spec: {workflowRef: deploy, context: {env: dev}}`)
	run = h.waitSettled(bad)
	msg := run.Object.Status.Message
	if run.Object.Status.Phase != v1alpha1.RunFailed || !strings.Contains(msg, "spec.context.image: Required") ||
		!strings.Contains(msg, "spec.context.env: Invalid value") {
		t.Errorf("phase %s, message %q", run.Object.Status.Phase, msg)
	}
	if len(run.Object.Status.Steps) != 0 {
		t.Errorf("steps ran: %s", phases(run))
	}
}
