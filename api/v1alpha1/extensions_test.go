package v1alpha1

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func TestMatrixItemsIsTheProductInNameOrder(t *testing.T) {
	combos, err := MatrixItems(&runtime.RawExtension{Raw: []byte(`{"tier":["a","b"],"region":["eu","us","asia"]}`)}, -1)
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
	if _, err := MatrixItems(&runtime.RawExtension{Raw: []byte(`[1, 2]`)}, -1); err == nil {
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

// Seven lists of a thousand items (27 KB of JSON) make 10^21 combinations: MatrixItems refuses
// them from the lists' lengths at once, building none, and MatrixSize says how many, the
// overflow included.
func TestMatrixItemsRefusesAHugeProductBeforeBuildingIt(t *testing.T) {
	m := &runtime.RawExtension{Raw: []byte(hugeMatrix(7, 1000))}
	start := time.Now()
	_, err := MatrixItems(m, 10000)
	if err == nil || !strings.Contains(err.Error(), "combinations, more than 10000") {
		t.Fatalf("MatrixItems of 1000^7 combinations: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("refusing took %s", d)
	}
	if n, err := MatrixSize(m); err != nil || n != math.MaxInt {
		t.Errorf("MatrixSize = %d, %v; want math.MaxInt for an overflowing product", n, err)
	}
	// What refusing allocates is decoding the 7000 values, not one combination: bounded by
	// the size of the input, whatever the product.
	small := &runtime.RawExtension{Raw: []byte(hugeMatrix(2, 1000))}
	allocs := testing.AllocsPerRun(3, func() { _, _ = MatrixItems(small, 10) })
	huge := testing.AllocsPerRun(3, func() { _, _ = MatrixItems(m, 10) })
	if huge > 5*allocs {
		t.Errorf("refusing 1000^7 combinations made %.0f allocations, refusing 1000^2 %.0f: it grows with the product", huge, allocs)
	}
	if n, err := MatrixSize(&runtime.RawExtension{Raw: []byte(`{"a":[1,2,3],"b":[],"c":[1,2]}`)}); n != 0 || err != nil {
		t.Errorf("a matrix with an empty list: %d, %v", n, err)
	}
	if items, err := MatrixItems(&runtime.RawExtension{Raw: []byte(`{"a":[1,2,3],"b":[]}`)}, -1); len(items) != 0 || err != nil {
		t.Errorf("a matrix with an empty list: %v, %v", items, err)
	}
}

// hugeMatrix is a matrix of lists lists of n numbers each.
func hugeMatrix(lists, n int) string {
	var b strings.Builder
	b.WriteString("{")
	for i := range lists {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, "%q:[", fmt.Sprintf("l%d", i))
		for j := range n {
			if j > 0 {
				b.WriteString(",")
			}
			b.WriteString(strconv.Itoa(j))
		}
		b.WriteString("]")
	}
	b.WriteString("}")
	return b.String()
}
