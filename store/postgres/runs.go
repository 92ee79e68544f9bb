package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/store"
)

// The runs columns an insert sets; the parameters runRow.values binds them to ($1 and $2 are
// the key, the version comes from run_versions), but for the last, created, whose parameter
// each insert names after runValues (it is not among the row's values, so that an update,
// which keeps it, does not leave a parameter unused); a Save's update of them (created kept);
// and their update from an insert's excluded row (a replacing Create, which sets created anew).
const (
	runColumns = `namespace, name, version, data, phase, message, start_time, end_time,
		steps_total, steps_running, steps_suspending, steps_succeeded, steps_failed, steps_skipped,
		template, expires, created`
	runValues = `$1, $2, nextval('run_versions'), $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15`
	runSet    = `version = nextval('run_versions'), data = $3, phase = $4, message = $5,
		start_time = $6, end_time = $7, steps_total = $8, steps_running = $9,
		steps_suspending = $10, steps_succeeded = $11, steps_failed = $12, steps_skipped = $13,
		template = $14, expires = $15`
	runFromExcluded = `version = excluded.version, data = excluded.data, phase = excluded.phase,
		message = excluded.message, start_time = excluded.start_time, end_time = excluded.end_time,
		steps_total = excluded.steps_total, steps_running = excluded.steps_running,
		steps_suspending = excluded.steps_suspending, steps_succeeded = excluded.steps_succeeded,
		steps_failed = excluded.steps_failed, steps_skipped = excluded.steps_skipped,
		template = excluded.template, expires = excluded.expires, created = excluded.created`
)

// Save's statements: the write of the run's row (an insert for a new run, with created $18;
// an update at the loaded version $18 otherwise), whose RETURNING row exists only if it
// wrote; the log entries ($16 the steps, $17 the entries, in order), inserted once per row the
// write returned, so none when it did not; and the new version. One statement is one
// transaction. The run's new blobs ($19 their hashes, $20 their data) are inserted, and
// those it no longer refers to ($21 their hashes) deleted, only if it wrote too. With notify,
// the statement also tells the replicas listening (Leases) that the run changed, as replica
// $22: PostgreSQL delivers the notification when it commits.
func saveStatement(write string, notify bool) string {
	q := `WITH saved AS (` + write + `), logged AS (
		INSERT INTO logs (namespace, name, step, entry)
		SELECT $1, $2, l.step, l.entry
		FROM saved, unnest($16::text[], $17::bytea[]) WITH ORDINALITY AS l (step, entry, n)
		ORDER BY l.n
	), blobbed AS (
		INSERT INTO run_blobs (namespace, name, hash, data)
		SELECT $1, $2, b.hash, b.data FROM saved, unnest($19::text[], $20::bytea[]) AS b (hash, data)
		ON CONFLICT (namespace, name, hash) DO NOTHING
	), unblobbed AS (
		DELETE FROM run_blobs WHERE namespace = $1 AND name = $2 AND hash = ANY($21::text[])
			AND EXISTS (SELECT 1 FROM saved)
	)`
	if !notify {
		return q + ` SELECT version FROM saved`
	}
	return q + `, notified AS (
		SELECT pg_notify('` + runsChannel + `', $22 || ' ' || version || ' ' || $1 || '/' || $2) FROM saved
	)
	SELECT version FROM saved LEFT JOIN notified ON true`
}

const (
	saveNew = `INSERT INTO runs (` + runColumns + `) VALUES (` + runValues + `, $18)
		ON CONFLICT (namespace, name) DO NOTHING
		RETURNING version`
	saveLoaded = `UPDATE runs SET ` + runSet + `
		WHERE namespace = $1 AND name = $2 AND version = $18
		RETURNING version`
)

// runRow is a run encoded for writing: its JSON and the summary List reads.
type runRow struct {
	key      engine.Key
	data     []byte
	phase    string
	message  string
	start    *time.Time // nil when unset
	end      *time.Time
	steps    store.StepCounts
	template string
	expires  *time.Time // engine.Run.ExpiresAt, nil when the run has no own TTL or has not finished
	created  int64      // Unix nanoseconds: when encoded, written only by an insert
	// spill says which of the run's large variables the write stores (New) and deletes
	// (Unused) as blobs.
	spill engine.Spill
}

// blobValues are the parameters of a write's blobs: the new blobs' hashes and data, and the
// hashes of those to delete.
func (r *runRow) blobValues() []any {
	hashes := make([]string, len(r.spill.New))
	data := make([][]byte, len(r.spill.New))
	for i, b := range r.spill.New {
		hashes[i], data[i] = b.Hash, b.Data
	}
	unused := r.spill.Unused
	if unused == nil {
		unused = []string{}
	}
	return []any{hashes, data, unused}
}

