package manifest

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stepflow/stepflow/api/v1alpha1"
)

// wantErr is a problem a test expects: at is "file:line:col", msg a part of the message.
type wantErr struct {
	at, path, msg string
}

// checkErrors asserts that err is an Errors holding exactly want, in order.
func checkErrors(t *testing.T, err error, want []wantErr) {
	t.Helper()
	var list Errors
	if !errors.As(err, &list) {
		t.Fatalf("got error %v (%T), want an Errors", err, err)
	}
	for i := 0; i < len(list) || i < len(want); i++ {
		switch {
		case i >= len(list):
			t.Errorf("missing problem %s %s: %s", want[i].at, want[i].path, want[i].msg)
		case i >= len(want):
			t.Errorf("unexpected problem %v", list[i])
		default:
			got, w := list[i], want[i]
			at := fmt.Sprintf("%s:%d:%d", got.File, got.Line, got.Column)
			if at != w.at || got.Path != w.path || !strings.Contains(got.Msg, w.msg) {
				t.Errorf("problem %d is\n\t%v\nwant at %s, path %q, message containing %q", i, got, w.at, w.path, w.msg)
			}
		}
	}
}

const head = "apiVersion: core.oam.dev/v1alpha1\nkind: WorkflowRun\nmetadata: {name: r}\n"

