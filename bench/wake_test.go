package bench

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	kruntime "k8s.io/apimachinery/pkg/runtime"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/provider/builtin"
	"github.com/stepflow/stepflow/step"
	"github.com/stepflow/stepflow/store"
	"github.com/stepflow/stepflow/store/sqlite"
)

// wakes records, per run, when it was suspended and when the start of the step after the
// suspend was saved and the step launched.
type wakes struct {
	mu        sync.Mutex
	suspended map[engine.Key]bool
	allHeld   chan struct{}
	want      int
	started   map[engine.Key]time.Time
	allGone   chan struct{}
}

func (w *wakes) RunChanged(run *engine.Run) {
	st := &run.Object.Status
	w.mu.Lock()
	defer w.mu.Unlock()
	k := run.Key()
	if st.Suspend && !w.suspended[k] {
		w.suspended[k] = true
		if len(w.suspended) == w.want {
			close(w.allHeld)
		}
	}
	if len(st.Steps) == 2 && !st.Steps[1].FirstExecuteTime.IsZero() {
		if _, seen := w.started[k]; !seen {
			// Told once the start is durable and the step launched: the time the user sees.
			w.started[k] = time.Now()
			if len(w.started) == w.want {
				close(w.allGone)
			}
		}
	}
}

// BenchmarkWakeUp suspends N runs at a suspend step, resumes them all at once (64 callers), and
// reports the p50 and p99 time from each run's resume being asked for (Engine.Operate called) to its next step starting,
// on the SQLite store with every transition durable. Issue 7's figure is runs=10000; runs=1000
// is go run ./bench/table's quick size.
//
//	go test -run '^$' -bench 'WakeUp/runs=10000$' -benchtime 1x ./bench/
func BenchmarkWakeUp(b *testing.B) {
	for _, runs := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("runs=%d", runs), func(b *testing.B) {
			for b.Loop() {
				wakeUp(b, runs)
			}
		})
	}
}

func wakeUp(b *testing.B, runs int) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, sqlite.Options{Path: filepath.Join(b.TempDir(), "bench.db")})
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		if err := st.Close(); err != nil {
			b.Error(err)
		}
	}()
	reg := step.NewRegistry()
	builtin.Register(reg)
	runner := step.NewRunner(step.Options{Registry: reg, Definitions: builtins{}, InProcess: inProcess()})
	obs := &wakes{want: runs, suspended: map[engine.Key]bool{}, allHeld: make(chan struct{}),
		started: map[engine.Key]time.Time{}, allGone: make(chan struct{})}
	eng := engine.New(engine.Options{Store: st, Runner: runner, Conditions: runner, Observer: obs})
	spec := v1alpha1.WorkflowSpec{Steps: []v1alpha1.WorkflowStep{
		{WorkflowStepBase: v1alpha1.WorkflowStepBase{Name: "approve", Type: "suspend"}},
		{WorkflowStepBase: v1alpha1.WorkflowStepBase{Name: "go", Type: "print-message-in-status",
			Properties: &kruntime.RawExtension{Raw: []byte(`{"message":"approved"}`)}}},
	}}
	keys := make([]engine.Key, runs)
	for i := range keys {
		obj := &v1alpha1.WorkflowRun{Spec: v1alpha1.WorkflowRunSpec{WorkflowSpec: spec.DeepCopy()}}
		obj.Name, obj.Namespace = fmt.Sprintf("run-%d", i), "default"
		if err := st.Create(ctx, &engine.Run{Object: obj}, store.CreateNew); err != nil {
			b.Fatal(err)
		}
		keys[i] = engine.Key{Namespace: obj.Namespace, Name: obj.Name}
	}
	engCtx, cancel := context.WithCancel(ctx)
	stopped := make(chan struct{})
	go func() { _ = eng.Start(engCtx); close(stopped) }()
	defer func() { cancel(); <-stopped }()
	for _, k := range keys {
		eng.Enqueue(k)
	}
	select {
	case <-obs.allHeld:
	case <-time.After(5 * time.Minute):
		b.Fatal("not every run reached its suspend step")
	}

	resumed := make([]time.Time, runs)
	jobs := make(chan int)
	var wg sync.WaitGroup
	start := time.Now()
	for range 64 {
		wg.Go(func() {
			for i := range jobs {
				resumed[i] = time.Now()
				if _, err := eng.Operate(ctx, keys[i], engine.Operation{Kind: engine.OpResume}); err != nil {
					b.Error(err)
				}
			}
		})
	}
	for i := range keys {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	resumeAll := time.Since(start)
	select {
	case <-obs.allGone:
	case <-time.After(5 * time.Minute):
		b.Fatal("not every resumed run started its next step")
	}
	obs.mu.Lock()
	lat := make([]time.Duration, 0, runs)
	for i, k := range keys {
		lat = append(lat, obs.started[k].Sub(resumed[i]))
	}
	obs.mu.Unlock()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-wake-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-wake-ms")
	b.ReportMetric(resumeAll.Seconds(), "s-to-resume-all")
}
