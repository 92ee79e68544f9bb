package application_test

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/stepflow/stepflow/api/v1beta1"
	"github.com/stepflow/stepflow/application"
)

// base is a component type whose workload has a container, a volume list and labels for the
// patches to meet.
const base = `
parameter: {image: string, replicas: *1 | int}
output: {
	apiVersion: "apps/v1"
	kind:       "Deployment"
	metadata: labels: {tier: "web", keep: "yes"}
	spec: {
		replicas: *parameter.replicas | int
		strategy: {type: "RollingUpdate", rollingUpdate: maxSurge: 1}
		template: spec: {
			containers: [{name: context.name, image: parameter.image, env: [{name: "A", value: "1"}]}]
			volumes: [{name: "v1", emptyDir: {}}]
		}
	}
}
outputs: cm: {apiVersion: "v1", kind: "ConfigMap", metadata: name: context.name + "-cm", data: a: "1"}
`

func component(name, tmpl string) *v1beta1.ComponentDefinition {
	return &v1beta1.ComponentDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1beta1.ComponentDefinitionSpec{
			Workload:  v1beta1.WorkloadTypeDescriptor{Definition: v1beta1.WorkloadGVK{APIVersion: "apps/v1", Kind: "Deployment"}},
			Schematic: &v1beta1.Schematic{CUE: &v1beta1.CUE{Template: tmpl}},
		},
	}
}

func trait(name, tmpl string, appliesTo ...string) *v1beta1.TraitDefinition {
	return &v1beta1.TraitDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1beta1.TraitDefinitionSpec{
			AppliesToWorkloads: appliesTo,
			Schematic:          &v1beta1.Schematic{CUE: &v1beta1.CUE{Template: tmpl}},
		},
	}
}

func raw(s string) *runtime.RawExtension { return &runtime.RawExtension{Raw: []byte(s)} }

// renderOne renders an Application of one component of type "base" with one trait of type
// "t", whose template is tmpl, and returns the component.
func renderOne(t *testing.T, tmpl, props string) (*application.Component, error) {
	t.Helper()
	set := application.NewSet().Add([]*v1beta1.ComponentDefinition{component("base", base)},
		[]*v1beta1.TraitDefinition{trait("t", tmpl)}, nil)
	app := &v1beta1.Application{
		ObjectMeta: metav1.ObjectMeta{Name: "shop", Namespace: "team"},
		Spec: v1beta1.ApplicationSpec{Components: []v1beta1.ApplicationComponent{{
			Name: "api", Type: "base", Properties: raw(`{"image":"api:v1"}`),
			Traits: []v1beta1.ApplicationTrait{{Type: "t", Properties: raw(props)}},
		}}},
	}
	comps, err := application.Render(context.Background(), application.Request{App: app, Definitions: set})
	if err != nil {
		return nil, err
	}
	return comps[0], nil
}

// at returns the value at a dotted path of an object (list items by index).
func at(t *testing.T, obj *unstructured.Unstructured, path string) any {
	t.Helper()
	var x any = obj.Object
	for p := range strings.SplitSeq(path, ".") {
		switch v := x.(type) {
		case map[string]any:
			x = v[p]
		case []any:
			i := int(p[0] - '0')
			if i >= len(v) {
				return nil
			}
			x = v[i]
		default:
			return nil
		}
	}
	return x
}

// withoutOAMLabels drops the labels Render adds (app.oam.dev/..., workload.oam.dev/...).
func withoutOAMLabels(x any) any {
	m, _ := x.(map[string]any)
	out := map[string]any{}
	for k, v := range m {
		if !strings.Contains(k, ".oam.dev/") {
			out[k] = v
		}
	}
	return out
}

func jsonOf(x any) string {
	b, _ := json.Marshal(x)
	return string(b)
}

