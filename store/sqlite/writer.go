package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// maxBatch bounds the writes committed in one transaction.
const maxBatch = 1024

// writer owns the Store's one write connection. Callers submit requests; the writer's loop
// takes every request waiting, applies them in order in one transaction, commits (one fsync)
// and answers each.
type writer struct {
	conn  *sql.Conn
	stmts map[string]*sql.Stmt

	reqs      chan *request
	closing   chan struct{}
	stopped   chan struct{}
	closeOnce sync.Once
}

// request is one write waiting for the writer.
type request struct {
	apply func(b *batch) error
	// state moves from queued to taken (by the writer) or to abandoned (by a caller whose
	// context ended first), so that a caller gives up only on a write that will not happen.
	state atomic.Int32
	done  chan error
}

func newRequest(apply func(b *batch) error) *request {
	return &request{apply: apply, done: make(chan error, 1)}
}

const (
	queued int32 = iota
	taken
	abandoned
)

// writeSQL are the statements the writer prepares once, by name.
var writeSQL = map[string]string{
	"begin":        `BEGIN IMMEDIATE`,
	"commit":       `COMMIT`,
	"rollback":     `ROLLBACK`,
	"readCounter":  `SELECT value FROM counters WHERE name = 'version'`,
	"writeCounter": `UPDATE counters SET value = ? WHERE name = 'version'`,
	"insertRun": `INSERT INTO runs (` + runColumns + `) VALUES (` + runParams + `)
		ON CONFLICT (namespace, name) DO NOTHING`,
	"replaceRun": `INSERT INTO runs (` + runColumns + `) VALUES (` + runParams + `)
		ON CONFLICT (namespace, name) DO UPDATE SET ` + runFromExcluded,
	"updateRun": `UPDATE runs SET ` + runFromParams + `
		WHERE namespace = ? AND name = ? AND version = ?`,
	"replaceRunAt": `UPDATE runs SET ` + runFromParams + `, created = ?
		WHERE namespace = ? AND name = ? AND version = ?`,
	"deleteRun":   `DELETE FROM runs WHERE namespace = ? AND name = ?`,
	"deleteRunAt": `DELETE FROM runs WHERE namespace = ? AND name = ? AND version = ?`,
	"insertLog":   `INSERT INTO logs (namespace, name, step, entry) VALUES (?, ?, ?, ?)`,
	"deleteLogs":  `DELETE FROM logs WHERE namespace = ? AND name = ?`,
	"insertBlob": `INSERT INTO run_blobs (namespace, name, hash, data) VALUES (?, ?, ?, ?)
		ON CONFLICT (namespace, name, hash) DO NOTHING`,
	"deleteBlob":  `DELETE FROM run_blobs WHERE namespace = ? AND name = ? AND hash = ?`,
	"deleteBlobs": `DELETE FROM run_blobs WHERE namespace = ? AND name = ?`,
	"putDefinition": `INSERT INTO definitions (namespace, name, template, object) VALUES (?, ?, ?, ?)
		ON CONFLICT (namespace, name) DO UPDATE SET template = excluded.template, object = excluded.object`,
	"readWorkflow": `SELECT object, generation FROM workflows WHERE namespace = ? AND name = ?`,
	"putWorkflow": `INSERT INTO workflows (namespace, name, object, generation) VALUES (?, ?, ?, ?)
		ON CONFLICT (namespace, name) DO UPDATE SET object = excluded.object, generation = excluded.generation`,
	"deleteDefinition": `DELETE FROM definitions WHERE namespace = ? AND name = ?`,
	"deleteWorkflow":   `DELETE FROM workflows WHERE namespace = ? AND name = ?`,
	"putRevision": `INSERT INTO workflow_revisions (namespace, name, revision, created, object) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (namespace, name, revision) DO NOTHING`,
	"pruneRevisions":  `DELETE FROM workflow_revisions WHERE namespace = ? AND name = ? AND revision <= ?`,
	"deleteRevisions": `DELETE FROM workflow_revisions WHERE namespace = ? AND name = ?`,
	"insertRecord": `INSERT INTO records (kind, key, version, data) VALUES (?, ?, ?, ?)
		ON CONFLICT (kind, key) DO NOTHING`,
	"updateRecord": `UPDATE records SET version = ?, data = ? WHERE kind = ? AND key = ? AND version = ?`,
	"recordExists": `SELECT count(*) FROM records WHERE kind = ? AND key = ?`,
	"deleteRecord": `DELETE FROM records WHERE kind = ? AND key = ?`,
	"readLease":    `SELECT host, pid, token, expires FROM leases WHERE namespace = ? AND name = ?`,
	"putLease": `INSERT INTO leases (namespace, name, host, pid, token, expires) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (namespace, name) DO UPDATE SET host = excluded.host, pid = excluded.pid,
		token = excluded.token, expires = excluded.expires`,
	"renewLease": `UPDATE leases SET expires = ? WHERE namespace = ? AND name = ? AND host = ? AND pid = ? AND token = ?`,
	"insertApp": `INSERT INTO applications (namespace, name, version, object) VALUES (?, ?, ?, ?)
		ON CONFLICT (namespace, name) DO NOTHING`,
	"updateApp":  `UPDATE applications SET version = ?, object = ? WHERE namespace = ? AND name = ? AND version = ?`,
	"appExists":  `SELECT count(*) FROM applications WHERE namespace = ? AND name = ?`,
	"deleteApp":  `DELETE FROM applications WHERE namespace = ? AND name = ?`,
	"deleteRevs": `DELETE FROM app_revisions WHERE namespace = ? AND app = ?`,
	"putRev": `INSERT INTO app_revisions (namespace, app, number, name, hash, run, object, resources)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (namespace, app, number) DO UPDATE SET name = excluded.name, hash = excluded.hash,
		run = excluded.run, object = excluded.object, resources = excluded.resources`,
	"dropLease": `DELETE FROM leases WHERE namespace = ? AND name = ? AND host = ? AND pid = ? AND token = ?`,
}

