package lifecycle_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/api/v1beta1"
	"github.com/stepflow/stepflow/apiservertest"
	"github.com/stepflow/stepflow/application"
	"github.com/stepflow/stepflow/assembly"
	"github.com/stepflow/stepflow/definitions"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/lifecycle"
	"github.com/stepflow/stepflow/store"
	"github.com/stepflow/stepflow/store/sqlite"
)

// clusters are named API servers: "east" and "west".
type clusters map[string]*rest.Config

func (c clusters) Config(_ context.Context, name string) (*rest.Config, error) {
	if cfg, ok := c[name]; ok {
		return cfg, nil
	}
	return nil, fmt.Errorf("no cluster %q", name)
}

// Names implements application.Clusters: the deploy step places by these names.
func (c clusters) Names(context.Context) ([]string, error) {
	return slices.Sorted(maps.Keys(c)), nil
}

// Labels implements application.Clusters: these clusters have none.
func (c clusters) Labels(context.Context, string) (map[string]string, error) { return nil, nil }

func (c clusters) Client(ctx context.Context, name string) (client.Client, error) {
	cfg, err := c.Config(ctx, name)
	if err != nil {
		return nil, err
	}
	return client.New(cfg, client.Options{})
}

// runs are delivery runs in the SQLite store, driven by a real engine.
type runs struct {
	st  *sqlite.Store
	eng *engine.Engine
}

func (r runs) Start(ctx context.Context, run *v1alpha1.WorkflowRun) error {
	if err := r.st.Create(ctx, &engine.Run{Object: run}, store.CreateNew); err != nil {
		return err
	}
	r.eng.Enqueue(engine.Key{Namespace: run.Namespace, Name: run.Name})
	return nil
}

func (r runs) Run(ctx context.Context, namespace, name string) (*engine.Run, error) {
	return r.st.Load(ctx, engine.Key{Namespace: namespace, Name: name})
}

func (r runs) Terminate(ctx context.Context, namespace, name, reason string) (bool, error) {
	return lifecycle.Terminate(ctx, r.eng, engine.Key{Namespace: namespace, Name: name}, reason)
}

func (r runs) Delete(ctx context.Context, namespace, name string) error {
	if err := r.st.Delete(ctx, engine.Key{Namespace: namespace, Name: name}); err != nil && !errors.Is(err, engine.ErrNotFound) {
		return err
	}
	return nil
}

// fixture is what a lifecycle test runs on: real API servers by cluster name, each with the
// test's namespace, and an engine over a new SQLite store delivering to them.
type fixture struct {
	cl  clusters
	ns  string
	st  *sqlite.Store
	asm *assembly.Assembly
}

