package events_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/events"
)

// received is one POST a test sink got.
type received struct {
	header http.Header
	body   []byte
}

// httpSink is a real HTTP server recording what is posted to it; status answers each POST.
func httpSink(t *testing.T, status func(n int) int) (*httptest.Server, func() []received) {
	var mu sync.Mutex
	var got []received
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		n := len(got)
		got = append(got, received{header: r.Header.Clone(), body: body})
		mu.Unlock()
		w.WriteHeader(status(n))
	}))
	t.Cleanup(srv.Close)
	return srv, func() []received {
		mu.Lock()
		defer mu.Unlock()
		return append([]received(nil), got...)
	}
}

// transitions are the saves of a run of two steps, as the engine reports them.
func transitions() []*engine.Run {
	t0 := metav1.NewTime(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	mk := func(version int64, phase v1alpha1.WorkflowRunPhase, a, b v1alpha1.WorkflowStepPhase) *engine.Run {
		obj := &v1alpha1.WorkflowRun{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "build-1", UID: "u-1"}}
		obj.Spec.WorkflowRef = "build"
		obj.Status = v1alpha1.WorkflowRunStatus{Phase: phase, StartTime: t0, Finished: phase.Finished(),
			Steps: []v1alpha1.WorkflowStepStatus{
				{StepStatus: v1alpha1.StepStatus{ID: "a1", Name: "compile", Type: "http", Phase: a}},
				{StepStatus: v1alpha1.StepStatus{ID: "b1", Name: "publish", Type: "notification", Phase: b}},
			}}
		return &engine.Run{Object: obj, Version: version}
	}
	return []*engine.Run{
		mk(1, v1alpha1.RunExecuting, v1alpha1.StepRunning, v1alpha1.StepPending),
		mk(2, v1alpha1.RunExecuting, v1alpha1.StepSucceeded, v1alpha1.StepRunning),
		mk(2, v1alpha1.RunExecuting, v1alpha1.StepSucceeded, v1alpha1.StepRunning), // told twice
		mk(3, v1alpha1.RunSucceeded, v1alpha1.StepSucceeded, v1alpha1.StepSucceeded),
	}
}

var wantTypes = []string{
	"dev.stepflow.run.started", "dev.stepflow.step.running",
	"dev.stepflow.step.succeeded", "dev.stepflow.step.running",
	"dev.stepflow.step.succeeded", "dev.stepflow.run.succeeded",
}

func emit(t *testing.T, opts events.Options) *events.Emitter {
	t.Helper()
	e, err := events.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, run := range transitions() {
		e.RunChanged(run)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	e.Close(ctx)
	return e
}

func TestHTTPSinkBinaryAndStructured(t *testing.T) {
	bin, gotBin := httpSink(t, func(int) int { return http.StatusAccepted })
	str, gotStr := httpSink(t, func(int) int { return http.StatusOK })
	emit(t, events.Options{Sinks: []string{bin.URL + "/in", str.URL + "/in#structured"}})

	var types []string
	for _, r := range gotBin() {
		if r.header.Get("Ce-Specversion") != "1.0" || r.header.Get("Ce-Source") != "stepflow.dev/runs/team" ||
			r.header.Get("Ce-Subject") != "team/build-1" || r.header.Get("Ce-Id") == "" {
			t.Errorf("binary mode headers: %v", r.header)
		}
		if ct := r.header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("binary Content-Type %q", ct)
		}
		var data events.RunSummary
		if err := json.Unmarshal(r.body, &data); err != nil || data.Name != "build-1" || data.Template != "build" {
			t.Errorf("binary data %s: %v", r.body, err)
		}
		types = append(types, r.header.Get("Ce-Type"))
	}
	if strings.Join(types, " ") != strings.Join(wantTypes, " ") {
		t.Errorf("binary types:\n got %v\nwant %v", types, wantTypes)
	}

	types = nil
	for _, r := range gotStr() {
		if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/cloudevents+json") {
			t.Errorf("structured Content-Type %q", ct)
		}
		var ev struct {
			SpecVersion, ID, Source, Type, Subject string
			Data                                   events.RunSummary
		}
		if err := json.Unmarshal(r.body, &ev); err != nil || ev.SpecVersion != "1.0" || ev.Data.Namespace != "team" {
			t.Errorf("structured event %s: %v", r.body, err)
		}
		if ev.Type == "dev.stepflow.step.succeeded" && ev.Data.Step == nil {
			t.Errorf("a step event without its step: %s", r.body)
		}
		types = append(types, ev.Type)
	}
	if strings.Join(types, " ") != strings.Join(wantTypes, " ") {
		t.Errorf("structured types:\n got %v\nwant %v", types, wantTypes)
	}
}

