package postgres

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/store"
)

// runsChannel is the PostgreSQL notification channel of run writes. A payload is
// "REPLICA VERSION NAMESPACE/NAME": the replica that wrote, and the run's new version, or
// store.Nudge or store.Deleted.
const runsChannel = "stepflow_runs"

// Shards is how many parts the runs are divided into for leases; a replica drives the runs
// of the shards it holds.
const Shards = 64

// Shard returns the shard of a run: FNV-1a of "namespace/name", modulo Shards.
func Shard(key engine.Key) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key.Namespace))
	_, _ = h.Write([]byte{'/'})
	_, _ = h.Write([]byte(key.Name))
	return int(h.Sum32() % Shards)
}

// notify tells the other replicas that this one wrote the run at version (or store.Nudge,
// or store.Deleted). It does nothing for a store that is not a replica's. It is best effort: a
// lost notification delays the owner until it next looks at the run (a timer, a step's result,
// or a renewal after the listening connection broke), and a follower elsewhere until the next.
func (s *Store) notify(ctx context.Context, version int64, key engine.Key) {
	if s.replica == "" {
		return
	}
	_, _ = s.pool.Exec(ctx, `SELECT pg_notify($1, $2)`, runsChannel, s.replica+" "+strconv.FormatInt(version, 10)+" "+key.String())
}

// LeaseOptions configure Leases.
type LeaseOptions struct {
	// TTL is how long a lease lasts unrenewed: a replica that stops is replaced within it.
	// Leases are renewed three times per TTL. Default 10 seconds.
	TTL    time.Duration
	Logger *slog.Logger
}

// Leases divides the runs of a store among the server replicas sharing it. The runs fall
// into Shards shards; each replica holds leases on about an equal share of them in the
// database, renews them, gives up its extra ones when another replica joins, and takes
// those of a replica that stopped renewing once they expire. It implements engine.Owner:
// a replica's engine advances only the runs of its shards, and hands the others to their
// owners through a notification. Every write of a run is notified (Options.Replica), so an
// owner hears at once of a run another replica created or operated on.
type Leases struct {
	store *Store
	ttl   time.Duration
	log   *slog.Logger

	mu    sync.Mutex
	owned [Shards]bool
	// valid is when the owned shards stop being this replica's unless renewed: a quarter of
	// the TTL before the database's expiry could pass (the local clock, from before the
	// renewal was sent), so that what this replica began while it held them has that long
	// to end before another may take them.
	valid time.Time

	// untaken are shards held whose runs are new to this process and not yet passed to
	// gained (also when the renewal that held them failed before it could).
	untaken []int
}

var _ engine.Owner = (*Leases)(nil)

// Leases returns the leases of this replica; the store must have been opened with a Replica
// name.
func (s *Store) Leases(opts LeaseOptions) (*Leases, error) {
	if s.replica == "" {
		return nil, errors.New("leases: the store was opened without a replica name")
	}
	if opts.TTL <= 0 {
		opts.TTL = 10 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Leases{store: s, ttl: opts.TTL, log: opts.Logger}, nil
}

// Owns reports whether this replica holds the lease of the run's shard now.
func (l *Leases) Owns(key engine.Key) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.owned[Shard(key)] && time.Now().Before(l.valid)
}

// Elsewhere nudges the owner of a run this replica does not own.
func (l *Leases) Elsewhere(ctx context.Context, key engine.Key) {
	l.store.notify(ctx, store.Nudge, key)
}

// Shards returns the shards this replica holds.
func (l *Leases) Shards() []int {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []int
	if time.Now().Before(l.valid) {
		for i, ok := range l.owned {
			if ok {
				out = append(out, i)
			}
		}
	}
	return out
}

// Run holds this replica's leases until ctx ends. gained is called with the unfinished runs
// of the shards it takes (also of all its shards after its notifications were interrupted,
// which may have lost some, or its leases lapsed); lost when it stops holding some shards,
// given up to a replica that joined or lapsed unrenewed, once Owns says so, before another
// replica can take them; changed with each write of a run by another replica. They are
// called from Run's goroutines: gained and changed one call at a time each, lost from either
// of two.
func (l *Leases) Run(ctx context.Context, gained func([]engine.Key), lost func(), changed func(store.Change)) error {
	conn, err := l.listen(ctx)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	wg.Go(func() { l.hear(ctx, conn, gained, changed) })
	wg.Go(func() { l.watch(ctx, lost) })
	defer wg.Wait()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
		next, err := l.renew(ctx, gained, lost)
		if err != nil && ctx.Err() == nil {
			l.log.Error("renew leases", "err", err)
			next = time.Second
		}
		timer.Reset(next)
	}
}

