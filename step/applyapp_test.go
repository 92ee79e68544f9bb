package step_test

import (
	"encoding/json"
	"testing"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
)

// kubevelaApplyApp is KubeVela's apply-app as the vela-workflow chart publishes it: its wait
// refers to app.apply.value.metadata.generation, which the Application given as data has
// not, until the apply's result is filled.
const kubevelaApplyApp = `
import (
	"vela/op"
	"encoding/yaml"
)

app: op.#Steps & {
	if parameter.data != _|_ {
		apply: op.#Apply & {
			value: parameter.data
		}
	}
	if parameter.ref != _|_ {
		if parameter.ref.type == "configMap" {
			cm: op.#Read & {
				value: {
					apiVersion: "v1"
					kind:       "ConfigMap"
					metadata: {
						name:      parameter.ref.name
						namespace: parameter.ref.namespace
					}
				}
			}
			template: cm.value.data[parameter.ref.key]
			apply:    op.#Apply & {
				value: yaml.Unmarshal(template)
			}
		}
	}
}
wait: op.#ConditionalWait & {
	continue: app.apply.value.status.status == "running" && app.apply.value.status.observedGeneration == app.apply.value.metadata.generation
}
parameter: close({
	data?: {...}
}) | close({
	ref?: {
		name:      string
		namespace: *context.namespace | string
		type:      *"configMap" | string
		key:       *"application" | string
	}
})
`

// A reference to a field an action's result brings (issue 17 item 6) is not an error before
// the action ran: the step applies, waits while the Application is not running, and ends
// once it is. A conflict still fails before any action runs (TestCUEErrorsHavePositions).
func TestAReferenceToWhatAnApplyReturnsWaitsForTheApply(t *testing.T) {
	r, rec := newRunner(t, defs{"apply-app": kubevelaApplyApp})
	app := map[string]any{"apiVersion": "core.oam.dev/v1beta1", "kind": "Application", "metadata": map[string]any{"name": "a"}}
	stored := func(status map[string]any) any {
		return map[string]any{"value": map[string]any{
			"apiVersion": "core.oam.dev/v1beta1", "kind": "Application",
			"metadata": map[string]any{"name": "a", "generation": 2}, "status": status,
		}}
	}
	rec.returns["kube.apply"] = []any{
		stored(map[string]any{"status": "running", "observedGeneration": 1}), // not yet observed
		stored(map[string]any{"status": "running", "observedGeneration": 2}),
	}
	req := request("apply-app", map[string]any{"data": app})
	res := mustRun(t, r, req)
	wantOutcome(t, res, engine.Waiting, v1alpha1.ReasonWait)
	res = mustRun(t, r, again(req, res))
	wantOutcome(t, res, engine.Succeeded, "")
	if n := rec.count("kube.apply"); n != 2 {
		t.Errorf("applied %d times in two evaluations, want 2 (an apply is idempotent)", n)
	}
}

// An idempotent action runs at every evaluation and is not memoized; a memo of it stored
// before (by a build where it was not idempotent) is not replayed. A side effect that is not
// idempotent still runs once per try.
func TestIdempotentActionsRunEveryEvaluation(t *testing.T) {
	r, rec := newRunner(t, defs{"both": `
import "vela/test"

apply: test.#Apply & {$params: value: {kind: "ConfigMap"}}
put: test.#Put & {$params: x: 1}
`})
	rec.returns["kube.apply"] = []any{map[string]any{"value": map[string]any{"kind": "ConfigMap", "n": 1}}}
	req := request("both", nil)
	req.Memo = map[string]json.RawMessage{"apply": json.RawMessage(`{"value":{"kind":"ConfigMap","n":0}}`)}
	res := mustRun(t, r, req)
	wantOutcome(t, res, engine.Succeeded, "")
	res = mustRun(t, r, again(req, res))
	wantOutcome(t, res, engine.Succeeded, "")
	if n := rec.count("kube.apply"); n != 2 {
		t.Errorf("the idempotent apply ran %d times in two evaluations, want 2", n)
	}
	if n := rec.count("test.put"); n != 1 {
		t.Errorf("the side effect ran %d times in two evaluations of one try, want 1", n)
	}
	if _, ok := res.Memo["apply"]; ok {
		t.Errorf("the idempotent apply was memoized: %s", res.Memo["apply"])
	}
}
