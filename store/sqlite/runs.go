package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/store"
)

// The runs columns an insert sets, in the order runRow.values gives them, and the SQL
// fragments that set them: from an insert's excluded row (a replacing Create, which sets
// created anew), and from runRow.updateValues (a Save, which keeps created).
const (
	runColumns = `version, data, phase, message, start_time, end_time, steps_total,
		steps_running, steps_suspending, steps_succeeded, steps_failed, steps_skipped,
		template, expires, created, namespace, name`
	runParams       = `?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?`
	runFromExcluded = `version = excluded.version, data = excluded.data, phase = excluded.phase,
		message = excluded.message, start_time = excluded.start_time, end_time = excluded.end_time,
		steps_total = excluded.steps_total, steps_running = excluded.steps_running,
		steps_suspending = excluded.steps_suspending, steps_succeeded = excluded.steps_succeeded,
		steps_failed = excluded.steps_failed, steps_skipped = excluded.steps_skipped,
		template = excluded.template, expires = excluded.expires, created = excluded.created`
	runFromParams = `version = ?, data = ?, phase = ?, message = ?, start_time = ?, end_time = ?,
		steps_total = ?, steps_running = ?, steps_suspending = ?, steps_succeeded = ?,
		steps_failed = ?, steps_skipped = ?, template = ?, expires = ?`
)

// runRow is a run encoded for writing: its JSON and the summary List reads.
type runRow struct {
	key      engine.Key
	data     []byte
	phase    string
	message  string
	start    int64 // Unix nanoseconds, 0 when unset
	end      int64
	steps    store.StepCounts
	template string
	expires  any   // Unix nanoseconds (engine.Run.ExpiresAt), nil when the run has no own TTL or has not finished
	created  int64 // Unix nanoseconds: when encoded, written only by an insert
	// spill says which of the run's large variables the write stores (New) and deletes
	// (Unused) as blobs.
	spill engine.Spill
}

// values are the row's column values in runColumns order, with version.
func (r *runRow) values(version int64) []any {
	return []any{version, r.data, r.phase, r.message, r.start, r.end, r.steps.Total,
		r.steps.Running, r.steps.Suspending, r.steps.Succeeded, r.steps.Failed, r.steps.Skipped,
		r.template, r.expires, r.created, r.key.Namespace, r.key.Name}
}

// updateValues are the parameters of updateRun: runFromParams with version, then the key
// and the version the update expects.
func (r *runRow) updateValues(version, old int64) []any {
	return []any{version, r.data, r.phase, r.message, r.start, r.end, r.steps.Total,
		r.steps.Running, r.steps.Suspending, r.steps.Succeeded, r.steps.Failed, r.steps.Skipped,
		r.template, r.expires, r.key.Namespace, r.key.Name, old}
}

// replaceValues are the parameters of replaceRunAt: updateValues with created, which a
// replacing Create sets anew.
func (r *runRow) replaceValues(version, old int64) []any {
	v := r.updateValues(version, old)
	return append(v[:14:14], r.created, r.key.Namespace, r.key.Name, old)
}

// logRow is a log entry encoded for writing.
type logRow struct {
	step  string
	entry []byte
}

// encodeRun encodes run in the caller's goroutine, so that the writer only writes.
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
	var expires any
	if at := run.ExpiresAt(); !at.IsZero() {
		expires = boundNano(at)
	}
	return &runRow{
		key:      key,
		data:     data,
		phase:    string(st.Phase),
		message:  st.Message,
		start:    unixNano(st.StartTime.Time),
		end:      unixNano(st.EndTime.Time),
		steps:    store.CountSteps(run),
		template: run.Object.Spec.WorkflowRef,
		expires:  expires,
		created:  time.Now().UnixNano(),
		spill:    spill,
	}, nil
}

// writeBlobs stores the row's new blobs and deletes those it no longer refers to, in the
// transaction that writes the row.
func (b *batch) writeBlobs(row *runRow) error {
	for _, blob := range row.spill.New {
		if _, err := b.exec("insertBlob", row.key.Namespace, row.key.Name, blob.Hash, blob.Data); err != nil {
			return err
		}
	}
	for _, hash := range row.spill.Unused {
		if _, err := b.exec("deleteBlob", row.key.Namespace, row.key.Name, hash); err != nil {
			return err
		}
	}
	return nil
}

