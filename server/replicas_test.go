package server_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/server"
	"github.com/stepflow/stepflow/server/servertest"
	"github.com/stepflow/stepflow/store/postgres"
)

// replicaServer starts a server on the database at url as the named replica, with leases of
// ttl.
func replicaServer(t *testing.T, url, name string, ttl time.Duration) (*servertest.Server, *postgres.Leases) {
	t.Helper()
	st, err := postgres.Open(context.Background(), postgres.Options{URL: url, Replica: name})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	leases, err := st.Leases(postgres.LeaseOptions{TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	srv := servertest.Start(t, servertest.Options{Store: st, Configure: func(o *server.Options) { o.Replicas = leases }})
	return srv, leases
}

// Two servers on one PostgreSQL: each drives the runs of its shards, whichever server they
// were created, followed or operated through.
func TestReplicasShareTheRunsOfOnePostgres(t *testing.T) {
	if pg == nil {
		t.Skip("-short: no PostgreSQL")
	}
	url := pg.NewDatabase(t)
	a, la := replicaServer(t, url, "a", 2*time.Second)
	b, lb := replicaServer(t, url, "b", 2*time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for len(la.Shards()) != postgres.Shards/2 || len(lb.Shards()) != postgres.Shards/2 {
		if time.Now().After(deadline) {
			t.Fatalf("the shards were not divided: a holds %d, b %d", len(la.Shards()), len(lb.Shards()))
		}
		time.Sleep(20 * time.Millisecond)
	}
	opA := caller{t: t, base: a.URL, token: a.Token(t, "operator")}
	opB := caller{t: t, base: b.URL, token: b.Token(t, "operator")}

	// Runs created through a, half of them b's: a's ?wait answers once each is held by its
	// suspend step, whoever drives it.
	const n = 8
	var ofB []string
	for i := range n {
		name := fmt.Sprintf("gated-%d", i)
		doc := strings.Replace(approvalRun, "name: gated", "name: "+name, 1)
		r := opA.postYAML("/api/v1/runs?wait=30s", doc).want(t, http.StatusOK).json(t)
		if at(r, "status.status") != "suspending" {
			t.Fatalf("%s through a: %v", name, at(r, "status"))
		}
		key := engine.Key{Namespace: "default", Name: name}
		if la.Owns(key) == lb.Owns(key) {
			t.Fatalf("%s: owned by a %v, by b %v", name, la.Owns(key), lb.Owns(key))
		}
		if lb.Owns(key) {
			ofB = append(ofB, name)
		}
	}
	if len(ofB) == 0 || len(ofB) == n {
		t.Skipf("all %d runs fell to one server's shards", n)
	}

	// A run b drives, followed through a and resumed through a: a's stream shows b's work,
	// log lines included.
	next := opA.events("/api/v1/runs/default/" + ofB[0] + "/events")
	next("the snapshot", func(n, d string) bool { return n == "run" && strings.Contains(d, `"status":"suspending"`) })
	opA.postJSON("/api/v1/runs/default/"+ofB[0]+"/resume", nil).want(t, http.StatusOK)
	next("after's log line", func(n, d string) bool { return n == "log" && strings.Contains(d, `"step":"after"`) })
	next("the run succeeded", func(n, d string) bool { return n == "run" && strings.Contains(d, `"status":"succeeded"`) })

	// The others resumed through b, whoever drives them.
	for i := range n {
		name := fmt.Sprintf("gated-%d", i)
		if name != ofB[0] {
			opB.postJSON("/api/v1/runs/default/"+name+"/resume", nil).want(t, http.StatusOK)
		}
	}
	for i := range n {
		name := fmt.Sprintf("gated-%d", i)
		var run map[string]any
		for end := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			run = opA.get("/api/v1/runs/default/"+name).want(t, http.StatusOK).json(t)
			if at(run, "status.status") == "succeeded" || time.Now().After(end) {
				break
			}
		}
		if at(run, "status.status") != "succeeded" {
			t.Fatalf("%s: %v", name, at(run, "status"))
		}
		// Each step ran in one try: never by both servers.
		stored, err := a.Store.Load(t.Context(), engine.Key{Namespace: "default", Name: name})
		if err != nil {
			t.Fatal(err)
		}
		for step, rec := range stored.Steps {
			if rec.Tries > 1 && step != "approve" {
				t.Errorf("%s step %s: %d tries", name, step, rec.Tries)
			}
		}
	}
}
