package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/server"
	"github.com/stepflow/stepflow/store/postgres"
	"github.com/stepflow/stepflow/store/postgres/pgtest"
)

// Sizes of the replica crash test: servers sharing the database, kills, and the lease time.
// A server stops driving its runs a quarter of its lease before the lease can expire; a
// server starved of the CPU for longer than that (not scheduled at all) can still send a
// request its step had under way when it was stopped, which to the others is a server that
// died and came back. With a 1 s lease (250 ms) that happened in CI, where other packages'
// tests (API servers, a browser) share the two cores: 3 s keeps the test about crashes.
const (
	replicaServers = 3
	replicaKills   = 8
	replicaLease   = 3 * time.Second
)

// TestReplicaCrashRecovery runs three `stepflow server` processes on one PostgreSQL, starts
// the crash test's 200 runs through them (each through any of the three), and kills one
// (SIGKILL) at a random point 8 times, starting a new one in its place each time. The killed
// server's leases expire and the others take its runs. At the end every run has succeeded,
// no step recorded as succeeded made its request again, and every side effect was made at
// most once per try the store recorded for it: the guarantees of one process, across
// processes. STEPFLOW_CRASH_SEED replays a seed.
func TestReplicaCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("runs PostgreSQL and kills stepflow servers")
	}
	exe, err := exec.LookPath("stepflow-exe")
	if err != nil {
		t.Fatal(err)
	}
	plan := newCrashPlan(t, replicaKills, crashMaxGap)

	url, st, token := replicaStore(t)

	cs, hsURL := startCrashServer(t, func() (runLoader, error) { return st, nil })

	start := func() replica { return startReplica(t, exe, url) }
	replicas := make([]replica, replicaServers)
	for i := range replicas {
		replicas[i] = start()
	}
	api := func(r replica, path, doc string) {
		t.Helper()
		r.post(t, token, path, doc)
	}
	api(replicas[0], "/api/v1/definitions", crashDefinition)
	// The runs start in batches, one before each kill, so that every kill lands while runs
	// are going: three servers finish 200 runs faster than eight kills take.
	batch := (crashRuns + replicaKills) / (replicaKills + 1)
	next := 0
	// Each batch is started through the servers that are not to be killed, the kill armed
	// first: the runs of a batch are done in about a second.
	startBatch := func(victim int) {
		for end := min(next+batch, crashRuns); next < end; next++ {
			doc := strings.NewReplacer("$RUN", crashRunName(next), "$SERVER", hsURL).Replace(crashWorkflow)
			through := next % len(replicas)
			if through == victim {
				through = (through + 1) % len(replicas)
			}
			api(replicas[through], "/api/v1/runs", doc)
		}
	}
	for kill := range replicaKills {
		victim := plan.rng.IntN(len(replicas))
		gap := 1 + plan.rng.IntN(crashMaxGap)
		fired := cs.arm(replicas[victim].proc.cmd.Process, gap, plan.rng.IntN(2) == 0)
		startBatch(victim)
		select {
		case <-fired:
		case <-replicas[victim].proc.exited:
			if !isKilled(replicas[victim].proc.err) { // else killed, and exited seen before fired
				t.Fatalf("kill %d: the server ended before it was killed:\n%s", kill+1, replicas[victim].proc.output())
			}
		case <-time.After(time.Minute):
			left := unfinishedCrashRuns(t.Context(), t, st, next)
			for _, r := range replicas {
				_ = r.proc.cmd.Process.Kill()
				t.Logf("server %s:\n%s", r.url, r.proc.output())
			}
			t.Fatalf("kill %d: no %d-th request within a minute; %d runs unfinished, among them %v", kill+1, gap, len(left), left[:min(len(left), 5)])
		}
		<-replicas[victim].proc.exited
		if p := replicas[victim].proc; !isKilled(p.err) {
			t.Fatalf("kill %d: the server ended with %v, not by SIGKILL:\n%s", kill+1, p.err, p.output())
		}
		replicas[victim] = start()
	}
	startBatch(-1)

	deadline := time.Now().Add(3 * time.Minute)
	for {
		left := unfinishedCrashRuns(t.Context(), t, st, crashRuns)
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d runs never finished, among them %v", len(left), left[:min(len(left), 5)])
		}
		time.Sleep(100 * time.Millisecond)
	}
	repeated := checkCrashRuns(t, st, cs, crashRuns)
	t.Logf("%d kills of %d servers; %d of %d side effects were made again after a server died, each in a try of its own",
		replicaKills, replicaServers, repeated, crashRuns*len(crashSteps))
}

// unfinishedRuns lists those of the crash test's first n runs that have not finished.
func unfinishedCrashRuns(ctx context.Context, t *testing.T, runs runLoader, n int) []string {
	t.Helper()
	var left []string
	for i := range n {
		run, err := runs.Load(ctx, engine.Key{Namespace: "default", Name: crashRunName(i)})
		if err != nil {
			t.Fatal(err)
		}
		if !run.Object.Status.Finished {
			left = append(left, run.Object.Name+" "+string(run.Object.Status.Phase))
		}
	}
	return left
}

// freePort returns a loopback port nothing listens on.
func freePort(t *testing.T) string {
	t.Helper()
	var lc net.ListenConfig
	ln, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

// waitHealthy waits until the server at base answers /healthz.
func waitHealthy(t *testing.T, base string, p *process) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, base+"/healthz", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-p.exited:
			t.Fatalf("the server at %s ended:\n%s", base, p.output())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server at %s did not answer /healthz within 30s", base)
		}
	}
}

// replica is one `stepflow server` process of the replica tests, and its address.
type replica struct {
	proc *process
	url  string
}

// startReplica starts a server replica of exe on the store at storeURL, with the replica
// tests' lease and backoffs, and waits until it answers.
func startReplica(t *testing.T, exe, storeURL string) replica {
	t.Helper()
	port := freePort(t)
	p := startProcess(t, exe, "--wait-backoff", "10ms", "--retry-backoff", "10ms",
		"server", "--store", storeURL, "--lease", replicaLease.String(), "--listen", "127.0.0.1:"+port)
	r := replica{proc: p, url: "http://127.0.0.1:" + port}
	waitHealthy(t, r.url, p)
	return r
}

// post POSTs the YAML doc to the replica's path with the token, again after a 503 (a check
// the server could not make, as a client would), and fails the test on any other answer
// than 201.
func (r replica) post(t *testing.T, token, path, doc string) {
	t.Helper()
	for try := 1; ; try++ {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, r.url+path, strings.NewReader(doc))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/yaml")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("POST %s to %s: %v", path, r.url, err)
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		_ = resp.Body.Close()
		if resp.StatusCode == http.StatusServiceUnavailable && try < 3 {
			t.Logf("POST %s to %s: %s: %s; again", path, r.url, resp.Status, body)
			continue
		}
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("POST %s to %s: %s: %s", path, r.url, resp.Status, body)
		}
		return
	}
}

// replicaStore starts a real PostgreSQL for the replica tests and returns its database's URL,
// the store open on it (for the test's own reads) and an admin token of the servers.
func replicaStore(t *testing.T) (string, *postgres.Store, string) {
	t.Helper()
	pg, err := pgtest.Start(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pg.Stop() })
	url := pg.NewDatabase(t)
	st, err := postgres.Open(t.Context(), postgres.Options{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	_, token, err := server.CreateToken(t.Context(), st, "test", server.RoleAdmin, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return url, st, token
}
