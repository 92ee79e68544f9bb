package sqlite

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/stepflow/stepflow/engine"
)

// DefaultLeaseTTL is how long a lease lasts when its holder stops renewing it without
// dying visibly (a process stopped, or on another host).
const DefaultLeaseTTL = 15 * time.Second

// Holder is a process that may hold leases: its host, its pid, and a token that tells it from a
// later process given the same pid (on Linux its start time, else a random value).
type Holder struct {
	Host  string
	PID   int
	Token string
}

// String names the holder for people: "process 1234 on build-7".
func (h Holder) String() string { return fmt.Sprintf("process %d on %s", h.PID, h.Host) }

// ThisProcess is the Holder of the calling process.
func ThisProcess() (Holder, error) {
	host, err := os.Hostname()
	if err != nil {
		return Holder{}, fmt.Errorf("this process's lease holder: %w", err)
	}
	h := Holder{Host: host, PID: os.Getpid()}
	if start, _, err := procStat(h.PID); err == nil {
		h.Token = "start:" + start
		return h, nil
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b) // never fails
	h.Token = "rand:" + hex.EncodeToString(b)
	return h, nil
}

// procStat reads a process's start time (in clock ticks since boot) and state from
// /proc/PID/stat; it fails where there is no /proc or no such process.
func procStat(pid int) (start string, state byte, err error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", 0, err
	}
	// The command name, field 2, is in parentheses and may hold anything: the fields after
	// it are counted from its last ')'. state is field 3, starttime field 22.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return "", 0, errors.New("unreadable /proc stat")
	}
	fields := bytes.Fields(data[i+1:])
	if len(fields) < 20 || len(fields[0]) != 1 {
		return "", 0, errors.New("unreadable /proc stat")
	}
	return string(fields[19]), fields[0][0], nil
}

// processAlive reports whether h, a process on this host, still runs: false when its pid is
// gone, a zombie, or a later process's (another start time). Without /proc it cannot tell,
// and says true: the lease then lapses only when it expires.
func processAlive(h Holder) bool {
	start, state, err := procStat(h.PID)
	if errors.Is(err, os.ErrNotExist) {
		if _, serr := os.Stat("/proc/self/stat"); serr == nil {
			return false // there is a /proc, and no such process in it
		}
		return true
	}
	if err != nil {
		return true
	}
	if state == 'Z' || state == 'X' {
		return false
	}
	if tok, ok := strings.CutPrefix(h.Token, "start:"); ok {
		return tok == start
	}
	return true
}

// LeaseOptions configure Leases; the zero value works.
type LeaseOptions struct {
	// Holder is who takes the leases; zero means ThisProcess.
	Holder Holder
	// TTL is how long a lease lasts unless renewed; zero means DefaultLeaseTTL.
	TTL time.Duration
	// Alive reports whether a holder on this host still runs; nil means by /proc.
	Alive func(Holder) bool
}

// Leases divide the runs of one store among the processes sharing it (the CLI's processes
// on one data directory), so that one at a time drives a run. It implements engine.Owner: a
// process owns a run it holds the lease of, until a quarter of the TTL before the lease could
// expire, and claims a run it does not hold when the engine first asks. A lease is taken when
// no one holds it, when it has expired, or when its holder is a process of this host that no
// longer runs (a process killed leaves its runs to the next at once). Keep renews the leases
// held; Release gives them up.
type Leases struct {
	st    *Store
	me    Holder
	ttl   time.Duration
	alive func(Holder) bool

	mu   sync.Mutex
	held map[engine.Key]time.Time // until when this process owns the run
}

var _ engine.Owner = (*Leases)(nil)

// Leases returns the leases of this store for the holder opts name.
func (s *Store) Leases(opts LeaseOptions) (*Leases, error) {
	l := &Leases{st: s, me: opts.Holder, ttl: opts.TTL, alive: opts.Alive, held: map[engine.Key]time.Time{}}
	if l.me == (Holder{}) {
		me, err := ThisProcess()
		if err != nil {
			return nil, err
		}
		l.me = me
	}
	if l.ttl <= 0 {
		l.ttl = DefaultLeaseTTL
	}
	if l.alive == nil {
		l.alive = processAlive
	}
	return l, nil
}

// Holder is who takes these leases.
func (l *Leases) Holder() Holder { return l.me }