func newWriter(ctx context.Context, conn *sql.Conn) (*writer, error) {
	w := &writer{
		conn:    conn,
		stmts:   make(map[string]*sql.Stmt, len(writeSQL)),
		reqs:    make(chan *request, maxBatch),
		closing: make(chan struct{}),
		stopped: make(chan struct{}),
	}
	for name, text := range writeSQL {
		st, err := conn.PrepareContext(ctx, text) //nolint:sqlclosecheck // kept in w.stmts for the writer's life; closeStatements closes them
		if err != nil {
			w.closeStatements()
			return nil, fmt.Errorf("prepare %s: %w", name, err)
		}
		w.stmts[name] = st
	}
	return w, nil
}

// submit hands apply to the writer and waits for its transaction to commit. It returns the
// error apply rejected the write with, or the transaction's. When ctx ends before the writer
// took the request, nothing is written and submit returns ctx's error; once taken, submit
// waits for the outcome, which is at most one transaction away.
func (w *writer) submit(ctx context.Context, apply func(b *batch) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r := newRequest(apply)
	select {
	case w.reqs <- r:
	case <-w.closing:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		if r.state.CompareAndSwap(queued, abandoned) {
			return ctx.Err()
		}
		return <-r.done
	case <-w.stopped:
		// The writer answers every request it took before it stops.
		select {
		case err := <-r.done:
			return err
		default:
			return ErrClosed
		}
	}
}

// loop runs batches until close, then writes what is still queued.
func (w *writer) loop() {
	defer close(w.stopped)
	batch := make([]*request, 0, maxBatch)
	for {
		select {
		case r := <-w.reqs:
			batch = append(batch[:0], r)
		case <-w.closing:
			for {
				batch = w.drain(batch[:0])
				if len(batch) == 0 {
					return
				}
				w.commit(batch)
			}
		}
		w.commit(w.drain(batch))
	}
}

