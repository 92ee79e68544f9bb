package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// migrations are the schema changes in the order they apply; the table schema_migrations
// holds a row for each one applied, numbered from 1. Open applies the rest in one transaction.
// Append to this list; never edit a migration that has shipped.
//
// The schema they build:
//
//	run_versions  the sequence runs' versions come from, so a run deleted and created again
//	              never repeats a version an old reader may still hold.
//	runs          one row per run, keyed (namespace, name).
//	  version     the run's version; Save updates the row only where it is the loaded one.
//	  data        the engine.Run as JSON, kept byte for byte (bytea, not jsonb: jsonb rejects
//	              the escaped NUL character a step's output may hold, and reorders keys).
//	  phase, message, start_time, end_time (NULL when unset), steps_*: a summary of data for
//	              List, written with it; runs_phase serves List's phase filter in its order.
//	logs          the runs' log entries; seq is the append order.
//	  entry       the engine.LogEntry as JSON; step repeats its step for filtering.
//	definitions   WorkflowStepDefinitions keyed (namespace, name): the CUE template, and the
//	              whole object as JSON.
//	workflows     Workflow templates keyed (namespace, name), as JSON.
var migrations = []string{
	`CREATE SEQUENCE run_versions AS bigint;
	CREATE TABLE runs (
		namespace        text    NOT NULL,
		name             text    NOT NULL,
		version          bigint  NOT NULL,
		data             bytea   NOT NULL,
		phase            text    NOT NULL,
		message          text    NOT NULL,
		start_time       timestamptz,
		end_time         timestamptz,
		steps_total      integer NOT NULL,
		steps_running    integer NOT NULL,
		steps_suspending integer NOT NULL,
		steps_succeeded  integer NOT NULL,
		steps_failed     integer NOT NULL,
		steps_skipped    integer NOT NULL,
		PRIMARY KEY (namespace, name)
	);
	CREATE INDEX runs_phase ON runs (phase, namespace, name);
	CREATE TABLE logs (
		seq       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
		namespace text  NOT NULL,
		name      text  NOT NULL,
		step      text  NOT NULL,
		entry     bytea NOT NULL
	);
	CREATE INDEX logs_run ON logs (namespace, name, step, seq);
	CREATE TABLE definitions (
		namespace text  NOT NULL,
		name      text  NOT NULL,
		template  text  NOT NULL,
		object    bytea NOT NULL,
		PRIMARY KEY (namespace, name)
	);
	CREATE TABLE workflows (
		namespace text  NOT NULL,
		name      text  NOT NULL,
		object    bytea NOT NULL,
		PRIMARY KEY (namespace, name)
	);`,
}

// migrateLock is the key of the transaction-scoped advisory lock that makes two processes
// opening a new database at once apply each migration once: the one that waited finds the
// schema current.
const migrateLock = 0x73746570666c6f77 // "stepflow"

// migrate brings the database's schema up to date in one transaction.
func migrate(ctx context.Context, db beginner) error {
	err := pgx.BeginTxFunc(ctx, db, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(migrateLock)); err != nil {
			return fmt.Errorf("lock: %w", err)
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version    integer     PRIMARY KEY,
			applied_at timestamptz NOT NULL DEFAULT now()
		)`); err != nil {
			return fmt.Errorf("create schema_migrations: %w", err)
		}
		var have int
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&have); err != nil {
			return fmt.Errorf("read schema version: %w", err)
		}
		if have > len(migrations) {
			return fmt.Errorf("the database has schema version %d, newer than this stepflow knows (%d): use a newer stepflow", have, len(migrations))
		}
		for i := have; i < len(migrations); i++ {
			if _, err := tx.Exec(ctx, migrations[i]); err != nil {
				return fmt.Errorf("schema version %d: %w", i+1, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version) VALUES ($1)`, i+1); err != nil {
				return fmt.Errorf("record schema version %d: %w", i+1, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

// beginner starts transactions: the Store's pool.
type beginner interface {
	BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error)
}
