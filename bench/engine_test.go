// Package bench measures stepflow end to end: the engine with the real CUE runtime, the embedded
// SQLite store with every transition durable, and a real local HTTP server the steps call.
//
//	go test -run '^$' -bench . -benchtime 1x ./bench/
package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	kruntime "k8s.io/apimachinery/pkg/runtime"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/cputime"
	"github.com/stepflow/stepflow/definitions"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/provider/builtin"
	httpprovider "github.com/stepflow/stepflow/provider/http"
	"github.com/stepflow/stepflow/step"
	"github.com/stepflow/stepflow/store"
	"github.com/stepflow/stepflow/store/sqlite"
	"github.com/stepflow/stepflow/telemetry"
)

type builtins struct{}

func (builtins) Template(_ context.Context, _, typ string) (string, error) {
	if t, ok := definitions.Template(typ); ok {
		return t, nil
	}
	return "", fmt.Errorf("%s: %w", typ, step.ErrUnknownType)
}

// finishes counts finished runs and, from their status, the gaps between one step finishing and
// the next one starting.
type finishes struct {
	mu       sync.Mutex
	want     int
	all      chan struct{}
	finished map[engine.Key]bool
	gaps     []time.Duration
}

func (f *finishes) RunChanged(run *engine.Run) {
	st := &run.Object.Status
	if !st.Finished {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.finished[run.Key()] {
		return
	}
	f.finished[run.Key()] = true
	for i := 1; i < len(st.Steps); i++ {
		f.gaps = append(f.gaps, st.Steps[i].FirstExecuteTime.Sub(st.Steps[i-1].LastExecuteTime.Time))
	}
	if len(f.finished) == f.want {
		close(f.all)
	}
}

// BenchmarkEmbeddedThroughput runs many concurrent runs of five request steps each to a local
// HTTP server, on the SQLite store with every transition durable. It reports runs/s,
// transitions/s, the CPU per transition, the p50 and p99 gap from one step finishing to the next
// starting, the peak heap per run, the process's peak RSS and its growth per in-flight run.
//
//	go test -run '^$' -bench 'EmbeddedThroughput/runs=10000$' -benchtime 1x ./bench/
func BenchmarkEmbeddedThroughput(b *testing.B) {
	for _, runs := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("runs=%d", runs), func(b *testing.B) {
			for b.Loop() {
				throughput(b, runs, 5, false)
			}
		})
	}
}

// BenchmarkEmbeddedThroughputTelemetry is BenchmarkEmbeddedThroughput's 1,000 runs with the
// telemetry a server wires: every metric (observer, store, queue and CUE hooks) and a trace
// per run exported over OTLP/HTTP to a local receiver that discards it. Compare with
// BenchmarkEmbeddedThroughput/runs=1000 for what the telemetry costs:
//
//	go test -run '^$' -bench 'EmbeddedThroughput(/runs=1000$|Telemetry)' -benchtime 1x -count 3 ./bench/
func BenchmarkEmbeddedThroughputTelemetry(b *testing.B) {
	for b.Loop() {
		throughput(b, 1000, 5, true)
	}
}

// withTelemetry wires Metrics and a Tracer exporting to a local OTLP receiver into opts and
// ropts; the returned func flushes the spans and stops the receiver.
func withTelemetry(b *testing.B, opts *engine.Options, ropts *step.Options) func() {
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	tp, err := telemetry.OTLP(context.Background(), collector.URL, false)
	if err != nil {
		b.Fatal(err)
	}
	m := telemetry.NewMetrics(prometheus.NewRegistry())
	opts.Store = m.Store(opts.Store)
	opts.Observer = engine.Observers{opts.Observer, m, telemetry.NewTracer(tp)}
	opts.QueueObserver = m
	ropts.ObserveEvaluation = m.ObserveEvaluation
	return func() {
		if err := tp.Shutdown(context.Background()); err != nil {
			b.Error(err)
		}
		collector.Close()
	}
}

