package manifest

import (
	"testing"

	"github.com/stepflow/stepflow/api/v1alpha1"
)

// validate decodes a file, validates its runs and Workflows and returns their problems located.
func validate(t *testing.T, file, data string) error {
	t.Helper()
	objs, err := Decode(file, []byte(data))
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	var errs Errors
	for _, run := range objs.Runs {
		errs = append(errs, objs.Explain(run, v1alpha1.ValidateWorkflowRun(run))...)
	}
	for _, wf := range objs.Workflows {
		errs = append(errs, objs.Explain(wf, v1alpha1.ValidateWorkflow(wf))...)
	}
	return errs.errOrNil()
}

const run = "apiVersion: core.oam.dev/v1alpha1\nkind: WorkflowRun\nmetadata:\n  name: r\nspec:\n"

// TestValidationIsLocated checks each problem validation finds and where Explain puts it: at the
// key of the field, at the list item for an index, or at the nearest written field for a field
// that is missing.
func TestValidationIsLocated(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []wantErr
	}{{
		name: "no name",
		yaml: "apiVersion: core.oam.dev/v1alpha1\nkind: WorkflowRun\nmetadata:\n  namespace: prod\nspec: {workflowRef: w}\n",
		want: []wantErr{{"v.yaml:3:1", "metadata.name", "Required value: name or generateName is required"}},
	}, {
		name: "a name that is not a DNS subdomain",
		yaml: "apiVersion: core.oam.dev/v1alpha1\nkind: WorkflowRun\nmetadata:\n  name: Release_1\nspec: {workflowRef: w}\n",
		want: []wantErr{{"v.yaml:4:3", "metadata.name", `Invalid value: "Release_1": a lowercase RFC 1123 subdomain`}},
	}, {
		name: "a bad generateName",
		yaml: "apiVersion: core.oam.dev/v1alpha1\nkind: WorkflowRun\nmetadata:\n  generateName: Nightly-\nspec: {workflowRef: w}\n",
		want: []wantErr{{"v.yaml:4:3", "metadata.generateName", `Invalid value: "Nightly-"`}},
	}, {
		name: "neither steps nor a Workflow",
		yaml: run + "  context: {a: 1}\n",
		want: []wantErr{{"v.yaml:5:1", "spec.workflowSpec", "Required value: a run needs its steps in workflowSpec, or a Workflow named in workflowRef"}},
	}, {
		name: "a context that is not an object",
		yaml: run + "  workflowRef: w\n  context: [prod]\n",
		want: []wantErr{{"v.yaml:7:3", "spec.context", "context must be an object"}},
	}, {
		name: "unknown modes",
		yaml: run + "  workflowRef: w\n  mode:\n    steps: Parallel\n    subSteps: dag\n",
		want: []wantErr{
			{"v.yaml:8:5", "spec.mode.steps", `Unsupported value: "Parallel": supported values: "DAG", "StepByStep"`},
			{"v.yaml:9:5", "spec.mode.subSteps", `Unsupported value: "dag"`},
		},
	}, {
		name: "a step without a type",
		yaml: run + "  workflowSpec:\n    steps:\n    - name: a\n      properties: {x: 1}\n",
		want: []wantErr{{"v.yaml:8:7", "spec.workflowSpec.steps[0].type", "Required value: the step type"}},
	}, {
		name: "a name used in two groups",
		yaml: run + `  workflowSpec:
    steps:
    - name: g1
      type: step-group
      subSteps:
      - {name: deploy, type: t}
    - name: g2
      type: step-group
      subSteps:
      - {name: deploy, type: t}
`,
		want: []wantErr{{"v.yaml:15:10", "spec.workflowSpec.steps[1].subSteps[0].name", `Duplicate value: "deploy"`}},
	}, {
		name: "mode and subSteps on a step that is not a group",
		yaml: run + "  workflowSpec:\n    steps:\n    - name: a\n      type: apply\n      mode: DAG\n      subSteps: [{name: b, type: t}]\n",
		want: []wantErr{
			{"v.yaml:10:7", "spec.workflowSpec.steps[0].mode", "Forbidden: only a step-group has a mode"},
			{"v.yaml:11:7", "spec.workflowSpec.steps[0].subSteps", "Forbidden: only a step-group has subSteps"},
		},
	}, {
		name: "a group's mode and a nested group",
		yaml: run + "  workflowSpec:\n    steps:\n    - name: g\n      type: step-group\n      mode: Sequential\n      subSteps:\n      - name: h\n        type: step-group\n",
		want: []wantErr{
			{"v.yaml:10:7", "spec.workflowSpec.steps[0].mode", `Unsupported value: "Sequential"`},
			{"v.yaml:13:9", "spec.workflowSpec.steps[0].subSteps[0].type", "a sub-step cannot be a step-group: groups do not nest"},
		},
	}, {
		name: "dependsOn naming steps that are not there",
		yaml: run + `  mode: {steps: DAG}
  workflowSpec:
    steps:
    - name: a
      type: t
      dependsOn: [nothing, a, sub]
    - name: g
      type: step-group
      subSteps:
      - {name: sub, type: t, dependsOn: [a, sub2]}
      - {name: sub2, type: t}
`,
		want: []wantErr{
			{"v.yaml:11:19", "spec.workflowSpec.steps[0].dependsOn[0]", `Invalid value: "nothing": no step has this name`},
			{"v.yaml:11:28", "spec.workflowSpec.steps[0].dependsOn[1]", "a step cannot depend on itself"},
			{"v.yaml:11:31", "spec.workflowSpec.steps[0].dependsOn[2]", "sub is a sub-step of step-group g; a top-level step depends on top-level steps"},
			{"v.yaml:15:42", "spec.workflowSpec.steps[1].subSteps[0].dependsOn[0]", "a is not in step-group g; a sub-step depends on the sub-steps of its own group"},
		},
	}, {
		name: "a dependsOn cycle",
		yaml: run + `  mode: {steps: DAG}
  workflowSpec:
    steps:
    - {name: a, type: t, dependsOn: [c]}
    - {name: b, type: t, dependsOn: [a]}
    - {name: c, type: t, dependsOn: [b]}
`,
		want: []wantErr{{"v.yaml:9:38", "spec.workflowSpec.steps[0].dependsOn[0]", "dependency cycle: a depends on c, c depends on b, b depends on a"}},
	}, {
		name: "a cycle through an input",
		yaml: run + `  mode: {steps: DAG}
  workflowSpec:
    steps:
    - name: build
      type: t
      dependsOn: [test]
      outputs: [{name: image, valueFrom: output.image}]
    - name: test
      type: t
      inputs: [{from: image, parameterKey: image}]
`,
		want: []wantErr{{"v.yaml:11:19", "spec.workflowSpec.steps[0].dependsOn[0]", `dependency cycle: build depends on test, test takes input "image" from build`}},
	}, {
		name: "an input from a later step in StepByStep mode",
		yaml: run + `  workflowSpec:
    steps:
    - name: use
      type: t
      inputs: [{from: v}]
    - name: make
      type: t
      outputs: [{name: v, valueFrom: x}]
`,
		want: []wantErr{{"v.yaml:10:17", "spec.workflowSpec.steps[0].inputs[0].from", `dependency cycle: use takes input "v" from make, make runs after use (StepByStep)`}},
	}, {
		name: "a cycle between groups through their sub-steps",
		yaml: run + `  mode: {steps: DAG}
  workflowSpec:
    steps:
    - name: g1
      type: step-group
      dependsOn: [g2]
      subSteps:
      - {name: s1, type: t, outputs: [{name: x, valueFrom: y}]}
    - name: g2
      type: step-group
      subSteps:
      - {name: s2, type: t, inputs: [{from: x}]}
`,
		want: []wantErr{{"v.yaml:11:19", "spec.workflowSpec.steps[0].dependsOn[0]",
			`dependency cycle: g1 depends on g2, s2 (in step-group g2) takes input "x" from s1 (in step-group g1)`}},
	}, {
		name: "a sub-step reading its own group's output",
		yaml: run + `  workflowSpec:
    steps:
    - name: g
      type: step-group
      outputs: [{name: x, valueFrom: y}]
      subSteps:
      - {name: s, type: t, inputs: [{from: x}]}
`,
		want: []wantErr{{"v.yaml:12:38", "spec.workflowSpec.steps[0].subSteps[0].inputs[0].from",
			"step-group g runs its sub-steps before it finishes"}},
	}, {
		name: "timeouts",
		yaml: run + "  workflowSpec:\n    steps:\n    - {name: a, type: t, timeout: 1d}\n    - {name: b, type: t, timeout: -5m}\n    - {name: c, type: t, timeout: 0s}\n",
		want: []wantErr{
			{"v.yaml:8:26", "spec.workflowSpec.steps[0].timeout", `Invalid value: "1d": a Go duration`},
			{"v.yaml:9:26", "spec.workflowSpec.steps[1].timeout", "a timeout cannot be negative"},
		},
	}, {
		name: "inputs and outputs",
		yaml: run + `  workflowSpec:
    steps:
    - name: a
      type: t
      outputs:
      - {name: x}
      - {valueFrom: y}
      - {name: self, valueFrom: z}
      inputs:
      - {from: nowhere, parameterKey: p}
      - {parameterKey: q}
      - {from: self}
`,
		want: []wantErr{
			{"v.yaml:11:9", "spec.workflowSpec.steps[0].outputs[0].valueFrom", "Required value: the CUE expression"},
			{"v.yaml:12:9", "spec.workflowSpec.steps[0].outputs[1].name", "Required value: the run variable"},
			{"v.yaml:15:10", "spec.workflowSpec.steps[0].inputs[0].from", `Invalid value: "nowhere": no step of the run outputs this variable`},
			{"v.yaml:16:9", "spec.workflowSpec.steps[0].inputs[1].from", "Required value: the run variable the input is read from"},
			{"v.yaml:17:10", "spec.workflowSpec.steps[0].inputs[2].from", "only this step outputs this variable"},
		},
	}, {
		name: "an empty if",
		yaml: run + "  workflowSpec:\n    steps:\n    - {name: a, type: t, if: '  '}\n",
		want: []wantErr{{"v.yaml:8:26", "spec.workflowSpec.steps[0].if", "an empty condition"}},
	}, {
		name: "a Workflow",
		yaml: `apiVersion: core.oam.dev/v1alpha1
kind: Workflow
metadata:
  namespace: prod
mode: {steps: DAG}
steps:
- {name: a, type: t, dependsOn: [b]}
- {name: b, type: t, dependsOn: [a]}
`,
		want: []wantErr{
			{"v.yaml:3:1", "metadata.name", "Required value"},
			{"v.yaml:7:34", "steps[0].dependsOn[0]", "dependency cycle: a depends on b, b depends on a"},
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkErrors(t, validate(t, "v.yaml", tt.yaml), tt.want)
		})
	}
}

func TestValidationAccepts(t *testing.T) {
	// Steps may depend on later steps in DAG mode, and sub-steps on siblings in a StepByStep group.
	err := validate(t, "v.yaml", run+`  mode: {steps: DAG}
  workflowSpec:
    steps:
    - {name: a, type: t, dependsOn: [b], inputs: [{from: x}]}
    - name: b
      type: step-group
      mode: StepByStep
      subSteps:
      - {name: b1, type: t, outputs: [{name: x, valueFrom: v}]}
      - {name: b2, type: t, dependsOn: [b1], inputs: [{from: x}], timeout: 1h30m, if: always}
`)
	if err != nil {
		t.Error(err)
	}
}
