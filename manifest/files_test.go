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

// TestCompatibleShapes decodes and validates runs, Workflows and definitions written in the shapes
// of KubeVela's Workflow format, one file per feature (custom context, if: always, deeply nested
// properties, DAG, step-groups, request outputs, inputs and outputs, a Workflow and a run referring
// to it, definitions in both CUE forms): stepflow must accept them as written, and keep what they say.
func TestCompatibleShapes(t *testing.T) {
	// What each file declares: runs, Workflows, definitions.
	want := map[string][3]int{
		"context.yaml":           {1, 0, 0},
		"dag.yaml":               {1, 0, 0},
		"definitions.yaml":       {0, 0, 2},
		"if-always.yaml":         {1, 0, 0},
		"inputs-outputs.yaml":    {1, 0, 0},
		"nested-properties.yaml": {1, 0, 0},
		"request-outputs.yaml":   {1, 0, 0},
		"step-group.yaml":        {1, 0, 0},
		"workflow-ref.yaml":      {1, 0, 0},
		"workflow-template.yaml": {0, 1, 0},
	}
	files, err := filepath.Glob("testdata/compat/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(want) {
		t.Errorf("%d files in testdata/compat, want %d", len(files), len(want))
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			counts, ok := want[filepath.Base(file)]
			if !ok {
				t.Fatalf("unexpected file %s", file)
			}
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(data, []byte("# Covers ")) {
				t.Errorf("%s does not start by saying what it covers", file)
			}
			objs, err := DecodeFiles(file)
			if err != nil {
				t.Fatal(err)
			}
			if got := [3]int{len(objs.Runs), len(objs.Workflows), len(objs.Definitions)}; got != counts {
				t.Errorf("decoded %v runs, Workflows, definitions; want %v", got, counts)
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
		})
	}

	// Together, and a few values of each, to see that what was decoded is what was written.
	objs, err := DecodeFiles(files...)
	if err != nil {
		t.Fatal(err)
	}
	runs := map[string]*v1alpha1.WorkflowRun{}
	for _, run := range objs.Runs {
		if run.Namespace != "payments" {
			t.Errorf("run %s is in namespace %q", run.Name, run.Namespace)
		}
		runs[run.Name] = run
	}
	steps := func(name string, n int) []v1alpha1.WorkflowStep {
		t.Helper()
		run := runs[name]
		if run == nil || run.Spec.WorkflowSpec == nil || len(run.Spec.WorkflowSpec.Steps) != n {
			t.Fatalf("run %s: want %d steps, got %+v", name, n, run)
		}
		return run.Spec.WorkflowSpec.Steps
	}

	// context.yaml
	canary := steps("payments-canary", 1)
	if got := string(runs["payments-canary"].Spec.Context.Raw); got != `{"env":"staging","name":"payments-canary-eu","region":"eu-west-2","owners":["ledger-team","checkout-team"]}` {
		t.Errorf("payments-canary context is %s", got)
	}
	if got := canary[0].If; got != `context.env == "staging"` {
		t.Errorf("canary if is %q", got)
	}

	// if-always.yaml
	migrate := steps("payments-migrate", 4)
	if migrate[0].If != "" || migrate[1].If != "" || migrate[2].If != "always" || migrate[3].If != "always" {
		t.Errorf("payments-migrate conditions are %q, %q, %q, %q", migrate[0].If, migrate[1].If, migrate[2].If, migrate[3].If)
	}
	if got := migrate[1].Timeout; got != "30m" {
		t.Errorf("migrate-ledger timeout is %q", got)
	}

	// nested-properties.yaml
	cluster := steps("payments-cluster", 4)
	var tf struct {
		Source   struct{ Remote, Path string } `json:"source"`
		Variable struct {
			Version   string   `json:"cluster_version"`
			EnableNAT bool     `json:"enable_nat"`
			CIDRs     []string `json:"subnet_cidrs"`
			Pools     []struct {
				Name   string            `json:"name"`
				Count  int               `json:"node_count"`
				Labels map[string]string `json:"labels"`
				Taints []struct {
					Key, Value, Effect string
				} `json:"taints"`
			} `json:"node_pools"`
			Tags map[string]string `json:"tags"`
		} `json:"variable"`
	}
	if err := json.Unmarshal(cluster[1].Properties.Raw, &tf); err != nil {
		t.Fatal(err)
	}
	if v := tf.Variable; v.Version != "1.31.2" || !v.EnableNAT || len(v.CIDRs) != 3 || v.Tags["cost-center"] != "4410" ||
		len(v.Pools) != 2 || v.Pools[0].Count != 3 || v.Pools[0].Labels["workload"] != "api" ||
		len(v.Pools[1].Taints) != 1 || v.Pools[1].Taints[0].Effect != "NoSchedule" {
		t.Errorf("terraform variables are %+v", v)
	}
	if tf.Source.Path != "clusters/payments" {
		t.Errorf("terraform source is %+v", tf.Source)
	}
	var cli struct {
		Storage struct {
			Secret []struct{ SecretName, MountPath string } `json:"secret"`
		} `json:"storage"`
		Command []string `json:"command"`
	}
	if err := json.Unmarshal(cluster[2].Properties.Raw, &cli); err != nil {
		t.Fatal(err)
	}
	if len(cli.Storage.Secret) != 1 || cli.Storage.Secret[0].MountPath != "/etc/payments/kube" || len(cli.Command) != 5 || cli.Command[4] != "--name=payments-eu" {
		t.Errorf("join-cluster properties are %+v", cli)
	}
	if got := string(cluster[3].Properties.Raw); got != `{"labelSelector":{"workflowrun.oam.dev/step-name":"payments-cluster-join-cluster"}}` {
		t.Errorf("tidy-jobs properties are %s", got)
	}

	// dag.yaml
	fanout := steps("payments-fanout", 5)
	if got := runs["payments-fanout"].Spec.Mode; got == nil || got.Steps != v1alpha1.ModeDAG {
		t.Errorf("payments-fanout mode is %+v", got)
	}
	if got := fanout[0].DependsOn; !reflect.DeepEqual(got, []string{"ledger-schema"}) {
		t.Errorf("ledger-db depends on %q", got)
	}
	if got := fanout[4].DependsOn; !reflect.DeepEqual(got, []string{"api", "worker"}) {
		t.Errorf("announce depends on %q", got)
	}

	// step-group.yaml
	stack := steps("payments-stack", 2)
	if got := runs["payments-stack"].Spec.Mode; got == nil || got.Steps != v1alpha1.ModeStepByStep || got.SubSteps != v1alpha1.ModeDAG {
		t.Errorf("payments-stack mode is %+v", got)
	}
	if g := stack[0]; g.Type != "step-group" || len(g.SubSteps) != 2 || g.Mode != "" || !reflect.DeepEqual(g.SubSteps[1].DependsOn, []string{"ledger-primary"}) {
		t.Errorf("databases group is %+v", g)
	}
	if g := stack[1]; g.Mode != v1alpha1.ModeStepByStep || len(g.SubSteps) != 2 || g.SubSteps[1].Name != "worker" || g.SubSteps[1].Timeout != "10m" {
		t.Errorf("services group is %+v", g)
	}

	// request-outputs.yaml
	health := steps("payments-health", 3)
	if out := health[0].Outputs; len(out) != 1 || out[0].Name != "health" || !strings.HasPrefix(out[0].ValueFrom, "import \"strings\"\n\"Payments health: \"") {
		t.Errorf("probe outputs are %+v", out)
	}
	if in := health[1].Inputs; len(in) != 1 || in[0].From != "health" || in[0].ParameterKey != "slack.message.text" {
		t.Errorf("page-oncall inputs are %+v", in)
	}
	if got := health[2].If; got != "status.probe.failed" {
		t.Errorf("page-on-failure if is %q", got)
	}

	// inputs-outputs.yaml
	limits := steps("payments-limits", 3)
	if s := limits[0]; s.Meta == nil || s.Meta.Alias != "Read the current card limits" || len(s.Outputs) != 2 || s.Outputs[1].ValueFrom != "output.value.metadata.resourceVersion" {
		t.Errorf("read-limits is %+v", s.WorkflowStepBase)
	}
	if got := limits[1].If; got != `status["read-limits"].succeeded` {
		t.Errorf("apply-limits if is %q", got)
	}
	if subs := limits[1].SubSteps; len(subs) != 2 || subs[0].Inputs[0].ParameterKey != "value.data.dailyLimit" || subs[1].Inputs[0].From != "limits-revision" {
		t.Errorf("apply-limits sub-steps are %+v", subs)
	}
	if in := limits[2].Inputs; len(in) != 1 || in[0].From != "daily-limit" || in[0].ParameterKey != "" {
		t.Errorf("show-limit inputs are %+v", in)
	}

	// workflow-template.yaml and workflow-ref.yaml
	if len(objs.Workflows) != 1 {
		t.Fatalf("%d Workflows", len(objs.Workflows))
	}
	wf := objs.Workflows[0]
	if len(wf.Steps) != 3 || wf.Steps[1].Type != "suspend" || wf.Steps[1].Timeout != "4h" || wf.Steps[2].If != `context.env == "production"` {
		t.Errorf("Workflow steps are %+v", wf.Steps)
	}
	release := runs["payments-release-58"]
	if release == nil || release.Spec.WorkflowRef != wf.Name || release.Namespace != wf.Namespace || release.Spec.WorkflowSpec != nil {
		t.Fatalf("payments-release-58 is %+v; want a reference to Workflow %s/%s", release, wf.Namespace, wf.Name)
	}
	if got := string(release.Spec.Context.Raw); got != `{"env":"production","release":"58"}` {
		t.Errorf("payments-release-58 context is %s", got)
	}
	if got := v1alpha1.EffectiveMode(&release.Spec, wf); got.Steps != v1alpha1.ModeStepByStep || got.SubSteps != v1alpha1.ModeDAG {
		t.Errorf("payments-release-58 runs in mode %+v", got)
	}

	// definitions.yaml
	if len(objs.Definitions) != 2 {
		t.Fatalf("%d definitions", len(objs.Definitions))
	}
	for i, def := range objs.Definitions {
		wantName, wantText := "two-person-approval", "secondApprover: op.#Suspend & {}"
		if i == 1 {
			wantName, wantText = "wait-for-flag", "ready: builtin.#ConditionalWait & {"
		}
		if def.Name != wantName || def.Spec.Schematic == nil || def.Spec.Schematic.CUE == nil || !strings.Contains(def.Spec.Schematic.CUE.Template, wantText) {
			t.Errorf("definition %d is %+v; want %s with %q", i, def, wantName, wantText)
		}
	}
	if got := objs.Definitions[0].Annotations["definition.oam.dev/description"]; got == "" {
		t.Errorf("two-person-approval has no description")
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
