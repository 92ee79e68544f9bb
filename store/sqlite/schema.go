package sqlite

import (
	"context"
	"database/sql"
	"fmt"
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
//	  phase, message, start_time, end_time (Unix nanoseconds, 0 when unset), steps_*:
//	             a summary of data for List, written with it.
//	logs         the runs' log entries; seq is the append order.
//	  entry      the engine.LogEntry as JSON; step repeats its step for filtering.
//	counters     named integers; 'version' is the last version handed to a run.
//	definitions  WorkflowStepDefinitions keyed (namespace, name): the CUE template, and the
//	             whole object as JSON.
//	workflows    Workflow templates keyed (namespace, name), as JSON.
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
