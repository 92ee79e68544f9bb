package sqlite_test

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/store"
	"github.com/stepflow/stepflow/store/sqlite"
	"github.com/stepflow/stepflow/store/storetest"
)

var _ storetest.LogReader = (*sqlite.Store)(nil)

// open opens a store on path and closes it when the test ends.
func open(t testing.TB, path string) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), sqlite.Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Error(err)
		}
	})
	return st
}

func tempPath(t testing.TB) string { return filepath.Join(t.TempDir(), "stepflow.db") }

func TestStoreSuite(t *testing.T) {
	storetest.Run(t, func(t *testing.T) engine.Store { return open(t, tempPath(t)) })
}

func TestCatalogSuite(t *testing.T) {
	storetest.RunStore(t, func(t *testing.T) store.Store { return open(t, tempPath(t)) })
}

func TestTwoStoresOnOneFile(t *testing.T) {
	path := tempPath(t)
	storetest.TwoStores(t, open(t, path), open(t, path))
	checkIntegrity(t, path)
}

// checkIntegrity runs SQLite's own consistency check of the file.
func checkIntegrity(t *testing.T, path string) {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := db.Close(); err != nil {
			t.Error(err)
		}
	}()
	var result string
	if err := db.QueryRowContext(t.Context(), "PRAGMA integrity_check").Scan(&result); err != nil {
		t.Fatal(err)
	}
	if result != "ok" {
		t.Errorf("integrity_check: %s", result)
	}
}

func TestReopenKeepsRunsLogsAndObjects(t *testing.T) {
	path := tempPath(t)
	storetest.Reopen(t, func() (store.Store, error) { return sqlite.Open(t.Context(), sqlite.Options{Path: path}) })
}

func TestClosedStoreRefusesWrites(t *testing.T) {
	ctx := t.Context()
	st, err := sqlite.Open(ctx, sqlite.Options{Path: tempPath(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if err := st.Save(ctx, storetest.NewRun("default", "late"), nil); !errors.Is(err, sqlite.ErrClosed) {
		t.Errorf("Save after Close: err = %v, want ErrClosed", err)
	}
}

func TestCanceledSaveWritesNothing(t *testing.T) {
	st := open(t, tempPath(t))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	run := storetest.NewRun("default", "canceled")
	if err := st.Save(ctx, run, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Save with a canceled context: err = %v, want context.Canceled", err)
	}
	if run.Version != 0 {
		t.Errorf("Version = %d after a canceled Save, want 0", run.Version)
	}
	if _, err := st.Load(t.Context(), run.Key()); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("Load after a canceled Save: err = %v, want ErrNotFound", err)
	}
}

func TestSaveRejectsARunWithoutObject(t *testing.T) {
	st := open(t, tempPath(t))
	if err := st.Save(t.Context(), &engine.Run{}, nil); err == nil {
		t.Error("Save of a run without a WorkflowRun: no error")
	}
}

func TestOpenOptions(t *testing.T) {
	ctx := t.Context()
	if _, err := sqlite.Open(ctx, sqlite.Options{}); err == nil {
		t.Error("Open without a path: no error")
	}
	if _, err := sqlite.Open(ctx, sqlite.Options{Path: tempPath(t), Synchronous: "sometimes"}); err == nil {
		t.Error("Open with synchronous=sometimes: no error")
	}
	if _, err := sqlite.Open(ctx, sqlite.Options{Path: filepath.Join(t.TempDir(), "missing", "x.db")}); err == nil {
		t.Error("Open in a directory that does not exist: no error")
	}
	// A path with characters that mean something in a URI is still a path.
	path := filepath.Join(t.TempDir(), "odd?name#1.db")
	st, err := sqlite.Open(ctx, sqlite.Options{Path: path, Synchronous: "normal"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := st.Close(); err != nil {
			t.Error(err)
		}
	}()
	if err := st.Save(ctx, storetest.NewRun("default", "x"), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("the database is not at the path given: %v", err)
	}
}

// A stored Workflow that cannot be decoded counts as changed: putting it again replaces it
// with the next generation.
func TestPutObjectsRepairsAnUnreadableWorkflow(t *testing.T) {
	ctx := t.Context()
	path := tempPath(t)
	st := open(t, path)
	if err := st.PutObjects(ctx, nil, []*v1alpha1.Workflow{storetest.Workflow("default", "deploy")}); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `UPDATE workflows SET object = 'not JSON'`); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	wf := storetest.Workflow("default", "deploy")
	if err := st.PutObjects(ctx, nil, []*v1alpha1.Workflow{wf}); err != nil {
		t.Fatal(err)
	}
	if got, err := st.Workflow(ctx, "default", "deploy"); err != nil || got.Generation != 2 || wf.Generation != 2 {
		t.Errorf("after putting an unreadable Workflow again: %+v, %v, put set %d; want generation 2", got, err, wf.Generation)
	}
}