// newFixture starts a kube-apiserver for each of names, makes the test's namespace in each,
// and an engine assembled from cfg (its clusters those API servers) that runs until the test
// ends.
func newFixture(t *testing.T, cfg assembly.Config, names ...string) *fixture {
	t.Helper()
	ctx := t.Context()
	f := &fixture{cl: clusters{}, ns: apiservertest.Namespace(t)}
	for _, name := range names {
		api, err := apiservertest.Start()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = api.Stop() })
		f.cl[name] = api.Config
		if err := f.client(t, name).Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: f.ns}}); err != nil {
			t.Fatal(err)
		}
	}
	st, err := sqlite.Open(ctx, sqlite.Options{Path: filepath.Join(t.TempDir(), "stepflow.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	f.st = st
	cfg.Providers.Clusters = f.cl
	if f.asm, err = assembly.New(cfg, assembly.Mode{Store: st, Definitions: st}); err != nil {
		t.Fatal(err)
	}
	ectx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = f.asm.Engine.Start(ectx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return f
}

// client is a client of the cluster name.
func (f *fixture) client(t *testing.T, name string) client.Client {
	t.Helper()
	c, err := f.cl.Client(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// manager is the lifecycle over the fixture's store, engine and clusters.
func (f *fixture) manager() *lifecycle.Manager {
	return &lifecycle.Manager{Store: f.st, Runs: runs{st: f.st, eng: f.asm.Engine}, Clusters: f.cl, Evaluator: f.asm.Runner}
}

// app is the Application shop placed by a topology policy in both clusters, with the
// components and extra policies given.
func app(ns string, components []string, policies string) *v1beta1.Application {
	doc := fmt.Sprintf(`
metadata:
  name: shop
  namespace: %s
spec:
  policies:
    - name: both
      type: topology
      properties:
        clusters: [east, west]
%s
  components:
`, ns, policies)
	for _, c := range components {
		doc += fmt.Sprintf("    - name: %s\n      type: webservice\n      properties:\n        image: nginx:1.27\n", c)
	}
	var a v1beta1.Application
	if err := yaml.UnmarshalStrict([]byte(doc), &a); err != nil {
		panic(err)
	}
	return &a
}

// TestGarbageCollectionAcrossClusters: on two real API servers, an Application placed in both
// by a topology policy applies its objects to each; a revision dropping a component deletes
// its objects in both; a garbage-collect policy with keepLegacyResource keeps what the next
// revision drops; deleting the Application deletes what every revision applied, in both.
func TestGarbageCollectionAcrossClusters(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two kube-apiservers")
	}
	ctx := t.Context()
	f := newFixture(t, assembly.Config{}, "east", "west")
	cl, ns, st := f.cl, f.ns, f.st
	for name := range cl {
		// The deploy step waits for the components to be healthy.
		apiservertest.MarkReady(t, f.client(t, name), ns)
	}
	m := f.manager()
	defs := application.NewSet().Add(definitions.Components(), definitions.Traits(), definitions.Policies())
	deliver := func(a *v1beta1.Application, revision string) *v1beta1.Application {
		t.Helper()
		out, err := m.Up(ctx, a, defs)
		if err != nil {
			t.Fatal(err)
		}
		if out.Revision.Object.Name != revision {
			t.Fatalf("revision %s, want %s", out.Revision.Object.Name, revision)
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			synced, err := m.Sync(ctx, ns, "shop")
			if err != nil {
				t.Fatal(err)
			}
			if wf := synced.Status.Workflow; wf != nil && wf.Finished {
				if wf.Phase != v1alpha1.RunSucceeded {
					var steps []string
					for _, st := range wf.Steps {
						steps = append(steps, st.Name+": "+st.Message)
					}
					t.Fatalf("run %s: %s %s (%s)", revision, wf.Phase, wf.Message, strings.Join(steps, "; "))
				}
				return synced
			}
			if time.Now().After(deadline) {
				t.Fatalf("run %s did not finish: %+v", revision, synced.Status.Workflow)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	exists := func(cluster, name string) bool {
		t.Helper()
		c, _ := cl.Client(ctx, cluster)
		err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &appsv1.Deployment{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
		return err == nil
	}
	want := func(when string, present map[string]bool) {
		t.Helper()
		for _, cluster := range []string{"east", "west"} {
			for name, there := range present {
				if got := exists(cluster, name); got != there {
					t.Errorf("%s: Deployment %s in %s exists = %t, want %t", when, name, cluster, got, there)
				}
			}
		}
	}

	v1 := deliver(app(ns, []string{"web", "cache"}, ""), "shop-v1")
	want("v1", map[string]bool{"web": true, "cache": true})
	if n := len(v1.Status.AppliedResources); n != 4 {
		t.Errorf("v1 applied %d objects, want 4 (2 Deployments in 2 clusters): %+v", n, v1.Status.AppliedResources)
	}
	if n := len(v1.Status.Services); n != 4 {
		t.Errorf("v1 has %d services, want a component per cluster: %+v", n, v1.Status.Services)
	}

	deliver(app(ns, []string{"web"}, ""), "shop-v2")
	want("v2 dropped cache", map[string]bool{"web": true, "cache": false})

	keep := "    - name: keep\n      type: garbage-collect\n      properties:\n        keepLegacyResource: true"
	v3 := deliver(app(ns, []string{"cache"}, keep), "shop-v3")
	want("v3 dropped web, keeping legacy resources", map[string]bool{"web": true, "cache": true})
	if n := len(v3.Status.AppliedResources); n != 4 {
		t.Errorf("v3 shows %d applied objects, want the kept web and the new cache in both clusters: %+v", n, v3.Status.AppliedResources)
	}

	if err := m.Delete(ctx, ns, "shop"); err != nil {
		t.Fatal(err)
	}
	want("deleted", map[string]bool{"web": false, "cache": false})
	if _, _, err := st.Application(ctx, ns, "shop"); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("the Application after Delete: %v", err)
	}
}
