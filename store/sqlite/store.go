// Package sqlite keeps stepflow's state in one SQLite file: the runs (an engine.Store), their
// logs, and the step definitions and Workflow templates applied to it.
//
// Every write goes through one writer goroutine per Store that commits whatever writes are
// waiting in one transaction (group commit): many concurrent Saves cost one fsync, and each is
// durable when it returns. The file is in WAL mode, so reads do not wait for writes, and
// several Stores (in one process or in several) may open the same file: SQLite's locks
// serialize their writes and every Save checks the stored version inside its transaction.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/store"
)

// ErrClosed is returned, wrapped, by a write on a Store that has been closed.
var ErrClosed = errors.New("store closed")

// Options configure a Store. Path is required; the zero value of every other field works.
type Options struct {
	// Path is the database file, created if missing (with FileMode; SQLite gives its -wal and
	// -shm files the same). Its directory must exist.
	Path string
	// Synchronous is SQLite's synchronous setting: "" or "FULL" make every write reach the
	// disk before it returns; "NORMAL" keeps writes across a crash of the process but may lose
	// the last ones in a power cut; "OFF" leaves flushing to the operating system.
	Synchronous string
	// BusyTimeout is how long a write waits for another process holding the file's write
	// lock before it fails; zero means 10 seconds.
	BusyTimeout time.Duration
}

// maxReaders bounds the connections that serve reads; SQLite in WAL mode reads in parallel,
// and each connection keeps its own page cache.
const maxReaders = 4

// Store is a SQLite database holding runs, logs, definitions and Workflows. It implements
// engine.Store. Open starts its writer; Close stops it. Its methods may be called concurrently.
type Store struct {
	path string
	db   *sql.DB
	load *sql.Stmt
	w    *writer
}

var _ engine.Store = (*Store)(nil)

// Open opens (creating if needed) the database at opts.Path, brings its schema up to date,
// and starts the writer goroutine, which runs until Close.
func Open(ctx context.Context, opts Options) (*Store, error) {
	if opts.Path == "" {
		return nil, errors.New("open store: Options.Path is empty")
	}
	dsn, err := dataSource(opts)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", opts.Path, err)
	}
	// Created here rather than by SQLite, which would make it readable by everyone.
	if _, err := createPrivate(opts.Path); err != nil {
		return nil, fmt.Errorf("open store %s: %w", opts.Path, err)
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", opts.Path, err)
	}
	db.SetMaxOpenConns(maxReaders + 1) // one is the writer's for the Store's lifetime
	db.SetMaxIdleConns(maxReaders + 1)
	db.SetConnMaxIdleTime(0)
	s := &Store{path: opts.Path, db: db}
	if err := s.open(ctx); err != nil {
		_ = db.Close()
		return nil, err
	}
	return s, nil
}

func (s *Store) open(ctx context.Context) error {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("open store %s: %w", s.path, err)
	}
	if err := migrate(ctx, conn, s.path); err != nil {
		_ = conn.Close()
		return err
	}
	w, err := newWriter(ctx, conn)
	if err != nil {
		_ = conn.Close()
		return fmt.Errorf("open store %s: %w", s.path, err)
	}
	s.load, err = s.db.PrepareContext(ctx, `SELECT version, data FROM runs WHERE namespace = ? AND name = ?`)
	if err != nil {
		w.close()
		return fmt.Errorf("open store %s: prepare: %w", s.path, err)
	}
	s.w = w
	// The writer outlives Open; it stops when the store is closed.
	go w.loop() //nolint:contextcheck // a transaction commits the writes of many callers, so none of their contexts may end it
	return nil
}

// dataSource is the driver's name for the file with the connection settings every
// connection applies when it opens.
func dataSource(opts Options) (string, error) {
	syncMode := strings.ToUpper(opts.Synchronous)
	switch syncMode {
	case "":
		syncMode = "FULL"
	case "FULL", "NORMAL", "OFF":
	default:
		return "", fmt.Errorf("synchronous %q: want FULL, NORMAL or OFF", opts.Synchronous)
	}
	busy := opts.BusyTimeout
	if busy == 0 {
		busy = 10 * time.Second
	}
	abs, err := filepath.Abs(opts.Path)
	if err != nil {
		return "", err
	}
	q := url.Values{}
	q.Set("_busy_timeout", strconv.FormatInt(busy.Milliseconds(), 10))
	q.Set("_journal_mode", "WAL")
	q.Set("_synchronous", syncMode)
	// A file: URI keeps a '?' or '#' in the path from being read as parameters.
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(abs), RawQuery: q.Encode()}
	return u.String(), nil
}

// Close waits for the writes already submitted, stops the writer and closes the database.
// Writes submitted after Close fail with ErrClosed.
func (s *Store) Close() error {
	s.w.close()
	err := s.load.Close()
	if cerr := s.db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("close store %s: %w", s.path, err)
	}
	return nil
}

// Backup writes a consistent copy of the database to path, which must not exist, while the
// store goes on being used: SQLite's VACUUM INTO reads one snapshot. The copy is a database
// file that Open opens as it is (restoring is putting it in the place of stepflow.db while no
// process has the store open), readable by its owner only (FileMode).
func (s *Store) Backup(ctx context.Context, path string) error {
	// Created empty first, which VACUUM INTO accepts: it would make it readable by everyone.
	created, err := createPrivate(path)
	if err != nil {
		return fmt.Errorf("back up to %s: %w", path, err)
	}
	if !created {
		return fmt.Errorf("back up to %s: the file exists", path)
	}
	if _, err := s.db.ExecContext(ctx, `VACUUM INTO ?`, path); err != nil {
		_ = os.Remove(path)
		return fmt.Errorf("back up to %s: %w", path, err)
	}
	return nil
}

// dialect is how SQLite writes the queries the SQL stores share: ? parameters, start_time
// in Unix nanoseconds with 0 for unset, and -1 for no limit.
var dialect = store.Dialect{
	Param:     func(int) string { return "?" },
	StartTime: func(t time.Time) any { return boundNano(t) },
	Started:   "start_time <> 0",
	Ended:     "CASE WHEN end_time <> 0 THEN end_time ELSE created END",
	NoLimit:   -1,
}

// query is queryAll on the store with read, as the shared queries of package store take it.
func query[T any](ctx context.Context, s *Store, read func(store.Scanner) (T, error)) store.Query[T] {
	return func(q string, args ...any) ([]T, error) { return queryAll(ctx, s, read, q, args...) }
}

// queryAll runs query and reads each row of its result with read, in order.
func queryAll[T any](ctx context.Context, s *Store, read func(store.Scanner) (T, error), query string, args ...any) ([]T, error) {
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		x, err := read(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, x)
	}
	return out, rows.Err()
}
