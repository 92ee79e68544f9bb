package postgres

import (
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/store"
	"github.com/stepflow/stepflow/store/postgres/pgtest"
	"github.com/stepflow/stepflow/store/storetest"
)

var srv *pgtest.Server

func TestMain(m *testing.M) { pgtest.Main(m, &srv) }

func TestOpenRecordsTheSchemaVersion(t *testing.T) {
	url := srv.NewDatabase(t)
	for range 2 { // the second Open finds the schema current and applies nothing
		st, err := Open(t.Context(), Options{URL: url})
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
		var n, highest int
		if err := pgtest.Connect(t, url).QueryRow(t.Context(), `SELECT count(*), max(version) FROM schema_migrations`).Scan(&n, &highest); err != nil {
			t.Fatal(err)
		}
		if n != len(migrations) || highest != len(migrations) {
			t.Errorf("schema_migrations has %d rows up to %d, want %d (the migrations)", n, highest, len(migrations))
		}
	}
}

// Stores opening a new database at once apply each migration once, and all open.
func TestConcurrentOpensMigrateOnce(t *testing.T) {
	url := srv.NewDatabase(t)
	const opens = 4
	errs := make([]error, opens)
	var wg sync.WaitGroup
	for i := range opens {
		wg.Go(func() {
			st, err := Open(t.Context(), Options{URL: url, MaxConns: 1})
			if err == nil {
				err = st.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("open %d: %v", i, err)
		}
	}
	var n int
	if err := pgtest.Connect(t, url).QueryRow(t.Context(), `SELECT count(*) FROM schema_migrations`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != len(migrations) {
		t.Errorf("schema_migrations has %d rows, want %d", n, len(migrations))
	}
}

func TestOpenRefusesANewerSchema(t *testing.T) {
	url := srv.NewDatabase(t)
	st, err := Open(t.Context(), Options{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := pgtest.Connect(t, url).Exec(t.Context(), `INSERT INTO schema_migrations (version) VALUES ($1)`, len(migrations)+1); err != nil {
		t.Fatal(err)
	}
	_, err = Open(t.Context(), Options{URL: url})
	if err == nil || !strings.Contains(err.Error(), "newer") {
		t.Errorf("Open of a database from a newer stepflow: err = %v, want one saying the schema is newer", err)
	}
}

// The pool holds at most MaxConns connections.
func TestMaxConns(t *testing.T) {
	st, err := Open(t.Context(), Options{URL: srv.NewDatabase(t), MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	if got := st.pool.Config().MaxConns; got != 2 {
		t.Errorf("pool MaxConns = %d, want 2", got)
	}
}

// Migration 2 fills the new columns of what a database of schema version 1 holds: a run's
// template and creation time from its JSON (its creationTimestamp, else its start time, else
// 0), even JSON holding an escaped NUL character, which jsonb would refuse; generation 1 for a
// Workflow. Records' keys compare byte by byte, as in SQLite, whatever the database's collation.
func TestMigrationFillsNewColumns(t *testing.T) {
	ctx := t.Context()
	url := srv.NewDatabase(t)
	conn := pgtest.Connect(t, url)
	if _, err := conn.Exec(ctx, `CREATE TABLE schema_migrations (
			version    integer     PRIMARY KEY,
			applied_at timestamptz NOT NULL DEFAULT now()
		);
		INSERT INTO schema_migrations (version) VALUES (1);`+migrations[0]); err != nil {
		t.Fatal(err)
	}
	ref := storetest.NewRun("default", "ref")
	ref.Object.Spec.WorkflowRef = "deploy"
	ref.Vars["raw"] = json.RawMessage(`"a\u0000b \ud800"`)
	started := storetest.NewRun("default", "started")
	started.Object.CreationTimestamp = metav1.Time{}
	fresh := storetest.NewRun("default", "fresh")
	fresh.Object.CreationTimestamp = metav1.Time{}
	fresh.Object.Status = v1alpha1.WorkflowRunStatus{}
	for _, run := range []*engine.Run{ref, started, fresh} {
		data, err := json.Marshal(run)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Exec(ctx, `INSERT INTO runs (namespace, name, version, data, phase, message,
			start_time, end_time, steps_total, steps_running, steps_suspending, steps_succeeded, steps_failed,
			steps_skipped) VALUES ($1, $2, nextval('run_versions'), $3, '', '', $4, NULL, 0, 0, 0, 0, 0, 0)`,
			run.Object.Namespace, run.Object.Name, data, timeOrNil(run.Object.Status.StartTime.Time)); err != nil {
			t.Fatal(err)
		}
	}
	// A run whose JSON cannot be read does not keep the store from opening.
	if _, err := conn.Exec(ctx, `INSERT INTO runs (namespace, name, version, data, phase, message,
		start_time, end_time, steps_total, steps_running, steps_suspending, steps_succeeded, steps_failed,
		steps_skipped) VALUES ('default', 'broken', nextval('run_versions'), 'not JSON', '', '', $1, NULL, 0, 0, 0, 0, 0, 0)`,
		ref.Object.Status.StartTime.Time); err != nil {
		t.Fatal(err)
	}
	wf, err := json.Marshal(storetest.Workflow("default", "deploy"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `INSERT INTO workflows (namespace, name, object) VALUES ('default', 'deploy', $1)`, wf); err != nil {
		t.Fatal(err)
	}

	st, err := Open(ctx, Options{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := st.Close(); err != nil {
			t.Error(err)
		}
	}()
	runs, err := st.List(ctx, store.ListOptions{})
	if err != nil || len(runs) != 4 {
		t.Fatalf("List after migrating = %+v, %v; want the 4 runs", runs, err)
	}
	start := ref.Object.Status.StartTime.Time
	want := map[string]struct {
		template string
		created  time.Time
	}{
		"ref":     {"deploy", ref.Object.CreationTimestamp.Time},
		"started": {"", start},
		"fresh":   {"", time.Time{}},
		"broken":  {"", start},
	}
	for _, r := range runs {
		if w := want[r.Name]; r.Template != w.template || !r.Created.Equal(w.created) {
			t.Errorf("%s after migrating: template %q, created %v; want %q, %v", r.Name, r.Template, r.Created, w.template, w.created)
		}
	}
	if got, err := st.Workflow(ctx, "default", "deploy"); err != nil || got.Generation != 1 {
		t.Errorf("Workflow after migrating = %+v, %v; want generation 1", got, err)
	}
	// Migration 7 keeps the stored template as its one revision, without a time.
	if revs, err := st.WorkflowRevisions(ctx, "default", "deploy"); err != nil || len(revs) != 1 || revs[0].Revision != 1 || !revs[0].Created.IsZero() {
		t.Errorf("revisions after migrating = %+v, %v; want revision 1 of the stored template, no time", revs, err)
	}
	var collation string
	if err := conn.QueryRow(ctx, `SELECT collation_name FROM information_schema.columns
		WHERE table_name = 'records' AND column_name = 'key'`).Scan(&collation); err != nil || collation != "C" {
		t.Errorf("records.key collation %q (%v), want C", collation, err)
	}
}