func TestPatchStrategies(t *testing.T) {
	for _, tc := range []struct {
		name, tmpl, props string
		path, want        string
		// mine compares only the labels the test wrote, not those Render adds.
		mine bool
	}{{
		name: "plain unification merges objects field by field",
		tmpl: `patch: metadata: labels: team: "pay"`,
		path: "metadata.labels", want: `{"keep":"yes","team":"pay","tier":"web"}`,
		mine: true,
	}, {
		name: "a value the workload took as a default is replaced",
		tmpl: `parameter: replicas: int
patch: spec: replicas: parameter.replicas`,
		props: `{"replicas": 4}`,
		path:  "spec.replicas", want: `4`,
	}, {
		name: "lists of the same length unify element by element",
		tmpl: `patch: spec: template: spec: volumes: [{emptyDir: medium: "Memory"}]`,
		path: "spec.template.spec.volumes", want: `[{"emptyDir":{"medium":"Memory"},"name":"v1"}]`,
	}, {
		name: "+patchKey merges list elements by key and appends the others",
		tmpl: `patch: spec: template: spec: {
	// +patchKey=name
	containers: [{name: "api", imagePullPolicy: "Always"}, {name: "sidecar", image: "s:1"}]
}`,
		path: "spec.template.spec.containers",
		want: `[{"env":[{"name":"A","value":"1"}],"image":"api:v1","imagePullPolicy":"Always","name":"api"},{"image":"s:1","name":"sidecar"}]`,
	}, {
		name: "+patchKey on a shorthand chain applies to its list",
		tmpl: `patch: {
	// +patchKey=name
	spec: template: spec: volumes: [{name: "v2", emptyDir: {}}]
}`,
		path: "spec.template.spec.volumes", want: `[{"emptyDir":{},"name":"v1"},{"emptyDir":{},"name":"v2"}]`,
	}, {
		name: "+patchKey nested in a merged element",
		tmpl: `patch: spec: template: spec: {
	// +patchKey=name
	containers: [{
		name: "api"
		// +patchKey=name
		env: [{name: "B", value: "3"}, {name: "A", value: "1"}]
	}]
}`,
		path: "spec.template.spec.containers.0.env", want: `[{"name":"A","value":"1"},{"name":"B","value":"3"}]`,
	}, {
		name: "+patchStrategy=retainKeys keeps only the patch's fields",
		tmpl: `patch: spec: {
	// +patchStrategy=retainKeys
	strategy: {type: "Recreate"}
}`,
		path: "spec.strategy", want: `{"type":"Recreate"}`,
	}, {
		name: "+patchStrategy=replace replaces a conflicting value",
		tmpl: `patch: metadata: {
	// +patchStrategy=replace
	labels: {only: "this"}
}`,
		path: "metadata.labels", want: `{"only":"this"}`, mine: true,
	}, {
		name: "+patchStrategy=jsonMergePatch deletes a field set to null",
		tmpl: `// +patchStrategy=jsonMergePatch
patch: metadata: labels: {keep: null, tier: "api"}`,
		path: "metadata.labels", want: `{"tier":"api"}`, mine: true,
	}, {
		name: "+patchStrategy=jsonPatch applies RFC 6902 operations",
		tmpl: `// +patchStrategy=jsonPatch
patch: operations: [
	{op: "replace", path: "/spec/template/spec/containers/0/image", value: "api:v2"},
	{op: "remove", path: "/metadata/labels/keep"},
]`,
		path: "spec.template.spec.containers.0.image", want: `"api:v2"`,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			props := tc.props
			if props == "" {
				props = "{}"
			}
			c, err := renderOne(t, tc.tmpl, props)
			if err != nil {
				t.Fatal(err)
			}
			got := at(t, c.Workload, tc.path)
			if tc.mine {
				got = withoutOAMLabels(got)
			}
			if got := jsonOf(got); got != tc.want {
				t.Errorf("%s = %s, want %s", tc.path, got, tc.want)
			}
		})
	}
}