func throughput(b *testing.B, runs, steps int, withTel bool) {
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
	defer func() {
		if err := st.Close(); err != nil {
			b.Error(err)
		}
	}()
	reg := step.NewRegistry()
	builtin.Register(reg)
	httpprovider.Register(reg, httpprovider.Options{Client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}})
	ropts := step.Options{Registry: reg, Definitions: builtins{}, InProcess: inProcess(), Evaluators: evaluators()}
	obs := &finishes{want: runs, all: make(chan struct{}), finished: map[engine.Key]bool{}}
	opts := engine.Options{Store: st, Observer: obs}
	if withTel {
		defer withTelemetry(b, &opts, &ropts)()
	}
	runner := step.NewRunner(ropts)
	opts.Runner, opts.Conditions = runner, runner
	eng := engine.New(opts)

	var spec v1alpha1.WorkflowSpec
	for i := range steps {
		spec.Steps = append(spec.Steps, v1alpha1.WorkflowStep{WorkflowStepBase: v1alpha1.WorkflowStepBase{
			Name: fmt.Sprintf("call-%d", i), Type: "request",
			Properties: &kruntime.RawExtension{Raw: fmt.Appendf(nil, `{"url":%q}`, srv.URL+"/ok")},
		}})
	}
	var keys []engine.Key
	for i := range runs {
		obj := &v1alpha1.WorkflowRun{Spec: v1alpha1.WorkflowRunSpec{WorkflowSpec: spec.DeepCopy()}}
		obj.Name, obj.Namespace = fmt.Sprintf("run-%d", i), "default"
		if err := st.Create(ctx, &engine.Run{Object: obj}, store.CreateNew); err != nil {
			b.Fatal(err)
		}
		keys = append(keys, engine.Key{Namespace: "default", Name: obj.Name})
	}

	rss := startRSS(b)
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	cpuBefore := cpuTime(b)
	engCtx, cancel := context.WithCancel(ctx)
	stopped := make(chan struct{})
	start := time.Now()
	go func() { _ = eng.Start(engCtx); close(stopped) }()
	for _, k := range keys {
		eng.Enqueue(k)
	}
	var peak uint64
	sample := time.NewTicker(50 * time.Millisecond)
	defer sample.Stop()
wait:
	for {
		select {
		case <-obs.all:
			break wait
		case <-sample.C:
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
		case <-time.After(10 * time.Minute):
			b.Fatalf("not every one of %d runs finished", runs)
		}
	}
	took := time.Since(start)
	cpu := cpuTime(b) - cpuBefore
	cancel()
	<-stopped

	transitions := runs * (steps*2 + 1) // each step starts and finishes; the run finishes
	b.ReportMetric(float64(runs)/took.Seconds(), "runs/s")
	b.ReportMetric(float64(transitions)/took.Seconds(), "transitions/s")
	// CPU time per transition, the local HTTP server's included: unlike the rates, it does not
	// depend on what else the machine is running.
	b.ReportMetric(float64(cpu.Microseconds())/float64(transitions), "cpu-µs/transition")
	slices.Sort(obs.gaps)
	if n := len(obs.gaps); n > 0 {
		b.ReportMetric(float64(obs.gaps[n/2].Microseconds())/1000, "p50-step-gap-ms")
		b.ReportMetric(float64(obs.gaps[n*99/100].Microseconds())/1000, "p99-step-gap-ms")
	}
	if peak > before.HeapInuse {
		b.ReportMetric(float64(peak-before.HeapInuse)/float64(runs)/1024, "peak-heap-KB/run")
	}
	rss.report(b, runs)
}

// inProcess says whether the benchmarks evaluate CUE in their own process rather than in child
// evaluators: STEPFLOW_BENCH_EVAL_ISOLATION=none, as bench/table's -isolation none sets it.
func inProcess() bool { return os.Getenv("STEPFLOW_BENCH_EVAL_ISOLATION") == "none" }

// evaluators is step.Options.Evaluators for the benchmarks: STEPFLOW_BENCH_EVALUATORS, or the
// default when it is not set.
func evaluators() int {
	n, _ := strconv.Atoi(os.Getenv("STEPFLOW_BENCH_EVALUATORS"))
	return n
}

// cpuTime is the CPU time the process and its child CUE evaluators have used (package cputime).
func cpuTime(b *testing.B) time.Duration {
	d, err := cputime.Total()
	if err != nil {
		b.Fatal(err)
	}
	return d
}
