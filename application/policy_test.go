package application_test

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/api/v1beta1"
	"github.com/stepflow/stepflow/application"
)

func appOf(t *testing.T, y string) *v1beta1.Application {
	t.Helper()
	app := &v1beta1.Application{}
	if err := yaml.UnmarshalStrict([]byte(y), app); err != nil {
		t.Fatal(err)
	}
	if app.Namespace == "" {
		app.Namespace = "shop"
	}
	return app
}

// clusters is a stand-in for the cluster registry: names and labels held in memory.
type clusters map[string]map[string]string

func (c clusters) Names(context.Context) ([]string, error) {
	var out []string
	for n := range c {
		out = append(out, n)
	}
	return out, nil
}

func (c clusters) Labels(_ context.Context, name string) (map[string]string, error) {
	return c[name], nil
}

func TestPlacementsOfTopologyPolicies(t *testing.T) {
	app := appOf(t, `
metadata: {name: a}
spec:
  components: [{name: c, type: webservice}]
  policies:
  - {name: named, type: topology, properties: {clusters: [eu, local]}}
  - {name: prod, type: topology, properties: {clusterLabelSelector: {env: prod}, namespace: live}}
  - {name: none, type: topology, properties: {clusterLabelSelector: {env: dev}}}
  - {name: none-ok, type: topology, properties: {clusterLabelSelector: {env: dev}, allowEmpty: true}}
  - {name: ghost, type: topology, properties: {clusters: [mars]}}
  - {name: o, type: override, properties: {components: []}}
`)
	reg := clusters{"eu": {"env": "prod"}, "us": {"env": "prod"}, "ap": {"env": "test"}}
	for _, tc := range []struct {
		policies []string
		want     string
		err      string
	}{
		{nil, "local/shop", ""},
		{[]string{"named"}, "eu/shop local/shop", ""},
		{[]string{"prod"}, "eu/live us/live", ""},
		{[]string{"named", "prod"}, "eu/shop local/shop eu/live us/live", ""},
		{[]string{"none"}, "", "no cluster has the labels map[env:dev]"},
		{[]string{"none-ok"}, "", ""},
		{[]string{"ghost"}, "", `cluster "mars" is not registered`},
		{[]string{"o"}, "", "policy o is of type override"},
		{[]string{"missing"}, "", "has no policy missing"},
	} {
		pls, err := application.Placements(context.Background(), app, tc.policies, reg)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%v: error %v, want %q", tc.policies, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%v: %v", tc.policies, err)
		}
		var got []string
		for _, p := range pls {
			got = append(got, p.Cluster+"/"+p.Namespace)
		}
		if g := strings.Join(got, " "); g != tc.want {
			t.Errorf("%v: %q, want %q", tc.policies, g, tc.want)
		}
	}
}

func TestOverridesByNameTypeAndSelector(t *testing.T) {
	app := appOf(t, `
metadata: {name: a}
spec:
  components:
  - name: web
    type: webservice
    properties: {image: nginx, env: [{name: A, value: "1"}], resources: {cpu: 1, memory: 1Gi}}
    traits:
    - {type: scaler, properties: {replicas: 1}}
    - {type: gateway, properties: {domain: a.example}}
  - name: jobs
    type: worker
    properties: {image: busybox}
  policies:
  - name: bigger
    type: override
    properties:
      components:
      - type: webservice
        properties: {resources: {cpu: 2}, env: [{name: B, value: "2"}]}
        traits:
        - {type: scaler, properties: {replicas: 3}}
        - {type: gateway, disable: true}
        - {type: labels, properties: {tier: front}}
      - name: jobs
        properties: {image: busybox:2}
  - name: only-web
    type: override
    properties: {selector: [web], components: []}
`)
	comps, err := application.ApplyOverrides(app, []string{"bigger"})
	if err != nil {
		t.Fatal(err)
	}
	web, jobs := comps[0], comps[1]
	var props map[string]any
	_ = json.Unmarshal(web.Properties.Raw, &props)
	want := map[string]any{"image": "nginx", "env": []any{map[string]any{"name": "B", "value": "2"}}, "resources": map[string]any{"cpu": 2.0, "memory": "1Gi"}}
	if !reflect.DeepEqual(props, want) {
		t.Errorf("web properties %v, want %v", props, want)
	}
	var traits []string
	for _, tr := range web.Traits {
		traits = append(traits, tr.Type+string(tr.Properties.Raw))
	}
	if g := strings.Join(traits, " "); g != `scaler{"replicas":3} labels{"tier":"front"}` {
		t.Errorf("web traits %s", g)
	}
	if string(jobs.Properties.Raw) != `{"image":"busybox:2"}` {
		t.Errorf("jobs properties %s", jobs.Properties.Raw)
	}
	if string(app.Spec.Components[0].Properties.Raw) == string(web.Properties.Raw) {
		t.Error("the Application itself was changed")
	}
	comps, err = application.ApplyOverrides(app, []string{"only-web"})
	if err != nil {
		t.Fatal(err)
	}
	if len(comps) != 1 || comps[0].Name != "web" {
		t.Errorf("selector [web] kept %v", comps)
	}
}