// Without a strategy that allows it, a patch that conflicts with the workload is an error
// naming the component, the trait and the field path.
func TestPatchConflicts(t *testing.T) {
	for _, tc := range []struct{ name, tmpl, want string }{{
		name: "a different value",
		tmpl: `patch: metadata: labels: tier: "db"`,
		want: `component api: traits[0] (t): patch: metadata.labels.tier: conflicting values "web" (workload) and "db" (patch)`,
	}, {
		name: "lists of different lengths without a key",
		tmpl: `patch: spec: template: spec: volumes: [{name: "a"}, {name: "b"}]`,
		want: `spec.template.spec.volumes: a list of 2 items conflicts with the workload's 1`,
	}, {
		name: "a patch element without the key",
		tmpl: `patch: spec: template: spec: {
	// +patchKey=name
	volumes: [{emptyDir: {}}]
}`,
		want: `an element of the patch has no name`,
	}, {
		name: "a patch that is not concrete",
		tmpl: `parameter: image?: string
patch: spec: template: spec: containers: [{image: parameter.image}]`,
		want: `component api: traits[0] (t): patch: patch.spec.template.spec.containers.0.image: cannot reference optional field: image`,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := renderOne(t, tc.tmpl, "{}")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// A trait sees the workload as the traits before it left it (context.output) and the objects
// so far (context.outputs); its outputs are added, and patchOutputs changes them.
func TestTraitsSeeTheWorkloadSoFar(t *testing.T) {
	set := application.NewSet().Add([]*v1beta1.ComponentDefinition{component("base", base)}, []*v1beta1.TraitDefinition{
		trait("first", `patch: metadata: labels: step: "1"`),
		trait("second", `outputs: seen: {
	apiVersion: "v1", kind: "ConfigMap", metadata: name: "seen"
	data: {step: context.output.metadata.labels.step, cm: context.outputs.cm.data.a}
}
patchOutputs: cm: data: b: "2"`),
	}, nil)
	app := &v1beta1.Application{
		ObjectMeta: metav1.ObjectMeta{Name: "shop", Namespace: "team"},
		Spec: v1beta1.ApplicationSpec{Components: []v1beta1.ApplicationComponent{{
			Name: "api", Type: "base", Properties: raw(`{"image":"api:v1"}`),
			Traits: []v1beta1.ApplicationTrait{{Type: "first"}, {Type: "second"}},
		}}},
	}
	comps, err := application.Render(context.Background(), application.Request{App: app, Definitions: set})
	if err != nil {
		t.Fatal(err)
	}
	c := comps[0]
	if len(c.Outputs) != 2 || c.Outputs[1].Name != "seen" || c.Outputs[1].Trait != "second" {
		t.Fatalf("outputs %+v", c.Outputs)
	}
	if got := jsonOf(c.Outputs[1].Object.Object["data"]); got != `{"cm":"1","step":"1"}` {
		t.Errorf("the trait saw %s", got)
	}
	if got := jsonOf(c.Outputs[0].Object.Object["data"]); got != `{"a":"1","b":"2"}` {
		t.Errorf("patchOutputs: %s", got)
	}
	labels := c.Outputs[1].Object.GetLabels()
	if labels[application.LabelTraitType] != "second" || labels[application.LabelTraitResource] != "seen" ||
		labels[application.LabelAppComponent] != "api" || labels[application.LabelResourceType] != "TRAIT" {
		t.Errorf("the trait's object is labelled %v", labels)
	}
	if l := c.Outputs[0].Object.GetLabels(); l[application.LabelTraitType] != application.AuxiliaryWorkload {
		t.Errorf("the component's own output is labelled %v", l)
	}
	if l := c.Workload.GetLabels(); l[application.LabelWorkloadType] != "base" || l[application.LabelResourceType] != "WORKLOAD" ||
		l[application.LabelAppName] != "shop" || l[application.LabelAppNamespace] != "team" || l[application.LabelAppRevision] != "shop-v1" {
		t.Errorf("the workload is labelled %v", l)
	}
}

// context holds what KubeVela fills in.
func TestContext(t *testing.T) {
	tmpl := `output: {apiVersion: "v1", kind: "ConfigMap", data: {
	name: context.name, appName: context.appName, namespace: context.namespace
	appRevision: context.appRevision, appRevisionNum: "\(context.appRevisionNum)"
	cluster: context.cluster, clusterVersion: context.clusterVersion.minor
	components: "\(len(context.components))", second: context.components[1].type
	stepName: context.stepName, workflowName: context.workflowName
	publishVersion: context.publishVersion, team: context.appLabels.team
	note: context.appAnnotations.note
}}`
	set := application.NewSet().Add([]*v1beta1.ComponentDefinition{component("c", tmpl), component("other", `output: {apiVersion: "v1", kind: "Secret"}`)}, nil, nil)
	app := &v1beta1.Application{
		ObjectMeta: metav1.ObjectMeta{Name: "shop", Namespace: "team", Labels: map[string]string{"team": "pay"},
			Annotations: map[string]string{"note": "n", application.AnnotationPublishVersion: "v7"}},
		Spec: v1beta1.ApplicationSpec{Components: []v1beta1.ApplicationComponent{{Name: "api", Type: "c"}, {Name: "db", Type: "other"}}},
	}
	comps, err := application.Render(context.Background(), application.Request{
		App: app, Definitions: set, Revision: "shop-v3", RevisionNum: 3, WorkflowName: "shop", StepName: "deploy-east",
		Target:     application.Target{Cluster: "east", Namespace: "prod", ClusterVersion: application.ClusterVersion{Major: "1", Minor: "36"}},
		Components: []string{"api"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(comps) != 1 {
		t.Fatalf("rendered %d components, want the one asked for", len(comps))
	}
	want := map[string]any{
		"name": "api", "appName": "shop", "namespace": "prod", "appRevision": "shop-v3", "appRevisionNum": "3",
		"cluster": "east", "clusterVersion": "36", "components": "2", "second": "other", "stepName": "deploy-east",
		"workflowName": "shop", "publishVersion": "v7", "team": "pay", "note": "n",
	}
	if got := comps[0].Workload.Object["data"]; !reflect.DeepEqual(got, want) {
		t.Errorf("context gave\n%v\nwant\n%v", got, want)
	}
	if ns := comps[0].Workload.GetNamespace(); ns != "prod" {
		t.Errorf("namespace %q, want the target's", ns)
	}
}

// Errors say which component, trait and field are wrong.
func TestRenderErrors(t *testing.T) {
	set := application.NewSet().Add([]*v1beta1.ComponentDefinition{component("base", base)},
		[]*v1beta1.TraitDefinition{trait("only-jobs", `patch: {}`, "jobs.batch"), trait("ok", `patch: {}`)}, nil)
	for _, tc := range []struct {
		name string
		comp v1beta1.ApplicationComponent
		want string
	}{{
		name: "unknown component type",
		comp: v1beta1.ApplicationComponent{Name: "api", Type: "nope"},
		want: `component api: type nope: component type "nope": no definition of that type`,
	}, {
		name: "unknown trait type",
		comp: v1beta1.ApplicationComponent{Name: "api", Type: "base", Properties: raw(`{"image":"x"}`), Traits: []v1beta1.ApplicationTrait{{Type: "ok"}, {Type: "nope"}}},
		want: `component api: traits[1] (nope): trait type "nope": no definition of that type`,
	}, {
		name: "a property of the wrong type",
		comp: v1beta1.ApplicationComponent{Name: "api", Type: "base", Properties: raw(`{"image":"x","replicas":"two"}`)},
		want: `component api: type base: parameter.replicas: conflicting values "two" and 1`,
	}, {
		name: "a required property missing",
		comp: v1beta1.ApplicationComponent{Name: "api", Type: "base"},
		want: `component api: type base: parameter.image: incomplete value string`,
	}, {
		name: "a trait that does not apply",
		comp: v1beta1.ApplicationComponent{Name: "api", Type: "base", Properties: raw(`{"image":"x"}`), Traits: []v1beta1.ApplicationTrait{{Type: "only-jobs"}}},
		want: `component api: traits[0] (only-jobs): the trait applies to jobs.batch, not to component type base`,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			app := &v1beta1.Application{ObjectMeta: metav1.ObjectMeta{Name: "shop", Namespace: "team"},
				Spec: v1beta1.ApplicationSpec{Components: []v1beta1.ApplicationComponent{tc.comp}}}
			_, err := application.Render(context.Background(), application.Request{App: app, Definitions: set})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
			if strings.Contains(tc.name, "unknown") && !errors.Is(err, application.ErrUnknownType) {
				t.Errorf("%v is not ErrUnknownType", err)
			}
		})
	}
}

// Health evaluates the health policy and custom status of the component and of each trait
// against the live objects; one that cannot be decided yet is unhealthy, one that is wrong
// an error.
func TestHealth(t *testing.T) {
	comp := component("base", base)
	comp.Spec.Status = &v1beta1.Status{
		HealthPolicy: `isHealth: context.output.status.readyReplicas == context.output.spec.replicas && context.outputs.cm.data.a == "1"`,
		CustomStatus: `message: "ready \(context.output.status.readyReplicas) of \(parameter.replicas)"`,
	}
	tr := trait("t", `outputs: svc: {apiVersion: "v1", kind: "Service", metadata: name: "svc"}`)
	tr.Spec.Status = &v1beta1.Status{HealthPolicy: `isHealth: context.outputs.svc.spec.clusterIP != ""`}
	bad := trait("bad", `patch: {}`)
	bad.Spec.Status = &v1beta1.Status{HealthPolicy: `isHealth: "yes"`}
	set := application.NewSet().Add([]*v1beta1.ComponentDefinition{comp}, []*v1beta1.TraitDefinition{tr, bad}, nil)
	app := &v1beta1.Application{ObjectMeta: metav1.ObjectMeta{Name: "shop", Namespace: "team"},
		Spec: v1beta1.ApplicationSpec{Components: []v1beta1.ApplicationComponent{{
			Name: "api", Type: "base", Properties: raw(`{"image":"x","replicas":2}`), Traits: []v1beta1.ApplicationTrait{{Type: "t"}},
		}}}}
	comps, err := application.Render(context.Background(), application.Request{App: app, Definitions: set})
	if err != nil {
		t.Fatal(err)
	}
	c := comps[0]
	liveObjs := map[string]map[string]any{
		"Deployment": {"spec": map[string]any{"replicas": int64(2)}, "status": map[string]any{"readyReplicas": int64(2)}},
		"ConfigMap":  {"data": map[string]any{"a": "1"}},
		"Service":    {"spec": map[string]any{"clusterIP": "10.0.0.1"}},
	}
	live := func(r *unstructured.Unstructured) *unstructured.Unstructured {
		if o, ok := liveObjs[r.GetKind()]; ok {
			return &unstructured.Unstructured{Object: o}
		}
		return nil
	}
	st, err := application.Health(context.Background(), set, "team", c, live)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Healthy || st.Message != "ready 2 of 2" || len(st.Traits) != 1 || !st.Traits[0].Healthy {
		t.Errorf("healthy objects: %+v", st)
	}
	liveObjs["Deployment"]["status"] = map[string]any{}
	delete(liveObjs, "Service")
	st, err = application.Health(context.Background(), set, "team", c, live)
	if err != nil {
		t.Fatal(err)
	}
	if st.Healthy || st.Traits[0].Healthy {
		t.Errorf("no ready replicas and no Service: %+v", st)
	}

	c.Traits = append(c.Traits, application.Trait{Type: "bad"})
	_, err = application.Health(context.Background(), set, "team", c, live)
	if err == nil || !strings.Contains(err.Error(), "component api: traits[1] (bad): status.healthPolicy: isHealth") {
		t.Errorf("a wrong health policy: %v", err)
	}
}

// && and || short-circuit, as KubeVela's definitions expect: the right side is not evaluated
// when the left decides.
func TestShortCircuit(t *testing.T) {
	c, err := renderOne(t, `parameter: {x?: {y: string}}
patch: metadata: labels: {
	if parameter.x != _|_ && parameter.x.y == "a" {set: "yes"}
	if parameter.x == _|_ || parameter.x.y == "b" {unset: "yes"}
}`, "{}")
	if err != nil {
		t.Fatal(err)
	}
	if got := jsonOf(withoutOAMLabels(c.Workload.Object["metadata"].(map[string]any)["labels"])); got != `{"keep":"yes","tier":"web","unset":"yes"}` {
		t.Errorf("labels %s", got)
	}
}

// A trait's appliesToWorkloads is judged by the workload a definition renders when the
// definition does not name its kind (autodetects.core.oam.dev, as k8s-objects).
func TestAppliesToAutodetectedWorkload(t *testing.T) {
	auto := component("raw", `parameter: kind: string
output: {apiVersion: "apps/v1", kind: parameter.kind, metadata: name: "x"}`)
	auto.Spec.Workload = v1beta1.WorkloadTypeDescriptor{Type: "autodetects.core.oam.dev"}
	set := application.NewSet().Add([]*v1beta1.ComponentDefinition{auto},
		[]*v1beta1.TraitDefinition{trait("scale", `patch: spec: replicas: 2`, "deployments.apps")}, nil)
	for kind, ok := range map[string]bool{"Deployment": true, "DaemonSet": false} {
		app := &v1beta1.Application{ObjectMeta: metav1.ObjectMeta{Name: "shop", Namespace: "team"},
			Spec: v1beta1.ApplicationSpec{Components: []v1beta1.ApplicationComponent{{
				Name: "c", Type: "raw", Properties: raw(`{"kind":"` + kind + `"}`), Traits: []v1beta1.ApplicationTrait{{Type: "scale"}},
			}}}}
		_, err := application.Render(context.Background(), application.Request{App: app, Definitions: set})
		if (err == nil) != ok {
			t.Errorf("%s: %v", kind, err)
		}
	}
}

// Bad input is an error, never a crash: properties that are not an object, a component type
// whose template has no output and outputs that are not objects.
func TestRenderRefusesBadInput(t *testing.T) {
	set := application.NewSet().Add([]*v1beta1.ComponentDefinition{
		component("base", base),
		component("scalar", `output: 3`),
		component("nokind", `output: {metadata: name: "x"}`),
	}, nil, nil)
	for _, tc := range []struct {
		comp v1beta1.ApplicationComponent
		want string
	}{
		{v1beta1.ApplicationComponent{Name: "a", Type: "base", Properties: raw(`[1]`)}, "properties must be an object"},
		{v1beta1.ApplicationComponent{Name: "a", Type: "scalar"}, "output: an object must be a struct"},
		{v1beta1.ApplicationComponent{Name: "a", Type: "nokind"}, "output: the object needs apiVersion and kind"},
	} {
		app := &v1beta1.Application{ObjectMeta: metav1.ObjectMeta{Name: "shop", Namespace: "team"},
			Spec: v1beta1.ApplicationSpec{Components: []v1beta1.ApplicationComponent{tc.comp}}}
		_, err := application.Render(context.Background(), application.Request{App: app, Definitions: set})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.comp.Type, err, tc.want)
		}
	}
}
