package sqlite

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/store"
)

// ServerLeases are the Leases of a server on the embedded store (stepflow server on a data
// directory): the server drives the runs no other process holds, as the CLI's processes do,
// so that a `stepflow run`, `resume` or `recover` on the same directory and the server never
// drive one run at once. SQLite tells no process of another's writes, so it looks for them:
// every third of the lease TTL it renews the leases held and lists the unfinished runs, hands
// on those it has not seen (to be claimed, unless another process holds them) and reports
// those another process changed (an operation written by the CLI, say). It implements the
// server's Replicas and, to tell its own writes from others', engine.Observer.
type ServerLeases struct {
	*Leases

	log *slog.Logger

	mu       sync.Mutex
	wrote    map[engine.Key]int64 // the version this process last wrote of each unfinished run
	finished []engine.Key         // runs that finished since the last look: their leases go
}

// ServerLeases returns the leases of this store for a server, holder and TTL as in opts;
// what goes wrong looking for other processes' runs is logged to log (nil: discarded).
func (s *Store) ServerLeases(opts LeaseOptions, log *slog.Logger) (*ServerLeases, error) {
	l, err := s.Leases(opts)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &ServerLeases{Leases: l, log: log, wrote: map[engine.Key]int64{}}, nil
}

var _ engine.Observer = (*ServerLeases)(nil)

// RunChanged implements engine.Observer: it notes the version this process wrote, and stops
// renewing the lease of a run that finished (it lapses: nothing is left to drive).
func (l *ServerLeases) RunChanged(run *engine.Run) {
	key := run.Key()
	l.mu.Lock()
	if run.Object.Status.Finished {
		delete(l.wrote, key)
		l.finished = append(l.finished, key)
	} else {
		l.wrote[key] = run.Version
	}
	l.mu.Unlock()
	if run.Object.Status.Finished {
		l.drop(key)
	}
}

// Run holds the server's runs until ctx ends: gained is called with the unfinished runs this
// process does not hold (the engine claims each as it takes it up, unless another process
// holds it: then again at the next look, so that a run left by a process that stopped is taken
// up), lost when a lease was taken by another
// process while this one stalled, and changed with each run another process wrote.
func (l *ServerLeases) Run(ctx context.Context, gained func([]engine.Key), lost func(), changed func(store.Change)) error {
	seen := map[engine.Key]int64{}
	every := l.ttl / 3
	for {
		if err := l.look(ctx, seen, gained, changed); err != nil && ctx.Err() == nil {
			l.log.Warn("look for the runs of other processes", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(every):
		}
		if gone := l.renew(ctx); len(gone) > 0 {
			lost()
		}
		l.mu.Lock()
		done := l.finished
		l.finished = nil
		l.mu.Unlock()
		if err := l.release(ctx, done); err != nil && ctx.Err() == nil {
			l.log.Warn("drop the leases of finished runs", "err", err)
		}
	}
}

// Sweeps implements the server's Replicas: the server deletes every finished run past its
// retention (the delete is conditional on the version it read, so a process deleting at once
// does no harm).
func (l *ServerLeases) Sweeps(engine.Key) bool { return true }

// look lists the unfinished runs and their versions against seen, the versions found by
// the last look, and updates it.
func (l *ServerLeases) look(ctx context.Context, seen map[engine.Key]int64, gained func([]engine.Key), changed func(store.Change)) error {
	rows, err := l.st.db.QueryContext(ctx, `SELECT namespace, name, version FROM runs WHERE phase NOT IN (?, ?, ?)`,
		string(v1alpha1.RunSucceeded), string(v1alpha1.RunFailed), string(v1alpha1.RunTerminated))
	if err != nil {
		return fmt.Errorf("list the unfinished runs: %w", err)
	}
	defer func() { _ = rows.Close() }()
	now := map[engine.Key]int64{}
	for rows.Next() {
		var k engine.Key
		var v int64
		if err := rows.Scan(&k.Namespace, &k.Name, &v); err != nil {
			return fmt.Errorf("list the unfinished runs: %w", err)
		}
		now[k] = v
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("list the unfinished runs: %w", err)
	}
	var free []engine.Key
	var moved []store.Change
	l.mu.Lock()
	for k, v := range now {
		if old, ok := seen[k]; ok && v != old && v != l.wrote[k] {
			moved = append(moved, store.Change{Key: k, Version: v})
		}
		if !l.holds(k) {
			free = append(free, k) // new, or held by a process that may have stopped
		}
	}
	l.mu.Unlock()
	clear(seen)
	maps.Copy(seen, now)
	if len(free) > 0 {
		gained(free)
	}
	for _, c := range moved {
		changed(c)
	}
	return nil
}
