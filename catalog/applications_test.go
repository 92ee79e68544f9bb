package catalog_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stepflow/stepflow/assembly"
	"github.com/stepflow/stepflow/catalog"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/manifest"
	"github.com/stepflow/stepflow/step"
)

// vet decodes a file and checks it as `stepflow vet` does, returning the problems one a line.
func vet(t *testing.T, file string) string {
	t.Helper()
	objs, err := manifest.DecodeFiles(file)
	if err != nil {
		t.Fatal(err)
	}
	c := catalog.New(nil, engine.Limits{})
	r := step.NewRunner(step.Options{Registry: assembly.Registry(assembly.Providers{}), Definitions: c})
	err = c.Check(context.Background(), r, objs)
	if err == nil {
		return ""
	}
	var list manifest.Errors
	if !errors.As(err, &list) {
		t.Fatalf("%v is not a manifest.Errors", err)
	}
	var b strings.Builder
	for _, e := range list {
		fmt.Fprintln(&b, e)
	}
	return b.String()
}

// An Application that uses the built-in X-Definitions, and ones of its file, as KubeVela's
// documentation writes them, passes.
func TestVetAcceptsApplications(t *testing.T) {
	if got := vet(t, "testdata/app-good.yaml"); got != "" {
		t.Errorf("problems:\n%s", got)
	}
}

// Each mistake in an Application is reported at its line and field path.
func TestVetApplicationMistakes(t *testing.T) {
	got := vet(t, "testdata/app-bad.yaml")
	for _, want := range []string{
		`app-bad.yaml:7:3: spec.components: Invalid value: "frontend": dependsOn forms a cycle: frontend -> backend -> frontend`,
		`app-bad.yaml:13:13: spec.components[0].properties.ports[0].port: Invalid value: "80": component frontend: conflicting values "80" and int`,
		`app-bad.yaml:14:13: spec.components[0].properties.ports[0].exposed: Invalid value: true: component frontend: unknown property: the parameter declares containerPort, expose, name, nodePort, port, protocol`,
		`app-bad.yaml:15:9: spec.components[0].properties.replicas: Invalid value: 2: component frontend: unknown property`,
		`app-bad.yaml:18:24: spec.components[0].traits[0].properties.replicas: Invalid value: "two": component frontend, trait scaler: conflicting values "two" and 1`,
		`app-bad.yaml:19:11: spec.components[0].traits[1].type: Invalid value: "autoscaler": no trait definition of that type`,
		`app-bad.yaml:22:7: spec.components[1].type: Invalid value: "workr": no component definition of that type`,
		`app-bad.yaml:26:7: spec.components[2].properties.image: Required value: component api: required, not set (want string)`,
		`app-bad.yaml:27:19: spec.components[2].dependsOn[0]: Not found: "nobody"`,
		`app-bad.yaml:28:7: spec.components[3].name: Duplicate value: "api (also components[2])"`,
		`app-bad.yaml:35:9: spec.policies[0].properties.clusters: Invalid value: "local": policy where: conflicting values [...string] and "local"`,
		`app-bad.yaml:37:7: spec.policies[1].type: Invalid value: "shared-resource": no policy definition of that type`,
		`app-bad.yaml:41:9: spec.workflow.steps[0].type: Invalid value: "no-such-step": step type "no-such-step": unknown step type`,
		`app-bad.yaml:51:7: spec.schematic.cue.template: Invalid value: "(CUE)": ComponentDefinition broken: expected '}', found 'EOF'`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing\n\t%s\nin\n%s", want, got)
		}
	}
}