func TestDecodeRejects(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []wantErr
	}{{
		name: "unknown field",
		yaml: head + `spec:
  workflowSpec:
    steps:
    - name: a
      type: t
      retries: 3
`,
		want: []wantErr{{"t.yaml:9:7", "spec.workflowSpec.steps[0].retries", `unknown field "retries"`}},
	}, {
		name: "field in the wrong case",
		yaml: head + "spec:\n  workflowRef: w\n  Context: {}\n",
		want: []wantErr{{"t.yaml:6:3", "spec.Context", `unknown field "Context" (did you mean "context"?)`}},
	}, {
		name: "a string for an integer",
		yaml: "apiVersion: core.oam.dev/v1alpha1\nkind: WorkflowRun\nmetadata:\n  name: r\n  generation: \"5\"\nspec: {workflowRef: w}\n",
		want: []wantErr{{"t.yaml:5:15", "metadata.generation", `expected an integer that fits int64, got a string ("5")`}},
	}, {
		name: "a number for a string",
		yaml: head + "spec:\n  workflowSpec:\n    steps:\n    - {name: a, type: t, timeout: 10}\n",
		want: []wantErr{{"t.yaml:7:35", "spec.workflowSpec.steps[0].timeout", "expected a string, got a number (10)"}},
	}, {
		name: "a list where an object is expected",
		yaml: head + "spec:\n  - workflowRef: w\n",
		want: []wantErr{{"t.yaml:5:3", "spec", "expected an object, got a list"}},
	}, {
		name: "an object where a list is expected",
		yaml: head + "spec:\n  workflowSpec:\n    steps: {name: a}\n",
		want: []wantErr{{"t.yaml:6:12", "spec.workflowSpec.steps", "expected a list, got an object"}},
	}, {
		name: "an object where a string is expected",
		yaml: head + "spec:\n  workflowRef:\n    name: w\n",
		want: []wantErr{{"t.yaml:6:5", "spec.workflowRef", "expected a string, got an object"}},
	}, {
		name: "a boolean for a string in a map",
		yaml: "apiVersion: core.oam.dev/v1alpha1\nkind: WorkflowRun\nmetadata:\n  name: r\n  labels:\n    canary: true\nspec: {workflowRef: w}\n",
		want: []wantErr{{"t.yaml:6:13", "metadata.labels[canary]", "expected a string, got a boolean (true)"}},
	}, {
		name: "duplicate key",
		yaml: head + "spec:\n  workflowRef: w\n  workflowRef: v\n",
		want: []wantErr{{"t.yaml:6:3", "spec.workflowRef", `duplicate key "workflowRef" (first at line 5)`}},
	}, {
		name: "duplicate key in properties",
		yaml: head + "spec:\n  workflowSpec:\n    steps:\n    - name: a\n      type: t\n      properties:\n        url: x\n        url: y\n",
		want: []wantErr{{"t.yaml:11:9", "spec.workflowSpec.steps[0].properties.url", `duplicate key "url" (first at line 10)`}},
	}, {
		name: "every problem of a document is reported",
		yaml: head + `spec:
  workflowRef: 1
  workflowSpec:
    steps:
    - {name: a, type: t, dependsOn: b}
    - {name: b, type: t, outputs: [{name: x, exportKey: y}]}
`,
		want: []wantErr{
			{"t.yaml:5:16", "spec.workflowRef", "expected a string, got a number (1)"},
			{"t.yaml:8:37", "spec.workflowSpec.steps[0].dependsOn", `expected a list, got a string ("b")`},
			{"t.yaml:9:46", "spec.workflowSpec.steps[1].outputs[0].exportKey", `unknown field "exportKey": write the expression as valueFrom`},
		},
	}, {
		name: "problems of several documents",
		yaml: head + "spec: {workflowRef: 1}\n---\n" + head + "spec: {workflowRef: [a]}\n",
		want: []wantErr{
			{"t.yaml:4:21", "spec.workflowRef", "expected a string, got a number (1)"},
			{"t.yaml:9:21", "spec.workflowRef", "expected a string, got a list"},
		},
	}, {
		name: "KubeVela's legacy fromKey output",
		// As in kubevela/workflow e2e/test-data/config-workflow-run.yaml.
		yaml: head + "spec:\n  workflowSpec:\n    steps:\n    - name: load-limits\n      type: read-config\n      outputs:\n      - fromKey: limits\n        name: card-limits\n",
		want: []wantErr{{"t.yaml:10:9", "spec.workflowSpec.steps[0].outputs[0].fromKey", `unknown field "fromKey": write the expression as valueFrom`}},
	}, {
		name: "a sub-step with sub-steps",
		yaml: head + "spec:\n  workflowSpec:\n    steps:\n    - name: g\n      type: step-group\n      subSteps:\n      - name: h\n        type: step-group\n        subSteps: []\n",
		want: []wantErr{{"t.yaml:12:9", "spec.workflowSpec.steps[0].subSteps[0].subSteps", "step-groups do not nest"}},
	}, {
		name: "a Workflow with a spec",
		yaml: "apiVersion: core.oam.dev/v1alpha1\nkind: Workflow\nmetadata: {name: w}\nspec:\n  steps: []\n",
		want: []wantErr{{"t.yaml:4:1", "spec", "a Workflow has mode and steps at the top level"}},
	}, {
		name: "malformed YAML",
		yaml: head + "spec:\n  workflowRef: [a\n  context: {}\n",
		// The parser gives the line where the list starts.
		want: []wantErr{{"t.yaml:5:0", "", "invalid YAML: did not find expected ',' or ']'"}},
	}, {
		name: "a key at the wrong indentation",
		yaml: head + "spec:\n  workflowRef: w\n context: {}\n",
		want: []wantErr{{"t.yaml:6:0", "", "invalid YAML: did not find expected key"}},
	}, {
		name: "a problem on the first line",
		yaml: "kind: a: b\n",
		want: []wantErr{{"t.yaml:1:0", "", "invalid YAML: mapping values are not allowed in this context"}},
	}, {
		name: "bytes that are not UTF-8",
		yaml: head + "spec: {workflowRef: \xff}\n",
		want: []wantErr{{"t.yaml:4:21", "", "invalid YAML: invalid leading UTF-8 octet"}},
	}, {
		name: "a control character",
		yaml: head + "spec: {workflowRef: \x01}\n",
		want: []wantErr{{"t.yaml:4:21", "", "invalid YAML: control characters are not allowed"}},
	}, {
		name: "an unknown anchor",
		yaml: head + "spec: {workflowRef: *w}\n",
		want: []wantErr{{"t.yaml:4:21", "", "invalid YAML: unknown anchor 'w' referenced"}},
	}, {
		name: "tab indentation",
		yaml: head + "spec:\n\tworkflowRef: w\n",
		want: []wantErr{{"t.yaml:5:0", "", "invalid YAML: found character that cannot start any token"}},
	}, {
		name: "an unknown kind",
		yaml: "apiVersion: core.oam.dev/v1beta1\nkind: Component\nmetadata: {name: a}\n",
		want: []wantErr{{"t.yaml:2:7", "kind", "unsupported kind Component (apiVersion core.oam.dev/v1beta1)"}},
	}, {
		name: "a known kind in another version",
		yaml: "apiVersion: core.oam.dev/v1beta1\nkind: WorkflowRun\nmetadata: {name: a}\n",
		want: []wantErr{{"t.yaml:1:13", "apiVersion", "kind WorkflowRun is read as apiVersion core.oam.dev/v1alpha1, not core.oam.dev/v1beta1"}},
	}, {
		name: "no kind and no apiVersion",
		yaml: "metadata: {name: a}\n",
		want: []wantErr{
			{"t.yaml:1:1", "apiVersion", "missing apiVersion"},
			{"t.yaml:1:1", "kind", "missing kind"},
		},
	}, {
		name: "a kind that is not a string",
		yaml: "apiVersion: core.oam.dev/v1alpha1\nkind: [WorkflowRun]\n",
		want: []wantErr{{"t.yaml:2:7", "kind", "expected a string, got a list"}},
	}, {
		name: "a document that is not an object",
		yaml: "- apiVersion: core.oam.dev/v1alpha1\n",
		want: []wantErr{{"t.yaml:1:1", "", "a document must be an object with apiVersion and kind, got a list"}},
	}, {
		name: "an alias inside its own anchor",
		yaml: head + "spec:\n  workflowRef: w\n  context: &c\n    self: *c\n",
		want: []wantErr{{"t.yaml:7:11", "spec.context.self", "alias *c is used inside its own anchor &c"}},
	}, {
		name: "a number JSON cannot hold",
		yaml: head + "spec:\n  workflowRef: w\n  context: {ratio: .nan}\n",
		want: []wantErr{{"t.yaml:6:20", "spec.context.ratio", ".nan is not a number JSON can hold"}},
	}, {
		name: "a custom tag",
		yaml: head + "spec:\n  workflowRef: w\n  context: {token: !secret abc}\n",
		want: []wantErr{{"t.yaml:6:20", "spec.context.token", "unsupported YAML tag !secret"}},
	}, {
		name: "a key that is not a string",
		yaml: head + "spec:\n  workflowRef: w\n  context:\n    ? [a, b]\n    : c\n",
		want: []wantErr{{"t.yaml:7:7", "spec.context", "a key must be a string, got a list"}},
	}, {
		name: "a merge key with a number",
		yaml: head + "spec:\n  workflowRef: w\n  context:\n    <<: 5\n",
		want: []wantErr{{"t.yaml:7:9", "spec.context", "a merge key (<<) needs an object or a list of objects, got a number (5)"}},
	}, {
		name: "an invalid time",
		yaml: "apiVersion: core.oam.dev/v1alpha1\nkind: WorkflowRun\nmetadata:\n  name: r\n  creationTimestamp: yesterday\nspec: {workflowRef: w}\n",
		want: []wantErr{{"t.yaml:5:22", "metadata.creationTimestamp", "invalid Time"}},
	}, {
		name: "a definition without a name",
		yaml: "apiVersion: core.oam.dev/v1beta1\nkind: WorkflowStepDefinition\nmetadata: {namespace: vela-system}\nspec: {schematic: {cue: {template: 'x: 1'}}}\n",
		want: []wantErr{{"t.yaml:3:1", "metadata.name", "a WorkflowStepDefinition needs a name"}},
	}, {
		name: "an object declared twice",
		yaml: head + "spec: {workflowRef: w}\n---\n" + "apiVersion: core.oam.dev/v1alpha1\nkind: WorkflowRun\nmetadata: {name: r, namespace: default}\nspec: {workflowRef: v}\n",
		want: []wantErr{{"t.yaml:8:12", "metadata.name", "WorkflowRun default/r is declared twice (first at t.yaml:1)"}},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, err := Decode("t.yaml", []byte(tt.yaml))
			if objs != nil {
				t.Errorf("Decode returned objects along with the error")
			}
			checkErrors(t, err, tt.want)
		})
	}
}

