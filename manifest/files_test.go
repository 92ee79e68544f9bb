package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/stepflow/stepflow/api/v1alpha1"
)

// TestCompatibleShapes decodes and validates runs, Workflows and definitions written in the
// shapes KubeVela's own examples use (outputs with imports, nested input keys, DAG, groups,
// context, workflowRef, legacy vela/op definitions): stepflow must accept them as written.
func TestCompatibleShapes(t *testing.T) {
	files, err := filepath.Glob("testdata/compat/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	objs, err := DecodeFiles(files...)
	if err != nil {
		t.Fatal(err)
	}
	if len(objs.Runs) != 4 || len(objs.Workflows) != 1 || len(objs.Definitions) != 2 {
		t.Errorf("decoded %d runs, %d Workflows, %d definitions; want 4, 1, 2", len(objs.Runs), len(objs.Workflows), len(objs.Definitions))
	}
	for _, run := range objs.Runs {
		if errs := objs.Explain(run, v1alpha1.ValidateWorkflowRun(run)); len(errs) > 0 {
			t.Errorf("run %s: %v", run.Name, errs)
		}
	}
	for _, wf := range objs.Workflows {
		if errs := objs.Explain(wf, v1alpha1.ValidateWorkflow(wf)); len(errs) > 0 {
			t.Errorf("Workflow %s: %v", wf.Name, errs)
		}
	}

	// A few values, to see that what was decoded is what was written.
	byName := map[string]*v1alpha1.WorkflowRun{}
	for _, run := range objs.Runs {
		byName[run.Name] = run
	}
	req := byName["payments-check"].Spec.WorkflowSpec.Steps
	if got := req[0].Outputs[0].ValueFrom; !strings.HasPrefix(got, "import \"strconv\"\n\"Payments p99 latency: \"") {
		t.Errorf("request output valueFrom is %q", got)
	}
	if in := req[1].Inputs[0]; in.From != "latency" || in.ParameterKey != "slack.message.text" {
		t.Errorf("notification input is %+v", in)
	}
	if got := req[2].If; got != "status.fetch.failed" {
		t.Errorf("failed-notification if is %q", got)
	}
	if got := byName["fanout"].Spec.Mode; got == nil || got.Steps != v1alpha1.ModeDAG {
		t.Errorf("fanout mode is %+v", got)
	}
	rollout := byName["payments-rollout"]
	if got := rollout.Spec.WorkflowSpec.Steps; len(got) != 3 || got[1].Name != "services" || len(got[1].SubSteps) != 2 || got[2].If != "always" {
		t.Errorf("payments-rollout steps are %+v", got)
	}
	if got := string(rollout.Spec.Context.Raw); got != `{"env":"test"}` {
		t.Errorf("payments-rollout context is %s", got)
	}
	var vars struct {
		Variable struct {
			EnableNAT bool     `json:"enable_nat"`
			Version   string   `json:"cluster_version"`
			CIDRs     []string `json:"subnet_cidrs"`
			Nodes     int      `json:"node_count"`
		} `json:"variable"`
	}
	if err := json.Unmarshal(rollout.Spec.WorkflowSpec.Steps[0].Properties.Raw, &vars); err != nil {
		t.Fatal(err)
	}
	if v := vars.Variable; !v.EnableNAT || v.Version != "1.31.2" || len(v.CIDRs) != 3 || v.Nodes != 3 {
		t.Errorf("terraform variables are %+v", v)
	}
	if got := byName["release-from-template"].Spec.WorkflowRef; got != "payments-release" {
		t.Errorf("workflowRef is %q", got)
	}
	if tmpl := objs.Definitions[0].Spec.Schematic.CUE.Template; !strings.Contains(tmpl, "second: op.#Suspend & {}") {
		t.Errorf("template is %q", tmpl)
	}
}

// TestSpecExampleRoundTrip decodes the example of the workflow API specification, checks what it
// says, and checks that its JSON form decodes to the same objects.
func TestSpecExampleRoundTrip(t *testing.T) {
	objs, err := DecodeFiles("testdata/spec-example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	run := objs.Runs[0]
	if errs := objs.Explain(run, v1alpha1.ValidateWorkflowRun(run)); len(errs) > 0 {
		t.Fatal(errs)
	}
	steps := run.Spec.WorkflowSpec.Steps
	var names []string
	for _, s := range steps {
		names = append(names, s.Name)
		for _, sub := range s.SubSteps {
			names = append(names, "  "+sub.Name)
		}
	}
	if got := strings.Join(names, ","); got != "get-version,prepare,  show,  record,approve,deploy,notify-failure" {
		t.Errorf("steps are %s", got)
	}
	if got := string(run.Spec.Context.Raw); got != `{"env":"prod"}` {
		t.Errorf("context is %s", got)
	}
	if got := string(steps[1].SubSteps[1].Properties.Raw); got != `{"configName":"release-info","data":{}}` {
		t.Errorf("record properties are %s", got)
	}
	if got := string(steps[3].Properties.Raw); got != `{"image":"nginx:1.25","replicas":2}` {
		t.Errorf("deploy properties are %s", got)
	}
	if s := steps[3]; s.If != `context.env == "prod" && status.approve.succeeded` || s.Timeout != "5m" {
		t.Errorf("deploy is %+v", s.WorkflowStepBase)
	}
	if in := steps[4].Inputs[0]; in.From != "tag" || in.ParameterKey != "slack.message.text" {
		t.Errorf("notify-failure input is %+v", in)
	}

	data, err := json.MarshalIndent(run, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	again, err := Decode("release.json", data)
	if err != nil {
		t.Fatalf("decoding the JSON form:\n%s\n%v", data, err)
	}
	if !reflect.DeepEqual(again.Runs[0], run) {
		t.Errorf("the JSON form decodes to\n%+v\nwant\n%+v", again.Runs[0], run)
	}
}

func TestDecodeFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	wf := write("wf.yaml", "apiVersion: core.oam.dev/v1alpha1\nkind: Workflow\nmetadata: {name: w}\nsteps: [{name: a, type: t}]\n")
	runs := write("runs.yaml", head+"spec: {workflowRef: w}\n---\n"+
		"apiVersion: core.oam.dev/v1alpha1\nkind: WorkflowRun\nmetadata: {name: other, namespace: prod}\nspec: {workflowRef: w}\n")

	objs, err := DecodeFiles(wf, runs)
	if err != nil {
		t.Fatal(err)
	}
	if len(objs.Workflows) != 1 || len(objs.Runs) != 2 || objs.Runs[1].Namespace != "prod" {
		t.Fatalf("decoded %+v", objs)
	}
	if file, line, _, ok := objs.Positions.Lookup(objs.Runs[1], "metadata.namespace"); !ok || file != runs || line != 8 {
		t.Errorf("namespace of the second run is at %s:%d (%v)", file, line, ok)
	}

	// The same Workflow in another file, and problems in two files: all reported, sorted.
	dup := write("dup.yaml", "apiVersion: core.oam.dev/v1alpha1\nkind: Workflow\nmetadata:\n  name: w\nsteps: []\n")
	bad := write("bad.yaml", head+"spec: {workflowRef: 7}\n")
	_, err = DecodeFiles(wf, dup, bad)
	checkErrors(t, err, []wantErr{
		{bad + ":4:21", "spec.workflowRef", "expected a string, got a number (7)"},
		{dup + ":4:3", "metadata.name", "Workflow default/w is declared twice (first at " + wf + ":1)"},
	})

	_, err = DecodeFiles(filepath.Join(dir, "missing.yaml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a missing file gives %v", err)
	}
}

func TestLookup(t *testing.T) {
	data := head + `spec:
  context:
    env: prod
    "a.b": {c: [x, y]}
  workflowSpec:
    steps:
    - &first
      name: a
      type: t
      properties: {url: u}
    - <<: *first
      name: b
`
	objs, err := Decode("l.yaml", []byte(data))
	if err != nil {
		t.Fatal(err)
	}
	run := objs.Runs[0]
	tests := []struct {
		path      string
		line, col int
		ok        bool
	}{
		{"", 1, 1, true},
		{"spec", 4, 1, true},
		{"spec.context.env", 6, 5, true},
		{"spec.context[a.b].c[1]", 7, 20, true},
		{"spec.workflowSpec.steps[0]", 10, 7, true},
		{"spec.workflowSpec.steps[0].properties.url", 13, 20, true},
		{"spec.workflowSpec.steps[1].name", 15, 7, true},
		// Merged from the first step: found where it is written.
		{"spec.workflowSpec.steps[1].properties.url", 13, 20, true},
		// Not written: the nearest enclosing field that is.
		{"spec.workflowSpec.steps[1].timeout", 14, 7, false},
		{"spec.workflowSpec.steps[7].name", 9, 5, false},
		{"spec.workflowRef", 4, 1, false},
	}
	for _, tt := range tests {
		file, line, col, ok := objs.Positions.Lookup(run, tt.path)
		if file != "l.yaml" || line != tt.line || col != tt.col || ok != tt.ok {
			t.Errorf("Lookup(%q) = %s:%d:%d %v, want l.yaml:%d:%d %v", tt.path, file, line, col, ok, tt.line, tt.col, tt.ok)
		}
	}
	if file, line, _, ok := objs.Positions.Lookup(run.DeepCopy(), "spec"); ok || file != "" || line != 0 {
		t.Errorf("a copy of the run is found at %s:%d", file, line)
	}
	if _, _, _, ok := objs.Positions.Lookup(*run, "spec"); ok {
		t.Errorf("the run's value, not its pointer, is found")
	}
	var none *Positions
	if _, _, _, ok := none.Lookup(run, "spec"); ok {
		t.Errorf("nil Positions found the run")
	}

	// Explain falls back on a file-less problem for an object it did not decode.
	errs := objs.Explain(run.DeepCopy(), v1alpha1.ValidateWorkflowRun(&v1alpha1.WorkflowRun{}))
	if len(errs) == 0 || errs[0].File != "" || errs[0].Line != 0 {
		t.Errorf("explaining an unknown object gives %v", errs)
	}
	if got := errs.Error(); !strings.HasPrefix(got, "metadata.name: Required value") {
		t.Errorf("unknown object problems print as %q", got)
	}
}

func TestErrorsPrint(t *testing.T) {
	errs := Errors{
		{File: "b.yaml", Line: 2, Column: 3, Path: "spec", Msg: "two"},
		{File: "a.yaml", Line: 9, Msg: "one"},
		{File: "b.yaml", Line: 1, Column: 1, Msg: "three"},
	}
	errs.Sort()
	want := "a.yaml:9: one\nb.yaml:1:1: three\nb.yaml:2:3: spec: two"
	if got := errs.Error(); got != want {
		t.Errorf("Error() =\n%s\nwant\n%s", got, want)
	}
	var e *Error
	if !errors.As(error(errs), &e) || e.Msg != "one" {
		t.Errorf("errors.As finds %v", e)
	}
	if !bytes.Equal([]byte(errs[2].Error()), []byte("b.yaml:2:3: spec: two")) {
		t.Errorf("one problem prints as %q", errs[2].Error())
	}
}

func BenchmarkDecode(b *testing.B) {
	files, err := filepath.Glob("testdata/compat/*.yaml")
	if err != nil {
		b.Fatal(err)
	}
	var docs [][]byte
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		docs = append(docs, data)
	}
	all := bytes.Join(docs, []byte("\n---\n"))
	b.SetBytes(int64(len(all)))
	for b.Loop() {
		if _, err := Decode("all.yaml", all); err != nil {
			b.Fatal(err)
		}
	}
}
