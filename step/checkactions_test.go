package step_test

import (
	"context"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	fieldpath "k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/stepflow/stepflow/api/v1alpha1"
)

// loose passes its parameter to http.#HTTPDo without constraining it: only the action's
// $params say what is accepted.
const loose = `
import "vela/http"
parameter: {method: string, url: string, header?: {...}}
req: http.#HTTPDo & {$params: {
	method: parameter.method
	url:    parameter.url
	if parameter.header != _|_ {request: header: parameter.header}
}}
`

// A value an action's $params refuse is a check error at the property it comes from, before
// anything runs, as it would fail the step at run time; properties that fit, and properties
// inputs fill at run time, are not.
func TestCheckStepsReportsWhatActionsRefuse(t *testing.T) {
	r, rec := newRunner(t, defs{"loose": loose})
	steps := []v1alpha1.WorkflowStep{
		checkStepT("ok", `{"method": "POST", "url": "http://x", "header": {"A": "b"}}`),
		checkStepT("method", `{"method": "FETCH", "url": "http://x"}`),
		checkStepT("header", `{"method": "GET", "url": "http://x", "header": {"A": 1}}`),
		checkStepT("input", `{"method": "FETCH", "url": "http://x"}`),
	}
	steps[3].Inputs = v1alpha1.StepInputs{{From: "m", ParameterKey: "method"}}
	errs := r.CheckSteps(context.Background(), "default", steps, fieldpath.NewPath("spec", "workflowSpec", "steps"))
	var got []string
	for _, e := range errs {
		got = append(got, e.Error())
	}
	all := strings.Join(got, "\n")
	if len(errs) != 2 {
		t.Fatalf("%d errors, want 2:\n%s", len(errs), all)
	}
	for i, want := range []string{
		`spec.workflowSpec.steps[1].properties.method: Invalid value: "FETCH": step method: refused by req.$params.method`,
		`spec.workflowSpec.steps[2].properties.header.A: Invalid value: 1: step header: refused by req.$params.request.header.A`,
	} {
		if !strings.HasPrefix(got[i], want) {
			t.Errorf("error %d:\n%s\nwant it to begin\n%s", i, got[i], want)
		}
	}
	if len(rec.calls) != 0 {
		t.Errorf("the check ran actions: %v", rec.calls)
	}
	// The answer is remembered: the same check again gives the same errors.
	if again := r.CheckSteps(context.Background(), "default", steps, fieldpath.NewPath("spec", "workflowSpec", "steps")); again.ToAggregate().Error() != errs.ToAggregate().Error() {
		t.Errorf("checked again: %v, want %v", again, errs)
	}
}

func checkStepT(name, props string) v1alpha1.WorkflowStep {
	return v1alpha1.WorkflowStep{WorkflowStepBase: v1alpha1.WorkflowStepBase{
		Name: name, Type: "loose", Properties: &runtime.RawExtension{Raw: []byte(props)}}}
}