// laughs returns a document whose context holds levels of lists of 9 aliases to the level
// below: 9^levels strings once expanded.
func laughs(levels int, merge bool) string {
	var b strings.Builder
	b.WriteString(head + "spec:\n  workflowRef: w\n  context:\n    l0: &l0 {lol: lol}\n")
	for i := 1; i <= levels; i++ {
		refs := strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*l%d, ", i-1), 9), ", ")
		if merge {
			fmt.Fprintf(&b, "    l%d: &l%d {<<: [%s]}\n", i, i, refs)
		} else {
			fmt.Fprintf(&b, "    l%d: &l%d [%s]\n", i, i, refs)
		}
	}
	return b.String()
}

func TestDecodeBoundsAliasExpansion(t *testing.T) {
	// 9^9 lists would expand to about 400 million nodes.
	_, err := Decode("t.yaml", []byte(laughs(9, false)))
	// Reported at the alias whose expansion goes over the bound.
	checkErrors(t, err, []wantErr{{"t.yaml:13:34", "spec.context.l6[4]", "the document has more than 1000000 YAML nodes, counting each use of an alias"}})

	// Merge keys do not multiply keys, but expanding them naively takes 9^9 steps.
	_, err = Decode("t.yaml", []byte(laughs(9, true)))
	var list Errors
	if !errors.As(err, &list) || len(list) != 1 || !strings.Contains(list[0].Msg, "the document has more than 1000000 YAML nodes") {
		t.Errorf("merging 9^9 mappings: got %v, want one error about the expansion", err)
	}

	// A few levels are fine, and expand as written.
	objs, err := Decode("t.yaml", []byte(laughs(2, false)))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"l0":{"lol":"lol"},"l1":[` + strings.Repeat(`{"lol":"lol"},`, 8) + `{"lol":"lol"}],"l2":[`
	if got := string(objs.Runs[0].Spec.Context.Raw); !strings.HasPrefix(got, want) || strings.Count(got, "lol") != 2*(1+9+81) {
		t.Errorf("context is %s", got)
	}
}

func TestDecodeBoundsAliasedText(t *testing.T) {
	// 1 MiB of text used 20 times.
	var b strings.Builder
	b.WriteString(head + "spec:\n  workflowRef: w\n  context:\n    big: &big " + strings.Repeat("x", 1<<20) + "\n")
	b.WriteString("    copies: [" + strings.TrimSuffix(strings.Repeat("*big, ", 20), ", ") + "]\n")
	_, err := Decode("t.yaml", []byte(b.String()))
	checkErrors(t, err, []wantErr{{"t.yaml:8:98", "spec.context.copies[14]", "the document has more than 16777216 bytes of text"}})
}

func TestDecodeRejectsLargeFiles(t *testing.T) {
	data := []byte(head + "spec: {workflowRef: w}\n# " + strings.Repeat("x", MaxFileSize) + "\n")
	_, err := Decode("big.yaml", data)
	checkErrors(t, err, []wantErr{{"big.yaml:0:0", "", "larger than 4194304 bytes"}})
}

func TestDecodeAccepts(t *testing.T) {
	t.Run("defaults", func(t *testing.T) {
		objs, err := Decode("t.yaml", []byte(`
# a comment-only document, then an empty one
---
---
apiVersion: core.oam.dev/v1alpha1
kind: WorkflowRun
metadata:
  generateName: nightly-
spec:
  workflowSpec:
    steps:
    - type: a
    - name: named
      type: step-group
      subSteps:
      - type: b
      - name: c
        type: d
    - type: e
`))
		if err != nil {
			t.Fatal(err)
		}
		run := objs.Runs[0]
		if run.Namespace != "default" || run.Name != "" || run.GenerateName != "nightly-" {
			t.Errorf("metadata is %+v", run.ObjectMeta)
		}
		var names []string
		for _, s := range run.Spec.WorkflowSpec.Steps {
			names = append(names, s.Name)
			for _, sub := range s.SubSteps {
				names = append(names, sub.Name)
			}
		}
		if got := strings.Join(names, " "); got != "step-0 named step-1-0 c step-2" {
			t.Errorf("step names are %s", got)
		}
	})

	t.Run("aliases and merge keys", func(t *testing.T) {
		objs, err := Decode("t.yaml", []byte(head+`spec:
  workflowSpec:
    steps:
    - &common
      name: a
      type: apply
      timeout: 1m
      properties: &props {image: nginx, ports: [80]}
    - <<: *common
      name: b
      properties: *props
    - <<: [{type: first, if: always}, *common]
      name: c
`))
		if err != nil {
			t.Fatal(err)
		}
		steps := objs.Runs[0].Spec.WorkflowSpec.Steps
		b, c := steps[1], steps[2]
		if b.Name != "b" || b.Type != "apply" || b.Timeout != "1m" || string(b.Properties.Raw) != `{"image":"nginx","ports":[80]}` {
			t.Errorf("step b is %+v, properties %s", b.WorkflowStepBase, b.Properties.Raw)
		}
		if c.Name != "c" || c.Type != "first" || c.If != "always" || c.Timeout != "1m" {
			t.Errorf("step c is %+v", c.WorkflowStepBase)
		}
	})

	t.Run("free-form values", func(t *testing.T) {
		objs, err := Decode("t.yaml", []byte(head+`spec:
  workflowRef: w
  context:
    hex: 0x10
    float: 1.5e3
    date: 2024-01-01
    quoted: "5"
    html: <a & b>
    none: ~
    "dotted.key": {yes: no}
    list: [true, -1, '', null]
`))
		if err != nil {
			t.Fatal(err)
		}
		want := `{"hex":16,"float":1500,"date":"2024-01-01","quoted":"5","html":"<a & b>","none":null,` +
			`"dotted.key":{"yes":"no"},"list":[true,-1,"",null]}`
		if got := string(objs.Runs[0].Spec.Context.Raw); got != want {
			t.Errorf("context is\n\t%s\nwant\n\t%s", got, want)
		}
	})

	t.Run("escapes", func(t *testing.T) {
		objs, err := Decode("t.yaml", []byte(head+`spec:
  workflowRef: w
  context: {s: "q\"b\\ \t\x01\u2028\u00e9\U0001F600"}
`))
		if err != nil {
			t.Fatal(err)
		}
		raw := objs.Runs[0].Spec.Context.Raw
		var got struct{ S string }
		if err := json.Unmarshal(raw, &got); err != nil || got.S != "q\"b\\ \t\x01\u2028é😀" {
			t.Errorf("context %s reads as %q (%v)", raw, got.S, err)
		}
	})

	t.Run("JSON", func(t *testing.T) {
		objs, err := Decode("t.json", []byte("{\n\t\"apiVersion\": \"core.oam.dev/v1alpha1\",\n\t\"kind\": \"WorkflowRun\",\n"+
			"\t\"metadata\": {\"name\": \"j\", \"namespace\": \"prod\"},\n"+
			"\t\"spec\": {\"workflowSpec\": {\"steps\": [{\"name\": \"a\", \"type\": \"t\", \"properties\": {\"n\": [1, 2.5]}}]}}\n}\n"))
		if err != nil {
			t.Fatal(err)
		}
		run := objs.Runs[0]
		if run.Name != "j" || run.Namespace != "prod" || string(run.Spec.WorkflowSpec.Steps[0].Properties.Raw) != `{"n":[1,2.5]}` {
			t.Errorf("run is %+v", run)
		}
	})

	t.Run("nulls", func(t *testing.T) {
		objs, err := Decode("t.yaml", []byte(head+"spec:\n  workflowRef: w\n  context: null\n  mode:\nstatus:\n"))
		if err != nil {
			t.Fatal(err)
		}
		if s := objs.Runs[0].Spec; s.Context != nil || s.Mode != nil || s.WorkflowRef != "w" {
			t.Errorf("spec is %+v", s)
		}
	})
}

func TestDefaultStepNamesMatchValidation(t *testing.T) {
	// A written name that collides with a filled-in one is a duplicate, as in KubeVela.
	objs, err := Decode("t.yaml", []byte(head+"spec:\n  workflowSpec:\n    steps:\n    - type: a\n    - {name: step-0, type: b}\n"))
	if err != nil {
		t.Fatal(err)
	}
	run := objs.Runs[0]
	checkErrors(t, objs.Explain(run, v1alpha1.ValidateWorkflowRun(run)).errOrNil(), []wantErr{
		{"t.yaml:8:8", "spec.workflowSpec.steps[1].name", `Duplicate value: "step-0"`},
	})
}