func TestHTTPSinkRetriesThenDrops(t *testing.T) {
	// The first two POSTs fail: the first event gets through on its third try.
	srv, got := httpSink(t, func(n int) int {
		if n < 2 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	reg := prometheus.NewRegistry()
	retry := events.Retry{Initial: 10 * time.Millisecond, Max: 20 * time.Millisecond, Tries: 3}
	emit(t, events.Options{Sinks: []string{srv.URL}, Retry: retry, Metrics: reg})
	if n := len(got()); n != len(wantTypes)+2 {
		t.Errorf("%d POSTs, want %d", n, len(wantTypes)+2)
	}
	if first := got()[2].header.Get("Ce-Type"); first != events.RunStarted {
		t.Errorf("the third POST is %s, want the retried %s", first, events.RunStarted)
	}

	// A sink that never answers well: every event is dropped after its tries, and counted.
	down, _ := httpSink(t, func(int) int { return http.StatusInternalServerError })
	reg = prometheus.NewRegistry()
	emit(t, events.Options{Sinks: []string{down.URL}, Retry: retry, Metrics: reg})
	if n := testutil.ToFloat64(mustCounter(t, reg, "stepflow_events_dropped_total")); n != float64(len(wantTypes)) {
		t.Errorf("dropped %v events, want %d", n, len(wantTypes))
	}
}

func TestQueueFullDropsWithoutBlocking(t *testing.T) {
	// The sink holds every POST until the test ends: the engine's calls must not wait for it.
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	reg := prometheus.NewRegistry()
	e, err := events.New(events.Options{Sinks: []string{srv.URL}, QueueSize: 2, Metrics: reg,
		Retry: events.Retry{Initial: time.Millisecond, Max: time.Millisecond, Tries: 1}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		for _, run := range transitions() {
			e.RunChanged(run)
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("RunChanged blocked on a stuck sink")
	}
	// One event is being sent, two wait: the other three were dropped.
	dropped := testutil.ToFloat64(mustCounter(t, reg, "stepflow_events_dropped_total"))
	if dropped < 3 {
		t.Errorf("dropped %v events, want at least 3", dropped)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	e.Close(ctx) // returns at ctx's end although the sink still holds a POST
}

func TestBadSinks(t *testing.T) {
	for _, sink := range []string{"ftp://host/x", "nats://host:4222", "http://host/x#sideways", "no-scheme"} {
		if _, err := events.New(events.Options{Sinks: []string{sink}}); err == nil {
			t.Errorf("%s: no error", sink)
		}
	}
}

// TestNATSSink publishes to a real nats-server (Debian's nats-server) started on a free port.
func TestNATSSink(t *testing.T) {
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		t.Fatal("nats-server is not installed (scripts/test.sh installs it)")
	}
	port := freePort(t)
	cmd := exec.CommandContext(t.Context(), bin, "-a", "127.0.0.1", "-p", fmt.Sprint(port))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	var sub *nats.Conn
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if sub, err = nats.Connect(url); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nats-server did not start: %v", err)
		}
	}
	defer sub.Close()
	msgs := make(chan *nats.Msg, 64)
	if _, err := sub.ChanSubscribe("stepflow.runs", msgs); err != nil {
		t.Fatal(err)
	}
	if err := sub.Flush(); err != nil {
		t.Fatal(err)
	}
	emit(t, events.Options{Sinks: []string{url + "/stepflow.runs"}})
	var types []string
	for len(types) < len(wantTypes) {
		select {
		case m := <-msgs:
			var ev struct {
				SpecVersion, Type, Subject string
				Data                       events.RunSummary
			}
			if err := json.Unmarshal(m.Data, &ev); err != nil || ev.SpecVersion != "1.0" || ev.Subject != "team/build-1" {
				t.Errorf("message %s: %v", m.Data, err)
			}
			if ct := m.Header.Get("Content-Type"); ct != "application/cloudevents+json" {
				t.Errorf("Content-Type %q", ct)
			}
			types = append(types, ev.Type)
		case <-time.After(10 * time.Second):
			t.Fatalf("got %v, then nothing", types)
		}
	}
	if strings.Join(types, " ") != strings.Join(wantTypes, " ") {
		t.Errorf("types:\n got %v\nwant %v", types, wantTypes)
	}
}

func freePort(t *testing.T) int {
	var lc net.ListenConfig
	l, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port
}

// mustCounter is the sum of the counter family name in reg, as a collector.
func mustCounter(t *testing.T, reg *prometheus.Registry, name string) prometheus.Collector {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, f := range fams {
		if f.GetName() == name {
			for _, m := range f.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "sum"})
	c.Add(sum)
	return c
}

// TestRunFinishedBeforeFollowedEmitsNothing: a process that first sees a run already finished
// (it finished under another process) does not emit its events again.
func TestRunFinishedBeforeFollowedEmitsNothing(t *testing.T) {
	srv, got := httpSink(t, func(int) int { return http.StatusOK })
	e, err := events.New(events.Options{Sinks: []string{srv.URL}})
	if err != nil {
		t.Fatal(err)
	}
	run := transitions()[3]
	run.Object.Status.EndTime = metav1.NewTime(run.Object.Status.StartTime.Add(time.Minute))
	e.RunChanged(run)
	e.Close(context.Background())
	if n := len(got()); n != 0 {
		t.Errorf("%d events for a run finished before it was followed", n)
	}
}
