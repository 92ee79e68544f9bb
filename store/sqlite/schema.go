package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/stepflow/stepflow/store"
)

// migrations are the schema changes in the order they apply. The database's PRAGMA
// user_version counts those already applied; Open applies the rest in one transaction.
// Append to this list; never edit a migration that has shipped.
//
// The schema they build:
//
//	runs         one row per run, keyed (namespace, name).
//	  version    the run's version: a value of the counter below, so a run deleted and
//	             created again never repeats a version an old reader may still hold.
//	  data       the engine.Run as JSON (object with spec and status, spec, vars, steps, ...).
//	  phase, message, start_time, end_time (Unix nanoseconds, 0 when unset), steps_*,
//	  template (spec.workflowRef, '' for inline steps):
//	             a summary of data for List, written with it.
//	  created    when the run was created (Unix nanoseconds): set by Create and by the Save
//	             that inserts the row, kept by later Saves; rows stored before it existed took
//	             their creationTimestamp, else start_time, else 0 (fillRunColumns).
//	             runs_template, runs_start and runs_created serve List's filters and its
//	             newest-first order.
//	  expires    when the run is deleted by its own TTL (engine.Run.ExpiresAt, Unix
//	             nanoseconds), NULL when it has none or has not finished; with runs_end,
//	             it serves the retention sweep (DeleteExpired).
//	logs         the runs' log entries; seq is the append order.
//	  entry      the engine.LogEntry as JSON; step repeats its step for filtering.
//	counters     named integers; 'version' is the last version handed to a run or record.
//	definitions  WorkflowStepDefinitions keyed (namespace, name): the CUE template, and the
//	             whole object as JSON.
//	workflows    Workflow templates keyed (namespace, name), as JSON (without
//	             metadata.generation, which is the column).
//	  generation the template's version: 1 when first stored, one more for each PutObjects
//	             that changes it (store.WorkflowChanged); rows stored before it was kept
//	             start at 1.
//	records      the server's generic records (API tokens, triggers, clusters), keyed
//	             (kind, key): version (from the counter above, like runs') and opaque data.
//	run_blobs    the runs' large variables (engine.Run.SpillVars), keyed (namespace, name,
//	             hash): each value once per run, by the hex SHA-256 of its JSON (data); the
//	             run's JSON refers to them. Written with the Save that first refers to one,
//	             deleted by the Save that no longer does, and with the run.
//	leases       which process drives a run (Leases), keyed (namespace, name): the holder's
//	             host, pid and start token (host, pid, token), and when the lease lapses
//	             (expires, Unix nanoseconds) unless its holder renews it.
//	applications the Applications delivered, keyed (namespace, name): version (from the
//	             counter above) and the Application as JSON (object), status included.
//	app_revisions their revisions, keyed (namespace, app, number): the revision's name
//	             (<app>-v<number>), the hash of what it delivers, the run delivering it, the
//	             ApplicationRevision as JSON (object) and the objects its run applied
//	             (resources, JSON: []v1beta1.ManagedResource).
//	workflow_revisions the Workflow templates' revisions, keyed (namespace, name, revision):
//	             the template's JSON (object, without metadata.generation, which is revision)
//	             as that generation stored it, and when (created, Unix nanoseconds; 0 for the
//	             templates stored before revisions were kept, which the migration copied).
//	             The last store.KeepRevisions of each template are kept.
var migrations = []string{
	`CREATE TABLE runs (
		namespace        TEXT    NOT NULL,
		name             TEXT    NOT NULL,
		version          INTEGER NOT NULL,
		data             BLOB    NOT NULL,
		phase            TEXT    NOT NULL,
		message          TEXT    NOT NULL,
		start_time       INTEGER NOT NULL,
		end_time         INTEGER NOT NULL,
		steps_total      INTEGER NOT NULL,
		steps_running    INTEGER NOT NULL,
		steps_suspending INTEGER NOT NULL,
		steps_succeeded  INTEGER NOT NULL,
		steps_failed     INTEGER NOT NULL,
		steps_skipped    INTEGER NOT NULL,
		PRIMARY KEY (namespace, name)
	);
	CREATE INDEX runs_phase ON runs (phase);
	CREATE TABLE logs (
		seq       INTEGER PRIMARY KEY,
		namespace TEXT NOT NULL,
		name      TEXT NOT NULL,
		step      TEXT NOT NULL,
		entry     BLOB NOT NULL
	);
	CREATE INDEX logs_run ON logs (namespace, name, step);
	CREATE TABLE counters (
		name  TEXT PRIMARY KEY,
		value INTEGER NOT NULL
	);
	INSERT INTO counters (name, value) VALUES ('version', 0);
	CREATE TABLE definitions (
		namespace TEXT NOT NULL,
		name      TEXT NOT NULL,
		template  TEXT NOT NULL,
		object    BLOB NOT NULL,
		PRIMARY KEY (namespace, name)
	);
	CREATE TABLE workflows (
		namespace TEXT NOT NULL,
		name      TEXT NOT NULL,
		object    BLOB NOT NULL,
		PRIMARY KEY (namespace, name)
	);`,
	// 2: records; workflows' generation; runs' template and created, which fillRunColumns
	// fills in from the runs' JSON.
	`CREATE TABLE records (
		kind    TEXT    NOT NULL,
		key     TEXT    NOT NULL,
		version INTEGER NOT NULL,
		data    BLOB    NOT NULL,
		PRIMARY KEY (kind, key)
	);
	ALTER TABLE workflows ADD COLUMN generation INTEGER NOT NULL DEFAULT 1;
	ALTER TABLE runs ADD COLUMN template TEXT NOT NULL DEFAULT '';
	ALTER TABLE runs ADD COLUMN created INTEGER NOT NULL DEFAULT 0;
	CREATE INDEX runs_template ON runs (template, namespace, name);
	CREATE INDEX runs_start ON runs (start_time);
	CREATE INDEX runs_created ON runs (created DESC, namespace, name);`,
	// 3: the runs' own expiry, and the indexes of the retention sweep.
	`ALTER TABLE runs ADD COLUMN expires INTEGER;
	CREATE INDEX runs_expires ON runs (expires);
	CREATE INDEX runs_end ON runs (phase, end_time);`,
	// 4: the leases of the processes driving runs.
	`CREATE TABLE leases (
		namespace TEXT    NOT NULL,
		name      TEXT    NOT NULL,
		host      TEXT    NOT NULL,
		pid       INTEGER NOT NULL,
		token     TEXT    NOT NULL,
		expires   INTEGER NOT NULL,
		PRIMARY KEY (namespace, name)
	);`,
	// 5: the runs' large variables, kept apart from their JSON.
	`CREATE TABLE run_blobs (
		namespace TEXT NOT NULL,
		name      TEXT NOT NULL,
		hash      TEXT NOT NULL,
		data      BLOB NOT NULL,
		PRIMARY KEY (namespace, name, hash)
	);`,
	// 6: Applications and their revisions.
	`CREATE TABLE applications (
		namespace TEXT    NOT NULL,
		name      TEXT    NOT NULL,
		version   INTEGER NOT NULL,
		object    BLOB    NOT NULL,
		PRIMARY KEY (namespace, name)
	);
	CREATE TABLE app_revisions (
		namespace TEXT    NOT NULL,
		app       TEXT    NOT NULL,
		number    INTEGER NOT NULL,
		name      TEXT    NOT NULL,
		hash      TEXT    NOT NULL,
		run       TEXT    NOT NULL,
		object    BLOB    NOT NULL,
		resources BLOB    NOT NULL,
		PRIMARY KEY (namespace, app, number)
	);`,
	// 7: Workflow templates' revisions, the stored templates their first.
	`CREATE TABLE workflow_revisions (
		namespace TEXT    NOT NULL,
		name      TEXT    NOT NULL,
		revision  INTEGER NOT NULL,
		created   INTEGER NOT NULL,
		object    BLOB    NOT NULL,
		PRIMARY KEY (namespace, name, revision)
	);
	INSERT INTO workflow_revisions (namespace, name, revision, created, object)
		SELECT namespace, name, generation, 0, object FROM workflows;`,
}

