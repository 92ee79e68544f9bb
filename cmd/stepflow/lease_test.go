package main

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/store/sqlite"
)

// leaseSteps are the steps of leaseWorkflow that POST, each to /hook/RUN-STEP but the first,
// to /$FIRST/RUN-one.
var leaseSteps = []string{"one", "two", "three"}

// leaseWorkflow is held by a suspend (when $HOLD is "true"), then makes three POSTs in a row,
// the first to a path under $FIRST (hook, gate or block: see postCounter).
const leaseWorkflow = `
apiVersion: core.oam.dev/v1alpha1
kind: WorkflowRun
metadata:
  name: $RUN
spec:
  workflowSpec:
    steps:
    - name: hold
      type: suspend
      if: "$HOLD"
    - name: one
      type: request
      properties: {url: "$SERVER/$FIRST/$RUN-one", method: POST, body: {run: $RUN}}
    - name: two
      type: request
      properties: {url: "$SERVER/hook/$RUN-two", method: POST, body: {run: $RUN}}
    - name: three
      type: request
      properties: {url: "$SERVER/hook/$RUN-three", method: POST, body: {run: $RUN}}
`

// postCounter counts the POSTs to each path, answering each after delay so that two
// processes driving a run would both be in its steps at once; the first POST to a /block/...
// path is answered only when its client goes away, a POST to /gate/... once the gate opens.
type postCounter struct {
	delay time.Duration
	mu    sync.Mutex
	posts map[string]int
	done  chan struct{} // closed when the test ends
	gate  chan struct{} // POSTs to /gate/... wait until it is closed
}

func (c *postCounter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body) // so that the request's context ends when its client goes
	n := 0
	if r.Method == http.MethodPost {
		c.mu.Lock()
		c.posts[r.URL.Path]++
		n = c.posts[r.URL.Path]
		c.mu.Unlock()
	}
	if strings.HasPrefix(r.URL.Path, "/block/") && n == 1 {
		select {
		case <-r.Context().Done():
		case <-c.done:
		}
		return
	}
	if strings.HasPrefix(r.URL.Path, "/gate/") {
		select {
		case <-c.gate:
		case <-c.done:
		}
	}
	time.Sleep(c.delay)
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprint(w, `{"ok": true}`)
}

func (c *postCounter) count(path string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.posts[path]
}

// leaseSetup is a data directory, a counting server and a way to start stepflow on them.
type leaseSetup struct {
	t      *testing.T
	exe    string
	dir    string
	data   string
	server *postCounter
	url    string
}

func newLeaseSetup(t *testing.T) *leaseSetup {
	t.Helper()
	exe, err := exec.LookPath("stepflow-exe")
	if err != nil {
		t.Fatal(err)
	}
	c := &postCounter{delay: 150 * time.Millisecond, posts: map[string]int{}, done: make(chan struct{}), gate: make(chan struct{})}
	hs := httptest.NewServer(c)
	t.Cleanup(hs.Close)
	t.Cleanup(func() { close(c.done) })
	dir := t.TempDir()
	return &leaseSetup{t: t, exe: exe, dir: dir, data: filepath.Join(dir, "data"), server: c, url: hs.URL}
}

// file writes the run's file; hold starts it held by a suspend, first is where its first step
// POSTs.
func (s *leaseSetup) file(run string, hold bool, first string) string {
	s.t.Helper()
	doc := strings.NewReplacer("$RUN", run, "$SERVER", s.url, "$HOLD", fmt.Sprint(hold), "$FIRST", first).Replace(leaseWorkflow)
	path := filepath.Join(s.dir, run+".yaml")
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		s.t.Fatal(err)
	}
	return path
}

func (s *leaseSetup) start(args ...string) *process {
	return startProcess(s.t, s.exe, append([]string{"--data-dir", s.data, "--retry-backoff", "10ms"}, args...)...)
}

// postPath is where a step of leaseWorkflow POSTs.
func postPath(run, step, first string) string {
	if step == leaseSteps[0] {
		return "/" + first + "/" + run + "-" + step
	}
	return "/hook/" + run + "-" + step
}

