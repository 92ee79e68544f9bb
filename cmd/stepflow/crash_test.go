package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/store/sqlite"
)

// Sizes of the crash test: how many runs go at once, and how many times the process driving
// them is killed.
const (
	crashRuns  = 200
	crashKills = 20
	// crashMaxGap bounds the server calls between two kills; crashKills of them stay well under
	// the calls the runs make at the least (5 each), so every kill lands while runs are going.
	crashMaxGap = 40
)

// crashSteps are the steps of each run that have side effects, with the path they POST to.
var crashSteps = []string{"announce", "deploy", "notify"}

// crashWorkflow is the WorkflowRun of the crash test, $RUN and $SERVER to be filled: a webhook,
// a POST followed by a wait on a read (re-evaluated until the service says it is ready), a timed
// suspend, a POST through the request step.
const crashWorkflow = `
apiVersion: core.oam.dev/v1alpha1
kind: WorkflowRun
metadata:
  name: $RUN
spec:
  workflowSpec:
    steps:
    - name: announce
      type: webhook
      properties: {url: {value: "$SERVER/hook/$RUN-announce"}, data: {run: $RUN}}
    - name: deploy
      type: start-and-wait
      properties: {base: "$SERVER", name: $RUN}
    - name: pause
      type: suspend
      properties: {duration: 30ms}
    - name: notify
      type: request
      properties: {url: "$SERVER/hook/$RUN-notify", method: POST, body: {run: $RUN}}
`

// crashDefinition POSTs, then waits until GET /ready/NAME has been called twice.
const crashDefinition = `
apiVersion: core.oam.dev/v1beta1
kind: WorkflowStepDefinition
metadata:
  name: start-and-wait
spec:
  schematic:
    cue:
      template: |
        import (
        	"encoding/json"
        	"vela/op"
        )

        parameter: {
        	base: string
        	name: string
        }
        start: op.#HTTPPost & {
        	url: "\(parameter.base)/hook/\(parameter.name)-deploy"
        	request: body: json.Marshal({name: parameter.name})
        }
        check: op.#HTTPGet & {url: "\(parameter.base)/ready/\(parameter.name)?after=2"}
        state: json.Unmarshal(check.response.body)
        wait: op.#ConditionalWait & {
        	continue: state.ready
        	message:  "\(parameter.name) not ready yet"
        }
`

// TestCrashRecovery runs 200 workflows at once in a real stepflow process on the embedded
// store and kills it (SIGKILL) 20 times at random points, each time starting `stepflow
// recover`, which takes the unfinished runs up from the store; a last recover drives them to
// their end. Then every run has succeeded, and every step with a side effect has made its
// request at least once and at most once per try the store recorded for it, in its first and
// only attempt: no step recorded as succeeded ran again, no side effect the store had recorded
// was made again, and none was repeated without the store knowing.
//
// The kill points are the n-th request to the test server after a start (n random up to
// crashMaxGap), killing before or after it is answered: a side effect whose answer the process
// never saw, or saw and had no time to record. STEPFLOW_CRASH_SEED replays a seed.
func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("runs and kills a stepflow process 21 times")
	}
	exe, err := exec.LookPath("stepflow-exe")
	if err != nil {
		t.Fatal(err)
	}
	plan := newCrashPlan(t, crashKills, crashMaxGap)

	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	var storeMu sync.Mutex
	var st *sqlite.Store
	// The store is opened once the first process has made it.
	store := func() (runLoader, error) {
		storeMu.Lock()
		defer storeMu.Unlock()
		if st == nil {
			s, err := sqlite.Open(t.Context(), sqlite.Options{Path: filepath.Join(data, "stepflow.db")})
			if err != nil {
				return nil, err
			}
			st = s
		}
		return st, nil
	}
	cs, url := startCrashServer(t, store)
	t.Cleanup(func() {
		storeMu.Lock()
		defer storeMu.Unlock()
		if st != nil {
			if err := st.Close(); err != nil {
				t.Error(err)
			}
		}
	})

	var docs []string
	docs = append(docs, crashDefinition)
	for i := range crashRuns {
		docs = append(docs, strings.NewReplacer("$RUN", crashRunName(i), "$SERVER", url).Replace(crashWorkflow))
	}
	file := filepath.Join(dir, "runs.yaml")
	if err := os.WriteFile(file, []byte(strings.Join(docs, "---")), 0o644); err != nil {
		t.Fatal(err)
	}
	start := func(args ...string) *process {
		args = append([]string{"--data-dir", data, "--wait-backoff", "10ms", "--retry-backoff", "10ms"}, args...)
		return startProcess(t, exe, args...)
	}

	p := plan.killAndRestart(t, cs, start("run", file), func() *process { return start("recover") })
	<-p.exited
	if p.err != nil {
		t.Fatalf("the last recover ended with %v:\n%s", p.err, p.output())
	}

	runs, err := store()
	if err != nil {
		t.Fatal(err)
	}
	repeated := checkCrashRuns(t, runs, cs, crashRuns)
	t.Logf("%d kills; %d of %d side effects were made again by a recovery, each in a try of its own",
		crashKills, repeated, crashRuns*len(crashSteps))
}

