package multicluster_test

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"
	"sigs.k8s.io/yaml"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/api/v1beta1"
	"github.com/stepflow/stepflow/apiservertest"
	"github.com/stepflow/stepflow/application"
	"github.com/stepflow/stepflow/assembly"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/store"
	"github.com/stepflow/stepflow/store/sqlite"
)

// bomb is issue 19's list of 200 million items, as CUE a definition may hold.
const bomb = `"\(len([for i in list.Range(0, 200000000, 1) {i * 2}]))"`

// imports is the import of package list when src uses it.
func imports(src string) string {
	if strings.Contains(src, "list.") {
		return "import \"list\"\n\n"
	}
	return ""
}

// configMapDef is a ComponentDefinition rendering a ConfigMap (healthy once applied) whose
// data holds n; status, when given, is its health policy.
func configMapDef(name, n, status string) *v1beta1.ComponentDefinition {
	d := &v1beta1.ComponentDefinition{}
	d.Name = name
	d.Spec.Workload.Definition = v1beta1.WorkloadGVK{APIVersion: "v1", Kind: "ConfigMap"}
	d.Spec.Schematic = &v1beta1.Schematic{CUE: &v1beta1.CUE{Template: imports(n) + `parameter: {}
output: {
	apiVersion: "v1"
	kind:       "ConfigMap"
	data: n: ` + n + `
}
`}}
	if status != "" {
		d.Spec.Status = &v1beta1.Status{HealthPolicy: imports(status) + status}
	}
	return d
}

// patchDef is a TraitDefinition patching the workload's data with n.
func patchDef(name, n string) *v1beta1.TraitDefinition {
	d := &v1beta1.TraitDefinition{}
	d.Name = name
	d.Spec.Schematic = &v1beta1.Schematic{CUE: &v1beta1.CUE{Template: imports(n) + `parameter: {}
patch: data: m: ` + n + `
`}}
	return d
}

// finished collects the runs that finished, by name.
type finished struct {
	mu   sync.Mutex
	runs map[string]*engine.Run
}

func (f *finished) RunChanged(run *engine.Run) {
	if run.Object.Status.Finished {
		f.mu.Lock()
		f.runs[run.Object.Name] = run
		f.mu.Unlock()
	}
}

func (f *finished) get(name string) *engine.Run {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.runs[name]
}

