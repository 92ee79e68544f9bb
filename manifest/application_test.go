package manifest

import (
	"testing"
)

// A file of the application delivery kinds, written as KubeVela's documentation writes them,
// decodes into the api types, every field kept.
func TestDecodeApplicationKinds(t *testing.T) {
	objs, err := DecodeFiles("testdata/oam/app.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(objs.Applications) != 1 || len(objs.ComponentDefinitions) != 1 || len(objs.TraitDefinitions) != 1 ||
		len(objs.PolicyDefinitions) != 1 || len(objs.ApplicationRevisions) != 1 || len(objs.ResourceTrackers) != 1 {
		t.Fatalf("decoded %+v", objs)
	}
	app := objs.Applications[0]
	if app.Namespace != DefaultNamespace {
		t.Errorf("namespace %q, want the default", app.Namespace)
	}
	c := app.Spec.Components[0]
	if c.Type != "webservice" || len(c.Traits) != 2 || c.Traits[1].Type != "gateway" || c.Outputs[0].ValueFrom != "output.metadata.name" {
		t.Errorf("component %+v", c)
	}
	if got := string(c.Traits[0].Properties.Raw); got != `{"replicas":2}` {
		t.Errorf("scaler's properties %s", got)
	}
	if b := app.Spec.Components[1]; b.DependsOn[0] != "frontend" || b.Inputs[0].ParameterKey != "env[0].value" {
		t.Errorf("backend %+v", b)
	}
	if p := app.Spec.Policies[1]; p.Name != "override-high-availability" || p.Type != "override" {
		t.Errorf("policy %+v", p)
	}
	if w := app.Spec.Workflow; w.Mode.Steps != "StepByStep" || w.Steps[0].Type != "deploy" || w.Steps[1].Name != "manual-approval" {
		t.Errorf("workflow %+v", w)
	}
	if s := app.Status; s.Phase != "running" || s.LatestRevision.Revision != 1 || !s.Services[0].Healthy ||
		s.Services[0].Traits[0].Type != "scaler" || s.AppliedResources[0].Cluster != "hangzhou-1" || s.AppliedResources[0].Kind != "Deployment" {
		t.Errorf("status %+v", s)
	}
	cd := objs.ComponentDefinitions[0]
	if cd.Spec.Workload.Definition.Kind != "Deployment" || cd.Spec.Status.HealthPolicy == "" || cd.Spec.Schematic.CUE.Template == "" {
		t.Errorf("component definition %+v", cd.Spec)
	}
	if td := objs.TraitDefinitions[0]; td.Spec.AppliesToWorkloads[1] != "webservice" || td.Spec.Schematic.CUE.Template == "" {
		t.Errorf("trait definition %+v", td.Spec)
	}
	if rev := objs.ApplicationRevisions[0]; rev.Spec.Application.Spec.Components[0].Name != "frontend" ||
		rev.Spec.ComponentDefinitions["webservice"].Spec.Workload.Definition.Kind != "Deployment" || !rev.Status.Succeeded {
		t.Errorf("revision %+v", rev)
	}
	rt := objs.ResourceTrackers[0]
	if rt.Namespace != "" {
		t.Errorf("a ResourceTracker is cluster-scoped: namespace %q", rt.Namespace)
	}
	if m := rt.Spec.ManagedResources[0]; m.Cluster != "hangzhou-1" || m.Name != "frontend" || m.Component != "frontend" {
		t.Errorf("managed resource %+v", m)
	}
}

// Mistakes in an Application are reported as a WorkflowRun's are: at the line and field path.
func TestDecodeApplicationRejects(t *testing.T) {
	const app = "apiVersion: core.oam.dev/v1beta1\nkind: Application\nmetadata: {name: a}\n"
	for _, tc := range []struct {
		name, yaml string
		want       []wantErr
	}{{
		name: "an unknown field of a trait",
		yaml: app + "spec:\n  components:\n  - name: c\n    type: webservice\n    traits:\n    - type: scaler\n      propertes: {replicas: 2}\n",
		want: []wantErr{{"t.yaml:10:7", "spec.components[0].traits[0].propertes", `unknown field "propertes"`}},
	}, {
		name: "dependsOn not a list",
		yaml: app + "spec:\n  components:\n  - name: c\n    type: webservice\n    dependsOn: b\n",
		want: []wantErr{{"t.yaml:8:16", "spec.components[0].dependsOn", "expected a list, got a string"}},
	}, {
		name: "a workflow step's unknown field",
		yaml: app + "spec:\n  components: []\n  workflow:\n    steps:\n    - name: s\n      type: deploy\n      propertis: {}\n",
		want: []wantErr{{"t.yaml:10:7", "spec.workflow.steps[0].propertis", `unknown field "propertis"`}},
	}, {
		name: "a definition without a name",
		yaml: "apiVersion: core.oam.dev/v1beta1\nkind: TraitDefinition\nmetadata: {}\nspec: {}\n",
		want: []wantErr{{"t.yaml:3:1", "metadata.name", "a TraitDefinition needs a name"}},
	}, {
		name: "a health policy that is not text",
		yaml: "apiVersion: core.oam.dev/v1beta1\nkind: ComponentDefinition\nmetadata: {name: c}\nspec:\n  workload: {type: autodetects.core.oam.dev}\n  status: {healthPolicy: {isHealth: true}}\n",
		want: []wantErr{{"t.yaml:6:26", "spec.status.healthPolicy", "expected a string, got an object"}},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode("t.yaml", []byte(tc.yaml))
			checkErrors(t, err, tc.want)
		})
	}
}
