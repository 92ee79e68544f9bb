package definitions_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/txtar"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	app "github.com/stepflow/stepflow/application"
	"github.com/stepflow/stepflow/definitions"
	"github.com/stepflow/stepflow/manifest"
	"github.com/stepflow/stepflow/step"
)

// builtinSet is every built-in X-Definition.
func builtinSet() *app.Set {
	return app.NewSet().Add(definitions.Components(), definitions.Traits(), definitions.Policies())
}

// A case is testdata/app/<name>.txtar holding app.yaml (an Application), optionally live.yaml
// (the objects as a cluster holds them, with their status, found by kind and name), and want:
// each component's rendered objects for cluster "east", namespace "prod", and, with live.yaml,
// the health its definitions' policies give. go test -update rewrites want.
func TestGoldenRenders(t *testing.T) {
	files, _ := filepath.Glob("testdata/app/*.txtar")
	if len(files) == 0 {
		t.Fatal("no testdata/app")
	}
	covered := map[string]bool{}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txtar"), func(t *testing.T) {
			ar, err := txtar.ParseFile(file)
			if err != nil {
				t.Fatal(err)
			}
			got := renderCase(t, file, ar, covered, app.InProcess{})
			if *update {
				setSection(ar, "want", got)
				if err := os.WriteFile(file, txtar.Format(ar), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if want := string(section(ar, "want")); got != want {
				t.Errorf("got:\n%s\nwant:\n%s", got, want)
			}
		})
	}
	for _, d := range definitions.Components() {
		if !covered["component/"+d.Name] {
			t.Errorf("no golden render of component %s", d.Name)
		}
	}
	for _, d := range definitions.Traits() {
		if !covered["trait/"+d.Name] {
			t.Errorf("no golden render of trait %s", d.Name)
		}
	}
}

// The golden renders made by a step Runner, whose child evaluators render and judge health
// (the Application, the definitions, the rendered and the live objects travelling as JSON),
// give the same objects and health, numbers and all.
func TestGoldenRendersInAChildEvaluator(t *testing.T) {
	files, _ := filepath.Glob("testdata/app/*.txtar")
	r := step.NewRunner(step.Options{Evaluators: 1})
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txtar"), func(t *testing.T) {
			ar, err := txtar.ParseFile(file)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := renderCase(t, file, ar, map[string]bool{}, r), string(section(ar, "want")); got != want {
				t.Errorf("got:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

// renderCase renders the case's Application with ev and judges its health against live.yaml.
func renderCase(t *testing.T, file string, ar *txtar.Archive, covered map[string]bool, ev app.Evaluator) string {
	t.Helper()
	objs, err := manifest.Decode(file, section(ar, "app.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	a := objs.Applications[0]
	for _, c := range a.Spec.Components {
		covered["component/"+c.Type] = true
		for _, tr := range c.Traits {
			covered["trait/"+tr.Type] = true
		}
	}
	set := builtinSet()
	req := app.Request{
		App: a, Definitions: set, WorkflowName: a.Name, StepName: "deploy",
		Target: app.Target{Cluster: "east", Namespace: "prod", ClusterVersion: app.ClusterVersion{Major: "1", Minor: "36", GitVersion: "v1.36.3"}},
	}
	comps, err := ev.Render(context.Background(), req)
	if err != nil {
		return "error: " + err.Error() + "\n"
	}
	var b strings.Builder
	for _, c := range comps {
		fmt.Fprintf(&b, "# component %s\n", c.Name)
		for _, o := range c.Objects() {
			y, err := yaml.Marshal(o.Object)
			if err != nil {
				t.Fatal(err)
			}
			b.WriteString("---\n")
			b.Write(y)
		}
	}
	liveYAML := section(ar, "live.yaml")
	if liveYAML == nil {
		return b.String()
	}
	live := map[string]*unstructured.Unstructured{}
	for doc := range strings.SplitSeq(string(liveYAML), "\n---\n") {
		var m map[string]any
		if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
			t.Fatalf("live.yaml: %v", err)
		}
		u := &unstructured.Unstructured{Object: m}
		live[u.GetKind()+"/"+u.GetName()] = u
	}
	find := func(r *unstructured.Unstructured) *unstructured.Unstructured {
		return live[r.GetKind()+"/"+r.GetName()]
	}
	b.WriteString("# health\n")
	for _, c := range comps {
		st, err := ev.Health(context.Background(), set, a.Namespace, c, find)
		if err != nil {
			fmt.Fprintf(&b, "error: %v\n", err)
			continue
		}
		y, err := yaml.Marshal(st)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(y)
	}
	return b.String()
}
