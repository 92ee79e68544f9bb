package postgres_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/store"
	"github.com/stepflow/stepflow/store/postgres"
	"github.com/stepflow/stepflow/store/storetest"
)

// openReplica opens a store on url as the named replica.
func openReplica(t *testing.T, url, replica string) *postgres.Store {
	t.Helper()
	st, err := postgres.Open(t.Context(), postgres.Options{URL: url, Replica: replica})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// A replica's store, whose writes notify, keeps every promise of a store.
func TestStoreSuiteAsReplica(t *testing.T) {
	storetest.Run(t, func(t *testing.T) engine.Store { return openReplica(t, newDatabase(t), "r1") })
}

// replica is one replica's leases as a test runs them: what it was told.
type replica struct {
	leases *postgres.Leases
	stop   context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	gained  []engine.Key
	changes []store.Change
	// lost counts the times it was told it stopped owning shards, and owned how many shards
	// it held then: the call must come once Owns says so.
	lost   int
	owned  []int
	lostAt time.Time
}

func startReplica(t *testing.T, st *postgres.Store, ttl time.Duration) *replica {
	t.Helper()
	l, err := st.Leases(postgres.LeaseOptions{TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	r := &replica{leases: l, stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		err := l.Run(ctx,
			func(keys []engine.Key) { r.mu.Lock(); r.gained = append(r.gained, keys...); r.mu.Unlock() },
			func() {
				held := len(l.Shards())
				r.mu.Lock()
				r.lost++
				r.owned = append(r.owned, held)
				r.lostAt = time.Now()
				r.mu.Unlock()
			},
			func(c store.Change) { r.mu.Lock(); r.changes = append(r.changes, c); r.mu.Unlock() })
		if err != nil {
			t.Error(err)
		}
	}()
	t.Cleanup(func() { cancel(); <-r.done })
	return r
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestLeasesDivideShardsAndMoveWhenAReplicaStops(t *testing.T) {
	url := newDatabase(t)
	a, b := openReplica(t, url, "a"), openReplica(t, url, "b")
	// Unfinished runs to be handed over, and a finished one that must not be.
	var keys []engine.Key
	for i := range 40 {
		run := newRun(fmt.Sprintf("r%02d", i))
		if i == 0 {
			run.Object.Status.Phase, run.Object.Status.Finished = v1alpha1.RunSucceeded, true
		} else {
			keys = append(keys, run.Key())
		}
		if err := a.Create(t.Context(), run, store.CreateNew); err != nil {
			t.Fatal(err)
		}
	}

	const ttl = time.Second
	ra := startReplica(t, a, ttl)
	eventually(t, 5*time.Second, "a holds every shard", func() bool { return len(ra.leases.Shards()) == postgres.Shards })
	// The runs are handed over just after the shards are held.
	eventually(t, 5*time.Second, "a is given the unfinished runs", func() bool {
		ra.mu.Lock()
		defer ra.mu.Unlock()
		return len(ra.gained) >= len(keys)
	})

	rb := startReplica(t, b, ttl)
	eventually(t, 5*time.Second, "a and b share the shards", func() bool {
		na, nb := len(ra.leases.Shards()), len(rb.leases.Shards())
		return na == postgres.Shards/2 && nb == postgres.Shards/2
	})
	for _, k := range keys {
		if ra.leases.Owns(k) == rb.leases.Owns(k) {
			t.Fatalf("%s: owned by a %v, by b %v: want exactly one", k, ra.leases.Owns(k), rb.leases.Owns(k))
		}
	}
	ra.mu.Lock()
	if len(ra.gained) != len(keys) {
		t.Errorf("a was given %d runs to pick up, want the %d unfinished, once", len(ra.gained), len(keys))
	}
	// a gave up half its shards to b, and was told so once it held only its share.
	if ra.lost != 1 || ra.owned[0] != postgres.Shards/2 {
		t.Errorf("a was told %d times that it lost shards (holding %v then), want once, holding %d", ra.lost, ra.owned, postgres.Shards/2)
	}
	ra.mu.Unlock()

	// A write by a reaches b as a change, and b's own writes do not come back to it.
	run, err := a.Load(t.Context(), keys[3])
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Save(t.Context(), run, nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "b hears of a's save", func() bool {
		rb.mu.Lock()
		defer rb.mu.Unlock()
		for _, c := range rb.changes {
			if c.Key == keys[3] && c.Version == run.Version {
				return true
			}
		}
		return false
	})
	ra.leases.Elsewhere(t.Context(), keys[4])
	eventually(t, 5*time.Second, "b hears a's nudge", func() bool {
		rb.mu.Lock()
		defer rb.mu.Unlock()
		for _, c := range rb.changes {
			if c.Key == keys[4] && c.Version == store.Nudge {
				return true
			}
		}
		return false
	})
	ra.mu.Lock()
	for _, c := range ra.changes {
		if c.Key == keys[3] {
			t.Errorf("a was told of its own write: %+v", c)
		}
	}
	ra.mu.Unlock()

	// a stops without releasing (as a killed process): b takes its shards once they expire.
	stopped := time.Now()
	ra.stop()
	<-ra.done
	eventually(t, 3*ttl, "b holds every shard", func() bool { return len(rb.leases.Shards()) == postgres.Shards })
	t.Logf("b held every shard %s after a stopped (TTL %s)", time.Since(stopped).Round(time.Millisecond), ttl)
	for _, k := range keys {
		if !rb.leases.Owns(k) {
			t.Errorf("%s: not owned by b", k)
		}
	}
	// The runs are passed on just after the shards are held.
	eventually(t, 5*time.Second, "b is given a's runs", func() bool {
		rb.mu.Lock()
		defer rb.mu.Unlock()
		return len(rb.gained) >= len(keys)
	})
	time.Sleep(ttl / 3) // a renewal more, which must pass on none again
	rb.mu.Lock()
	if len(rb.gained) != len(keys) {
		t.Errorf("b was given %d runs in all, want each unfinished run once: %d", len(rb.gained), len(keys))
	}
	rb.mu.Unlock()
}

func TestReleaseHandsShardsOverAtOnce(t *testing.T) {
	url := newDatabase(t)
	a, b := openReplica(t, url, "a"), openReplica(t, url, "b")
	const ttl = time.Minute // expiry would take a minute: only the release can be this fast
	ra := startReplica(t, a, ttl)
	eventually(t, 5*time.Second, "a holds every shard", func() bool { return len(ra.leases.Shards()) == postgres.Shards })
	ra.stop()
	<-ra.done
	if err := ra.leases.Release(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := len(ra.leases.Shards()); n != 0 {
		t.Errorf("a still holds %d shards after releasing them", n)
	}
	rb := startReplica(t, b, ttl)
	eventually(t, 5*time.Second, "b holds every shard", func() bool { return len(rb.leases.Shards()) == postgres.Shards })
}

func TestLeasesNeedAReplicaName(t *testing.T) {
	if _, err := open(t, newDatabase(t)).Leases(postgres.LeaseOptions{}); err == nil {
		t.Error("a store opened without a replica name gave leases")
	}
	if _, err := postgres.Open(t.Context(), postgres.Options{URL: newDatabase(t), Replica: "a b"}); err == nil {
		t.Error("a replica name with a space was accepted")
	}
}

// newRun is a run that has not started, in namespace default.
func newRun(name string) *engine.Run {
	obj := &v1alpha1.WorkflowRun{}
	obj.Namespace, obj.Name = "default", name
	return &engine.Run{Object: obj}
}

// A replica restarted under the same name renews the leases it held, and takes up their
// runs: to the new process they are new.
func TestARestartUnderTheSameNameTakesUpItsRuns(t *testing.T) {
	url := newDatabase(t)
	a := openReplica(t, url, "a")
	run := newRun("pending")
	if err := a.Create(t.Context(), run, store.CreateNew); err != nil {
		t.Fatal(err)
	}
	first := startReplica(t, a, time.Minute)
	eventually(t, 5*time.Second, "a holds every shard", func() bool { return len(first.leases.Shards()) == postgres.Shards })
	first.stop()
	<-first.done
	again := startReplica(t, openReplica(t, url, "a"), time.Minute)
	eventually(t, 5*time.Second, "the restarted a takes up the run", func() bool {
		again.mu.Lock()
		defer again.mu.Unlock()
		return len(again.gained) == 1 && again.gained[0] == run.Key()
	})
}

// A replica whose renewals stall (here: its database locked) stops owning its shards before
// their leases can expire in the database, and is told so; once it renews, it takes their
// runs up again.
func TestLeasesLapseWhenRenewalsStall(t *testing.T) {
	url := newDatabase(t)
	a := openReplica(t, url, "a")
	run := newRun("pending")
	if err := a.Create(t.Context(), run, store.CreateNew); err != nil {
		t.Fatal(err)
	}
	const ttl = time.Second
	ra := startReplica(t, a, ttl)
	eventually(t, 5*time.Second, "a holds every shard", func() bool { return len(ra.leases.Shards()) == postgres.Shards })
	eventually(t, 5*time.Second, "a takes the run up", func() bool {
		ra.mu.Lock()
		defer ra.mu.Unlock()
		return len(ra.gained) == 1
	})

	// Another session locks the table of replicas: a's next heartbeat waits on it.
	locker, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = locker.Close(context.WithoutCancel(t.Context())) }()
	tx, err := locker.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(t.Context()) }()
	if _, err := tx.Exec(t.Context(), `LOCK TABLE replicas IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	eventually(t, 3*ttl, "a's leases lapse", func() bool {
		ra.mu.Lock()
		defer ra.mu.Unlock()
		return ra.lost == 1
	})
	// Before another replica could take them: the leases had not expired in the database.
	var expires time.Time
	if err := locker.QueryRow(t.Context(), `SELECT min(expires) FROM leases WHERE owner = 'a'`).Scan(&expires); err != nil {
		t.Fatal(err)
	}
	ra.mu.Lock()
	if ra.owned[0] != 0 {
		t.Errorf("a was told it lost its shards while it still held %d", ra.owned[0])
	}
	if !ra.lostAt.Before(expires) {
		t.Errorf("a stopped owning its shards at %s, not before their leases expired in the database (%s)", ra.lostAt.Format(time.StampMicro), expires.Format(time.StampMicro))
	}
	ra.mu.Unlock()
	if ra.leases.Owns(run.Key()) {
		t.Error("a still owns the run after its leases lapsed")
	}

	if err := tx.Rollback(t.Context()); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "a renews and takes the run up again", func() bool {
		ra.mu.Lock()
		defer ra.mu.Unlock()
		return len(ra.gained) == 2 && ra.gained[1] == run.Key()
	})
	if !ra.leases.Owns(run.Key()) {
		t.Error("a does not own the run after renewing")
	}
}