// watch calls lost when the leases lapse unrenewed (a renewal stuck on the database, or
// failing), at the moment Owns stops answering yes for them, until ctx ends.
func (l *Leases) watch(ctx context.Context, lost func()) {
	for {
		l.mu.Lock()
		wait := time.Until(l.valid)
		l.mu.Unlock()
		if wait <= 0 {
			if l.lapsed() {
				lost()
			}
			wait = l.ttl / 10 // until a renewal holds shards again
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// lapsed drops the shards whose leases were not renewed in time and reports whether there
// were any. The next renewal takes their runs up again, as if new.
func (l *Leases) lapsed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if time.Now().Before(l.valid) || l.owned == [Shards]bool{} {
		return false
	}
	l.owned = [Shards]bool{}
	l.log.Warn("leases lapsed unrenewed: their runs are left to whichever replica renews first")
	return true
}

// listen takes a connection of its own out of the pool and listens on it.
func (l *Leases) listen(ctx context.Context) (*pgx.Conn, error) {
	c, err := l.store.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("leases: listen: %w", err)
	}
	conn := c.Hijack()
	if _, err := conn.Exec(ctx, `LISTEN `+runsChannel); err != nil {
		_ = conn.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("leases: listen: %w", err)
	}
	return conn, nil
}

// hear passes other replicas' notifications to changed until ctx ends, listening again when
// the connection breaks; notifications sent meanwhile are lost, so the runs of the shards it
// holds are passed to gained again then.
func (l *Leases) hear(ctx context.Context, conn *pgx.Conn, gained func([]engine.Key), changed func(store.Change)) {
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			l.log.Error("leases: notifications interrupted", "err", err)
			_ = conn.Close(ctx)
			for conn, err = l.listen(ctx); err != nil; conn, err = l.listen(ctx) {
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Second):
				}
			}
			if keys, err := l.unfinished(ctx, l.Shards()); err == nil {
				gained(keys)
			}
			continue
		}
		if c, ok := l.parse(n.Payload); ok {
			changed(c)
		}
	}
}

// parse reads a notification's payload, dropping this replica's own.
func (l *Leases) parse(payload string) (store.Change, bool) {
	parts := strings.SplitN(payload, " ", 3)
	if len(parts) != 3 || parts[0] == l.store.replica {
		return store.Change{}, false
	}
	version, err := strconv.ParseInt(parts[1], 10, 64)
	ns, name, ok := strings.Cut(parts[2], "/")
	if err != nil || !ok {
		return store.Change{}, false
	}
	return store.Change{Key: engine.Key{Namespace: ns, Name: name}, Version: version}, true
}

// renew records this replica as alive, renews its leases, gives up those beyond its share or
// takes free and expired ones, and returns when to renew next: a third of the TTL, or sooner
// when another replica's lease expires before that.
func (l *Leases) renew(ctx context.Context, gained func([]engine.Key), lost func()) (time.Duration, error) {
	sent := time.Now()
	db, me, ttl := l.store.pool, l.store.replica, l.ttl.Seconds()
	if _, err := db.Exec(ctx, `INSERT INTO replicas (id, seen) VALUES ($1, now())
		ON CONFLICT (id) DO UPDATE SET seen = now()`, me); err != nil {
		return 0, fmt.Errorf("heartbeat: %w", err)
	}
	var live int
	if err := db.QueryRow(ctx, `SELECT count(*) FROM replicas WHERE seen > now() - make_interval(secs => $1)`, ttl).Scan(&live); err != nil {
		return 0, fmt.Errorf("count replicas: %w", err)
	}
	mine, err := shards(db.Query(ctx, `UPDATE leases SET expires = now() + make_interval(secs => $2)
		WHERE owner = $1 RETURNING shard`, me, ttl))
	if err != nil {
		return 0, fmt.Errorf("renew: %w", err)
	}
	share := (Shards + max(live, 1) - 1) / max(live, 1)
	if len(mine) > share {
		// Another replica joined: give it the extra shards, stopping work on them first.
		slices.Sort(mine)
		extra := mine[share:]
		if l.hold(mine[:share], sent) {
			lost()
		}
		if _, err := db.Exec(ctx, `DELETE FROM leases WHERE owner = $1 AND shard = ANY($2)`, me, extra); err != nil {
			return 0, fmt.Errorf("give up leases: %w", err)
		}
	} else {
		// Expired leases are taken whatever the share, so that a stopped replica's runs move
		// at once; free shards only up to the share.
		expired, err := shards(db.Query(ctx, `UPDATE leases SET owner = $1, expires = now() + make_interval(secs => $2)
			WHERE expires <= now() RETURNING shard`, me, ttl))
		if err != nil {
			return 0, fmt.Errorf("take expired leases: %w", err)
		}
		held := append(slices.Clone(mine), expired...)
		if need := share - len(held); need > 0 {
			free, err := shards(db.Query(ctx, `INSERT INTO leases (shard, owner, expires)
				SELECT s, $1, now() + make_interval(secs => $2) FROM generate_series(0, $3 - 1) AS s
				WHERE NOT EXISTS (SELECT 1 FROM leases l WHERE l.shard = s)
				ORDER BY random() LIMIT $4
				ON CONFLICT (shard) DO NOTHING RETURNING shard`, me, ttl, Shards, need))
			if err != nil {
				return 0, fmt.Errorf("take free leases: %w", err)
			}
			held = append(held, free...)
		}
		if l.hold(held, sent) {
			lost() // leases this replica held were taken as expired by another
		}
	}
	if _, err := db.Exec(ctx, `DELETE FROM replicas WHERE seen < now() - make_interval(secs => $1)`, 10*ttl); err != nil {
		return 0, fmt.Errorf("forget stopped replicas: %w", err)
	}
	l.mu.Lock()
	took := slices.Clone(l.untaken) // not aliased: the DeleteFunc below compacts untaken in place
	l.mu.Unlock()
	if len(took) > 0 {
		keys, err := l.unfinished(ctx, took)
		if err != nil {
			return 0, err
		}
		l.log.Info("took leases", "shards", len(took), "runs", len(keys))
		l.mu.Lock()
		l.untaken = slices.DeleteFunc(l.untaken, func(s int) bool { return slices.Contains(took, s) })
		l.mu.Unlock()
		gained(keys)
	}
	next := l.ttl / 3
	var soonest *float64
	if err := db.QueryRow(ctx, `SELECT extract(epoch FROM min(expires) - now())::float8 FROM leases WHERE owner <> $1`, me).Scan(&soonest); err != nil {
		return 0, fmt.Errorf("read leases: %w", err)
	}
	if soonest != nil {
		// Just after the soonest expiry, so that its runs move within the TTL.
		next = min(next, max(time.Duration(*soonest*float64(time.Second))+10*time.Millisecond, 10*time.Millisecond))
	}
	return next, nil
}