// checkCrashRuns checks what a crash test promises once its runs are done: no step recorded
// as succeeded, or with its side effect recorded, made its request again; every run succeeded; each side-effecting step has its
// record, in its first and only attempt, and made its request at least once and at most once
// per try the store recorded. n is the number of runs. It returns how many side effects were
// made more than once.
func checkCrashRuns(t *testing.T, runs runLoader, cs *crashServer, n int) (repeated int) {
	t.Helper()
	for _, p := range cs.problems() {
		t.Error(p)
	}
	for i := range n {
		key := engine.Key{Namespace: "default", Name: crashRunName(i)}
		run, err := runs.Load(t.Context(), key)
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		if s := run.Object.Status; !s.Finished || s.Phase != v1alpha1.RunSucceeded {
			t.Errorf("%s: %s (finished %v): %s", key, s.Phase, s.Finished, s.Message)
		}
		for _, step := range crashSteps {
			calls := cs.next.count("POST /hook/" + key.Name + "-" + step)
			rec := run.Steps[step]
			switch {
			case rec == nil:
				t.Errorf("%s step %s: no record, %d requests", key, step, calls)
			case rec.Attempt != 1:
				t.Errorf("%s step %s: attempt %d, want 1 (it never failed)", key, step, rec.Attempt)
			case calls < 1:
				t.Errorf("%s step %s: recorded as %+v, but made no request", key, step, rec)
			case calls > rec.Tries:
				t.Errorf("%s step %s: %d requests for %d recorded tries", key, step, calls, rec.Tries)
			}
			if calls > 1 {
				repeated++
			}
		}
	}
	return repeated
}

func crashRunName(i int) string { return fmt.Sprintf("crash-%03d", i) }

// crashPlan is where a crash test kills its processes: kills times, each at a random request
// up to maxGap after the process started, drawn from rng.
type crashPlan struct {
	rng    *rand.Rand
	kills  int
	maxGap int
}

// newCrashPlan seeds the plan from the clock, or from STEPFLOW_CRASH_SEED to replay a failed
// run's kill points; the seed is logged.
func newCrashPlan(t *testing.T, kills, maxGap int) crashPlan {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("STEPFLOW_CRASH_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("STEPFLOW_CRASH_SEED: %v", err)
		}
	}
	t.Logf("seed %d (STEPFLOW_CRASH_SEED=%d replays the kill points)", seed, seed)
	return crashPlan{rng: rand.New(rand.NewPCG(seed, 0)), kills: kills, maxGap: maxGap}
}

// startCrashServer starts a test server behind a crashServer reading runs from store, for the
// test's duration, and returns it with the server's URL.
func startCrashServer(t *testing.T, store func() (runLoader, error)) (*crashServer, string) {
	srv := newTestServer()
	cs := newCrashServer(srv, store)
	hs := httptest.NewUnstartedServer(cs)
	hs.Config.ConnState = cs.connState
	hs.Start()
	t.Cleanup(hs.Close)
	t.Cleanup(srv.releaseAll)
	return cs, hs.URL
}

// crashKillWait bounds the wait for an armed kill: a process that makes no more requests
// (its runs all ended, or it hangs) fails the test rather than block it.
const crashKillWait = time.Minute

// killAndRestart kills p with SIGKILL at a random request of the plan, before or after it is
// answered, waits until the test server has served every request of the dead process, starts
// the next process with restart, and so on, as many times as the plan says. It returns the
// last process started, which runs on.
func (c crashPlan) killAndRestart(t *testing.T, cs *crashServer, p *process, restart func() *process) *process {
	t.Helper()
	for kill := range c.kills {
		gap := 1 + c.rng.IntN(c.maxGap)
		before := c.rng.IntN(2) == 0
		fired := cs.arm(p.cmd.Process, gap, before)
		select {
		case <-fired:
		case <-p.exited:
			t.Fatalf("kill %d: the process ended before its %d-th request:\n%s", kill+1, gap, p.output())
		case <-time.After(crashKillWait):
			_ = p.cmd.Process.Kill()
			t.Fatalf("kill %d: no %d-th request in %s:\n%s", kill+1, gap, crashKillWait, p.output())
		}
		<-p.exited
		if p.err == nil || !isKilled(p.err) {
			t.Fatalf("kill %d: the process ended with %v, not by SIGKILL:\n%s", kill+1, p.err, p.output())
		}
		cs.drained()
		p = restart()
	}
	return p
}

// crashServer passes requests on to the test server and, on the way, kills a process at the
// armed request and checks that no step recorded as succeeded, or with its side effect
// recorded, makes its request again. It tracks its connections so that the test can wait for
// those of a killed process to end.
type crashServer struct {
	next *testServer
	// store reads the runs, as the processes write them.
	store func() (runLoader, error)

	mu   sync.Mutex
	cond *sync.Cond
	open int // connections not closed yet
	// The armed kill: left requests to go.
	left   int
	before bool
	proc   *os.Process
	fired  chan struct{}
	// succeeded holds the steps seen succeeded in the store, as RUN/STEP.
	succeeded map[string]bool
	// again lists the requests of steps already recorded as succeeded or as having made them.
	again []string
}

