package sqlite_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

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

func TestTwoStoresOnOneFile(t *testing.T) {
	ctx := t.Context()
	path := tempPath(t)
	stores := []*sqlite.Store{open(t, path), open(t, path)}

	// Both save their own runs at once; each sees the other's.
	const runs, saves = 8, 10
	errs := make(chan error, 2*runs)
	var wg sync.WaitGroup
	for s, st := range stores {
		for i := range runs {
			wg.Go(func() {
				run := storetest.NewRun("shared", fmt.Sprintf("store%d-run%d", s, i))
				for j := range saves {
					run.Object.Status.Message = fmt.Sprintf("save %d", j)
					if err := st.Save(ctx, run, []engine.LogEntry{{Step: "fetch", Message: run.Object.Status.Message}}); err != nil {
						errs <- fmt.Errorf("store %d %s: %w", s, run.Key(), err)
						return
					}
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for s := range stores {
		other := stores[1-s]
		for i := range runs {
			key := engine.Key{Namespace: "shared", Name: fmt.Sprintf("store%d-run%d", s, i)}
			run, err := other.Load(ctx, key)
			if err != nil {
				t.Fatalf("store %d loading %s written by store %d: %v", 1-s, key, s, err)
			}
			if run.Object.Status.Message != "save 9" {
				t.Errorf("%s: message %q, want %q", key, run.Object.Status.Message, "save 9")
			}
			logs, err := other.Logs(ctx, key, "")
			if err != nil || len(logs) != saves {
				t.Errorf("%s: %d log entries (%v), want %d", key, len(logs), err, saves)
			}
		}
	}

	// The version check holds across stores: both load, the first to save wins.
	key := engine.Key{Namespace: "shared", Name: "store0-run0"}
	a, err := stores[0].Load(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	b, err := stores[1].Load(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := stores[1].Save(ctx, b, nil); err != nil {
		t.Fatal(err)
	}
	if err := stores[0].Save(ctx, a, nil); !errors.Is(err, engine.ErrConflict) {
		t.Errorf("save from store 0 after store 1 saved the same version: err = %v, want ErrConflict", err)
	}

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
	ctx := t.Context()
	path := tempPath(t)
	st, err := sqlite.Open(ctx, sqlite.Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	run := storetest.NewRun("default", "kept")
	if err := st.Save(ctx, run, []engine.LogEntry{{Step: "fetch", Message: "hello"}}); err != nil {
		t.Fatal(err)
	}
	if err := st.PutObjects(ctx, nil, []*v1alpha1.Workflow{workflow("default", "deploy")}); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	st = open(t, path)
	got, err := st.Load(ctx, run.Key())
	if err != nil {
		t.Fatalf("after reopening: %v", err)
	}
	if got.Version != run.Version || got.Object.Status.Message != run.Object.Status.Message {
		t.Errorf("after reopening: version %d message %q, want %d %q", got.Version, got.Object.Status.Message, run.Version, run.Object.Status.Message)
	}
	logs, err := st.Logs(ctx, run.Key(), "")
	if err != nil || len(logs) != 1 || logs[0].Message != "hello" {
		t.Errorf("after reopening: logs %v (%v), want the one entry", logs, err)
	}
	if _, err := st.Workflow(ctx, "default", "deploy"); err != nil {
		t.Errorf("after reopening: %v", err)
	}
	// Versions keep growing across a reopen.
	if err := st.Save(ctx, got, nil); err != nil {
		t.Fatal(err)
	}
	if got.Version <= run.Version {
		t.Errorf("version after reopening went from %d to %d", run.Version, got.Version)
	}
}

func TestList(t *testing.T) {
	ctx := t.Context()
	st := open(t, tempPath(t))
	end := time.Date(2025, 3, 14, 16, 0, 0, 0, time.UTC)
	for _, r := range []struct {
		ns, name string
		phase    v1alpha1.WorkflowRunPhase
	}{
		{"team-b", "zeta", v1alpha1.RunSucceeded},
		{"team-a", "beta", v1alpha1.RunFailed},
		{"team-a", "alpha", v1alpha1.RunSucceeded},
		{"team-a", "gamma", v1alpha1.RunExecuting},
	} {
		run := storetest.NewRun(r.ns, r.name)
		run.Object.Status.Phase = r.phase
		run.Object.Status.Message = "phase " + string(r.phase)
		if r.phase.Finished() {
			run.Object.Status.EndTime = metav1.NewTime(end)
		}
		if err := st.Save(ctx, run, nil); err != nil {
			t.Fatal(err)
		}
	}
	names := func(opts store.ListOptions) []string {
		t.Helper()
		runs, err := st.List(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range runs {
			out = append(out, r.Namespace+"/"+r.Name)
		}
		return out
	}
	for _, c := range []struct {
		opts store.ListOptions
		want []string
	}{
		{store.ListOptions{}, []string{"team-a/alpha", "team-a/beta", "team-a/gamma", "team-b/zeta"}},
		{store.ListOptions{Namespace: "team-a"}, []string{"team-a/alpha", "team-a/beta", "team-a/gamma"}},
		{store.ListOptions{Phase: "succeeded"}, []string{"team-a/alpha", "team-b/zeta"}},
		{store.ListOptions{Namespace: "team-a", Phase: "succeeded"}, []string{"team-a/alpha"}},
		{store.ListOptions{Limit: 2}, []string{"team-a/alpha", "team-a/beta"}},
		{store.ListOptions{Limit: 2, Offset: 2}, []string{"team-a/gamma", "team-b/zeta"}},
		{store.ListOptions{Offset: 3}, []string{"team-b/zeta"}},
		{store.ListOptions{Namespace: "nobody"}, nil},
	} {
		if got := names(c.opts); fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("List(%+v) = %v, want %v", c.opts, got, c.want)
		}
	}
	if _, err := st.List(ctx, store.ListOptions{Limit: -1}); err == nil {
		t.Error("List with a negative limit: no error")
	}

	// The summary reflects the saved status.
	runs, err := st.List(ctx, store.ListOptions{Namespace: "team-a", Phase: "failed"})
	if err != nil || len(runs) != 1 {
		t.Fatalf("List failed runs of team-a = %v, %v", runs, err)
	}
	r := runs[0]
	start := storetest.NewRun("x", "y").Object.Status.StartTime.Time
	if r.Phase != v1alpha1.RunFailed || r.Message != "phase failed" || !r.StartTime.Equal(start) || !r.EndTime.Equal(end) {
		t.Errorf("summary = %+v; want failed, message, start %v, end %v", r, start, end)
	}
	// NewRun: fetch succeeded; group and its sub-step notify running; sub-step wait not started.
	want := store.StepCounts{Total: 4, Pending: 1, Running: 2, Succeeded: 1}
	if r.Steps != want {
		t.Errorf("step counts = %+v, want %+v", r.Steps, want)
	}
	if run, err := st.Load(ctx, engine.Key{Namespace: "team-a", Name: "beta"}); err != nil || run.Version != r.Version {
		t.Errorf("summary version %d, stored run %v (%v)", r.Version, run.Version, err)
	}
	running, err := st.List(ctx, store.ListOptions{Phase: "executing"})
	if err != nil || len(running) != 1 || !running[0].EndTime.IsZero() {
		t.Errorf("executing runs = %+v (%v), want one without an end time", running, err)
	}
}

func TestCreate(t *testing.T) {
	ctx := t.Context()
	st := open(t, tempPath(t))
	run := storetest.NewRun("default", "deploy")
	run.Version = 99 // ignored
	if err := st.Create(ctx, run, false); err != nil {
		t.Fatal(err)
	}
	created := run.Version
	stored, err := st.Load(ctx, run.Key())
	if err != nil || stored.Version != created {
		t.Fatalf("Load after Create: version %v (%v), want %d", stored, err, created)
	}
	if err := st.Save(ctx, stored, []engine.LogEntry{{Step: "fetch", Message: "old log"}}); err != nil {
		t.Fatal(err)
	}

	again := storetest.NewRun("default", "deploy")
	again.Object.Status.Message = "second"
	if err := st.Create(ctx, again, false); !errors.Is(err, store.ErrExists) {
		t.Errorf("Create of a stored run without replace: err = %v, want ErrExists", err)
	}
	if got, _ := st.Load(ctx, run.Key()); got.Object.Status.Message == "second" {
		t.Error("a refused Create changed the stored run")
	}

	if err := st.Create(ctx, again, true); err != nil {
		t.Fatal(err)
	}
	got, err := st.Load(ctx, run.Key())
	if err != nil || got.Object.Status.Message != "second" || got.Version != again.Version {
		t.Errorf("after Create with replace: %v at %v (%v), want %q at %d", got.Object.Status.Message, got.Version, err, "second", again.Version)
	}
	if logs, err := st.Logs(ctx, run.Key(), ""); err != nil || len(logs) != 0 {
		t.Errorf("log after Create with replace = %v (%v), want empty", logs, err)
	}
	// Whoever still holds the replaced run cannot overwrite the new one.
	if err := st.Save(ctx, stored, nil); !errors.Is(err, engine.ErrConflict) {
		t.Errorf("Save of the replaced run: err = %v, want ErrConflict", err)
	}
}

func TestDelete(t *testing.T) {
	ctx := t.Context()
	st := open(t, tempPath(t))
	run := storetest.NewRun("default", "gone")
	if err := st.Save(ctx, run, []engine.LogEntry{{Step: "fetch"}}); err != nil {
		t.Fatal(err)
	}
	stale := *run
	if err := st.Delete(ctx, run.Key()); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Load(ctx, run.Key()); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("Load after Delete: err = %v, want ErrNotFound", err)
	}
	if logs, err := st.Logs(ctx, run.Key(), ""); err != nil || len(logs) != 0 {
		t.Errorf("log after Delete = %v (%v), want empty", logs, err)
	}
	if err := st.Delete(ctx, run.Key()); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("second Delete: err = %v, want ErrNotFound", err)
	}

	// A run created again under the name never takes a version the deleted one had, so a
	// process still holding the deleted run cannot overwrite the new one.
	fresh := storetest.NewRun("default", "gone")
	for range 3 {
		if err := st.Save(ctx, fresh, nil); err != nil {
			t.Fatal(err)
		}
		if fresh.Version <= stale.Version {
			t.Fatalf("new run's version %d is not above the deleted run's %d", fresh.Version, stale.Version)
		}
	}
	if err := st.Save(ctx, &stale, nil); !errors.Is(err, engine.ErrConflict) {
		t.Errorf("Save of the deleted run: err = %v, want ErrConflict", err)
	}
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
