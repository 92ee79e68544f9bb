package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/store"
	"github.com/stepflow/stepflow/store/sqlite"
)

// keyCrashWorkflow is a run of the concurrency key test, $RUN and $SERVER to be filled: one
// request that the test server answers only once the test lets it, on a key of limit 1.
const keyCrashWorkflow = `
apiVersion: core.oam.dev/v1alpha1
kind: WorkflowRun
metadata:
  name: $RUN
spec:
  concurrency: {key: '"deploy"', limit: 1}
  workflowSpec:
    steps:
    - name: deploy
      type: request
      properties: {url: "$SERVER/hold/$RUN"}
`

// holdServer answers GET /hold/RUN once it is opened, and notes when each request came and
// when it was answered, in one sequence.
type holdServer struct {
	mu     sync.Mutex
	seq    int
	opened chan struct{}
	// came and answered are the sequence numbers of each run's requests.
	came, answered map[string][]int
	arrived        chan string
}

func (h *holdServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	run, ok := strings.CutPrefix(r.URL.Path, "/hold/")
	if !ok {
		http.NotFound(w, r)
		return
	}
	h.mu.Lock()
	h.seq++
	h.came[run] = append(h.came[run], h.seq)
	h.mu.Unlock()
	select {
	case h.arrived <- run:
	default:
	}
	select {
	case <-h.opened:
	case <-r.Context().Done(): // the process that asked died
		return
	}
	h.mu.Lock()
	h.seq++
	h.answered[run] = append(h.answered[run], h.seq)
	h.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"ok":true}`))
}

// keyCrash is the state a concurrency key test leaves once it has killed `stepflow run`:
// holder holds the key's slot, its request under way when it was killed, and waiter waits.
type keyCrash struct {
	hs             *holdServer
	st             *sqlite.Store
	slots          *store.Slots
	holder, waiter string
	start          func(args ...string) *process
}

// killWhileHeld starts two runs on one concurrency key of limit 1 in a real `stepflow run` on
// the embedded store, and kills it (SIGKILL) once one run holds the slot, its request under
// way, and the other has been saved queued; it checks that the key's record says so.
func killWhileHeld(t *testing.T) *keyCrash {
	t.Helper()
	exe, err := exec.LookPath("stepflow-exe")
	if err != nil {
		t.Fatal(err)
	}
	hs := &holdServer{opened: make(chan struct{}), came: map[string][]int{}, answered: map[string][]int{}, arrived: make(chan string, 16)}
	srv := httptest.NewServer(hs)
	t.Cleanup(srv.Close)

	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	var docs []string
	for _, name := range []string{"first", "second"} {
		docs = append(docs, strings.NewReplacer("$RUN", name, "$SERVER", srv.URL).Replace(keyCrashWorkflow))
	}
	file := filepath.Join(dir, "runs.yaml")
	if err := os.WriteFile(file, []byte(strings.Join(docs, "---")), 0o644); err != nil {
		t.Fatal(err)
	}
	start := func(args ...string) *process {
		args = append([]string{"--data-dir", data, "--wait-backoff", "10ms", "--retry-backoff", "10ms"}, args...)
		return startProcess(t, exe, args...)
	}

	p := start("run", file)
	var holder string
	select {
	case holder = <-hs.arrived:
	case <-p.exited:
		t.Fatalf("stepflow run ended before a request was made:\n%s", p.output())
	case <-time.After(2 * time.Minute):
		t.Fatal("no request within 2 minutes")
	}
	waiter := "first"
	if holder == "first" {
		waiter = "second"
	}
	st, err := sqlite.Open(t.Context(), sqlite.Options{Path: filepath.Join(data, "stepflow.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	slots := &store.Slots{Records: st}
	// The waiting run is saved queued once it has asked; the holder's request is under way.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		run, err := st.Load(t.Context(), engine.Key{Namespace: "default", Name: waiter})
		if err == nil && run.Object.Status.Phase == v1alpha1.RunQueued {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %s was not queued within 2 minutes (%v)", waiter, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-p.exited
	if !isKilled(p.err) {
		t.Fatalf("stepflow run ended with %v, not by SIGKILL:\n%s", p.err, p.output())
	}
	want := []engine.SlotHolder{
		{Namespace: "default", Key: "deploy", Run: holder, Held: true},
		{Namespace: "default", Key: "deploy", Run: waiter},
	}
	if got := holders(t.Context(), t, slots); !slices.Equal(got, want) {
		t.Fatalf("after the kill, the slots are %+v, want %+v", got, want)
	}
	for run, s := range runStates(t.Context(), t, st, holder, waiter) {
		if s.Finished {
			t.Fatalf("run %s finished before the kill: %s", run, s.Phase)
		}
	}
	return &keyCrash{hs: hs, st: st, slots: slots, holder: holder, waiter: waiter, start: start}
}

// recoverAll runs `stepflow recover` and waits for it to end well.
func (k *keyCrash) recoverAll(t *testing.T) {
	t.Helper()
	r := k.start("recover")
	select {
	case <-r.exited:
	case <-time.After(3 * time.Minute):
		_ = r.cmd.Process.Kill()
		t.Fatalf("stepflow recover did not end within 3 minutes:\n%s", r.output())
	}
	if r.err != nil {
		t.Fatalf("stepflow recover ended with %v:\n%s", r.err, r.output())
	}
}

// TestConcurrencyKeyCrashRecovery kills `stepflow run` while one run holds the slot of a key of
// limit 1 and another waits (killWhileHeld). `stepflow recover` takes both up: the run
// holding the slot goes on with it (its step tried again), gives it up as it ends, and the run
// waiting takes it; its request comes only after the first run's last one was answered. At the
// end both runs have succeeded and no run holds a slot or waits for one.
func TestConcurrencyKeyCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("runs and kills a stepflow process")
	}
	k := killWhileHeld(t)
	hs, holder, waiter := k.hs, k.holder, k.waiter
	close(hs.opened)
	k.recoverAll(t)
	for run, s := range runStates(t.Context(), t, k.st, holder, waiter) {
		if s.Phase != v1alpha1.RunSucceeded {
			t.Errorf("run %s: %s: %s", run, s.Phase, s.Message)
		}
	}
	if got := holders(t.Context(), t, k.slots); len(got) != 0 {
		t.Errorf("after recover, slots are still held or waited for: %+v", got)
	}
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if len(hs.came[holder]) < 2 || len(hs.answered[holder]) == 0 {
		t.Fatalf("run %s holding the slot made %d requests, %d answered; want its step tried again after the kill",
			holder, len(hs.came[holder]), len(hs.answered[holder]))
	}
	if len(hs.came[waiter]) == 0 || hs.came[waiter][0] < slices.Max(hs.answered[holder]) {
		t.Errorf("run %s made its request (at %v) before run %s's was answered (at %v): both ran at once",
			waiter, hs.came[waiter], holder, hs.answered[holder])
	}
}

// TestConcurrencyKeySweptAtRecover kills `stepflow run` while one run holds the slot of a key
// of limit 1 and another waits (killWhileHeld), then deletes the run holding the slot from
// the store, as the server's DELETE of a run on the same data directory would (the store's
// own Delete, not the API): its slot is left held by a run that is gone. `stepflow recover`
// gives it up as it starts (the sweep), and the waiting run takes it and succeeds; no slot
// is left held.
func TestConcurrencyKeySweptAtRecover(t *testing.T) {
	if testing.Short() {
		t.Skip("runs and kills a stepflow process")
	}
	k := killWhileHeld(t)
	if err := k.st.Delete(t.Context(), engine.Key{Namespace: "default", Name: k.holder}); err != nil {
		t.Fatal(err)
	}
	close(k.hs.opened)
	k.recoverAll(t)
	for run, s := range runStates(t.Context(), t, k.st, k.waiter) {
		if s.Phase != v1alpha1.RunSucceeded {
			t.Errorf("run %s: %s: %s", run, s.Phase, s.Message)
		}
	}
	if got := holders(t.Context(), t, k.slots); len(got) != 0 {
		t.Errorf("after recover, slots are still held or waited for: %+v", got)
	}
}

// holders lists the runs holding a slot, then those waiting, as the store has them.
func holders(ctx context.Context, t *testing.T, slots *store.Slots) []engine.SlotHolder {
	t.Helper()
	hs, err := slots.Holders(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return hs
}

// runStates reads the status of the runs named, in namespace default.
func runStates(ctx context.Context, t *testing.T, runs runLoader, names ...string) map[string]v1alpha1.WorkflowRunStatus {
	t.Helper()
	out := map[string]v1alpha1.WorkflowRunStatus{}
	for _, name := range names {
		run, err := runs.Load(ctx, engine.Key{Namespace: "default", Name: name})
		if err != nil {
			t.Fatal(err)
		}
		out[name] = run.Object.Status
	}
	return out
}
