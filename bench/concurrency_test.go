package bench

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	kruntime "k8s.io/apimachinery/pkg/runtime"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/cputime"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/provider/builtin"
	httpprovider "github.com/stepflow/stepflow/provider/http"
	"github.com/stepflow/stepflow/step"
	"github.com/stepflow/stepflow/store"
	"github.com/stepflow/stepflow/store/sqlite"
)

// BenchmarkConcurrencyKey measures the wall time (and the CPU time of the process and its
// child evaluators, cpu-ms/op) of 1,000 runs of one request step (to a local
// service that answers after 10 ms) on the embedded store: all on one concurrency key of limit
// 10 (key), and without a key with at most 10 runs created and unfinished at a time (pool:
// the same parallelism kept by the client). Every saved transition is checked: never more
// than 10 runs of the key hold a slot unfinished at once.
func BenchmarkConcurrencyKey(b *testing.B) {
	for _, mode := range []string{"pool", "key"} {
		b.Run(mode, func(b *testing.B) { concurrencyKey(b, mode) })
	}
}

// slotCount counts the runs that hold a slot and have not finished, as saved.
type slotCount struct {
	mu       sync.Mutex
	running  map[engine.Key]bool
	finished map[engine.Key]bool
	peak     int
	// failed counts the runs that finished otherwise than succeeded.
	failed int
	done   chan engine.Key
}

func (s *slotCount) RunChanged(run *engine.Run) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := run.Key()
	switch {
	case run.Object.Status.Finished:
		delete(s.running, k)
		if !s.finished[k] {
			s.finished[k] = true
			if run.Object.Status.Phase != v1alpha1.RunSucceeded {
				s.failed++
			}
			s.done <- k
		}
	case run.Admitted:
		s.running[k] = true
	}
	s.peak = max(s.peak, len(s.running))
}

func concurrencyKey(b *testing.B, mode string) {
	const runs, limit = 1000, 10
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(10 * time.Millisecond)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"ok":true}`))
	}))
	defer srv.Close()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, sqlite.Options{Path: filepath.Join(b.TempDir(), "bench.db")})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = st.Close() }()
	reg := step.NewRegistry()
	builtin.Register(reg)
	httpprovider.Register(reg, httpprovider.Options{Client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}})
	runner := step.NewRunner(step.Options{Registry: reg, Definitions: builtins{}, InProcess: inProcess(), Evaluators: evaluators()})
	obs := &slotCount{running: map[engine.Key]bool{}, finished: map[engine.Key]bool{}, done: make(chan engine.Key, runs+1)}
	eng := engine.New(engine.Options{Store: st, Runner: runner, Conditions: runner, CacheKeys: runner,
		Slots: &store.Slots{Records: st}, Observer: obs})
	engCtx, cancel := context.WithCancel(ctx)
	stopped := make(chan struct{})
	go func() { _ = eng.Start(engCtx); close(stopped) }()
	defer func() { cancel(); <-stopped }()

	spec := v1alpha1.WorkflowSpec{Steps: []v1alpha1.WorkflowStep{{WorkflowStepBase: v1alpha1.WorkflowStepBase{
		Name: "call", Type: "request",
		Properties: &kruntime.RawExtension{Raw: fmt.Appendf(nil, `{"url":%q}`, srv.URL+"/ok")},
	}}}}
	create := func(name string) {
		obj := &v1alpha1.WorkflowRun{Spec: v1alpha1.WorkflowRunSpec{WorkflowSpec: spec.DeepCopy()}}
		obj.Name, obj.Namespace = name, "default"
		if mode == "key" {
			obj.Spec.Concurrency = &v1alpha1.Concurrency{Key: `"one"`, Limit: limit}
		}
		if err := st.Create(ctx, &engine.Run{Object: obj}, store.CreateNew); err != nil {
			b.Fatal(err)
		}
		eng.Enqueue(engine.Key{Namespace: "default", Name: name})
	}
	wait := func() {
		select {
		case <-obs.done:
		case <-time.After(5 * time.Minute):
			b.Fatal("a run did not finish")
		}
	}
	create("warm")
	wait()
	cpu0, err := cputime.Total()
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; b.Loop(); i++ {
		if mode == "key" {
			for j := range runs {
				create(fmt.Sprintf("run-%d-%d", i, j))
			}
			for range runs {
				wait()
			}
			continue
		}
		for j := range runs {
			if j >= limit {
				wait()
			}
			create(fmt.Sprintf("run-%d-%d", i, j))
		}
		for range limit {
			wait()
		}
	}
	cpu1, err := cputime.Total()
	if err != nil {
		b.Fatal(err)
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if obs.failed > 0 {
		b.Fatalf("%d runs did not succeed", obs.failed)
	}
	if mode == "key" && (obs.peak > limit || obs.peak < 2) {
		b.Fatalf("%d runs held a slot at once, want at most %d", obs.peak, limit)
	}
	b.ReportMetric(float64(obs.peak), "peak-running")
	b.ReportMetric(float64((cpu1-cpu0).Milliseconds())/float64(b.N), "cpu-ms/op")
}