// values are the row's parameters, $1 to $15; created is not among them.
func (r *runRow) values() []any {
	return []any{r.key.Namespace, r.key.Name, r.data, r.phase, r.message, r.start, r.end,
		r.steps.Total, r.steps.Running, r.steps.Suspending, r.steps.Succeeded, r.steps.Failed, r.steps.Skipped,
		r.template, r.expires}
}

// encodeRun encodes run for writing.
func encodeRun(run *engine.Run) (*runRow, error) {
	if run == nil || run.Object == nil {
		return nil, errors.New("run has no WorkflowRun object")
	}
	key := run.Key()
	if key.Name == "" {
		return nil, errors.New("run has no name")
	}
	data, spill, err := store.EncodeRun(run)
	if err != nil {
		return nil, err
	}
	st := &run.Object.Status
	return &runRow{
		key:      key,
		data:     data,
		phase:    string(st.Phase),
		message:  st.Message,
		start:    timeOrNil(st.StartTime.Time),
		end:      timeOrNil(st.EndTime.Time),
		steps:    store.CountSteps(run),
		template: run.Object.Spec.WorkflowRef,
		expires:  timeOrNil(run.ExpiresAt()),
		created:  time.Now().UnixNano(),
		spill:    spill,
	}, nil
}

// encodeLogs encodes the entries as the parameters $16 and $17 of a save: their steps and
// their JSON, in order.
func encodeLogs(key engine.Key, logs []engine.LogEntry) (steps []string, entries [][]byte, err error) {
	steps = make([]string, len(logs))
	entries = make([][]byte, len(logs))
	for i := range logs {
		entry, err := json.Marshal(&logs[i])
		if err != nil {
			return nil, nil, fmt.Errorf("encode log entry %d of run %s step %q: %w", i, key, logs[i].Step, err)
		}
		steps[i], entries[i] = logs[i].Step, entry
	}
	return steps, entries, nil
}

func timeOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// Load returns the stored run with its version, or an error wrapping engine.ErrNotFound.
func (s *Store) Load(ctx context.Context, key engine.Key) (*engine.Run, error) {
	var run *engine.Run
	// One snapshot: the blobs are those of the version read.
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		var version int64
		var data []byte
		err := tx.QueryRow(ctx, `SELECT version, data FROM runs WHERE namespace = $1 AND name = $2`,
			key.Namespace, key.Name).Scan(&version, &data)
		if errors.Is(err, pgx.ErrNoRows) {
			return engine.ErrNotFound
		}
		if err != nil {
			return err
		}
		run, err = store.DecodeRun(data, func(hashes []string) (map[string][]byte, error) {
			return readBlobs(ctx, tx, key, hashes)
		})
		if err != nil {
			return err
		}
		run.Version = version
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load run %s: %w", key, err)
	}
	return run, nil
}

// readBlobs reads the blobs of a run by hash.
func readBlobs(ctx context.Context, tx pgx.Tx, key engine.Key, hashes []string) (map[string][]byte, error) {
	rows, err := tx.Query(ctx, `SELECT hash, data FROM run_blobs WHERE namespace = $1 AND name = $2 AND hash = ANY($3::text[])`,
		key.Namespace, key.Name, hashes)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make(map[string][]byte, len(hashes))
	for rows.Next() {
		var h string
		var data []byte
		if err := rows.Scan(&h, &data); err != nil {
			return nil, err
		}
		out[h] = data
	}
	return out, rows.Err()
}

// Save writes the run and appends logs to its log in one transaction, if the stored version
// is run.Version (0: the run must not be stored yet), and then sets run.Version to the new
// version. Otherwise it writes nothing and returns an error wrapping engine.ErrConflict.
// When ctx ends while the statement is on its way, Save fails but may have written: a Load
// tells which.
func (s *Store) Save(ctx context.Context, run *engine.Run, logs []engine.LogEntry) error {
	row, err := encodeRun(run)
	if err != nil {
		return fmt.Errorf("save run: %w", err)
	}
	steps, entries, err := encodeLogs(row.key, logs)
	if err != nil {
		return fmt.Errorf("save run: %w", err)
	}
	old := run.Version
	q, args := s.saveNew, append(row.values(), steps, entries, row.created)
	if old != 0 {
		q, args = s.saveLoaded, append(row.values(), steps, entries, old)
	}
	args = append(args, row.blobValues()...)
	if s.replica != "" {
		args = append(args, s.replica)
	}
	var version int64
	err = s.pool.QueryRow(ctx, q, args...).Scan(&version)
	switch {
	case errors.Is(err, pgx.ErrNoRows), isSerializationFailure(err):
		// No row at that version, or (under a stricter default isolation than PostgreSQL's)
		// a row another transaction changed first.
		return fmt.Errorf("save run %s at version %d: %w", row.key, old, engine.ErrConflict)
	case err != nil:
		return fmt.Errorf("save run %s at version %d: %w", row.key, old, err)
	}
	run.Version = version
	run.SpillSaved(row.spill)
	return nil
}

