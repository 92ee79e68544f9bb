package bench

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/provider/builtin"
	httpprovider "github.com/stepflow/stepflow/provider/http"
	"github.com/stepflow/stepflow/step"
	"github.com/stepflow/stepflow/store"
	"github.com/stepflow/stepflow/store/sqlite"
)

// largeTemplates: make outputs three strings of about 0.9 MB (v0, v1, v2), different for
// each seed; the other types are the built-in ones.
type largeTemplates struct{ builtins }

func (d largeTemplates) Template(ctx context.Context, ns, typ string) (string, error) {
	if typ == "make" {
		return `
import "strings"
parameter: {seed: string}
v0: strings.Repeat(parameter.seed+"0", 450000)
v1: strings.Repeat(parameter.seed+"1", 450000)
v2: strings.Repeat(parameter.seed+"2", 450000)
`, nil
	}
	return d.builtins.Template(ctx, ns, typ)
}

// finished tells when the run finished.
type finished struct {
	once sync.Once
	done chan struct{}
}

func (f *finished) RunChanged(run *engine.Run) {
	if run.Object.Status.Finished {
		f.once.Do(func() { close(f.done) })
	}
}

// savesCounted is the SQLite store measuring the engine's saves (its transitions): how many,
// and the bytes the process wrote during each (the run is the only one, so its save is most
// of it).
type savesCounted struct {
	*sqlite.Store
	mu      sync.Mutex
	written []uint64
}

func (s *savesCounted) Save(ctx context.Context, run *engine.Run, logs []engine.LogEntry) error {
	before, _ := writtenBytes()
	err := s.Store.Save(ctx, run, logs)
	after, _ := writtenBytes()
	s.mu.Lock()
	s.written = append(s.written, after-before)
	s.mu.Unlock()
	return err
}

// BenchmarkLargeOutputs is issue 19's run (item 12) on the embedded SQLite store, every
// transition durable: steps make 30 outputs of 0.9 MB, then 20 trivial steps follow. Before
// large values were kept apart from the run's record, every one of its transitions rewrote
// the 27 MB. Two forms: the outputs as run variables (outputs), and as the outputs of a loop's
// ten iterations (loop: each iteration's outputs stay in the loop's record, besides the list
// they are gathered into). It reports the run's wall time, the bytes the process wrote per
// transition (write(2) calls, /proc/self/io wchar: the database, its WAL and its checkpoints),
// the CPU per transition and the process's peak RSS (the CUE evaluators' own processes aside).
//
//	go test -run '^$' -bench LargeOutputs -benchtime 1x ./bench/
func BenchmarkLargeOutputs(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"ok":true}`))
	}))
	defer srv.Close()
	// Trivial steps that call a local server: a step of pure CUE is run without a save of its
	// own (the engine's quick steps), one doing I/O is saved as it starts and as it ends.
	var trivial strings.Builder
	for i := range 20 {
		fmt.Fprintf(&trivial, "- {name: trivial%d, type: request, properties: {url: %q}}\n", i, srv.URL+"/ok")
	}
	var outputs strings.Builder
	for i := range 10 {
		fmt.Fprintf(&outputs, "- {name: make%d, type: make, properties: {seed: %q}, outputs: [{name: out%d0, valueFrom: v0}, {name: out%d1, valueFrom: v1}, {name: out%d2, valueFrom: v2}]}\n",
			i, string(rune('a'+i)), i, i, i)
	}
	loop := `- name: make
  type: make
  forEach: {items: [a, b, c, d, e, f, g, h, i, j]}
  inputs: [{from: item, parameterKey: seed}]
  outputs: [{name: x0, valueFrom: v0}, {name: x1, valueFrom: v1}, {name: x2, valueFrom: v2}]
`
	for _, c := range []struct{ name, steps string }{
		{"outputs", outputs.String() + trivial.String()},
		{"loop", loop + trivial.String()},
	} {
		b.Run(c.name, func(b *testing.B) {
			for range b.N {
				largeOnce(b, "steps:\n"+c.steps)
			}
		})
	}
}

func largeOnce(b *testing.B, specYAML string) {
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
	httpprovider.Register(reg, httpprovider.Options{Client: &http.Client{}})
	runner := step.NewRunner(step.Options{Registry: reg, Definitions: largeTemplates{}})
	obs := &finished{done: make(chan struct{})}
	counted := &savesCounted{Store: st}
	eng := engine.New(engine.Options{Store: counted, Observer: obs, Runner: runner, Conditions: runner})

	var spec v1alpha1.WorkflowSpec
	if err := yaml.Unmarshal([]byte(specYAML), &spec); err != nil {
		b.Fatal(err)
	}
	obj := &v1alpha1.WorkflowRun{Spec: v1alpha1.WorkflowRunSpec{WorkflowSpec: &spec}}
	obj.Name, obj.Namespace = "large", "default"
	if err := st.Create(ctx, &engine.Run{Object: obj}, store.CreateNew); err != nil {
		b.Fatal(err)
	}
	key := engine.Key{Namespace: "default", Name: "large"}

	rss := startRSS(b)
	cpuBefore := cpuTime(b)
	wrote := mustWritten(b)
	engCtx, cancel := context.WithCancel(ctx)
	stopped := make(chan struct{})
	start := time.Now()
	go func() { _ = eng.Start(engCtx); close(stopped) }()
	eng.Enqueue(key)
	select {
	case <-obs.done:
	case <-time.After(10 * time.Minute):
		b.Fatal("the run did not finish")
	}
	took := time.Since(start)
	cpu := cpuTime(b) - cpuBefore
	written := mustWritten(b) - wrote
	counted.mu.Lock()
	perSave := slices.Clone(counted.written)
	counted.mu.Unlock()
	slices.Sort(perSave)
	saves := len(perSave)
	cancel()
	<-stopped

	run, err := st.Load(ctx, key)
	if err != nil {
		b.Fatal(err)
	}
	if phase := run.Object.Status.Phase; phase != v1alpha1.RunSucceeded {
		b.Fatalf("the run %s: %s (%+v)", phase, run.Object.Status.Message, run.Object.Status.Steps[0])
	}
	record, err := st.RecordBytes(ctx, key)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(took.Seconds(), "s/run")
	b.ReportMetric(float64(saves), "transitions")
	b.ReportMetric(float64(written)/float64(saves)/1024, "written-KB/transition")
	b.ReportMetric(float64(perSave[saves/2])/1024, "p50-save-written-KB")
	b.ReportMetric(float64(cpu.Milliseconds())/float64(saves), "cpu-ms/transition")
	b.ReportMetric(float64(record)/1024, "record-KB")
	rss.report(b, 0)
}

// mustWritten is writtenBytes, failing b on an error.
func mustWritten(b *testing.B) uint64 {
	b.Helper()
	n, err := writtenBytes()
	if err != nil {
		b.Fatal(err)
	}
	return n
}

// writtenBytes is what the process has passed to write(2) and its kin so far (wchar of
// /proc/self/io).
func writtenBytes() (uint64, error) {
	data, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(data)) {
		if rest, ok := strings.CutPrefix(line, "wchar:"); ok {
			return strconv.ParseUint(strings.TrimSpace(rest), 10, 64)
		}
	}
	return 0, errors.New("no wchar in /proc/self/io")
}
