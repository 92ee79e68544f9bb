package v1alpha1

import (
	"reflect"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func TestDefaultStepNames(t *testing.T) {
	steps := []WorkflowStep{
		{WorkflowStepBase: WorkflowStepBase{Type: "a"}},
		{WorkflowStepBase: WorkflowStepBase{Name: "group", Type: TypeStepGroup}, SubSteps: []WorkflowStepBase{
			{Type: "b"}, {Name: "kept", Type: "c"}, {Type: "d"},
		}},
		{WorkflowStepBase: WorkflowStepBase{Type: TypeStepGroup}, SubSteps: []WorkflowStepBase{{Type: "e"}}},
	}
	DefaultStepNames(steps)
	var got []string
	for _, s := range steps {
		got = append(got, s.Name)
		for _, sub := range s.SubSteps {
			got = append(got, sub.Name)
		}
	}
	// As KubeVela's WorkflowRun admission webhook names them, counting from 0.
	want := "step-0 group step-1-0 kept step-1-2 step-2 step-2-0"
	if strings.Join(got, " ") != want {
		t.Errorf("names are %s, want %s", strings.Join(got, " "), want)
	}
}

func TestEffectiveMode(t *testing.T) {
	dag, sbs := ModeDAG, ModeStepByStep
	tests := []struct {
		name string
		run  *WorkflowRunSpec
		wf   *Workflow
		want WorkflowExecuteMode
	}{
		{"defaults", nil, nil, WorkflowExecuteMode{Steps: sbs, SubSteps: dag}},
		{"empty modes", &WorkflowRunSpec{Mode: &WorkflowExecuteMode{}}, &Workflow{Mode: &WorkflowExecuteMode{}}, WorkflowExecuteMode{Steps: sbs, SubSteps: dag}},
		{"the Workflow's", &WorkflowRunSpec{}, &Workflow{Mode: &WorkflowExecuteMode{Steps: dag, SubSteps: sbs}}, WorkflowExecuteMode{Steps: dag, SubSteps: sbs}},
		{"the run's over the Workflow's", &WorkflowRunSpec{Mode: &WorkflowExecuteMode{Steps: sbs}}, &Workflow{Mode: &WorkflowExecuteMode{Steps: dag, SubSteps: sbs}},
			WorkflowExecuteMode{Steps: sbs, SubSteps: sbs}},
		{"the run's alone", &WorkflowRunSpec{Mode: &WorkflowExecuteMode{SubSteps: sbs}}, nil, WorkflowExecuteMode{Steps: sbs, SubSteps: sbs}},
	}
	for _, tt := range tests {
		if got := EffectiveMode(tt.run, tt.wf); got != tt.want {
			t.Errorf("%s: got %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

func step(name, typ string, dependsOn ...string) WorkflowStep {
	return WorkflowStep{WorkflowStepBase: WorkflowStepBase{Name: name, Type: typ, DependsOn: dependsOn}}
}

// messages prints a list of field errors one per line, as "path: body".
func messages(errs field.ErrorList) string {
	lines := make([]string, len(errs))
	for i, e := range errs {
		lines[i] = e.Field + ": " + e.ErrorBody()
	}
	return strings.Join(lines, "\n")
}

func TestValidateWorkflowRunLeavesTheRunAlone(t *testing.T) {
	run := &WorkflowRun{
		ObjectMeta: metav1.ObjectMeta{Name: "r"},
		Spec: WorkflowRunSpec{
			Context:      &runtime.RawExtension{Raw: []byte(` {"a": 1}`)},
			WorkflowSpec: &WorkflowSpec{Steps: []WorkflowStep{step("", "t"), step("b", "t", "step-0")}},
		},
	}
	before := run.DeepCopy()
	// An unnamed step is known by the name it will be given.
	if errs := ValidateWorkflowRun(run); len(errs) > 0 {
		t.Errorf("unexpected problems:\n%s", messages(errs))
	}
	if !reflect.DeepEqual(run, before) {
		t.Errorf("validation changed the run")
	}
}

func TestValidateStepsReportsCycles(t *testing.T) {
	dag := WorkflowExecuteMode{Steps: ModeDAG, SubSteps: ModeDAG}
	// Two separate knots of steps waiting on each other; b names a twice, which closes the same
	// cycle twice.
	steps := []WorkflowStep{
		step("a", "t", "b", "c"),
		step("b", "t", "a", "a", "c"),
		step("c", "t", "a"),
		step("d", "t", "d2"),
		step("d2", "t", "d"),
	}
	got := messages(ValidateSteps(steps, dag, field.NewPath("steps")))
	want := strings.Join([]string{
		`steps[0].dependsOn[0]: Invalid value: "b": dependency cycle: a depends on b, b depends on a`,
		`steps[0].dependsOn[0]: Invalid value: "b": dependency cycle: a depends on b, b depends on c, c depends on a`,
		`steps[3].dependsOn[0]: Invalid value: "d2": dependency cycle: d depends on d2, d2 depends on d`,
	}, "\n")
	if got != want {
		t.Errorf("problems are\n%s\nwant\n%s", got, want)
	}
}

func TestValidateStepsWaitsForEveryProducer(t *testing.T) {
	// The engine makes a step wait for every step that outputs a variable it reads. In StepByStep
	// order, reading a variable that a later step also outputs waits for that later step.
	out := func(s WorkflowStep, name string) WorkflowStep {
		s.Outputs = append(s.Outputs, OutputItem{Name: name, ValueFrom: "v"})
		return s
	}
	in := func(s WorkflowStep, from string) WorkflowStep {
		s.Inputs = append(s.Inputs, InputItem{From: from})
		return s
	}
	steps := []WorkflowStep{out(step("a", "t"), "x"), in(step("b", "t"), "x"), out(step("c", "t"), "x")}
	got := messages(ValidateSteps(steps, EffectiveMode(nil, nil), field.NewPath("steps")))
	want := `steps[1].inputs[0].from: Invalid value: "x": dependency cycle: b takes input "x" from c, c runs after b (StepByStep)`
	if got != want {
		t.Errorf("problems are\n%s\nwant\n%s", got, want)
	}
	// In DAG mode, the same steps are fine.
	if errs := ValidateSteps(steps, WorkflowExecuteMode{Steps: ModeDAG}, field.NewPath("steps")); len(errs) > 0 {
		t.Errorf("DAG: %s", messages(errs))
	}
}

func TestValidateNilObjects(t *testing.T) {
	if errs := ValidateWorkflowRun(nil); len(errs) != 1 {
		t.Errorf("nil run: %s", messages(errs))
	}
	if errs := ValidateWorkflow(nil); len(errs) != 1 {
		t.Errorf("nil Workflow: %s", messages(errs))
	}
}

// An input from context.<path> needs no producing step: the engine reads it from the step's
// context. Other names still need one, context alone included.
func TestValidateStepsAcceptsContextInputs(t *testing.T) {
	in := func(s WorkflowStep, from string) WorkflowStep {
		s.Inputs = append(s.Inputs, InputItem{From: from, ParameterKey: "p"})
		return s
	}
	steps := []WorkflowStep{in(step("a", "t"), "context.name"), in(step("b", "t"), "context.env.tier"), in(step("c", "t"), "context")}
	got := messages(ValidateSteps(steps, EffectiveMode(nil, nil), field.NewPath("steps")))
	want := `steps[2].inputs[0].from: Invalid value: "context": no step of the run outputs this variable`
	if got != want {
		t.Errorf("problems are\n%s\nwant\n%s", got, want)
	}
}

func TestValidateSLA(t *testing.T) {
	notify := &runtime.RawExtension{Raw: []byte(`{"slack": {"url": {"value": "https://hooks.example.com/x"}}}`)}
	tests := []struct {
		sla  SLA
		want string // the errors, "" for none
	}{
		{SLA{MaxDuration: "30m", Notify: notify}, ""},
		{SLA{MaxDuration: "2h", OnBreach: SLAFail}, ""},
		{SLA{MaxDuration: "2h", OnBreach: SLATerminate, Notify: notify}, ""},
		{SLA{MaxDuration: "1d", OnBreach: SLAFail}, `sla.maxDuration: Invalid value: "1d": a Go duration`},
		{SLA{MaxDuration: "0s", OnBreach: SLAFail}, `sla.maxDuration: Invalid value: "0s": longer than 0`},
		{SLA{MaxDuration: "1h", OnBreach: "page"}, `sla.onBreach: Unsupported value: "page"`},
		{SLA{MaxDuration: "1h"}, `sla.notify: Required value`},
		{SLA{MaxDuration: "1h", Notify: &runtime.RawExtension{Raw: []byte(`"ops"`)}}, `sla.notify: Invalid value: "\"ops\"": the properties of a notification step`},
	}
	for _, tt := range tests {
		errs := validateSLA(&tt.sla, field.NewPath("sla"))
		got := errs.ToAggregate()
		switch {
		case tt.want == "" && got != nil:
			t.Errorf("%+v: %v", tt.sla, got)
		case tt.want != "" && (got == nil || !strings.Contains(got.Error(), tt.want)):
			t.Errorf("%+v: got %v, want %s", tt.sla, got, tt.want)
		}
	}
}

// A step's cache needs a key and a positive maxAge, and a step that computes a result.
func TestValidateStepsChecksTheCache(t *testing.T) {
	cached := func(s WorkflowStep, key, maxAge string) WorkflowStep {
		s.Cache = &StepCache{Key: key, MaxAge: maxAge}
		return s
	}
	group := step("g", TypeStepGroup)
	group.SubSteps = []WorkflowStepBase{{Name: "sub", Type: "t", Cache: &StepCache{Key: " ", MaxAge: "1m"}}}
	steps := []WorkflowStep{
		cached(step("ok", "t"), "parameter.x", "90m"),
		cached(step("no-age", "t"), "parameter.x", ""),
		cached(step("zero", "t"), "parameter.x", "0s"),
		cached(step("days", "t"), "parameter.x", "1d"),
		cached(step("child", TypeWorkflow), "parameter.x", "1m"),
		group,
	}
	got := messages(ValidateSteps(steps, WorkflowExecuteMode{Steps: ModeStepByStep, SubSteps: ModeDAG}, field.NewPath("steps")))
	for _, want := range []string{
		`steps[1].cache.maxAge: Required value`,
		`steps[2].cache.maxAge: Invalid value: "0s": maxAge must be more than zero`,
		`steps[3].cache.maxAge: Invalid value: "1d"`,
		`steps[4].cache: Forbidden: a workflow step has no result of its own to cache`,
		`steps[5].subSteps[0].cache.key: Required value`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("problems are\n%s\nwant one like %s", got, want)
		}
	}
	if strings.Contains(got, "steps[0]") {
		t.Errorf("a right cache was refused:\n%s", got)
	}
}

func TestValidateConcurrency(t *testing.T) {
	tests := []struct {
		c    Concurrency
		want string // the errors, "" for none
	}{
		{Concurrency{Key: "parameter.env", Limit: 1}, ""},
		{Concurrency{Key: `"x"`, Limit: 10, OnLimit: ConcurrencyCancelNew}, ""},
		{Concurrency{Key: " ", Limit: 1}, `concurrency.key: Required value`},
		{Concurrency{Key: "k", Limit: 0}, `concurrency.limit: Invalid value: 0: at least 1`},
		{Concurrency{Key: "k", Limit: 1, OnLimit: "drop"}, `concurrency.onLimit: Unsupported value: "drop"`},
	}
	for _, tt := range tests {
		got := validateConcurrency(&tt.c, field.NewPath("concurrency")).ToAggregate()
		switch {
		case tt.want == "" && got != nil:
			t.Errorf("%+v: %v", tt.c, got)
		case tt.want != "" && (got == nil || !strings.Contains(got.Error(), tt.want)):
			t.Errorf("%+v: got %v, want %s", tt.c, got, tt.want)
		}
	}
}

// A step's concurrency needs a key and a limit of at least 1, in sub-steps too.
func TestValidateStepsChecksStepConcurrency(t *testing.T) {
	limited := func(s WorkflowStep, key string, limit int32) WorkflowStep {
		s.Concurrency = &StepConcurrency{Key: key, Limit: limit}
		return s
	}
	group := step("g", TypeStepGroup)
	group.SubSteps = []WorkflowStepBase{{Name: "sub", Type: "t", Concurrency: &StepConcurrency{Key: " ", Limit: 1}}}
	steps := []WorkflowStep{
		limited(step("ok", "t"), `"db-" + context.env`, 1),
		limited(step("zero", "t"), "parameter.x", 0),
		group,
	}
	got := messages(ValidateSteps(steps, WorkflowExecuteMode{Steps: ModeStepByStep, SubSteps: ModeDAG}, field.NewPath("steps")))
	for _, want := range []string{
		`steps[1].concurrency.limit: Invalid value: 0: at least 1`,
		`steps[2].subSteps[0].concurrency.key: Required value`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("problems are\n%s\nwant one like %s", got, want)
		}
	}
	if strings.Contains(got, "steps[0]") {
		t.Errorf("a right concurrency was refused:\n%s", got)
	}
}
