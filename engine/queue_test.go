package engine_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
)

// queueEvent is one report to a QueueObserver: Queued (taken false) or Taken.
type queueEvent struct {
	taken  bool
	depth  int
	waited time.Duration
}

// queueRecorder is a QueueObserver that records every report.
type queueRecorder struct {
	mu     sync.Mutex
	events []queueEvent
}

func (q *queueRecorder) Queued(depth int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.events = append(q.events, queueEvent{depth: depth})
}

func (q *queueRecorder) Taken(depth int, waited time.Duration) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.events = append(q.events, queueEvent{taken: true, depth: depth, waited: waited})
}

func (q *queueRecorder) snapshot() []queueEvent {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]queueEvent(nil), q.events...)
}

// finished is an Observer that signals when every run it waits for has finished.
type finished struct {
	mu   sync.Mutex
	done map[engine.Key]bool
	want int
	all  chan struct{}
}

func (f *finished) RunChanged(run *engine.Run) {
	if !run.Object.Status.Finished {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.done[run.Key()] {
		return
	}
	f.done[run.Key()] = true
	if len(f.done) == f.want {
		close(f.all)
	}
}

// TestQueueObserverSeesDepthAndWait: keys queued before the workers start are reported with
// the depth growing one by one, a key queued twice once; a worker taking them reports the depth
// left and how long the key waited; every key that joined the line is taken, and the line is
// empty at the end.
func TestQueueObserverSeesDepthAndWait(t *testing.T) {
	const runs = 3
	store := newMemStore()
	rec := &queueRecorder{}
	fin := &finished{done: map[engine.Key]bool{}, want: runs, all: make(chan struct{})}
	// Observers: both are told, in turn; the nil entry is skipped.
	var counted sync.Map
	count := observerFunc(func(run *engine.Run) { counted.Store(run.Key(), true) })
	eng := engine.New(engine.Options{
		Store: store, Runner: newScript(), Conditions: conds{}, Workers: 1, QueueObserver: rec,
		Observer: engine.Observers{fin, nil, count},
	})
	var keys []engine.Key
	for i := range runs {
		obj := &v1alpha1.WorkflowRun{Spec: v1alpha1.WorkflowRunSpec{WorkflowSpec: &v1alpha1.WorkflowSpec{Steps: []v1alpha1.WorkflowStep{
			{WorkflowStepBase: v1alpha1.WorkflowStepBase{Name: "a", Type: "ok"}},
			{WorkflowStepBase: v1alpha1.WorkflowStepBase{Name: "b", Type: "ok"}},
		}}}}
		obj.Namespace, obj.Name = "default", fmt.Sprintf("run-%d", i)
		run := &engine.Run{Object: obj}
		if err := store.Save(context.Background(), run, nil); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, run.Key())
		eng.Enqueue(run.Key())
	}
	eng.Enqueue(keys[0]) // already waiting: not queued twice
	got := rec.snapshot()
	if len(got) != runs {
		t.Fatalf("reports before the workers started: %+v, want %d Queued", got, runs)
	}
	for i, ev := range got {
		if ev.taken || ev.depth != i+1 {
			t.Fatalf("report %d before the workers started: %+v, want Queued(%d)", i, ev, i+1)
		}
	}

	const idle = 50 * time.Millisecond
	time.Sleep(idle) // the keys wait this long at least before the one worker starts
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { _ = eng.Start(ctx); close(stopped) }()
	defer func() { cancel(); <-stopped }()
	select {
	case <-fin.all:
	case <-time.After(10 * time.Second):
		t.Fatal("the runs did not finish")
	}
	for _, k := range keys {
		if _, ok := counted.Load(k); !ok {
			t.Errorf("the second observer of Observers was not told of run %s", k)
		}
	}
	// A finished run is queued no more; wait for the worker to be done with the last one.
	deadline := time.Now().Add(5 * time.Second)
	for eng.Busy(keys[0]) || eng.Busy(keys[1]) || eng.Busy(keys[2]) {
		if time.Now().After(deadline) {
			t.Fatal("the engine is still busy with finished runs")
		}
		time.Sleep(time.Millisecond)
	}

	got = rec.snapshot()
	first := got[runs]
	if !first.taken || first.depth != runs-1 || first.waited < idle {
		t.Errorf("first report after the start %+v, want Taken(%d) having waited %v or more", first, runs-1, idle)
	}
	depth, queued, taken := 0, 0, 0
	for i, ev := range got {
		if ev.taken {
			taken++
			depth--
		} else {
			queued++
			depth++
		}
		if ev.depth != depth || ev.waited < 0 {
			t.Fatalf("report %d %+v: the depth should be %d (every Queued adds one, every Taken removes one)", i, ev, depth)
		}
	}
	// Each run is taken at least three times: to start, and once after each step finished.
	if taken != queued || depth != 0 || taken < 3*runs {
		t.Errorf("%d Queued and %d Taken reports, depth %d at the end: want as many Taken as Queued, at least %d, and 0 left", queued, taken, depth, 3*runs)
	}
}

// observerFunc is an Observer made of a function.
type observerFunc func(run *engine.Run)

func (f observerFunc) RunChanged(run *engine.Run) { f(run) }