func TestGarbageCollectRules(t *testing.T) {
	app := appOf(t, `
metadata: {name: a}
spec:
  components: [{name: db, type: webservice}]
  policies:
  - name: gc
    type: garbage-collect
    properties:
      keepLegacyResource: true
      rules:
      - {selector: {componentNames: [db]}, strategy: never}
      - {selector: {traitTypes: [gateway]}, strategy: onAppDelete}
      - {selector: {resourceTypes: [ConfigMap]}, strategy: onAppUpdate}
`)
	gc, err := application.GCPolicy(app)
	if err != nil {
		t.Fatal(err)
	}
	rec := func(comp, typ, trait, kind string) *application.Applied {
		r := &application.Applied{ComponentType: typ}
		r.Component, r.Trait, r.Kind = comp, trait, kind
		return r
	}
	for _, tc := range []struct {
		r                  *application.Applied
		onUpdate, onDelete bool
	}{
		{rec("db", "webservice", "", "Deployment"), false, false},
		{rec("web", "webservice", "gateway", "Ingress"), false, true},
		{rec("web", "webservice", "", "ConfigMap"), true, true},
		{rec("web", "webservice", "", "Deployment"), false, true}, // keepLegacyResource
	} {
		if got := gc.MayDelete(tc.r, false); got != tc.onUpdate {
			t.Errorf("%s %s on update: %v, want %v", tc.r.Component, tc.r.Kind, got, tc.onUpdate)
		}
		if got := gc.MayDelete(tc.r, true); got != tc.onDelete {
			t.Errorf("%s %s on delete: %v, want %v", tc.r.Component, tc.r.Kind, got, tc.onDelete)
		}
	}
	def, err := application.GCPolicy(appOf(t, `{metadata: {name: a}, spec: {components: []}}`))
	if err != nil {
		t.Fatal(err)
	}
	if !def.MayDelete(rec("web", "webservice", "", "Deployment"), false) {
		t.Error("without a policy, what a new revision no longer renders is kept")
	}
	_, err = application.GCPolicy(appOf(t, `
metadata: {name: a}
spec:
  components: []
  policies: [{name: gc, type: garbage-collect, properties: {rules: [{selector: {}, strategy: sometimes}]}}]
`))
	if err == nil || !strings.Contains(err.Error(), `rules[0].strategy: "sometimes"`) {
		t.Errorf("a bad strategy: %v", err)
	}
}

func TestApplyOnceSelects(t *testing.T) {
	app := appOf(t, `
metadata: {name: a}
spec:
  components: []
  policies: [{name: once, type: apply-once, properties: {rules: [{selector: {resourceTypes: [Deployment]}, strategy: {path: ["spec.replicas"]}}]}}]
`)
	once, err := application.ApplyOncePolicy(app)
	if err != nil {
		t.Fatal(err)
	}
	d, s := &application.Applied{}, &application.Applied{}
	d.Kind, s.Kind = "Deployment", "Service"
	if !once.Once(d) || once.Once(s) {
		t.Errorf("Deployment %v Service %v, want true false", once.Once(d), once.Once(s))
	}
	var none *application.ApplyOnce
	if none.Once(d) {
		t.Error("no policy applies once")
	}
}

func TestDefaultWorkflow(t *testing.T) {
	for _, tc := range []struct {
		name, app, want, mode string
	}{{
		"one deploy per topology, overrides first",
		`{metadata: {name: a}, spec: {components: [{name: c, type: webservice}], policies: [{name: eu, type: topology}, {name: o, type: override}, {name: us, type: topology}]}}`,
		`deploy-eu:deploy{"policies":["o","eu"]} deploy-us:deploy{"policies":["o","us"]}`, "",
	}, {
		"overrides alone",
		`{metadata: {name: a}, spec: {components: [{name: c, type: webservice}], policies: [{name: o, type: override}]}}`,
		`deploy:deploy{"policies":["o"]}`, "",
	}, {
		"apply-component in dependsOn order",
		`{metadata: {name: a}, spec: {components: [{name: web, type: webservice, dependsOn: [db]}, {name: db, type: worker}]}}`,
		`db:apply-component{"component":"db"} web:apply-component{"component":"web"}<-db`, "DAG",
	}, {
		"its own workflow",
		`{metadata: {name: a}, spec: {components: [{name: c, type: webservice}], workflow: {mode: {steps: DAG}, steps: [{name: s, type: suspend}]}}}`,
		`s:suspend`, "DAG",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			steps, mode, err := application.Workflow(appOf(t, tc.app))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, s := range steps {
				g := s.Name + ":" + s.Type
				if s.Properties != nil {
					g += string(s.Properties.Raw)
				}
				if len(s.DependsOn) > 0 {
					g += "<-" + strings.Join(s.DependsOn, ",")
				}
				got = append(got, g)
			}
			if g := strings.Join(got, " "); g != tc.want {
				t.Errorf("steps %s\nwant  %s", g, tc.want)
			}
			var m v1alpha1.WorkflowMode
			if mode != nil {
				m = mode.Steps
			}
			if string(m) != tc.mode {
				t.Errorf("mode %q, want %q", m, tc.mode)
			}
		})
	}
	_, _, err := application.Workflow(appOf(t, `{metadata: {name: a}, spec: {components: [{name: a, type: worker, dependsOn: [b]}, {name: b, type: worker, dependsOn: [a]}]}}`))
	if err == nil || !strings.Contains(err.Error(), "cycle") {
		t.Errorf("a dependsOn cycle: %v", err)
	}
	spec, err := application.RunSpec(appOf(t, `{metadata: {name: a}, spec: {components: [], workflow: {ref: release}}}`), "a-v2", nil)
	if err != nil || spec.WorkflowRef != "release" || spec.WorkflowSpec != nil {
		t.Errorf("a workflow ref: %+v %v", spec, err)
	}
	var ctx map[string]any
	_ = json.Unmarshal(spec.Context.Raw, &ctx)
	if ctx["appName"] != "a" || ctx["appRevision"] != "a-v2" || ctx["application"].(map[string]any)["metadata"].(map[string]any)["name"] != "a" {
		t.Errorf("context %v", ctx)
	}
}
