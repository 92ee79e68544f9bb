package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stepflow/stepflow/store"
)

// migrations are the schema changes in the order they apply; the table schema_migrations
// holds a row for each one applied, numbered from 1. Open applies the rest in one transaction.
// Append to this list; never edit a migration that has shipped.
//
// The schema they build:
//
//	run_versions  the sequence runs' and records' versions come from, so a run deleted and
//	              created again never repeats a version an old reader may still hold.
//	runs          one row per run, keyed (namespace, name).
//	  version     the run's version; Save updates the row only where it is the loaded one.
//	  data        the engine.Run as JSON, kept byte for byte (bytea, not jsonb: jsonb rejects
//	              the escaped NUL character a step's output may hold, and reorders keys).
//	  phase, message, start_time, end_time (NULL when unset), steps_*, template
//	              (spec.workflowRef, '' for inline steps): a summary of data for List, written
//	              with it; runs_phase serves List's phase filter in its order, runs_template
//	              its template filter, runs_start its start time bounds.
//	  created     when the run was created (Unix nanoseconds): set by Create and by the Save
//	              that inserts the row, kept by later Saves; rows stored before it existed
//	              took their creationTimestamp, else start_time, else 0 (fillRunColumns).
//	              runs_created serves List's newest-first order.
//	  expires     when the run is deleted by its own TTL (engine.Run.ExpiresAt), NULL when
//	              it has none or has not finished; with runs_end, it serves the retention
//	              sweep (DeleteExpired).
//	logs          the runs' log entries; seq is the append order.
//	  entry       the engine.LogEntry as JSON; step repeats its step for filtering.
//	definitions   WorkflowStepDefinitions keyed (namespace, name): the CUE template, and the
//	              whole object as JSON.
//	workflows     Workflow templates keyed (namespace, name), as JSON (without
//	              metadata.generation, which is the column).
//	  generation  the template's version: 1 when first stored, one more for each PutObjects
//	              that changes it (store.WorkflowChanged); rows stored before it was kept
//	              start at 1.
//	records       the server's generic records (API tokens, triggers, clusters), keyed
//	              (kind, key) in byte order (COLLATE "C", as SQLite compares): version (from
//	              run_versions) and opaque data.
//	run_blobs     the runs' large variables (engine.Run.SpillVars), keyed (namespace, name,
//	              hash): each value once per run, by the hex SHA-256 of its JSON (data); the
//	              run's JSON refers to them. Written by the Save that first refers to one,
//	              deleted by the Save that no longer does, and with the run.
//	replicas      the servers sharing the database (Leases): id, and when it last renewed
//	              its leases (seen, the database's clock).
//	leases        which replica drives the runs of each shard (Shard) until when (expires,
//	              the database's clock); a shard with no row, or an expired one, is free.
//	applications  the Applications delivered, keyed (namespace, name) in byte order: version
//	              (from run_versions) and the Application as JSON (object), status included.
//	app_revisions their revisions, keyed (namespace, app, number): the revision's name
//	              (<app>-v<number>), the hash of what it delivers, the run delivering it, the
//	              ApplicationRevision as JSON (object) and the objects its run applied
//	              (resources, JSON: []v1beta1.ManagedResource).
//	workflow_revisions the Workflow templates' revisions, keyed (namespace, name, revision):
//	              the template's JSON (object, without metadata.generation, which is
//	              revision) as that generation stored it, and when (created, Unix nanoseconds;
//	              0 for the templates stored before revisions were kept, which the migration
//	              copied). Written under the lock putWorkflow holds on the template's row; the
//	              last store.KeepRevisions of each template are kept.
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
	// 2: records; workflows' generation; runs' template and created, which fillRunColumns
	// fills in from the runs' JSON.
	`CREATE TABLE records (
		kind    text COLLATE "C" NOT NULL,
		key     text COLLATE "C" NOT NULL,
		version bigint NOT NULL,
		data    bytea  NOT NULL,
		PRIMARY KEY (kind, key)
	);
	ALTER TABLE workflows ADD COLUMN generation bigint NOT NULL DEFAULT 1;
	ALTER TABLE runs
		ADD COLUMN template text   NOT NULL DEFAULT '',
		ADD COLUMN created  bigint NOT NULL DEFAULT 0;
	CREATE INDEX runs_template ON runs (template, namespace, name);
	CREATE INDEX runs_start ON runs (start_time);
	CREATE INDEX runs_created ON runs (created DESC, namespace, name);`,
	// 3: replicas and their leases on shards of the runs.
	`CREATE TABLE replicas (
		id   text        PRIMARY KEY,
		seen timestamptz NOT NULL
	);
	CREATE TABLE leases (
		shard   integer     PRIMARY KEY,
		owner   text        NOT NULL,
		expires timestamptz NOT NULL
	);`,
	// 4: the runs' own expiry, and the indexes of the retention sweep.
	`ALTER TABLE runs ADD COLUMN expires timestamptz;
	CREATE INDEX runs_expires ON runs (expires);
	CREATE INDEX runs_end ON runs (phase, end_time);`,
	// 5: the runs' large variables, kept apart from their JSON.
	`CREATE TABLE run_blobs (
		namespace text  NOT NULL,
		name      text  NOT NULL,
		hash      text  NOT NULL,
		data      bytea NOT NULL,
		PRIMARY KEY (namespace, name, hash)
	);`,
	// 6: Applications and their revisions.
	`CREATE TABLE applications (
		namespace text   COLLATE "C" NOT NULL,
		name      text   COLLATE "C" NOT NULL,
		version   bigint NOT NULL,
		object    bytea  NOT NULL,
		PRIMARY KEY (namespace, name)
	);
	CREATE TABLE app_revisions (
		namespace text   NOT NULL,
		app       text   NOT NULL,
		number    bigint NOT NULL,
		name      text   NOT NULL,
		hash      text   NOT NULL,
		run       text   NOT NULL,
		object    bytea  NOT NULL,
		resources bytea  NOT NULL,
		PRIMARY KEY (namespace, app, number)
	);`,
	// 7: Workflow templates' revisions, the stored templates their first.
	`CREATE TABLE workflow_revisions (
		namespace text   NOT NULL,
		name      text   NOT NULL,
		revision  bigint NOT NULL,
		created   bigint NOT NULL,
		object    bytea  NOT NULL,
		PRIMARY KEY (namespace, name, revision)
	);
	INSERT INTO workflow_revisions (namespace, name, revision, created, object)
		SELECT namespace, name, generation, 0, object FROM workflows;`,
}

