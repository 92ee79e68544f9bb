package store

import (
	"context"
	"time"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/api/v1beta1"
	"github.com/stepflow/stepflow/engine"
)

// Store is everything a stepflow process keeps: its runs, the definitions and templates users
// apply, the server's records, and the Applications delivered with their revisions. The embedded store (store/sqlite) and PostgreSQL
// (store/postgres) implement it and pass the same suites (store/storetest); the CLI and the
// server work on it alike.
type Store interface {
	Runs
	Objects
	Revisions
	Records
	Applications
	// Close releases the store.
	Close() error
}

// Runs keeps runs: what the engine saves and loads, and what the front ends create, delete,
// list and read the log of.
type Runs interface {
	engine.Store
	// Create stores a new run and sets run.Version, in one compare-and-swap: replaces says
	// which stored run it may take the place of. With 0 (CreateNew) there must be none: a run
	// stored already fails with an error wrapping ErrExists. With a version, the stored run
	// must be at that version (the one its caller loaded and found finished): another, or
	// none, fails with an error wrapping engine.ErrConflict and writes nothing, so that of
	// concurrent creates replacing one run only one succeeds. With ReplaceAny, whatever is
	// stored is replaced. A replaced run's log is deleted with it, and a holder of its version
	// gets a conflict when it saves.
	Create(ctx context.Context, run *engine.Run, replaces int64) error
	// Delete removes a run and its log.
	Delete(ctx context.Context, key engine.Key) error
	// List returns the runs opts selects, as summaries.
	List(ctx context.Context, opts ListOptions) ([]RunSummary, error)
	// Count counts the runs opts selects, its paging aside.
	Count(ctx context.Context, opts ListOptions) (int, error)
	// Logs reads a run's log back: every step's entries when step is empty, else that step's.
	Logs(ctx context.Context, key engine.Key, step string) ([]engine.LogEntry, error)
	// DeleteExpired deletes, with their logs, at most limit of the finished runs retention r
	// lets go at now (Dialect.ExpiredRuns says which), those that ended first first, and of
	// them only those owns accepts (nil: all). A run that changed since it was found is kept.
	// It returns the keys of the runs deleted.
	DeleteExpired(ctx context.Context, r engine.Retention, now time.Time, limit int, owns func(engine.Key) bool) ([]engine.Key, error)
}

// Objects keeps the WorkflowStepDefinitions and Workflow templates users apply. A look-up of
// what is not stored fails with an error wrapping engine.ErrNotFound.
type Objects interface {
	// PutObjects stores definitions and templates in one transaction; a template whose content
	// changed gets the next generation (WorkflowChanged), and each new generation is kept as
	// a revision (Revisions) in the same transaction, the last KeepRevisions of a template.
	PutObjects(ctx context.Context, defs []*v1beta1.WorkflowStepDefinition, wfs []*v1alpha1.Workflow) error
	// Template is the CUE template of step type typ stored in namespace.
	Template(ctx context.Context, namespace, typ string) (string, error)
	Definitions(ctx context.Context, namespace string) ([]*v1beta1.WorkflowStepDefinition, error)
	DeleteDefinition(ctx context.Context, namespace, name string) error
	Workflow(ctx context.Context, namespace, name string) (*v1alpha1.Workflow, error)
	Workflows(ctx context.Context, namespace string) ([]*v1alpha1.Workflow, error)
	// DeleteWorkflow removes the template with its revisions.
	DeleteWorkflow(ctx context.Context, namespace, name string) error
}

// Records keeps the server's generic records (tokens, triggers, clusters) by kind and key,
// each with a version.
type Records interface {
	// PutRecord writes the record kind/key and returns its new version. Version 0 creates it,
	// failing with an error wrapping ErrExists when it is stored already; a positive version
	// replaces its data only if that is the stored version, failing with an error wrapping
	// engine.ErrConflict when it is not, or engine.ErrNotFound when there is no such record.
	PutRecord(ctx context.Context, kind, key string, data []byte, version int64) (int64, error)
	Record(ctx context.Context, kind, key string) (Record, error)
	// Records lists the records of kind whose key starts with prefix, by key.
	Records(ctx context.Context, kind, prefix string) ([]Record, error)
	DeleteRecord(ctx context.Context, kind, key string) error
}