// hold records the shards this replica holds from now on, valid until a quarter of the TTL
// before the database's expiry, and reports whether it held shards until now that it holds no
// more. The shards whose runs are new to this process are added to untaken, to be taken up:
// those it did not hold, or held only until they lapsed (Owns said no meanwhile, so their
// runs may have been dropped).
func (l *Leases) hold(held []int, sent time.Time) (dropped bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	was := l.owned
	active := was
	if !time.Now().Before(l.valid) {
		active = [Shards]bool{}
	}
	l.owned = [Shards]bool{}
	for _, s := range held {
		if s >= 0 && s < Shards && !l.owned[s] {
			l.owned[s] = true
			if !active[s] && !slices.Contains(l.untaken, s) {
				l.untaken = append(l.untaken, s)
			}
		}
	}
	for s := range was {
		dropped = dropped || was[s] && !l.owned[s]
	}
	l.untaken = slices.DeleteFunc(l.untaken, func(s int) bool { return !l.owned[s] })
	l.valid = sent.Add(l.ttl - l.ttl/4)
	return dropped
}

// unfinished returns the runs of the shards that have not finished.
func (l *Leases) unfinished(ctx context.Context, of []int) ([]engine.Key, error) {
	if len(of) == 0 {
		return nil, nil
	}
	want := map[int]bool{}
	for _, s := range of {
		want[s] = true
	}
	rows, err := l.store.pool.Query(ctx, `SELECT namespace, name FROM runs WHERE phase NOT IN ($1, $2, $3)`,
		string(v1alpha1.RunSucceeded), string(v1alpha1.RunFailed), string(v1alpha1.RunTerminated))
	if err != nil {
		return nil, fmt.Errorf("leases: list unfinished runs: %w", err)
	}
	var keys []engine.Key
	for rows.Next() {
		var k engine.Key
		if err := rows.Scan(&k.Namespace, &k.Name); err != nil {
			return nil, fmt.Errorf("leases: list unfinished runs: %w", err)
		}
		if want[Shard(k)] {
			keys = append(keys, k)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("leases: list unfinished runs: %w", err)
	}
	return keys, nil
}

// Sweeps reports whether this replica deletes the finished run key when its retention has
// passed: the replica owning it, so that each run is deleted by one.
func (l *Leases) Sweeps(key engine.Key) bool { return l.Owns(key) }

// Release gives up this replica's leases and its place among the replicas, so that the
// others take its runs at once rather than when the leases expire. Call it once the engine
// has stopped.
func (l *Leases) Release(ctx context.Context) error {
	l.hold(nil, time.Time{})
	db, me := l.store.pool, l.store.replica
	if _, err := db.Exec(ctx, `DELETE FROM leases WHERE owner = $1`, me); err != nil {
		return fmt.Errorf("release leases: %w", err)
	}
	if _, err := db.Exec(ctx, `DELETE FROM replicas WHERE id = $1`, me); err != nil {
		return fmt.Errorf("release leases: %w", err)
	}
	return nil
}

// shards reads a column of shard numbers.
func shards(rows pgx.Rows, err error) ([]int, error) {
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[int])
}
