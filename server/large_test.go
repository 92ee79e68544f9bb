package server_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/server/servertest"
)

// largeDefinitions: make outputs three strings of n bytes; measure outputs the lengths of
// the two it is given.
const largeDefinitions = `
apiVersion: core.oam.dev/v1beta1
kind: WorkflowStepDefinition
metadata: {name: make, namespace: default}
spec:
  schematic:
    cue:
      template: |
        import "strings"
        parameter: {n: int, seed: string}
        v0: strings.Repeat(parameter.seed+"0", div(parameter.n, 2))
        v1: strings.Repeat(parameter.seed+"1", div(parameter.n, 2))
        v2: strings.Repeat(parameter.seed+"2", div(parameter.n, 2))
---
apiVersion: core.oam.dev/v1beta1
kind: WorkflowStepDefinition
metadata: {name: measure, namespace: default}
spec:
  schematic:
    cue:
      template: |
        import "strings"
        parameter: {first: string, last: string}
        lengths: "\(len(parameter.first)) \(len(parameter.last)) \(strings.SliceRunes(parameter.first, 0, 2)) \(strings.SliceRunes(parameter.last, 0, 2))"
`

// recordSizer is what the SQL stores tell of the record a save of a run writes.
type recordSizer interface {
	RecordBytes(ctx context.Context, key engine.Key) (int, error)
}

// The run: ten steps output 30 values of 0.9 MB, twenty trivial steps follow, and a
// last step takes the first and the last output as inputs. Each value comes back whole to
// that step and in the API's answer, and the run's record, which every one of its
// transitions rewrote, stays small: before, it held the 27 MB and took 22 s.
func TestLargeOutputsStayOutOfTheRecord(t *testing.T) {
	t.Run("SQLite", func(t *testing.T) { testLargeOutputs(t, servertest.Options{}) })
	t.Run("PostgreSQL", func(t *testing.T) { testLargeOutputs(t, onPostgres(t)) })
}

func testLargeOutputs(t *testing.T, opts servertest.Options) {
	srv, op, admin := start(t, opts)
	for def := range strings.SplitSeq(largeDefinitions, "---") {
		admin.postYAML("/api/v1/definitions", def).want(t, http.StatusCreated)
	}
	const n = 900_000
	var steps []string
	for i := range 10 {
		outs := make([]string, 3)
		for j := range outs {
			outs[j] = fmt.Sprintf("{name: out%02d, valueFrom: v%d}", i*3+j, j)
		}
		steps = append(steps, fmt.Sprintf("- {name: make%d, type: make, properties: {n: %d, seed: %q}, outputs: [%s]}",
			i, n, string(rune('a'+i)), strings.Join(outs, ", ")))
	}
	for i := range 20 {
		steps = append(steps, fmt.Sprintf("- {name: trivial%d, type: print-message-in-status, properties: {message: step %d}}", i, i))
	}
	steps = append(steps, `- {name: measure, type: measure, inputs: [{from: out00, parameterKey: first}, {from: out29, parameterKey: last}], outputs: [{name: lengths, valueFrom: lengths}]}`)
	doc := "apiVersion: core.oam.dev/v1alpha1\nkind: WorkflowRun\nmetadata: {name: large, namespace: default}\nspec:\n  workflowSpec:\n    steps:\n" +
		"    " + strings.Join(steps, "\n    ") + "\n"
	r := op.postYAML("/api/v1/runs?wait=120s", doc).want(t, http.StatusOK).json(t)
	if phase := at(r, "status.status"); phase != "succeeded" {
		t.Fatalf("run %v: %v", phase, at(r, "status.message"))
	}
	if got := at(r, "stepflow.outputs.lengths"); got != "900000 900000 a0 j2" {
		t.Errorf("the last step measured %q, want both inputs whole", got)
	}
	for _, answer := range []map[string]any{r, op.get("/api/v1/runs/default/large").want(t, http.StatusOK).json(t)} {
		for i := range 30 {
			v, _ := at(answer, fmt.Sprintf("stepflow.outputs.out%02d", i)).(string)
			want := strings.Repeat(fmt.Sprintf("%c%d", 'a'+i/3, i%3), n/2)
			if v != want {
				t.Fatalf("output out%02d in the API's answer is %d bytes, want the %d made", i, len(v), len(want))
			}
		}
	}
	size, err := srv.Store.(recordSizer).RecordBytes(t.Context(), engine.Key{Namespace: "default", Name: "large"})
	if err != nil {
		t.Fatal(err)
	}
	if size > engine.InlineBudget+64<<10 {
		t.Errorf("the run's record is %d bytes: the outputs are in it", size)
	}
}

// The same with the outputs made by a loop's iterations, which the loop's record keeps besides
// the list it gathers them into: the iterations API shows each whole, and the record that every
// transition rewrote stays small.
func TestLargeLoopOutputsStayOutOfTheRecord(t *testing.T) {
	srv, op, admin := start(t, servertest.Options{})
	for def := range strings.SplitSeq(largeDefinitions, "---") {
		admin.postYAML("/api/v1/definitions", def).want(t, http.StatusCreated)
	}
	const n, iterations = 900_000, 4
	doc := fmt.Sprintf(`apiVersion: core.oam.dev/v1alpha1
kind: WorkflowRun
metadata: {name: loop, namespace: default}
spec:
  workflowSpec:
    steps:
    - name: make
      type: make
      forEach: {items: [a, b, c, d]}
      inputs: [{from: item, parameterKey: seed}]
      properties: {n: %d}
      outputs: [{name: made, valueFrom: v0}]
    - {name: trivial0, type: print-message-in-status, properties: {message: one}}
    - {name: trivial1, type: print-message-in-status, properties: {message: two}}
`, n)
	r := op.postYAML("/api/v1/runs?wait=120s", doc).want(t, http.StatusOK).json(t)
	if phase := at(r, "status.status"); phase != "succeeded" {
		t.Fatalf("run %v: %v", phase, at(r, "status.message"))
	}
	its, _ := at(op.get("/api/v1/runs/default/loop?iterations=make").want(t, http.StatusOK).json(t), "items").([]any)
	if len(its) != iterations {
		t.Fatalf("%d iterations in the API's answer, want %d", len(its), iterations)
	}
	for i, it := range its {
		v, _ := at(it, "outputs.made").(string)
		if want := strings.Repeat(fmt.Sprintf("%c0", 'a'+i), n/2); v != want {
			t.Errorf("iteration %d's output in the API's answer is %d bytes, want the %d made", i, len(v), len(want))
		}
	}
	size, err := srv.Store.(recordSizer).RecordBytes(t.Context(), engine.Key{Namespace: "default", Name: "loop"})
	if err != nil {
		t.Fatal(err)
	}
	if size > engine.InlineBudget+64<<10 {
		t.Errorf("the run's record is %d bytes: the iterations' outputs are in it", size)
	}
}