// drain adds the requests waiting, without blocking, up to maxBatch.
func (w *writer) drain(batch []*request) []*request {
	for len(batch) < maxBatch {
		select {
		case r := <-w.reqs:
			batch = append(batch, r)
		default:
			return batch
		}
	}
	return batch
}

// commit applies the requests in one transaction and answers each. A request rejected by
// its apply (a version conflict, say) fails alone; any other error fails them all, and
// nothing of the batch is written.
func (w *writer) commit(reqs []*request) {
	live := reqs[:0]
	for _, r := range reqs {
		if r.state.CompareAndSwap(queued, taken) {
			live = append(live, r)
		}
	}
	if len(live) == 0 {
		return
	}
	errs := make([]error, len(live))
	err := w.transact(func(b *batch) error {
		for i, r := range live {
			err := r.apply(b)
			var rej *rejection
			switch {
			case errors.As(err, &rej):
				errs[i] = rej.err
			case err != nil:
				return err
			}
		}
		return nil
	})
	for i, r := range live {
		if err != nil {
			r.done <- err
		} else {
			r.done <- errs[i]
		}
	}
}

// transact runs f in an immediate transaction and commits it, or rolls it back on an error.
func (w *writer) transact(f func(b *batch) error) (err error) {
	ctx := context.Background()
	if _, err := w.stmts["begin"].ExecContext(ctx); err != nil {
		return fmt.Errorf("begin write transaction: %w", err)
	}
	defer func() {
		if err != nil {
			_, _ = w.stmts["rollback"].ExecContext(ctx)
		}
	}()
	b := &batch{ctx: ctx, stmts: w.stmts}
	if err := w.stmts["readCounter"].QueryRowContext(ctx).Scan(&b.version); err != nil {
		return fmt.Errorf("read version counter: %w", err)
	}
	start := b.version
	if err := f(b); err != nil {
		return err
	}
	if b.version != start {
		if _, err := w.stmts["writeCounter"].ExecContext(ctx, b.version); err != nil {
			return fmt.Errorf("write version counter: %w", err)
		}
	}
	if _, err := w.stmts["commit"].ExecContext(ctx); err != nil {
		return fmt.Errorf("commit write transaction: %w", err)
	}
	return nil
}

// close stops the loop once the queued requests are written, then releases the connection.
func (w *writer) close() {
	w.closeOnce.Do(func() {
		close(w.closing)
		<-w.stopped
		w.closeStatements()
		_ = w.conn.Close()
	})
}

func (w *writer) closeStatements() {
	for _, st := range w.stmts {
		_ = st.Close()
	}
}

// batch is the writer's transaction as requests see it.
type batch struct {
	ctx     context.Context
	stmts   map[string]*sql.Stmt
	version int64 // the last version handed out
}

// nextVersion hands out a version no run has had in this database.
func (b *batch) nextVersion() int64 {
	b.version++
	return b.version
}

// exec runs the named statement.
func (b *batch) exec(name string, args ...any) (sql.Result, error) {
	res, err := b.stmts[name].ExecContext(b.ctx, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return res, nil
}

// queryRow runs the named query, which returns at most one row, in the transaction.
func (b *batch) queryRow(name string, args ...any) *sql.Row {
	return b.stmts[name].QueryRowContext(b.ctx, args...)
}

// changed runs the named statement and reports whether it changed a row.
func (b *batch) changed(name string, args ...any) (bool, error) {
	res, err := b.exec(name, args...)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("%s: %w", name, err)
	}
	return n > 0, nil
}

// rejection is an error with which a request declines to write, before writing anything:
// it fails that request only.
type rejection struct{ err error }

func (r *rejection) Error() string { return r.err.Error() }

func reject(err error) error { return &rejection{err: err} }