// runLoader reads a run as the processes under test stored it: the embedded store, PostgreSQL
// or the Kubernetes API.
type runLoader interface {
	Load(ctx context.Context, key engine.Key) (*engine.Run, error)
}

func newCrashServer(next *testServer, store func() (runLoader, error)) *crashServer {
	s := &crashServer{next: next, store: store, succeeded: map[string]bool{}}
	s.cond = sync.NewCond(&s.mu)
	return s
}

// arm has the n-th request from now kill proc, before it is answered or after.
func (s *crashServer) arm(proc *os.Process, n int, before bool) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.left, s.before, s.proc, s.fired = n, before, proc, make(chan struct{})
	return s.fired
}

// connState counts the open connections; it is the server's http.Server.ConnState.
func (s *crashServer) connState(_ net.Conn, state http.ConnState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch state {
	case http.StateNew:
		s.open++
	case http.StateClosed, http.StateHijacked:
		s.open--
		s.cond.Broadcast()
	}
}

// drained waits until every connection is closed: once the process that made them is dead,
// none of its requests is still to be served.
func (s *crashServer) drained() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.open > 0 {
		s.cond.Wait()
	}
}

func (s *crashServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.observe(r.Context(), r)
	s.mu.Lock()
	kill := false
	if s.proc != nil {
		s.left--
		kill = s.left == 0
	}
	before := s.before
	s.mu.Unlock()
	if kill && before {
		s.kill()
	}
	s.next.ServeHTTP(w, r)
	if kill && !before {
		s.kill()
	}
}

// observe reads the run a request is for (/hook/RUN-STEP, /ready/RUN) from the store and
// notes the steps it finds succeeded; a request of a step noted so, now or earlier, is a
// step that ran again after its success was recorded (the process that sent it can only have
// read the store after that). A POST of a step whose record holds a memoized result is a side
// effect made again although the store had recorded it: each of the crash test's steps makes
// one, and only side effects are memoized.
func (s *crashServer) observe(ctx context.Context, r *http.Request) {
	var run, step string
	if name, ok := strings.CutPrefix(r.URL.Path, "/hook/"); ok {
		i := strings.LastIndexByte(name, '-')
		if i < 0 {
			return
		}
		run, step = name[:i], name[i+1:]
	} else if run, ok = strings.CutPrefix(r.URL.Path, "/ready/"); !ok {
		return
	}
	// The store is read even when the process that sent the request has just been killed,
	// which cancels the request's context.
	ctx = context.WithoutCancel(ctx)
	st, err := s.store()
	var stored *engine.Run
	if err == nil {
		stored, err = st.Load(ctx, engine.Key{Namespace: "default", Name: run})
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.again = append(s.again, fmt.Sprintf("%s %s: reading the store: %v", r.Method, r.URL.Path, err))
		return
	}
	for _, ss := range stored.Object.Status.Steps {
		if ss.Phase == v1alpha1.StepSucceeded {
			s.succeeded[run+"/"+ss.Name] = true
		}
	}
	if step != "" && s.succeeded[run+"/"+step] {
		s.again = append(s.again, fmt.Sprintf("%s %s: step %s of %s was recorded as succeeded already", r.Method, r.URL.Path, step, run))
	}
	if rec := stored.Steps[step]; step != "" && rec != nil && len(rec.Memo) > 0 {
		s.again = append(s.again, fmt.Sprintf("%s %s: step %s of %s had its side effect recorded already (memo %v)", r.Method, r.URL.Path, step, run, slices.Sorted(maps.Keys(rec.Memo))))
	}
}

func (s *crashServer) kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	// Told before the kill: the process's end, seen first, would be taken for an end of its own
	// (a loaded machine in CI: "the process ended before its 36-th request").
	close(s.fired)
	_ = s.proc.Kill() // SIGKILL; it fails only when the process has ended, which the test sees
	s.proc = nil
}

// problems are the requests of steps recorded as succeeded or as having made them, and the
// requests whose run could not be read.
func (s *crashServer) problems() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.again)
}

// process is a stepflow process the test started.
type process struct {
	cmd    *exec.Cmd
	out    bytes.Buffer
	err    error
	exited chan struct{}
}

func startProcess(t *testing.T, exe string, args ...string) *process {
	t.Helper()
	p := &process{cmd: exec.CommandContext(t.Context(), exe, args...), exited: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.exited
	})
	return p
}

// output is the end of what the process wrote, once it has exited.
func (p *process) output() string {
	<-p.exited
	s := p.out.String()
	if len(s) > 4000 {
		s = "..." + s[len(s)-4000:]
	}
	return s
}

func isKilled(err error) bool {
	ee, ok := errors.AsType[*exec.ExitError](err)
	if !ok {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}