// writeBlobs stores the row's new blobs in tx.
func writeBlobs(ctx context.Context, tx pgx.Tx, row *runRow) error {
	for _, b := range row.spill.New {
		if _, err := tx.Exec(ctx, `INSERT INTO run_blobs (namespace, name, hash, data) VALUES ($1, $2, $3, $4)
			ON CONFLICT (namespace, name, hash) DO NOTHING`, row.key.Namespace, row.key.Name, b.Hash, b.Data); err != nil {
			return err
		}
	}
	return nil
}

// isSerializationFailure says whether err is PostgreSQL's serialization_failure, which a
// statement under repeatable read or serializable isolation fails with when another
// transaction changed its rows since it began.
func isSerializationFailure(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "40001"
}

// readCommitted is the isolation of the Store's transactions of several statements: each
// statement sees what committed before it began, so that one after a row lock sees the
// writes of the transaction that held the lock.
var readCommitted = pgx.TxOptions{IsoLevel: pgx.ReadCommitted}

// Create stores a new run and sets run.Version; run.Version on entry is ignored. replaces
// says which stored run it may replace (store.Runs.Create): none (store.CreateNew), the
// stored run at that version, or any (store.ReplaceAny). A replacement is one transaction
// that writes the row, holding its lock, then deletes the replaced run's log.
func (s *Store) Create(ctx context.Context, run *engine.Run, replaces int64) error {
	row, err := encodeRun(run)
	if err != nil {
		return fmt.Errorf("create run: %w", err)
	}
	row.spill.New, row.spill.Unused = store.AllBlobs(row.spill), nil
	var version int64
	args := append(row.values(), row.created)
	switch replaces {
	case store.CreateNew:
		err = pgx.BeginTxFunc(ctx, s.pool, readCommitted, func(tx pgx.Tx) error {
			if err := tx.QueryRow(ctx, `INSERT INTO runs (`+runColumns+`) VALUES (`+runValues+`, $16)
				ON CONFLICT (namespace, name) DO NOTHING
				RETURNING version`, args...).Scan(&version); err != nil {
				return err
			}
			return writeBlobs(ctx, tx, row)
		})
		if errors.Is(err, pgx.ErrNoRows) {
			err = store.ErrExists
		}
	default:
		// The upsert takes the row's lock first, so that the delete, a statement of its own,
		// sees the entries of a save that held the lock before. The update at a version
		// writes nothing when another write came first.
		write := `INSERT INTO runs (` + runColumns + `) VALUES (` + runValues + `, $16)
			ON CONFLICT (namespace, name) DO UPDATE SET ` + runFromExcluded + `
			RETURNING version`
		if replaces != store.ReplaceAny {
			write = `UPDATE runs SET ` + runSet + `, created = $16
				WHERE namespace = $1 AND name = $2 AND version = $17
				RETURNING version`
			args = append(args, replaces)
		}
		err = pgx.BeginTxFunc(ctx, s.pool, readCommitted, func(tx pgx.Tx) error {
			if err := tx.QueryRow(ctx, write, args...).Scan(&version); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `DELETE FROM logs WHERE namespace = $1 AND name = $2`, row.key.Namespace, row.key.Name); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `DELETE FROM run_blobs WHERE namespace = $1 AND name = $2`, row.key.Namespace, row.key.Name); err != nil {
				return err
			}
			return writeBlobs(ctx, tx, row)
		})
		if errors.Is(err, pgx.ErrNoRows) || isSerializationFailure(err) {
			err = engine.ErrConflict
		}
	}
	if err != nil {
		return fmt.Errorf("create run %s: %w", row.key, err)
	}
	run.Version = version
	run.SpillSaved(row.spill)
	s.notify(ctx, version, row.key)
	return nil
}

// Delete removes the run and its log, or returns an error wrapping engine.ErrNotFound.
func (s *Store) Delete(ctx context.Context, key engine.Key) error {
	err := pgx.BeginTxFunc(ctx, s.pool, readCommitted, func(tx pgx.Tx) error {
		// The run first, for its lock, as in Create.
		tag, err := tx.Exec(ctx, `DELETE FROM runs WHERE namespace = $1 AND name = $2`, key.Namespace, key.Name)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return engine.ErrNotFound
		}
		if _, err = tx.Exec(ctx, `DELETE FROM logs WHERE namespace = $1 AND name = $2`, key.Namespace, key.Name); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `DELETE FROM run_blobs WHERE namespace = $1 AND name = $2`, key.Namespace, key.Name)
		return err
	})
	if err != nil {
		return fmt.Errorf("delete run %s: %w", key, err)
	}
	s.notify(ctx, store.Deleted, key)
	return nil
}

