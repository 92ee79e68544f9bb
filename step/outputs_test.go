package step_test

import (
	"testing"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
)

// A valueFrom written against an action's legacy shape (output.value.data["k"]) finds what a
// $returns-form action returned (output.$returns.value.data["k"]), as in KubeVela, whose
// read-object examples take output.value.data from kube.#Read.
func TestOutputsReachReturnsUnderTheLegacyPath(t *testing.T) {
	r, rec := newRunner(t, defs{"read": `
import "vela/test"
output: test.#Get & {$params: key: "cm"}
`})
	rec.returns["test.get"] = []any{map[string]any{"value": map[string]any{"data": map[string]any{"k": "v", "x.y": "w"}}}}
	req := request("read", nil)
	req.Step.Outputs = v1alpha1.StepOutputs{
		{Name: "legacy", ValueFrom: `output.value.data["k"]`},
		{Name: "dotted", ValueFrom: `output.value.data["x.y"]`},
		{Name: "returns", ValueFrom: `output.$returns.value.data.k`},
	}
	res := mustRun(t, r, req)
	wantOutcome(t, res, engine.Succeeded, "")
	for name, want := range map[string]string{"legacy": `"v"`, "dotted": `"w"`, "returns": `"v"`} {
		if got := string(res.Outputs[name]); got != want {
			t.Errorf("output %s = %s, want %s", name, got, want)
		}
	}
	// A field the action did not return is still an error of the output.
	req.Step.Outputs = v1alpha1.StepOutputs{{Name: "nope", ValueFrom: `output.value.data["missing"]`}}
	res = mustRun(t, r, req)
	wantOutcome(t, res, engine.Failed, v1alpha1.ReasonOutput)
}

// A step that fails (an action's fail) or waits still has outputs, evaluated as far as they can
// be and null otherwise, as KubeVela stores them: the engine keeps a failed step's, and a
// waiting step's for when it times out.
func TestOutputsOfAFailedOrWaitingStep(t *testing.T) {
	r, rec := newRunner(t, defs{
		"fail": `
import ("vela/test", "vela/builtin")
output: test.#Get & {$params: key: "cm"}
f: builtin.#Fail & {$params: message: "bad: \(output.$returns.value.data.k)"}
`,
		"wait": `
import ("vela/test", "vela/builtin")
output: test.#Get & {$params: key: "cm"}
w: builtin.#ConditionalWait & {$params: continue: output.$returns.value.data.k == "ready"}
`,
	})
	rec.returns["test.get"] = []any{map[string]any{"value": map[string]any{"data": map[string]any{"k": "v"}}}}
	outs := v1alpha1.StepOutputs{{Name: "k", ValueFrom: `output.value.data.k`}, {Name: "none", ValueFrom: `output.value.data.missing`}}
	for _, c := range []struct {
		typ     string
		outcome engine.Outcome
		reason  string
	}{{"fail", engine.Failed, v1alpha1.ReasonAction}, {"wait", engine.Waiting, v1alpha1.ReasonWait}} {
		req := request(c.typ, nil)
		req.Step.Outputs = outs
		res := mustRun(t, r, req)
		wantOutcome(t, res, c.outcome, c.reason)
		if got := string(res.Outputs["k"]); got != `"v"` {
			t.Errorf("%s: output k = %s, want \"v\"", c.typ, got)
		}
		if got := string(res.Outputs["none"]); got != `null` {
			t.Errorf("%s: output none = %s, want null", c.typ, got)
		}
	}
}
