package definitions_test

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/definitions"
)

func TestStepTypesDocIsUpToDate(t *testing.T) {
	want, err := definitions.Reference()
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("../docs/step-types.md")
	if err != nil {
		t.Fatalf("%v: run go generate ./definitions", err)
	}
	if !bytes.Equal(got, want) {
		t.Error("docs/step-types.md is out of date: run go generate ./definitions")
	}
}

// Every example is a WorkflowRun that uses its step type.
func TestEveryBuiltinHasAnExampleUsingIt(t *testing.T) {
	for _, d := range definitions.Builtin() {
		ex, ok := definitions.Example(d.Name)
		if !ok {
			t.Errorf("%s: no definitions/examples/%s.yaml", d.Name, d.Name)
			continue
		}
		var run v1alpha1.WorkflowRun
		if err := yaml.UnmarshalStrict([]byte(ex), &run); err != nil {
			t.Errorf("%s: the example is not a WorkflowRun: %v", d.Name, err)
			continue
		}
		if run.Spec.WorkflowSpec == nil || !uses(run.Spec.WorkflowSpec.Steps, d.Name) {
			t.Errorf("%s: the example does not use it", d.Name)
		}
	}
}

func uses(steps []v1alpha1.WorkflowStep, typ string) bool {
	for _, s := range steps {
		if s.Type == typ {
			return true
		}
		for _, sub := range s.SubSteps {
			if sub.Type == typ {
				return true
			}
		}
	}
	return false
}

func TestDescribeShowsNestedAndAlternativeFields(t *testing.T) {
	tmpl, _ := definitions.Template("notification")
	params, err := definitions.Describe(tmpl)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]definitions.Parameter{}
	for _, p := range params {
		byName[p.Name] = p
	}
	for name, want := range map[string]string{
		"slack.url":                "{value} | {secretRef}",
		"slack.url.secretRef.name": "string",
		"email.from.port":          "*587 | int",
		"dingding.message.msgtype": `*"text" | "link" | "markdown" | "actionCard" | "feedCard"`,
	} {
		p, ok := byName[name]
		if !ok || p.Type != want {
			t.Errorf("%s: %+v, want type %s", name, p, want)
		}
	}
	if p := byName["email.from.port"]; p.Default != "587" || p.Required {
		t.Errorf("email.from.port: %+v", p)
	}
	if p := byName["slack.message.text"]; !p.Required || !strings.Contains(p.Usage, "text") {
		t.Errorf("slack.message.text: %+v", p)
	}
	if p := byName["slack"]; p.Required {
		t.Errorf("slack is optional: %+v", p)
	}
}

// Describe lists nested fields under their parent with their types, defaults, whether they are
// required and their +usage text, in the order written.
func TestDescribeListsFieldsInOrder(t *testing.T) {
	ps, err := definitions.Describe(`
parameter: {
	// +usage=The URL to call
	url: string
	// +usage=The HTTP method
	method: *"GET" | "POST"
	body?: {...}
	target: {
		// +usage=Its name
		name: string
	}
}
`)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range ps {
		got = append(got, fmt.Sprintf("%s|%s|%s|%t|%s", p.Name, p.Type, p.Default, p.Required, p.Usage))
	}
	want := []string{
		"url|string||true|The URL to call",
		`method|*"GET" | "POST"|"GET"|false|The HTTP method`,
		"body|{...}||false|",
		"target|struct||true|",
		"target.name|string||true|Its name",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("parameters:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
