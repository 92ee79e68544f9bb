package manifest

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/stepflow/stepflow/api/v1alpha1"
)

// TestExtensionShapes decodes and validates the stepflow extensions as a user writes them (see
// docs/extensions.md), and checks that what was written is what was decoded.
func TestExtensionShapes(t *testing.T) {
	files, err := filepath.Glob("testdata/extensions/*.yaml")
	if err != nil || len(files) != 2 {
		t.Fatalf("files %v, %v", files, err)
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(data, []byte("# Covers ")) {
			t.Errorf("%s does not start by saying what it covers", file)
		}
	}
	objs, err := DecodeFiles(files...)
	if err != nil {
		t.Fatal(err)
	}
	runs := map[string]*v1alpha1.WorkflowRun{}
	for _, run := range objs.Runs {
		if errs := objs.Explain(run, v1alpha1.ValidateWorkflowRun(run)); len(errs) > 0 {
			t.Errorf("run %s: %v", run.Name, errs)
		}
		runs[run.Name] = run
	}
	for _, wf := range objs.Workflows {
		if errs := objs.Explain(wf, v1alpha1.ValidateWorkflow(wf)); len(errs) > 0 {
			t.Errorf("Workflow %s: %v", wf.Name, errs)
		}
		if wf.Steps[0].Mode != v1alpha1.ModeSwitch || wf.Steps[0].SubSteps[0].If != `context.stage == "canary"` {
			t.Errorf("Switch group decoded as %+v", wf.Steps[0])
		}
		if p := wf.Parameters; len(p) != 3 || p[0].Sensitive || !p[2].Sensitive {
			t.Errorf("parameters decoded as %+v, want token sensitive", p)
		}
	}

	fleet := runs["fleet-rollout"].Spec.WorkflowSpec.Steps
	if f := fleet[1].ForEach; f == nil || f.From != "clusters" || f.Parallelism != 5 || f.FailFast == nil || *f.FailFast {
		t.Errorf("deploy forEach is %+v", f)
	}
	if f := fleet[2].ForEach; f == nil || string(f.Items.Raw) != `[{"name":"api","path":"/healthz"},{"name":"worker","path":"/ready"}]` {
		t.Errorf("smoke forEach items are %s", f.Items.Raw)
	}
	combos, err := v1alpha1.MatrixItems(fleet[3].Matrix, -1)
	if err != nil || len(combos) != 4 || string(combos[1]["tier"]) != `"silver"` {
		t.Errorf("soak matrix expands to %v, %v", combos, err)
	}

	release := runs["payments-release"].Spec.WorkflowSpec.Steps
	if release[0].ForEach == nil || release[0].SubSteps[0].Type != v1alpha1.TypeWorkflow {
		t.Errorf("regions group is %+v", release[0])
	}
	r := release[1].Retry
	if r == nil || *r.Limit != 3 || r.Backoff.Initial != "1s" || r.Backoff.Factor.Value() != 2 || r.Backoff.Max != "1m" {
		t.Errorf("announce retry is %+v", r)
	}
}

// TestExtensionProblemsAreLocated checks that misspelt extension fields are decoding errors and
// that their validation problems point at what is wrong.
func TestExtensionProblemsAreLocated(t *testing.T) {
	_, err := Decode("t.yaml", []byte(run+"  workflowSpec:\n    steps:\n    - {name: a, type: t, forEach: {item: [1]}}\n"))
	checkErrors(t, err, []wantErr{{"t.yaml:8:36", "spec.workflowSpec.steps[0].forEach.item", `unknown field "item"`}})

	tests := []struct {
		name string
		yaml string
		want []wantErr
	}{{
		name: "forEach over something that is not a list",
		yaml: run + "  workflowSpec:\n    steps:\n    - name: a\n      type: t\n      forEach: {items: {a: 1}}\n",
		want: []wantErr{{"v.yaml:10:17", "spec.workflowSpec.steps[0].forEach.items", "forEach iterates over a list"}},
	}, {
		name: "forEach with both items and from",
		yaml: run + "  workflowSpec:\n    steps:\n    - {name: p, type: t, outputs: [{name: v, valueFrom: x}]}\n    - {name: a, type: t, forEach: {items: [1], from: v}}\n",
		want: []wantErr{{"v.yaml:9:36", "spec.workflowSpec.steps[1].forEach.items", "one of them"}},
	}, {
		name: "a matrix value that is not a list",
		yaml: run + "  workflowSpec:\n    steps:\n    - {name: a, type: t, matrix: {zone: eu}}\n",
		want: []wantErr{{"v.yaml:8:26", "spec.workflowSpec.steps[0].matrix", "matrix zone: not a list"}},
	}, {
		name: "item outside a loop is a run variable",
		yaml: run + "  workflowSpec:\n    steps:\n    - {name: a, type: t, inputs: [{from: item}]}\n",
		want: []wantErr{{"v.yaml:8:36", "spec.workflowSpec.steps[0].inputs[0].from", "no step of the run outputs this variable"}},
	}, {
		name: "Switch without cases, and Switch on a step that is not a group",
		yaml: run + "  workflowSpec:\n    steps:\n    - {name: g, type: step-group, mode: Switch}\n    - {name: a, type: t, mode: Switch}\n",
		want: []wantErr{
			{"v.yaml:8:7", "spec.workflowSpec.steps[0].subSteps", "a Switch step-group needs sub-steps"},
			{"v.yaml:9:26", "spec.workflowSpec.steps[1].mode", "only a step-group has a mode"},
		},
	}, {
		name: "a retry policy out of range",
		yaml: run + "  workflowSpec:\n    steps:\n    - name: a\n      type: t\n      retry: {limit: -1, backoff: {initial: soon, factor: 0.5}}\n",
		want: []wantErr{
			{"v.yaml:10:15", "spec.workflowSpec.steps[0].retry.limit", "cannot be negative"},
			{"v.yaml:10:36", "spec.workflowSpec.steps[0].retry.backoff.initial", "a positive Go duration"},
			{"v.yaml:10:51", "spec.workflowSpec.steps[0].retry.backoff.factor", `Invalid value: "0.5": a factor of at least 1`},
		},
	}, {
		name: "a workflow step without a template",
		yaml: run + "  workflowSpec:\n    steps:\n    - {name: a, type: workflow, properties: {context: [1]}}\n",
		want: []wantErr{
			{"v.yaml:8:33", "spec.workflowSpec.steps[0].properties.name", "Required value: the Workflow template"},
			{"v.yaml:8:46", "spec.workflowSpec.steps[0].properties.context", "the child run's context is an object"},
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkErrors(t, validate(t, "v.yaml", tt.yaml), tt.want)
		})
	}
}