// fills are the steps of migrations done in Go, by the schema version they belong to: each
// runs after that version's statements, in the same transaction.
var fills = map[int]func(ctx context.Context, conn *sql.Conn) error{
	2: fillRunColumns,
}

// fillRunColumns sets the template and created columns of the runs stored before they
// existed, from the runs' JSON. It decodes in Go rather than with SQLite's JSON functions so
// that a run whose JSON they would refuse cannot stop the store from opening; such a run keeps
// an empty template and, like a run without a creationTimestamp, created from its start time.
func fillRunColumns(ctx context.Context, conn *sql.Conn) error {
	type fill struct {
		namespace, name, template string
		created                   int64
	}
	var todo []fill
	rows, err := conn.QueryContext(ctx, `SELECT namespace, name, data, start_time FROM runs`)
	if err != nil {
		return fmt.Errorf("read runs: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var f fill
		var data []byte
		var start int64
		if err := rows.Scan(&f.namespace, &f.name, &data, &start); err != nil {
			return fmt.Errorf("read runs: %w", err)
		}
		var created time.Time
		f.template, created = store.RunOrigin(data)
		f.created = unixNano(created)
		if f.created == 0 {
			f.created = start
		}
		if f.template != "" || f.created != 0 {
			todo = append(todo, f)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read runs: %w", err)
	}
	if err := rows.Close(); err != nil {
		return fmt.Errorf("read runs: %w", err)
	}
	for _, f := range todo {
		if _, err := conn.ExecContext(ctx, `UPDATE runs SET template = ?, created = ? WHERE namespace = ? AND name = ?`,
			f.template, f.created, f.namespace, f.name); err != nil {
			return fmt.Errorf("fill in run %s/%s: %w", f.namespace, f.name, err)
		}
	}
	return nil
}

// migrate brings the schema of the database behind conn up to date, in one immediate
// transaction so that two processes opening a new file at once apply each migration once.
func migrate(ctx context.Context, conn *sql.Conn, path string) (err error) {
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return fmt.Errorf("migrate %s: begin: %w", path, err)
	}
	defer func() {
		if err != nil {
			_, _ = conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK")
		}
	}()
	var have int
	if err := conn.QueryRowContext(ctx, "PRAGMA user_version").Scan(&have); err != nil {
		return fmt.Errorf("migrate %s: read schema version: %w", path, err)
	}
	if have > len(migrations) {
		return fmt.Errorf("%s has schema version %d, newer than this stepflow knows (%d): use a newer stepflow", path, have, len(migrations))
	}
	for i := have; i < len(migrations); i++ {
		if _, err := conn.ExecContext(ctx, migrations[i]); err != nil {
			return fmt.Errorf("migrate %s to schema version %d: %w", path, i+1, err)
		}
		if fill := fills[i+1]; fill != nil {
			if err := fill(ctx, conn); err != nil {
				return fmt.Errorf("migrate %s to schema version %d: %w", path, i+1, err)
			}
		}
	}
	if have < len(migrations) {
		// PRAGMA takes no parameters; the value is an integer we control.
		if _, err := conn.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", len(migrations))); err != nil {
			return fmt.Errorf("migrate %s: set schema version: %w", path, err)
		}
	}
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		return fmt.Errorf("migrate %s: commit: %w", path, err)
	}
	return nil
}
