package sqlite

import (
	"context"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stepflow/stepflow/engine"
)

// TestLeases has two stores on one file, as two processes on one data directory, claim a run:
// one holds it, the other is told who; a holder that is gone or expired is replaced at once;
// a holder whose lease another took learns it when it renews; a released run is free.
func TestLeases(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "stepflow.db")
	open := func() *Store {
		st, err := Open(ctx, Options{Path: path})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		return st
	}
	leases := func(st *Store, opts LeaseOptions) *Leases {
		l, err := st.Leases(opts)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	me, err := ThisProcess()
	if err != nil {
		t.Fatal(err)
	}
	// A process of this host that has exited: its pid is gone.
	done := exec.CommandContext(t.Context(), "true")
	if err := done.Run(); err != nil {
		t.Fatal(err)
	}
	gone := Holder{Host: me.Host, PID: done.Process.Pid, Token: "start:1"}
	other := Holder{Host: me.Host, PID: me.PID, Token: "start:other"} // alive by the fake below
	alive := func(h Holder) bool { return h != gone }

	a := leases(open(), LeaseOptions{Holder: me})
	b := leases(open(), LeaseOptions{Holder: other, Alive: alive})
	key := engine.Key{Namespace: "default", Name: "r"}

	if h, ok, err := a.Claim(ctx, key); err != nil || !ok || h != me {
		t.Fatalf("first claim = %v, %v, %v; want it taken", h, ok, err)
	}
	if !a.Owns(key) {
		t.Error("the holder does not own its run")
	}
	if h, ok, err := b.Claim(ctx, key); err != nil || ok || h != me {
		t.Fatalf("claim of a held run = %v, %v, %v; want refused, naming %v", h, ok, err, me)
	}
	if b.Owns(key) {
		t.Error("a process owns a run another holds")
	}
	if err := a.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if !b.Owns(key) {
		t.Fatal("a released run is not taken")
	}
	if gone := a.renew(ctx); len(gone) != 0 {
		t.Errorf("renewing nothing lost %v", gone)
	}

	// A dead holder's run is taken at once, by the real check of /proc.
	c := leases(open(), LeaseOptions{Holder: gone, TTL: time.Hour})
	if err := c.Release(ctx); err != nil {
		t.Fatal(err)
	}
	key2 := engine.Key{Namespace: "default", Name: "dead"}
	if _, ok, err := c.Claim(ctx, key2); err != nil || !ok {
		t.Fatalf("claim = %v, %v", ok, err)
	}
	if h, ok, err := a.Claim(ctx, key2); err != nil || !ok {
		t.Fatalf("claim of a run held by exited pid %d = %v, %v, %v; want it taken", gone.PID, h, ok, err)
	}
	if lost := c.renew(ctx); len(lost) != 1 || lost[0] != key2 {
		t.Errorf("the former holder's renewal lost %v, want [%v]", lost, key2)
	}
	if c.Owns(key2) {
		t.Error("the former holder still owns the run")
	}

	// An expired lease is taken whoever holds it.
	d := leases(open(), LeaseOptions{Holder: other, Alive: alive, TTL: time.Millisecond})
	key3 := engine.Key{Namespace: "default", Name: "expired"}
	if _, ok, err := d.Claim(ctx, key3); err != nil || !ok {
		t.Fatalf("claim = %v, %v", ok, err)
	}
	time.Sleep(5 * time.Millisecond)
	if _, ok, err := a.Claim(context.Background(), key3); err != nil || !ok {
		t.Fatalf("claim of an expired lease = %v, %v; want it taken", ok, err)
	}
}
