// Package postgres keeps stepflow's state in a PostgreSQL database: the runs (an
// engine.Store), their logs, and the step definitions and Workflow templates applied to it.
// It offers the methods of the embedded store (store/sqlite), with the same types for List,
// so that a command serves either.
//
// Every Save is one statement, and so one transaction: it updates the run's row where the
// version is the one the caller loaded, and appends the log entries only if it did. Any
// number of Stores, in any number of processes, may share a database; PostgreSQL's row
// locks order their writes, and a write that lost the race to another finds the version
// moved and fails with engine.ErrConflict.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/store"
)

// Options configure a Store. URL is required; the zero value of every other field works.
type Options struct {
	// URL says where the database is and how to log in, as a URL
	// (postgres://user:password@host:5432/stepflow?sslmode=verify-full) or as key=value
	// pairs (host=... dbname=...); the PG* environment variables fill in what it leaves out.
	// Tables are made in the connection's current schema: set search_path in it
	// (?search_path=stepflow) to keep them apart from others.
	URL string
	// MaxConns bounds the connections the Store keeps open; zero means pgx's default, the
	// larger of 4 and the number of CPUs.
	MaxConns int32
	// Replica, when set, names this process among the servers sharing the database: every
	// write of a run then notifies the others (Leases), naming this replica as its origin.
	// A name holds no spaces.
	Replica string
}

// Store is a PostgreSQL database holding runs, logs, definitions and Workflows. It
// implements engine.Store. Its methods may be called concurrently; Close it when done.
type Store struct {
	pool *pgxpool.Pool
	// replica is Options.Replica; saveNew and saveLoaded are Save's statements, notifying
	// when replica is set.
	replica             string
	saveNew, saveLoaded string
}

var _ engine.Store = (*Store)(nil)

// Open connects to the database at opts.URL and brings its schema up to date.
func Open(ctx context.Context, opts Options) (*Store, error) {
	if opts.URL == "" {
		return nil, errors.New("open store: Options.URL is empty")
	}
	cfg, err := pgxpool.ParseConfig(opts.URL)
	if err != nil {
		// pgx's message does not repeat the URL, which may hold a password.
		return nil, fmt.Errorf("open store: %w", err)
	}
	if opts.MaxConns < 0 {
		return nil, fmt.Errorf("open store: negative MaxConns %d", opts.MaxConns)
	}
	if opts.MaxConns > 0 {
		cfg.MaxConns = opts.MaxConns
	}
	if strings.ContainsAny(opts.Replica, " \t\n") {
		return nil, fmt.Errorf("open store: replica name %q holds a space", opts.Replica)
	}
	where := fmt.Sprintf("%s:%d/%s", cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", where, err)
	}
	if err := migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open store %s: %w", where, err)
	}
	notify := opts.Replica != ""
	return &Store{pool: pool, replica: opts.Replica,
		saveNew: saveStatement(saveNew, notify), saveLoaded: saveStatement(saveLoaded, notify)}, nil
}

// Close waits for the queries in flight and closes the connections. It returns an error
// only to be an io.Closer: closing always succeeds.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

// dialect is how PostgreSQL writes the queries the SQL stores share: $n parameters,
// start_time a timestamptz with NULL for unset, and NULL for no limit.
var dialect = store.Dialect{
	Param:     func(n int) string { return "$" + strconv.Itoa(n) },
	StartTime: func(t time.Time) any { return t },
	Ended:     "coalesce(end_time, to_timestamp(created::float8 / 1e9))",
	NoLimit:   nil,
}

// query is queryAll on the store with read, as the shared queries of package store take it.
func query[T any](ctx context.Context, s *Store, read func(store.Scanner) (T, error)) store.Query[T] {
	return func(q string, args ...any) ([]T, error) { return queryAll(ctx, s, read, q, args...) }
}

// queryAll runs query and reads each row of its result with read, in order.
func queryAll[T any](ctx context.Context, s *Store, read func(store.Scanner) (T, error), query string, args ...any) ([]T, error) {
	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (T, error) { return read(row) })
}
