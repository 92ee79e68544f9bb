package assembly_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/assembly"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/store"
	"github.com/stepflow/stepflow/store/sqlite"
)

// A cached step with a side effect (an HTTP POST to a real server) does not repeat it on a
// hit: the second run's step succeeds as Cached, the server saw one POST, and the next step
// takes the response the first run's step output. Everything is real: the step runtime and
// its child evaluators, the http provider, the SQLite store holding the cache.
func TestCachedStepMakesNoSideEffectOnAHit(t *testing.T) {
	var posts atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if r.Method == http.MethodPost {
			n := posts.Add(1)
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"build": "b-%d"}`, n)
		}
	}))
	defer srv.Close()

	ctx := context.Background()
	st, err := sqlite.Open(ctx, sqlite.Options{Path: filepath.Join(t.TempDir(), "stepflow.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	watch := settled{done: make(chan *engine.Run, 1)}
	clock := engine.NewFakeClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	a, err := assembly.New(assembly.Config{Clock: clock}, assembly.Mode{Store: st, Definitions: st,
		Observers: []engine.Observer{watch}, Cache: &store.StepCache{Records: st}})
	if err != nil {
		t.Fatal(err)
	}
	engCtx, cancel := context.WithCancel(ctx)
	stopped := make(chan struct{})
	go func() { _ = a.Engine.Start(engCtx); close(stopped) }()
	t.Cleanup(func() { cancel(); <-stopped })

	run := func(name string) *engine.Run {
		t.Helper()
		doc := fmt.Sprintf(`
apiVersion: core.oam.dev/v1alpha1
kind: WorkflowRun
metadata: {name: %s, namespace: default}
spec:
  workflowSpec:
    steps:
    - name: build
      type: request
      properties: {url: %q, method: POST, body: {commit: abc123}}
      cache: {key: 'parameter.body.commit', maxAge: 1h}
      outputs: [{name: build, valueFrom: response.build}]
    - name: show
      type: print-message-in-status
      inputs: [{from: build, parameterKey: message}]
`, name, srv.URL)
		var obj v1alpha1.WorkflowRun
		if err := yaml.UnmarshalStrict([]byte(doc), &obj); err != nil {
			t.Fatal(err)
		}
		if err := st.Create(ctx, &engine.Run{Object: &obj}, store.CreateNew); err != nil {
			t.Fatal(err)
		}
		a.Engine.Enqueue(engine.Key{Namespace: obj.Namespace, Name: obj.Name})
		select {
		case r := <-watch.done:
			return r
		case <-time.After(60 * time.Second):
			t.Fatal("the run did not finish")
		}
		return nil
	}
	status := func(r *engine.Run, step string) v1alpha1.StepStatus {
		for _, s := range r.Object.Status.Steps {
			if s.Name == step {
				return s.StepStatus
			}
		}
		t.Fatalf("no step %s", step)
		return v1alpha1.StepStatus{}
	}

	first := run("first")
	if first.Object.Status.Phase != v1alpha1.RunSucceeded || status(first, "build").Reason != "" {
		t.Fatalf("first run %s, build %+v", first.Object.Status.Phase, status(first, "build"))
	}
	clock.Advance(30 * time.Minute)
	second := run("second")
	if got := status(second, "build"); got.Phase != v1alpha1.StepSucceeded || got.Reason != v1alpha1.ReasonCached {
		t.Fatalf("second run's build: %s %s %q; want succeeded, Cached", got.Phase, got.Reason, got.Message)
	}
	if n := posts.Load(); n != 1 {
		t.Fatalf("the server saw %d POSTs; a hit must make none", n)
	}
	if got := status(second, "show").Message; got != "b-1" {
		t.Errorf("the next step took %q, want the first run's response b-1", got)
	}
}