func encodeLogs(key engine.Key, logs []engine.LogEntry) ([]logRow, error) {
	rows := make([]logRow, len(logs))
	for i := range logs {
		entry, err := json.Marshal(&logs[i])
		if err != nil {
			return nil, fmt.Errorf("encode log entry %d of run %s step %q: %w", i, key, logs[i].Step, err)
		}
		rows[i] = logRow{step: logs[i].Step, entry: entry}
	}
	return rows, nil
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// appendLogs adds the entries to the run's log.
func (b *batch) appendLogs(key engine.Key, logs []logRow) error {
	for _, l := range logs {
		if _, err := b.exec("insertLog", key.Namespace, key.Name, l.step, l.entry); err != nil {
			return err
		}
	}
	return nil
}

// Load returns the stored run with its version, or an error wrapping engine.ErrNotFound.
func (s *Store) Load(ctx context.Context, key engine.Key) (*engine.Run, error) {
	// One read transaction: the blobs are those of the version read.
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("load run %s: %w", key, err)
	}
	defer func() { _ = tx.Rollback() }()
	var version int64
	var data []byte
	load := tx.StmtContext(ctx, s.load)
	defer func() { _ = load.Close() }()
	err = load.QueryRowContext(ctx, key.Namespace, key.Name).Scan(&version, &data)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("load run %s: %w", key, engine.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("load run %s: %w", key, err)
	}
	run, err := store.DecodeRun(data, func(hashes []string) (map[string][]byte, error) {
		return readBlobs(ctx, tx, key, hashes)
	})
	if err != nil {
		return nil, fmt.Errorf("load run %s: %w", key, err)
	}
	run.Version = version
	return run, nil
}

// readBlobs reads the blobs of a run by hash.
func readBlobs(ctx context.Context, tx *sql.Tx, key engine.Key, hashes []string) (map[string][]byte, error) {
	out := make(map[string][]byte, len(hashes))
	for _, h := range hashes {
		var data []byte
		err := tx.QueryRowContext(ctx, `SELECT data FROM run_blobs WHERE namespace = ? AND name = ? AND hash = ?`, key.Namespace, key.Name, h).Scan(&data)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out[h] = data
	}
	return out, nil
}

// Save writes the run and appends logs to its log in one transaction, if the stored version
// is run.Version (0: the run must not be stored yet), and then sets run.Version to the new
// version. Otherwise it writes nothing and returns an error wrapping engine.ErrConflict.
// The write is on disk when Save returns (unless Options.Synchronous relaxed that).
func (s *Store) Save(ctx context.Context, run *engine.Run, logs []engine.LogEntry) error {
	row, err := encodeRun(run)
	if err != nil {
		return fmt.Errorf("save run: %w", err)
	}
	entries, err := encodeLogs(row.key, logs)
	if err != nil {
		return fmt.Errorf("save run: %w", err)
	}
	old := run.Version
	var version int64
	if err := s.w.submit(ctx, saveOp(row, entries, old, &version)); err != nil {
		return fmt.Errorf("save run %s at version %d: %w", row.key, old, err)
	}
	run.Version = version
	run.SpillSaved(row.spill)
	return nil
}

// saveOp is the writer's half of Save: it writes the row if the stored version is old, appends
// the log entries, and sets *version to the row's new version.
func saveOp(row *runRow, logs []logRow, old int64, version *int64) func(b *batch) error {
	return func(b *batch) error {
		v := b.nextVersion()
		var saved bool
		var err error
		if old == 0 {
			saved, err = b.changed("insertRun", row.values(v)...)
		} else {
			saved, err = b.changed("updateRun", row.updateValues(v, old)...)
		}
		if err != nil {
			return err
		}
		if !saved {
			return reject(engine.ErrConflict)
		}
		*version = v
		if err := b.writeBlobs(row); err != nil {
			return err
		}
		return b.appendLogs(row.key, logs)
	}
}

// Create stores a new run and sets run.Version; run.Version on entry is ignored. replaces
// says which stored run it may replace (store.Runs.Create): none (store.CreateNew), the
// stored run at that version, or any (store.ReplaceAny). The check and the write are one
// transaction of the writer; a replaced run's log is deleted in it.
func (s *Store) Create(ctx context.Context, run *engine.Run, replaces int64) error {
	row, err := encodeRun(run)
	if err != nil {
		return fmt.Errorf("create run: %w", err)
	}
	row.spill.New, row.spill.Unused = store.AllBlobs(row.spill), nil
	var version int64
	err = s.w.submit(ctx, func(b *batch) error {
		v := b.nextVersion()
		switch replaces {
		case store.CreateNew:
			created, err := b.changed("insertRun", row.values(v)...)
			if err != nil {
				return err
			}
			if !created {
				return reject(store.ErrExists)
			}
		case store.ReplaceAny:
			if _, err := b.exec("replaceRun", row.values(v)...); err != nil {
				return err
			}
		default:
			replaced, err := b.changed("replaceRunAt", row.replaceValues(v, replaces)...)
			if err != nil {
				return err
			}
			if !replaced {
				return reject(engine.ErrConflict)
			}
		}
		if replaces != store.CreateNew {
			if _, err := b.exec("deleteLogs", row.key.Namespace, row.key.Name); err != nil {
				return err
			}
			if _, err := b.exec("deleteBlobs", row.key.Namespace, row.key.Name); err != nil {
				return err
			}
		}
		version = v
		return b.writeBlobs(row)
	})
	if err != nil {
		return fmt.Errorf("create run %s: %w", row.key, err)
	}
	run.Version = version
	run.SpillSaved(row.spill)
	return nil
}