// A ComponentDefinition's template, a TraitDefinition's patch and a health policy that each
// build a list of 200 million items, delivered by the deploy step, fail that step naming the
// memory bound and its flag, long before the time bound, while an ordinary Application
// delivered beside it by the same engine succeeds. Before, the render and the health policy
// were evaluated in the stepflow process, without a bound (issue 19: 23 GB of RSS).
func TestDeployOfADefinitionBombFailsOnlyThatStep(t *testing.T) {
	w := newWorld(t)
	defs := &application.DeliveryDefinitions{
		ComponentDefinitions: map[string]*v1beta1.ComponentDefinition{
			"bomb":         configMapDef("bomb", bomb, ""),
			"plain":        configMapDef("plain", `"1"`, ""),
			"bomb-health":  configMapDef("bomb-health", `"1"`, "isHealth: "+bomb+` == "0"`),
			"plain-health": configMapDef("plain-health", `"1"`, `isHealth: context.output.data.n == "1"`),
		},
		TraitDefinitions: map[string]*v1beta1.TraitDefinition{"bomb-patch": patchDef("bomb-patch", bomb)},
	}
	apps := map[string]string{
		"component": `{name: component, type: bomb}`,
		"trait":     `{name: trait, type: plain, traits: [{type: bomb-patch}]}`,
		"health":    `{name: health, type: bomb-health}`,
		"ordinary":  `{name: ordinary, type: plain-health}`,
	}
	ctx := context.Background()
	st, err := sqlite.Open(ctx, sqlite.Options{Path: filepath.Join(t.TempDir(), "stepflow.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	done := &finished{runs: map[string]*engine.Run{}}
	const timeBound = 2 * time.Minute
	a, err := assembly.New(assembly.Config{
		Providers:   assembly.Providers{Clusters: w.registry},
		EvalTimeout: timeBound, EvalMemory: 64 << 20,
	}, assembly.Mode{Store: st, Observers: []engine.Observer{done}})
	if err != nil {
		t.Fatal(err)
	}
	for name, comp := range apps {
		app := &v1beta1.Application{}
		if err := yaml.UnmarshalStrict([]byte(`{metadata: {name: `+name+`}, spec: {components: [`+comp+`]}}`), app); err != nil {
			t.Fatal(err)
		}
		app.Namespace = w.ns
		spec, err := application.RunSpec(app, name+"-v1", defs)
		if err != nil {
			t.Fatal(err)
		}
		wr := &v1alpha1.WorkflowRun{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: w.ns}, Spec: spec}
		if err := st.Create(ctx, &engine.Run{Object: wr}, store.CreateNew); err != nil {
			t.Fatal(err)
		}
	}
	ectx, cancel := context.WithCancel(ctx)
	stopped := make(chan struct{})
	go func() { _ = a.Engine.Start(ectx); close(stopped) }()
	t.Cleanup(func() { cancel(); <-stopped })
	begin := time.Now()
	for name := range apps {
		a.Engine.Enqueue(engine.Key{Namespace: w.ns, Name: name})
	}
	for name := range apps {
		for done.get(name) == nil {
			if time.Since(begin) > timeBound/2 {
				t.Fatalf("run %s did not finish within %s", name, timeBound/2)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	t.Logf("all finished after %s", time.Since(begin))
	want := map[string]string{
		"component": "evaluating the rendering of Application component used more than 64 MiB",
		"trait":     "evaluating the rendering of Application trait used more than 64 MiB",
		"health":    "evaluating the health of component health used more than 64 MiB",
	}
	for name, msg := range want {
		s := done.get(name).Object.Status
		if s.Phase != v1alpha1.RunFailed || len(s.Steps) != 1 {
			t.Errorf("run %s: %s, steps %+v; want failed", name, s.Phase, s.Steps)
			continue
		}
		if m := s.Steps[0].Message; !strings.Contains(m, msg) || !strings.Contains(m, "the limit of one evaluation (step.Options.EvalMemory, --eval-memory)") {
			t.Errorf("run %s: step message %q, want %q naming the bound and its flag", name, m, msg)
		}
	}
	if s := done.get("ordinary").Object.Status; s.Phase != v1alpha1.RunSucceeded {
		t.Errorf("the ordinary run %s: %+v", s.Phase, s.Steps)
	}
	if !w.has("eu", &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: w.ns, Name: "ordinary"}}) {
		t.Error("the ordinary run's ConfigMap is not there")
	}
}

// KubeVela: context.clusterVersion is the target cluster's version (major, minor, gitVersion,
// platform), as its discovery reports it: here rendered into a ConfigMap applied to the local
// cluster and to us, each holding its own cluster's version.
func TestRenderGivesTheClusterVersion(t *testing.T) {
	w := newWorld(t)
	def := configMapDef("versioned", `"\(context.clusterVersion.major).\(context.clusterVersion.minor) \(context.clusterVersion.gitVersion) \(context.clusterVersion.platform)"`, "")
	app := `
metadata: {name: versioned}
spec:
  components:
  - {name: versioned, type: versioned}
  policies:
  - {name: both, type: topology, properties: {clusters: [local, us]}}
`
	d := w.deliverWith(assembly.Config{}, &application.DeliveryDefinitions{
		ComponentDefinitions: map[string]*v1beta1.ComponentDefinition{"versioned": def},
	}, app)
	d.succeeded()
	for name, c := range map[string]*apiservertest.Cluster{"eu": eu, "us": us} {
		dc, err := discovery.NewDiscoveryClientForConfig(c.Config)
		if err != nil {
			t.Fatal(err)
		}
		v, err := dc.ServerVersion()
		if err != nil {
			t.Fatal(err)
		}
		want := v.Major + "." + v.Minor + " " + v.GitVersion + " " + v.Platform
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: w.ns, Name: "versioned"}}
		if !w.has(name, cm) {
			t.Fatalf("%s: no ConfigMap", name)
		}
		if got := cm.Data["n"]; got != want || v.GitVersion == "" {
			t.Errorf("%s: context.clusterVersion rendered %q, want %q", name, got, want)
		}
	}
}
