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
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/provider/builtin"
	httpprovider "github.com/stepflow/stepflow/provider/http"
	"github.com/stepflow/stepflow/step"
	"github.com/stepflow/stepflow/store"
	"github.com/stepflow/stepflow/store/sqlite"
)

// BenchmarkStepCache measures what a request step (its CUE and its HTTP request to a local
// service) costs as the CPU time of the process and its child evaluators per step, over runs
// of 10 such steps on the embedded store: without a cache (plain), with one it misses (miss:
// its key is the run's name too, so the step is evaluated and its entry written) and with one
// it hits (cached: the key evaluated, the entry read, nothing run). Every run costs the same
// besides (its creation, its transitions' saves), which the figures include: they are what a
// step costs in all.
func BenchmarkStepCache(b *testing.B) {
	for _, mode := range []string{"plain", "miss", "cached"} {
		b.Run(mode, func(b *testing.B) { stepCache(b, mode) })
	}
}

// current passes the engine's transitions to the batch of runs under way.
type current struct {
	mu sync.Mutex
	f  *finishes
}

func (c *current) RunChanged(run *engine.Run) {
	c.mu.Lock()
	f := c.f
	c.mu.Unlock()
	f.RunChanged(run)
}

func stepCache(b *testing.B, mode string) {
	const runs, steps = 100, 10
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
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
	cache := &store.StepCache{Records: st}
	obs := &current{f: &finishes{finished: map[engine.Key]bool{}}}
	eng := engine.New(engine.Options{Store: st, Runner: runner, Conditions: runner, Cache: cache, CacheKeys: runner, Observer: obs})
	engCtx, cancel := context.WithCancel(ctx)
	stopped := make(chan struct{})
	go func() { _ = eng.Start(engCtx); close(stopped) }()
	defer func() { cancel(); <-stopped }()

	var spec v1alpha1.WorkflowSpec
	for i := range steps {
		spec.Steps = append(spec.Steps, v1alpha1.WorkflowStep{WorkflowStepBase: v1alpha1.WorkflowStepBase{
			Name: fmt.Sprintf("call-%d", i), Type: "request",
			Properties: &kruntime.RawExtension{Raw: fmt.Appendf(nil, `{"url":%q}`, fmt.Sprintf("%s/ok/%d", srv.URL, i))},
			Outputs:    v1alpha1.StepOutputs{{Name: fmt.Sprintf("ok-%d", i), ValueFrom: "response.ok"}},
		}})
		switch mode {
		case "miss":
			spec.Steps[i].Cache = &v1alpha1.StepCache{Key: "[parameter.url, context.name]", MaxAge: "1h"}
		case "cached":
			spec.Steps[i].Cache = &v1alpha1.StepCache{Key: "parameter.url", MaxAge: "1h"}
		}
	}
	batch := func(prefix string, n int) {
		f := &finishes{want: n, all: make(chan struct{}), finished: map[engine.Key]bool{}}
		obs.mu.Lock()
		obs.f = f
		obs.mu.Unlock()
		for i := range n {
			obj := &v1alpha1.WorkflowRun{Spec: v1alpha1.WorkflowRunSpec{WorkflowSpec: spec.DeepCopy(),
				Mode: &v1alpha1.WorkflowExecuteMode{Steps: v1alpha1.ModeDAG}}}
			obj.Name, obj.Namespace = fmt.Sprintf("%s-%d", prefix, i), "default"
			if err := st.Create(ctx, &engine.Run{Object: obj}, store.CreateNew); err != nil {
				b.Fatal(err)
			}
			eng.Enqueue(engine.Key{Namespace: "default", Name: obj.Name})
		}
		select {
		case <-f.all:
		case <-time.After(10 * time.Minute):
			b.Fatalf("not every one of %d runs finished", n)
		}
	}
	batch("warm", 1) // the evaluators started, the definition compiled, and the entries written
	var cpu time.Duration
	for i := 0; b.Loop(); i++ {
		if mode == "miss" {
			b.StopTimer()
			if _, err := cache.DropAll(ctx, "default"); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		before := cpuTime(b)
		batch(fmt.Sprintf("run-%d", i), runs)
		cpu += cpuTime(b) - before
	}
	entries, err := cache.List(ctx, "default")
	if want := map[string]int{"plain": 0, "miss": runs * steps, "cached": steps}[mode]; err != nil || len(entries) != want {
		b.Fatalf("%d entries (%v), want %d", len(entries), err, want)
	}
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N*runs*steps), "cpu-µs/step")
}