// Claim takes, or renews, the lease of the run key. When another process holds it, Claim
// reports that holder and false.
func (l *Leases) Claim(ctx context.Context, key engine.Key) (Holder, bool, error) {
	now := time.Now()
	var other Holder
	taken := false
	err := l.st.w.submit(ctx, func(b *batch) error {
		var h Holder
		var expires int64
		err := b.queryRow("readLease", key.Namespace, key.Name).Scan(&h.Host, &h.PID, &h.Token, &expires)
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return fmt.Errorf("readLease: %w", err)
		case h == l.me, expires <= now.UnixNano(), h.Host == l.me.Host && !l.alive(h):
		default:
			other = h
			return nil
		}
		if _, err := b.exec("putLease", key.Namespace, key.Name, l.me.Host, l.me.PID, l.me.Token, now.Add(l.ttl).UnixNano()); err != nil {
			return err
		}
		taken = true
		return nil
	})
	if err != nil {
		return Holder{}, false, fmt.Errorf("claim run %s: %w", key, err)
	}
	if !taken {
		l.drop(key)
		return other, false, nil
	}
	l.mu.Lock()
	l.held[key] = l.until(now)
	l.mu.Unlock()
	return l.me, true, nil
}

// until is until when a lease granted or renewed at now is owned: a quarter of the TTL
// before it can expire, so that this process stops before another may start.
func (l *Leases) until(now time.Time) time.Time { return now.Add(l.ttl - l.ttl/4) }

// holds reports whether this process holds the run's lease (until a quarter of the TTL before
// it could expire).
func (l *Leases) holds(key engine.Key) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	until, ok := l.held[key]
	return ok && time.Now().Before(until)
}

func (l *Leases) drop(key engine.Key) {
	l.mu.Lock()
	delete(l.held, key)
	l.mu.Unlock()
}

// Owns implements engine.Owner: whether this process holds the run's lease, claiming it when
// it does not (a run it is asked to advance, a child run it created).
func (l *Leases) Owns(key engine.Key) bool {
	l.mu.Lock()
	until, ok := l.held[key]
	l.mu.Unlock()
	if ok && time.Now().Before(until) {
		return true
	}
	ctx, cancel := context.WithTimeout(context.Background(), l.ttl/4)
	defer cancel()
	_, ok, err := l.Claim(ctx, key)
	return err == nil && ok
}

// Elsewhere implements engine.Owner. The process holding the run drives it: there is nothing
// to hand on.
func (l *Leases) Elsewhere(context.Context, engine.Key) {}

// Keep renews the leases held every third of the TTL until ctx ends, and calls lost with
// those another process took meanwhile (this one stalled past their expiry).
func (l *Leases) Keep(ctx context.Context, lost func([]engine.Key)) {
	tick := time.NewTicker(l.ttl / 3)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if gone := l.renew(ctx); len(gone) > 0 && lost != nil {
			lost(gone)
		}
	}
}

// renew extends every lease held and returns those no longer this process's. A failed write
// renews nothing; the leases lapse unless a later renewal succeeds.
func (l *Leases) renew(ctx context.Context) []engine.Key {
	l.mu.Lock()
	keys := make([]engine.Key, 0, len(l.held))
	for k := range l.held {
		keys = append(keys, k)
	}
	l.mu.Unlock()
	if len(keys) == 0 {
		return nil
	}
	now := time.Now()
	var gone []engine.Key
	err := l.st.w.submit(ctx, func(b *batch) error {
		gone = gone[:0]
		for _, k := range keys {
			ok, err := b.changed("renewLease", now.Add(l.ttl).UnixNano(), k.Namespace, k.Name, l.me.Host, l.me.PID, l.me.Token)
			if err != nil {
				return err
			}
			if !ok {
				gone = append(gone, k)
			}
		}
		return nil
	})
	if err != nil {
		return nil
	}
	l.mu.Lock()
	for _, k := range keys {
		if _, ok := l.held[k]; ok {
			l.held[k] = l.until(now)
		}
	}
	for _, k := range gone {
		delete(l.held, k)
	}
	l.mu.Unlock()
	return gone
}

// Release gives up every lease held, so that other processes take the runs at once. Call it
// once this process advances them no more.
func (l *Leases) Release(ctx context.Context) error {
	l.mu.Lock()
	keys := make([]engine.Key, 0, len(l.held))
	for k := range l.held {
		keys = append(keys, k)
	}
	clear(l.held)
	l.mu.Unlock()
	return l.release(ctx, keys)
}

// release deletes the lease rows of keys that are this process's, in one transaction.
func (l *Leases) release(ctx context.Context, keys []engine.Key) error {
	if len(keys) == 0 {
		return nil
	}
	err := l.st.w.submit(ctx, func(b *batch) error {
		for _, k := range keys {
			if _, err := b.exec("dropLease", k.Namespace, k.Name, l.me.Host, l.me.PID, l.me.Token); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("release leases: %w", err)
	}
	return nil
}