// fills are the steps of migrations done in Go, by the schema version they belong to: each
// runs after that version's statements, in the same transaction.
var fills = map[int]func(ctx context.Context, tx pgx.Tx) error{
	2: fillRunColumns,
}

// fillRunColumns sets the template and created columns of the runs stored before they
// existed, from the runs' JSON. It decodes in Go because PostgreSQL's JSON operators refuse a
// document holding an escaped NUL character, which a run's variables may hold; a run whose
// JSON cannot be read keeps an empty template and, like a run without a creationTimestamp, takes
// created from its start time.
func fillRunColumns(ctx context.Context, tx pgx.Tx) error {
	var namespaces, names, templates []string
	var created []int64
	rows, err := tx.Query(ctx, `SELECT namespace, name, data, start_time FROM runs`)
	if err != nil {
		return fmt.Errorf("read runs: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var ns, name string
		var data []byte
		var start *time.Time
		if err := rows.Scan(&ns, &name, &data, &start); err != nil {
			return fmt.Errorf("read runs: %w", err)
		}
		template, at := store.RunOrigin(data)
		if at.IsZero() && start != nil {
			at = *start
		}
		if template == "" && at.IsZero() {
			continue
		}
		var nanos int64
		if !at.IsZero() {
			nanos = at.UnixNano()
		}
		namespaces, names, templates, created = append(namespaces, ns), append(names, name), append(templates, template), append(created, nanos)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read runs: %w", err)
	}
	if _, err := tx.Exec(ctx, `UPDATE runs SET template = f.template, created = f.created
		FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) AS f (namespace, name, template, created)
		WHERE runs.namespace = f.namespace AND runs.name = f.name`,
		namespaces, names, templates, created); err != nil {
		return fmt.Errorf("fill in runs' template and created: %w", err)
	}
	return nil
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
			if fill := fills[i+1]; fill != nil {
				if err := fill(ctx, tx); err != nil {
					return fmt.Errorf("schema version %d: %w", i+1, err)
				}
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
