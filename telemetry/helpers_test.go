package telemetry_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	kruntime "k8s.io/apimachinery/pkg/runtime"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/assembly"
	"github.com/stepflow/stepflow/definitions"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/step"
	"github.com/stepflow/stepflow/store"
	"github.com/stepflow/stepflow/store/sqlite"
)

// builtins serves the built-in step types.
type builtins struct{}

func (builtins) Template(_ context.Context, _, typ string) (string, error) {
	if t, ok := definitions.Template(typ); ok {
		return t, nil
	}
	return "", fmt.Errorf("%s: %w", typ, step.ErrUnknownType)
}

// watch is an Observer keeping a copy of the newest version of each run reported.
type watch struct {
	mu     sync.Mutex
	last   map[engine.Key]*engine.Run
	change chan struct{}
}

func newWatch() *watch {
	return &watch{last: map[engine.Key]*engine.Run{}, change: make(chan struct{}, 1)}
}

func (w *watch) RunChanged(run *engine.Run) {
	cp := &engine.Run{Object: run.Object.DeepCopy(), Version: run.Version}
	w.mu.Lock()
	if last := w.last[run.Key()]; last == nil || last.Version < run.Version {
		w.last[run.Key()] = cp
	}
	w.mu.Unlock()
	select {
	case w.change <- struct{}{}:
	default:
	}
}

// waitFor blocks until the newest report of the run satisfies ok, and returns it.
func (w *watch) waitFor(t *testing.T, key engine.Key, what string, ok func(*engine.Run) bool) *engine.Run {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		w.mu.Lock()
		run := w.last[key]
		w.mu.Unlock()
		if run != nil && ok(run) {
			return run
		}
		select {
		case <-w.change:
		case <-time.After(10 * time.Millisecond):
		case <-deadline:
			phase := "not reported"
			if run != nil {
				phase = string(run.Object.Status.Phase) + ": " + run.Object.Status.Message
			}
			t.Fatalf("run %s: never %s (last: %s)", key, what, phase)
		}
	}
}

func (w *watch) finished(t *testing.T, key engine.Key) *engine.Run {
	t.Helper()
	return w.waitFor(t, key, "finished", func(r *engine.Run) bool { return r.Object.Status.Finished })
}

// env is a real engine: the SQLite store in a temporary directory, the CUE runtime with every
// provider and the built-in step types, and a local HTTP server answering /ok with 200 and
// /fail with 500.
type env struct {
	store  *sqlite.Store
	eng    *engine.Engine
	watch  *watch
	server *httptest.Server
}

// newEnv starts an engine; opts gives what the test observes (Observer, QueueObserver, and
// Store as a function of the real one) and ObserveEvaluation the runner's hook.
func newEnv(t *testing.T, opts engine.Options, wrap func(engine.Store) engine.Store, observe func(string, time.Duration)) *env {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, sqlite.Options{Path: filepath.Join(t.TempDir(), "stepflow.db"), Synchronous: "OFF"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/fail" {
			w.WriteHeader(http.StatusInternalServerError)
		}
		_, _ = w.Write([]byte(`{"ok":true}`))
	}))
	t.Cleanup(srv.Close)
	runner := step.NewRunner(step.Options{Registry: assembly.Registry(assembly.Providers{}), Definitions: builtins{}, ObserveEvaluation: observe})
	e := &env{store: st, watch: newWatch(), server: srv}
	opts.Store = st
	if wrap != nil {
		opts.Store = wrap(st)
	}
	opts.Runner, opts.Conditions, opts.Workflows = runner, runner, st
	opts.Observer = engine.Observers{opts.Observer, e.watch}
	opts.Retry = engine.RetryPolicy{Limit: 1, Backoff: engine.Backoff{Initial: 10 * time.Millisecond, Factor: 1, Max: 10 * time.Millisecond}}
	e.eng = engine.New(opts)
	engCtx, cancel := context.WithCancel(ctx)
	stopped := make(chan struct{})
	go func() { _ = e.eng.Start(engCtx); close(stopped) }()
	t.Cleanup(func() { cancel(); <-stopped })
	return e
}

// start creates a run of the given steps (JSON of a WorkflowSpec) or, with ref set, of the
// Workflow template ref, and has the engine run it.
func (e *env) start(t *testing.T, name, ref, spec string) engine.Key {
	t.Helper()
	obj := &v1alpha1.WorkflowRun{}
	obj.Namespace, obj.Name = "default", name
	if ref != "" {
		obj.Spec.WorkflowRef = ref
	} else {
		obj.Spec.WorkflowSpec = &v1alpha1.WorkflowSpec{}
		if err := json.Unmarshal([]byte(spec), obj.Spec.WorkflowSpec); err != nil {
			t.Fatalf("spec of %s: %v", name, err)
		}
	}
	run := &engine.Run{Object: obj}
	if err := e.store.Create(context.Background(), run, store.CreateNew); err != nil {
		t.Fatal(err)
	}
	e.eng.Enqueue(run.Key())
	return run.Key()
}

// idle waits until the engine has nothing under way for the runs.
func (e *env) idle(t *testing.T, keys ...engine.Key) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, k := range keys {
		for e.eng.Busy(k) {
			if time.Now().After(deadline) {
				t.Fatalf("the engine is still busy with %s", k)
			}
			time.Sleep(time.Millisecond)
		}
	}
}

// raw is a RawExtension of JSON text.
func raw(s string) *kruntime.RawExtension { return &kruntime.RawExtension{Raw: []byte(s)} }
