package v1alpha1

import (
	"encoding/json"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func TestMatrixItemsIsTheProductInNameOrder(t *testing.T) {
	combos, err := MatrixItems(&runtime.RawExtension{Raw: []byte(`{"tier":["a","b"],"region":["eu","us","asia"]}`)})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range combos {
		b, _ := json.Marshal(c)
		got = append(got, string(b))
	}
	want := `{"region":"eu","tier":"a"} {"region":"eu","tier":"b"} {"region":"us","tier":"a"} ` +
		`{"region":"us","tier":"b"} {"region":"asia","tier":"a"} {"region":"asia","tier":"b"}`
	if strings.Join(got, " ") != want {
		t.Errorf("combinations\n got  %s\n want %s", strings.Join(got, " "), want)
	}
	if _, err := MatrixItems(&runtime.RawExtension{Raw: []byte(`[1, 2]`)}); err == nil {
		t.Error("a list is not a matrix")
	}
}

// forEach.from makes the step wait for the step producing the list, as an input does: a cycle
// through it is reported.
func TestForEachFromIsADependency(t *testing.T) {
	steps := []WorkflowStep{
		{WorkflowStepBase: WorkflowStepBase{Name: "a", Type: "t", ForEach: &ForEach{From: "bs"}, Outputs: StepOutputs{{Name: "as", ValueFrom: "x"}}}},
		{WorkflowStepBase: WorkflowStepBase{Name: "b", Type: "t", Inputs: StepInputs{{From: "as"}}, Outputs: StepOutputs{{Name: "bs", ValueFrom: "x"}}}},
	}
	errs := ValidateSteps(steps, WorkflowExecuteMode{Steps: ModeDAG}, field.NewPath("steps"))
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "dependency cycle") || errs[0].Field != "steps[0].forEach.from" {
		t.Errorf("errors: %v", errs)
	}
}

// In a loop, item, index and item.<path> are the iteration's; a run variable need not exist.
func TestIterationInputsNeedNoProducer(t *testing.T) {
	items := &runtime.RawExtension{Raw: []byte(`[{"a":1}]`)}
	steps := []WorkflowStep{
		{WorkflowStepBase: WorkflowStepBase{Name: "a", Type: "t", ForEach: &ForEach{Items: items},
			Inputs: StepInputs{{From: "item", ParameterKey: "x"}, {From: "index", ParameterKey: "i"}, {From: "item.a", ParameterKey: "y"}}}},
		{WorkflowStepBase: WorkflowStepBase{Name: "g", Type: TypeStepGroup, ForEach: &ForEach{Items: items}},
			SubSteps: []WorkflowStepBase{{Name: "s", Type: "t", Inputs: StepInputs{{From: "item.a"}}}}},
	}
	if errs := ValidateSteps(steps, WorkflowExecuteMode{Steps: ModeStepByStep}, field.NewPath("steps")); len(errs) > 0 {
		t.Errorf("errors: %v", errs)
	}
}
