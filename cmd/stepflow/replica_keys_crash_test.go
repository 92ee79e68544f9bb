package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/store"
)

// Sizes of the replica test of concurrency keys: runs on one key, its limit, and kills.
const (
	keyReplicaRuns  = 30
	keyReplicaLimit = 3
	keyReplicaKills = 4
)

// keyReplicaWorkflow is a run of the test, $RUN and $SERVER to be filled: one request, which
// the test server answers after a while, on a key of limit keyReplicaLimit.
const keyReplicaWorkflow = `
apiVersion: core.oam.dev/v1alpha1
kind: WorkflowRun
metadata:
  name: $RUN
spec:
  concurrency: {key: '"shared"', limit: $LIMIT}
  workflowSpec:
    steps:
    - name: work
      type: request
      properties: {url: "$SERVER/work/$RUN"}
`

// busyServer answers GET /work/RUN after 100 ms and keeps the most runs it saw with a request
// under way at once (a run whose request is sent again by the replica that took it up is one
// run).
type busyServer struct {
	mu   sync.Mutex
	busy map[string]int
	peak int
}

func (s *busyServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	run, ok := strings.CutPrefix(r.URL.Path, "/work/")
	if !ok {
		http.NotFound(w, r)
		return
	}
	s.mu.Lock()
	s.busy[run]++
	s.peak = max(s.peak, len(s.busy))
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		if s.busy[run]--; s.busy[run] == 0 {
			delete(s.busy, run)
		}
		s.mu.Unlock()
	}()
	select {
	case <-time.After(100 * time.Millisecond):
	case <-r.Context().Done(): // the replica that asked died
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"ok":true}`))
}

// TestReplicaCrashConcurrencyKey runs three `stepflow server` processes on one PostgreSQL and
// starts 30 runs on one concurrency key of limit 3 through them, killing one server (SIGKILL)
// at a random moment 4 times and starting a new one in its place. All along, the key's record
// never has more than 3 runs holding a slot (polled every 20 ms) and the test server never
// sees requests of more than 3 runs under way at once; at the end every run has succeeded and
// no run holds a slot or waits for one. STEPFLOW_CRASH_SEED replays a seed.
func TestReplicaCrashConcurrencyKey(t *testing.T) {
	if testing.Short() {
		t.Skip("runs PostgreSQL and kills stepflow servers")
	}
	exe, err := exec.LookPath("stepflow-exe")
	if err != nil {
		t.Fatal(err)
	}
	plan := newCrashPlan(t, keyReplicaKills, 1)

	url, st, token := replicaStore(t)
	bs := &busyServer{busy: map[string]int{}}
	hs := httptest.NewServer(bs)
	t.Cleanup(hs.Close)

	// The key's record, polled until the test ends.
	slots := &store.Slots{Records: st}
	var pollMu sync.Mutex
	var peakHeld int
	var pollErr error
	stopPoll := make(chan struct{})
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		for {
			list, err := slots.Holders(t.Context())
			held := 0
			for _, h := range list {
				if h.Held {
					held++
				}
			}
			pollMu.Lock()
			peakHeld = max(peakHeld, held)
			if err != nil && pollErr == nil && t.Context().Err() == nil {
				pollErr = err
			}
			pollMu.Unlock()
			select {
			case <-stopPoll:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	defer func() { close(stopPoll); <-polled }()

	start := func() replica { return startReplica(t, exe, url) }
	replicas := make([]replica, replicaServers)
	for i := range replicas {
		replicas[i] = start()
	}
	post := func(r replica, doc string) {
		t.Helper()
		r.post(t, token, "/api/v1/runs", doc)
	}
	name := func(i int) string { return fmt.Sprintf("keyed-%02d", i) }
	batch := (keyReplicaRuns + keyReplicaKills) / (keyReplicaKills + 1)
	next := 0
	startBatch := func(victim int) {
		for end := min(next+batch, keyReplicaRuns); next < end; next++ {
			doc := strings.NewReplacer("$RUN", name(next), "$SERVER", hs.URL, "$LIMIT", fmt.Sprint(keyReplicaLimit)).Replace(keyReplicaWorkflow)
			through := next % len(replicas)
			if through == victim {
				through = (through + 1) % len(replicas)
			}
			post(replicas[through], doc)
		}
	}
	for kill := range keyReplicaKills {
		victim := plan.rng.IntN(len(replicas))
		startBatch(victim)
		time.Sleep(time.Duration(200+plan.rng.IntN(1000)) * time.Millisecond) // runs under way, some queued
		p := replicas[victim].proc
		if err := p.cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		<-p.exited
		if !isKilled(p.err) {
			t.Fatalf("kill %d: the server ended with %v, not by SIGKILL:\n%s", kill+1, p.err, p.output())
		}
		replicas[victim] = start()
	}
	startBatch(-1)

	deadline := time.Now().Add(4 * time.Minute)
	for {
		left := 0
		for i := range keyReplicaRuns {
			run, err := st.Load(t.Context(), engine.Key{Namespace: "default", Name: name(i)})
			if err != nil {
				t.Fatal(err)
			}
			if !run.Object.Status.Finished {
				left++
			}
		}
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			for _, r := range replicas {
				_ = r.proc.cmd.Process.Kill()
				t.Logf("server %s:\n%s", r.url, r.proc.output())
			}
			t.Fatalf("%d runs never finished", left)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for i := range keyReplicaRuns {
		run, err := st.Load(t.Context(), engine.Key{Namespace: "default", Name: name(i)})
		if err != nil {
			t.Fatal(err)
		}
		if s := run.Object.Status; s.Phase != v1alpha1.RunSucceeded {
			t.Errorf("run %s: %s: %s", name(i), s.Phase, s.Message)
		}
	}
	if left, err := slots.Holders(t.Context()); err != nil || len(left) != 0 {
		t.Errorf("at the end, slots are still held or waited for: %+v (%v)", left, err)
	}
	pollMu.Lock()
	defer pollMu.Unlock()
	bs.mu.Lock()
	defer bs.mu.Unlock()
	if pollErr != nil {
		t.Errorf("read the slots: %v", pollErr)
	}
	if peakHeld > keyReplicaLimit || bs.peak > keyReplicaLimit {
		t.Errorf("at most %d runs at once, but the key's record had %d holding a slot and %d runs had a request under way",
			keyReplicaLimit, peakHeld, bs.peak)
	}
	if bs.peak < 2 {
		t.Errorf("never more than %d run under way at once: the key's limit was not used", bs.peak)
	}
	t.Logf("%d kills of %d servers; at most %d runs held a slot, %d had a request under way", keyReplicaKills, replicaServers, peakHeld, bs.peak)
}