// Delete removes the run and its log, or returns an error wrapping engine.ErrNotFound.
func (s *Store) Delete(ctx context.Context, key engine.Key) error {
	err := s.w.submit(ctx, func(b *batch) error {
		deleted, err := b.changed("deleteRun", key.Namespace, key.Name)
		if err != nil {
			return err
		}
		if !deleted {
			return reject(engine.ErrNotFound)
		}
		if _, err = b.exec("deleteLogs", key.Namespace, key.Name); err != nil {
			return err
		}
		_, err = b.exec("deleteBlobs", key.Namespace, key.Name)
		return err
	})
	if err != nil {
		return fmt.Errorf("delete run %s: %w", key, err)
	}
	return nil
}

// List returns summaries of the selected runs, ordered by namespace and name, or by creation,
// newest first, then namespace and name when opts.Newest is set.
func (s *Store) List(ctx context.Context, opts store.ListOptions) ([]store.RunSummary, error) {
	return store.ListRuns(dialect, opts, query(ctx, s, readRunSummary))
}

// readRunSummary reads a row of List, whose start_time and end_time are Unix nanoseconds.
func readRunSummary(rows store.Scanner) (store.RunSummary, error) {
	return store.ReadRunSummary(rows, fromUnixNano)
}

// Count returns the number of runs List selects with opts, ignoring opts.Limit and
// opts.Offset.
func (s *Store) Count(ctx context.Context, opts store.ListOptions) (int, error) {
	return store.CountRuns(dialect, opts, func(q string, args ...any) (n int, err error) {
		err = s.db.QueryRowContext(ctx, q, args...).Scan(&n)
		return n, err
	})
}

// boundNano is t in Unix nanoseconds, a time outside their range (years 1678 to 2262) taken
// to their lowest or highest value, where it bounds the same stored times.
func boundNano(t time.Time) int64 {
	switch {
	case t.Before(time.Unix(0, math.MinInt64)):
		return math.MinInt64
	case t.After(time.Unix(0, math.MaxInt64)):
		return math.MaxInt64
	}
	return t.UnixNano()
}

// Logs returns the run's log entries in the order they were saved: every step's when step
// is empty, else that step's. A run without entries, stored or not, has an empty log.
func (s *Store) Logs(ctx context.Context, key engine.Key, step string) ([]engine.LogEntry, error) {
	q := `SELECT entry FROM logs WHERE namespace = ? AND name = ?`
	args := []any{key.Namespace, key.Name}
	if step != "" {
		q += ` AND step = ?`
		args = append(args, step)
	}
	rows, err := s.db.QueryContext(ctx, q+` ORDER BY seq`, args...)
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
// transaction; it returns their keys.
func (s *Store) DeleteExpired(ctx context.Context, r engine.Retention, now time.Time, limit int, owns func(engine.Key) bool) ([]engine.Key, error) {
	q, args := dialect.ExpiredRuns(r, now, limit)
	found, err := queryAll(ctx, s, store.ReadExpired, q, args...)
	if err != nil {
		return nil, fmt.Errorf("find the expired runs: %w", err)
	}
	found = slices.DeleteFunc(found, func(e store.Expired) bool { return owns != nil && !owns(e.Key) })
	var deleted []engine.Key
	err = s.w.submit(ctx, func(b *batch) error {
		for _, e := range found {
			gone, err := b.changed("deleteRunAt", e.Key.Namespace, e.Key.Name, e.Version)
			if err != nil {
				return err
			}
			if !gone {
				continue // changed since it was found: a restart, say
			}
			if _, err := b.exec("deleteLogs", e.Key.Namespace, e.Key.Name); err != nil {
				return err
			}
			if _, err := b.exec("deleteBlobs", e.Key.Namespace, e.Key.Name); err != nil {
				return err
			}
			deleted = append(deleted, e.Key)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("delete the expired runs: %w", err)
	}
	return deleted, nil
}

// RecordBytes is the size of the run's JSON: what a save of it writes, its blobs aside. It is
// 0 for a run not stored.
func (s *Store) RecordBytes(ctx context.Context, key engine.Key) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT coalesce(sum(length(data)), 0) FROM runs WHERE namespace = ? AND name = ?`, key.Namespace, key.Name).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("size of run %s: %w", key, err)
	}
	return n, nil
}

// BlobBytes is the size of the blobs kept for the run (engine.Run.SpillVars).
func (s *Store) BlobBytes(ctx context.Context, key engine.Key) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT coalesce(sum(length(data)), 0) FROM run_blobs WHERE namespace = ? AND name = ?`, key.Namespace, key.Name).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("size of the blobs of run %s: %w", key, err)
	}
	return n, nil
}