// check fails the test unless the run succeeded and each of its POSTs was made exactly once.
func (s *leaseSetup) check(run, first string) {
	s.t.Helper()
	st, err := sqlite.Open(s.t.Context(), sqlite.Options{Path: filepath.Join(s.data, "stepflow.db")})
	if err != nil {
		s.t.Fatal(err)
	}
	defer func() { _ = st.Close() }()
	r, err := st.Load(s.t.Context(), engine.Key{Namespace: "default", Name: run})
	if err != nil {
		s.t.Fatal(err)
	}
	if got := r.Object.Status.Phase; got != v1alpha1.RunSucceeded {
		s.t.Errorf("run %s: %s: %s", run, got, r.Object.Status.Message)
	}
	for _, step := range leaseSteps {
		n := s.server.count(postPath(run, step, first))
		tries := 0
		if rec := r.Steps[step]; rec != nil {
			tries = rec.Tries
		}
		if n != 1 || tries != 1 {
			s.t.Errorf("run %s step %s: %d POSTs for %d recorded tries, want 1 and 1 (no process crashed)", run, step, n, tries)
		}
	}
}

// waitPost waits until p has POSTed to path, failing the test if p exits first.
func (s *leaseSetup) waitPost(p *process, path string) {
	s.t.Helper()
	for s.server.count(path) == 0 {
		select {
		case <-p.exited:
			s.t.Fatalf("%v ended before it POSTed to %s: %v\n%s", p.cmd.Args[3:], path, p.err, p.output())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// waitAll waits for the processes and fails the test unless each exited 0.
func waitAll(t *testing.T, ps ...*process) {
	t.Helper()
	for _, p := range ps {
		<-p.exited
		if p.err != nil {
			t.Errorf("%v: %v\n%s", p.cmd.Args[3:], p.err, p.output())
		}
	}
}

// TestTwoProcessesOneRun starts two `stepflow resume R` at once on one data directory, three
// times, and then `stepflow run` with a `stepflow recover` while it runs: one process drives
// each run and the other follows it (or leaves it), so that each POST is made once.
func TestTwoProcessesOneRun(t *testing.T) {
	s := newLeaseSetup(t)
	for i := range 3 {
		run := fmt.Sprintf("twice-%d", i)
		held := s.start("run", s.file(run, true, "hook"))
		<-held.exited
		if !strings.Contains(held.output(), "suspend") {
			t.Fatalf("run %s did not stop at its suspend: %v\n%s", run, held.err, held.output())
		}
		a, b := s.start("resume", run), s.start("resume", run)
		waitAll(t, a, b)
		s.check(run, "hook")
		if out := a.output() + b.output(); !strings.Contains(out, "is driven by process") {
			t.Logf("run %s: neither resume followed the other (one ended before the other began):\n%s", run, out)
		}
	}

	// The run's first step waits at the gate while recover starts: recover finds it going.
	run := "run-and-recover"
	p := s.start("run", s.file(run, false, "gate"))
	s.waitPost(p, "/gate/"+run+"-one")
	r := s.start("recover")
	select {
	case <-r.exited:
	case <-time.After(5 * time.Second): // recover drives the run too, and waits at the gate
	}
	close(s.server.gate)
	waitAll(t, p, r)
	if out := r.output(); !strings.Contains(out, "run default/"+run+" is driven by process") {
		t.Errorf("recover did not leave the run to the process running it:\n%s", out)
	}
	s.check(run, "gate")
}

// TestRecoverTakesKilledRunAtOnce kills (SIGKILL) the process driving a run in the middle of a
// POST: `stepflow recover` takes the run up at once, not when its lease expires, and drives it
// to its end.
func TestRecoverTakesKilledRunAtOnce(t *testing.T) {
	s := newLeaseSetup(t)
	run := "killed"
	p := s.start("run", s.file(run, false, "block"))
	s.waitPost(p, "/block/"+run+"-one")
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-p.exited

	began := time.Now()
	r := s.start("recover")
	waitAll(t, r)
	took := time.Since(began)
	if out := r.output(); strings.Contains(out, "driven by") {
		t.Errorf("recover left the killed process's run alone:\n%s", out)
	}
	if took >= sqlite.DefaultLeaseTTL/2 {
		t.Errorf("recover took %v: it waited for the lease to expire", took)
	}
	st, err := sqlite.Open(t.Context(), sqlite.Options{Path: filepath.Join(s.data, "stepflow.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = st.Close() }()
	got, err := st.Load(t.Context(), engine.Key{Namespace: "default", Name: run})
	if err != nil {
		t.Fatal(err)
	}
	if got.Object.Status.Phase != v1alpha1.RunSucceeded {
		t.Errorf("run %s: %s: %s", run, got.Object.Status.Phase, got.Object.Status.Message)
	}
	// The killed try and the recovery's: two POSTs of step one, each recorded; one of the others.
	if n, rec := s.server.count("/block/"+run+"-one"), got.Steps["one"]; rec == nil || n != 2 || rec.Tries != 2 {
		t.Errorf("step one: %d POSTs, record %+v; want 2 POSTs in 2 recorded tries", n, rec)
	}
	for _, step := range leaseSteps[1:] {
		if n := s.server.count(postPath(run, step, "block")); n != 1 {
			t.Errorf("step %s: %d POSTs, want 1", step, n)
		}
	}
}

// TestOperationFromAnotherProcess suspends a run from a second process while the first drives
// it: the second writes the suspend to the store without driving the run, and the first takes it
// up, stops before the next step and exits as suspended.
func TestOperationFromAnotherProcess(t *testing.T) {
	s := newLeaseSetup(t)
	run := "suspended-elsewhere"
	p := s.start("run", s.file(run, false, "gate"))
	s.waitPost(p, postPath(run, "one", "gate"))
	op := s.start("suspend", run)
	waitAll(t, op)
	close(s.server.gate)
	<-p.exited
	if ee, ok := errors.AsType[*exec.ExitError](p.err); !ok || ee.ExitCode() != exitSuspended {
		t.Errorf("run exited with %v, want code %d (suspended):\n%s", p.err, exitSuspended, p.output())
	}
	for _, step := range leaseSteps {
		want := 0
		if step == leaseSteps[0] {
			want = 1
		}
		if n := s.server.count(postPath(run, step, "gate")); n != want {
			t.Errorf("step %s: %d POSTs, want %d", step, n, want)
		}
	}
}

// TestServerAndCLIOnOneDataDirectory runs `stepflow server` on the data directory of a `stepflow
// run` that is in the middle of a step: the server leaves the run to the process driving it.
// Then a run held by a suspend, taken up by the server, is resumed from the CLI: the CLI writes
// the operation and follows, and the server drives the run on. Each POST is made once.
func TestServerAndCLIOnOneDataDirectory(t *testing.T) {
	s := newLeaseSetup(t)
	run := "cli-then-server"
	p := s.start("run", s.file(run, false, "gate"))
	s.waitPost(p, postPath(run, "one", "gate"))

	port := freePort(t)
	srv := s.start("server", "--listen", "127.0.0.1:"+port)
	waitHealthy(t, "http://127.0.0.1:"+port, srv)
	time.Sleep(500 * time.Millisecond) // the server's first look at the runs is done
	close(s.server.gate)
	waitAll(t, p)
	s.check(run, "gate")

	held := "held-by-server"
	h := s.start("run", s.file(held, true, "hook"))
	<-h.exited // stopped at its suspend; the server takes it up at its next look
	time.Sleep(sqlite.DefaultLeaseTTL / 3)
	r := s.start("resume", held)
	waitAll(t, r)
	if out := r.output(); !strings.Contains(out, "is driven by process") {
		t.Errorf("resume drove the run the server holds:\n%s", out)
	}
	s.check(held, "hook")
	select {
	case <-srv.exited:
		t.Fatalf("the server stopped: %v\n%s", srv.err, srv.output())
	default:
	}
}
