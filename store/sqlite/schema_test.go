package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/store"
	"github.com/stepflow/stepflow/store/storetest"
)

func TestOpenRecordsTheSchemaVersion(t *testing.T) {
	path := filepath.Join(t.TempDir(), "stepflow.db")
	for range 2 { // the second Open finds the schema current and applies nothing
		st, err := Open(t.Context(), Options{Path: path})
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
		if got := pragma(t, path, "user_version"); got != len(migrations) {
			t.Errorf("user_version = %d, want %d (the migrations)", got, len(migrations))
		}
	}
}

func TestOpenRefusesANewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "stepflow.db")
	st, err := Open(t.Context(), Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	db := rawDB(t, path)
	if _, err := db.ExecContext(t.Context(), fmt.Sprintf("PRAGMA user_version = %d", len(migrations)+1)); err != nil {
		t.Fatal(err)
	}
	_, err = Open(t.Context(), Options{Path: path})
	if err == nil || !strings.Contains(err.Error(), "newer") {
		t.Errorf("Open of a database from a newer stepflow: err = %v, want one saying the schema is newer", err)
	}
}

func TestOpenSetsWALAndSynchronous(t *testing.T) {
	for _, c := range []struct {
		option string
		want   int // PRAGMA synchronous: 0 OFF, 1 NORMAL, 2 FULL
	}{{"", 2}, {"NORMAL", 1}, {"off", 0}} {
		path := filepath.Join(t.TempDir(), "stepflow.db")
		st, err := Open(t.Context(), Options{Path: path, Synchronous: c.option})
		if err != nil {
			t.Fatal(err)
		}
		// Ask a connection of the store's own pool.
		var mode string
		var sync int
		if err := st.db.QueryRowContext(t.Context(), "PRAGMA journal_mode").Scan(&mode); err != nil {
			t.Fatal(err)
		}
		if err := st.db.QueryRowContext(t.Context(), "PRAGMA synchronous").Scan(&sync); err != nil {
			t.Fatal(err)
		}
		if mode != "wal" || sync != c.want {
			t.Errorf("Synchronous %q: journal_mode %s, synchronous %d; want wal, %d", c.option, mode, sync, c.want)
		}
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func rawDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Error(err)
		}
	})
	return db
}

func pragma(t *testing.T, path, name string) int {
	t.Helper()
	var v int
	if err := rawDB(t, path).QueryRowContext(context.Background(), "PRAGMA "+name).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// Migration 2 fills the new columns of what a database of schema version 1 holds: a run's
// template and creation time from its JSON (its creationTimestamp, else its start time, else
// 0), generation 1 for a Workflow, kept as its revision 1; and versions go on from the counter.
func TestMigrationFillsNewColumns(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "stepflow.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, migrations[0]+"; PRAGMA user_version = 1"); err != nil {
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
	for i, run := range []*engine.Run{ref, started, fresh} {
		data, err := json.Marshal(run)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.ExecContext(ctx, `INSERT INTO runs (namespace, name, version, data, phase, message,
			start_time, end_time, steps_total, steps_running, steps_suspending, steps_succeeded, steps_failed,
			steps_skipped) VALUES (?, ?, ?, ?, '', '', ?, 0, 0, 0, 0, 0, 0, 0)`,
			run.Object.Namespace, run.Object.Name, i+1, data, unixNano(run.Object.Status.StartTime.Time)); err != nil {
			t.Fatal(err)
		}
	}
	// A run whose JSON cannot be read does not keep the store from opening.
	if _, err := db.ExecContext(ctx, `INSERT INTO runs (namespace, name, version, data, phase, message,
		start_time, end_time, steps_total, steps_running, steps_suspending, steps_succeeded, steps_failed,
		steps_skipped) VALUES ('default', 'broken', 4, 'not JSON', '', '', ?, 0, 0, 0, 0, 0, 0, 0)`,
		unixNano(ref.Object.Status.StartTime.Time)); err != nil {
		t.Fatal(err)
	}
	wf, err := json.Marshal(storetest.Workflow("default", "deploy"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO workflows (namespace, name, object) VALUES ('default', 'deploy', ?);
		UPDATE counters SET value = 4 WHERE name = 'version'`, wf); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	st, err := Open(ctx, Options{Path: path})
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
	if revs, err := st.WorkflowRevisions(ctx, "default", "deploy"); err != nil || len(revs) != 1 || revs[0].Revision != 1 ||
		!revs[0].Created.IsZero() || revs[0].Workflow.Steps[0].Name != "apply" {
		t.Errorf("revisions after migrating = %+v, %v; want revision 1 of the stored template, no time", revs, err)
	}
	if v, err := st.PutRecord(ctx, "token", "t", nil, 0); err != nil || v != 5 {
		t.Errorf("first record after migrating: version %d, %v; want 5, after the counter's 4", v, err)
	}
}