// List returns summaries of the selected runs, ordered by namespace and name, or by creation,
// newest first, then namespace and name when opts.Newest is set.
func (s *Store) List(ctx context.Context, opts store.ListOptions) ([]store.RunSummary, error) {
	return store.ListRuns(dialect, opts, query(ctx, s, readRunSummary))
}

// readRunSummary reads a row of List, whose start_time and end_time are timestamptz, NULL
// when unset.
func readRunSummary(rows store.Scanner) (store.RunSummary, error) {
	return store.ReadRunSummary(rows, utcOrZero)
}

// Count returns the number of runs List selects with opts, ignoring opts.Limit and
// opts.Offset.
func (s *Store) Count(ctx context.Context, opts store.ListOptions) (int, error) {
	return store.CountRuns(dialect, opts, func(q string, args ...any) (n int, err error) {
		err = s.pool.QueryRow(ctx, q, args...).Scan(&n)
		return n, err
	})
}

func utcOrZero(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}

// Logs returns the run's log entries in the order they were saved: every step's when step
// is empty, else that step's. A run without entries, stored or not, has an empty log.
func (s *Store) Logs(ctx context.Context, key engine.Key, step string) ([]engine.LogEntry, error) {
	q := `SELECT entry FROM logs WHERE namespace = $1 AND name = $2`
	args := []any{key.Namespace, key.Name}
	if step != "" {
		q += ` AND step = $3`
		args = append(args, step)
	}
	rows, err := s.pool.Query(ctx, q+` ORDER BY seq`, args...)
	if err != nil {
		return nil, fmt.Errorf("logs of run %s: %w", key, err)
	}
	defer rows.Close()
	var out []engine.LogEntry
	for rows.Next() {
		var data []byte
		if err := rows.Scan(&data); err != nil {
			return nil, fmt.Errorf("logs of run %s: %w", key, err)
		}
		var e engine.LogEntry
		if err := json.Unmarshal(data, &e); err != nil {
			return nil, fmt.Errorf("logs of run %s: decode entry: %w", key, err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("logs of run %s: %w", key, err)
	}
	return out, nil
}

// DeleteExpired deletes, with their logs, at most limit of the finished runs retention r lets
// go at now that owns accepts (nil: all), each only at the version it was found at, in one
// transaction, and tells the other replicas; it returns their keys.
func (s *Store) DeleteExpired(ctx context.Context, r engine.Retention, now time.Time, limit int, owns func(engine.Key) bool) ([]engine.Key, error) {
	q, args := dialect.ExpiredRuns(r, now, limit)
	found, err := queryAll(ctx, s, store.ReadExpired, q, args...)
	if err != nil {
		return nil, fmt.Errorf("find the expired runs: %w", err)
	}
	var deleted []engine.Key
	err = pgx.BeginTxFunc(ctx, s.pool, readCommitted, func(tx pgx.Tx) error {
		deleted = deleted[:0]
		for _, e := range found {
			if owns != nil && !owns(e.Key) {
				continue
			}
			tag, err := tx.Exec(ctx, `DELETE FROM runs WHERE namespace = $1 AND name = $2 AND version = $3`, e.Key.Namespace, e.Key.Name, e.Version)
			if err != nil {
				return err
			}
			if tag.RowsAffected() == 0 {
				continue // changed since it was found: a restart, say
			}
			if _, err := tx.Exec(ctx, `DELETE FROM logs WHERE namespace = $1 AND name = $2`, e.Key.Namespace, e.Key.Name); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `DELETE FROM run_blobs WHERE namespace = $1 AND name = $2`, e.Key.Namespace, e.Key.Name); err != nil {
				return err
			}
			deleted = append(deleted, e.Key)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("delete the expired runs: %w", err)
	}
	for _, k := range deleted {
		s.notify(ctx, store.Deleted, k)
	}
	return deleted, nil
}

// RecordBytes is the size of the run's JSON: what a save of it writes, its blobs aside. It is
// 0 for a run not stored.
func (s *Store) RecordBytes(ctx context.Context, key engine.Key) (int, error) {
	var n int64
	err := s.pool.QueryRow(ctx, `SELECT coalesce(sum(length(data)), 0) FROM runs WHERE namespace = $1 AND name = $2`, key.Namespace, key.Name).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("size of run %s: %w", key, err)
	}
	return int(n), nil
}

// BlobBytes is the size of the blobs kept for the run (engine.Run.SpillVars).
func (s *Store) BlobBytes(ctx context.Context, key engine.Key) (int, error) {
	var n int64
	err := s.pool.QueryRow(ctx, `SELECT coalesce(sum(length(data)), 0) FROM run_blobs WHERE namespace = $1 AND name = $2`, key.Namespace, key.Name).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("size of the blobs of run %s: %w", key, err)
	}
	return int(n), nil
}
