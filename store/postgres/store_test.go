package postgres_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/store"
	"github.com/stepflow/stepflow/store/postgres"
	"github.com/stepflow/stepflow/store/postgres/pgtest"
	"github.com/stepflow/stepflow/store/storetest"
)

var _ storetest.LogReader = (*postgres.Store)(nil)

// newDatabase is an empty database of the test's own, on the package's server (TestMain is
// in schema_test.go).
func newDatabase(t testing.TB) string {
	t.Helper()
	return postgres.PGServer().NewDatabase(t)
}

// open opens a store on the database at url and closes it when the test ends.
func open(t testing.TB, url string) *postgres.Store {
	t.Helper()
	st, err := postgres.Open(t.Context(), postgres.Options{URL: url})
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

func TestStoreSuite(t *testing.T) {
	storetest.Run(t, func(t *testing.T) engine.Store { return open(t, newDatabase(t)) })
}

func TestTwoStoresOnOneDatabase(t *testing.T) {
	ctx := t.Context()
	url := newDatabase(t)
	stores := []*postgres.Store{open(t, url), open(t, url)}

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
}

func TestReopenKeepsRunsLogsAndObjects(t *testing.T) {
	ctx := t.Context()
	url := newDatabase(t)
	st, err := postgres.Open(ctx, postgres.Options{URL: url})
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

	st = open(t, url)
	got, err := st.Load(ctx, run.Key())
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != run.Version {
		t.Errorf("reopened: version %d, saved %d", got.Version, run.Version)
	}
	logs, err := st.Logs(ctx, run.Key(), "")
	if err != nil || len(logs) != 1 || logs[0].Message != "hello" {
		t.Errorf("reopened: logs %+v (%v), want the one entry", logs, err)
	}
	if _, err := st.Workflow(ctx, "default", "deploy"); err != nil {
		t.Errorf("reopened: workflow: %v", err)
	}
	// The run saves on from where it was.
	if err := st.Save(ctx, got, nil); err != nil {
		t.Errorf("save after reopening: %v", err)
	}
}

// A run's JSON comes back byte for byte, even a variable holding a NUL character, which a
// jsonb column would refuse.
func TestRunDataKeptExactly(t *testing.T) {
	ctx := t.Context()
	st := open(t, newDatabase(t))
	run := storetest.NewRun("default", "nul")
	run.Vars["raw"] = json.RawMessage(`{"z":1,"a":"x\u0000y"}`)
	if err := st.Save(ctx, run, []engine.LogEntry{{Step: "fetch", Data: json.RawMessage(`{"z":"\u0000","a":2}`)}}); err != nil {
		t.Fatal(err)
	}
	got, err := st.Load(ctx, run.Key())
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"z":1,"a":"x\u0000y"}`; string(got.Vars["raw"]) != want {
		t.Errorf("variable raw = %s, want %s as saved", got.Vars["raw"], want)
	}
	logs, err := st.Logs(ctx, run.Key(), "fetch")
	if err != nil || len(logs) != 1 {
		t.Fatalf("logs = %v, %v", logs, err)
	}
	if want := `{"z":"\u0000","a":2}`; string(logs[0].Data) != want {
		t.Errorf("log data = %s, want %s as saved", logs[0].Data, want)
	}
}

func TestCreate(t *testing.T) {
	ctx := t.Context()
	st := open(t, newDatabase(t))
	run := storetest.NewRun("default", "created")
	run.Version = 42 // ignored
	if err := st.Create(ctx, run, false); err != nil {
		t.Fatal(err)
	}
	if run.Version == 0 || run.Version == 42 {
		t.Errorf("Create set Version %d, want the stored version", run.Version)
	}
	if err := st.Save(ctx, run, []engine.LogEntry{{Step: "fetch", Message: "old run"}}); err != nil {
		t.Fatal(err)
	}
	holder, err := st.Load(ctx, run.Key())
	if err != nil {
		t.Fatal(err)
	}

	// Without replace, a stored run stays.
	again := storetest.NewRun("default", "created")
	again.Object.Status.Message = "second"
	if err := st.Create(ctx, again, false); !errors.Is(err, store.ErrExists) {
		t.Errorf("Create of a stored run: err = %v, want store.ErrExists", err)
	}

	// With replace, the run and its log are new, and the old version conflicts.
	if err := st.Create(ctx, again, true); err != nil {
		t.Fatal(err)
	}
	got, err := st.Load(ctx, run.Key())
	if err != nil {
		t.Fatal(err)
	}
	if got.Object.Status.Message != "second" || got.Version != again.Version {
		t.Errorf("after replace: message %q at version %d; want %q at %d", got.Object.Status.Message, got.Version, "second", again.Version)
	}
	if logs, err := st.Logs(ctx, run.Key(), ""); err != nil || len(logs) != 0 {
		t.Errorf("after replace: log %v (%v), want empty", logs, err)
	}
	if err := st.Save(ctx, holder, nil); !errors.Is(err, engine.ErrConflict) {
		t.Errorf("save of the replaced run's version: err = %v, want ErrConflict", err)
	}
}

func TestDelete(t *testing.T) {
	ctx := t.Context()
	st := open(t, newDatabase(t))
	run := storetest.NewRun("default", "doomed")
	if err := st.Save(ctx, run, []engine.LogEntry{{Step: "fetch", Message: "one"}}); err != nil {
		t.Fatal(err)
	}
	old := run.Version
	if err := st.Delete(ctx, run.Key()); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Load(ctx, run.Key()); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("Load after Delete: err = %v, want ErrNotFound", err)
	}
	if err := st.Delete(ctx, run.Key()); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("second Delete: err = %v, want ErrNotFound", err)
	}

	// Created again, the run has a fresh log and a version the old one never had.
	fresh := storetest.NewRun("default", "doomed")
	if err := st.Save(ctx, fresh, nil); err != nil {
		t.Fatal(err)
	}
	if fresh.Version == old {
		t.Errorf("the run created again has the deleted run's version %d", old)
	}
	if logs, err := st.Logs(ctx, run.Key(), ""); err != nil || len(logs) != 0 {
		t.Errorf("log of the run created again = %v (%v), want empty", logs, err)
	}
	run.Version = old
	if err := st.Save(ctx, run, nil); !errors.Is(err, engine.ErrConflict) {
		t.Errorf("save at the deleted run's version: err = %v, want ErrConflict", err)
	}
}

// A delete and a save of the same run at once: whichever goes first, no log entry of the
// run outlives it.
func TestDeleteRacingSave(t *testing.T) {
	ctx := t.Context()
	st := open(t, newDatabase(t))
	for i := range 20 {
		run := storetest.NewRun("race", fmt.Sprintf("run-%d", i))
		if err := st.Save(ctx, run, nil); err != nil {
			t.Fatal(err)
		}
		var saveErr, deleteErr error
		var wg sync.WaitGroup
		wg.Go(func() { saveErr = st.Save(ctx, run, []engine.LogEntry{{Step: "fetch", Message: "late"}}) })
		wg.Go(func() { deleteErr = st.Delete(ctx, run.Key()) })
		wg.Wait()
		if deleteErr != nil {
			t.Fatalf("%s: delete: %v", run.Key(), deleteErr)
		}
		if saveErr != nil && !errors.Is(saveErr, engine.ErrConflict) {
			t.Fatalf("%s: save: %v", run.Key(), saveErr)
		}
		if logs, err := st.Logs(ctx, run.Key(), ""); err != nil || len(logs) != 0 {
			t.Fatalf("%s: log after the delete = %v (%v), want empty (save err %v)", run.Key(), logs, err, saveErr)
		}
	}
}

func TestList(t *testing.T) {
	ctx := t.Context()
	st := open(t, newDatabase(t))
	start := time.Date(2025, 3, 14, 15, 9, 26, 0, time.UTC)
	for _, r := range []struct {
		ns, name string
		phase    v1alpha1.WorkflowRunPhase
	}{
		{"a", "one", v1alpha1.RunExecuting},
		{"a", "two", v1alpha1.RunSucceeded},
		{"b", "three", v1alpha1.RunExecuting},
		{"b", "four", ""},
	} {
		run := storetest.NewRun(r.ns, r.name)
		run.Object.Status.Phase = r.phase
		if r.phase == v1alpha1.RunSucceeded {
			run.Object.Status.EndTime = metav1.NewTime(start.Add(time.Hour))
		}
		if r.phase == "" {
			run.Object.Status = v1alpha1.WorkflowRunStatus{}
			run.Spec = nil
		}
		if err := st.Save(ctx, run, nil); err != nil {
			t.Fatal(err)
		}
	}
	names := func(opts store.ListOptions) string {
		t.Helper()
		got, err := st.List(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range got {
			out = append(out, r.Namespace+"/"+r.Name)
		}
		return strings.Join(out, " ")
	}
	for _, c := range []struct {
		opts store.ListOptions
		want string
	}{
		{store.ListOptions{}, "a/one a/two b/four b/three"},
		{store.ListOptions{Namespace: "b"}, "b/four b/three"},
		{store.ListOptions{Phase: "executing"}, "a/one b/three"},
		{store.ListOptions{Namespace: "a", Phase: "succeeded"}, "a/two"},
		{store.ListOptions{Limit: 2}, "a/one a/two"},
		{store.ListOptions{Limit: 2, Offset: 1}, "a/two b/four"},
		{store.ListOptions{Offset: 3}, "b/three"},
		{store.ListOptions{Namespace: "c"}, ""},
	} {
		if got := names(c.opts); got != c.want {
			t.Errorf("List(%+v) = %q, want %q", c.opts, got, c.want)
		}
	}
	if _, err := st.List(ctx, store.ListOptions{Limit: -1}); err == nil {
		t.Error("List with a negative limit: no error")
	}

	got, err := st.List(ctx, store.ListOptions{Namespace: "a"})
	if err != nil || len(got) != 2 {
		t.Fatalf("List a = %v, %v", got, err)
	}
	one, two := got[0], got[1]
	// storetest.NewRun: fetch succeeded, the group and its sub-step notify running, the
	// group's second sub-step not started: 4 steps.
	wantSteps := store.StepCounts{Total: 4, Pending: 1, Running: 2, Succeeded: 1}
	if one.Phase != v1alpha1.RunExecuting || one.Message != "waiting for notify" || one.Steps != wantSteps {
		t.Errorf("a/one = %+v; want executing, its message, steps %+v", one, wantSteps)
	}
	if !one.StartTime.Equal(start) || !one.EndTime.IsZero() || one.StartTime.Location() != time.UTC {
		t.Errorf("a/one times %v to %v; want from %v (UTC), no end", one.StartTime, one.EndTime, start)
	}
	if !two.EndTime.Equal(start.Add(time.Hour)) {
		t.Errorf("a/two end %v, want %v", two.EndTime, start.Add(time.Hour))
	}
	loaded, err := st.Load(ctx, engine.Key{Namespace: "a", Name: "one"})
	if err != nil || one.Version != loaded.Version {
		t.Errorf("a/one listed at version %d, loads at %d (%v)", one.Version, loaded.Version, err)
	}

	// A run not started yet counts its inline steps, all pending.
	four, err := st.List(ctx, store.ListOptions{Namespace: "b", Limit: 1})
	if err != nil || len(four) != 1 {
		t.Fatalf("List b = %v, %v", four, err)
	}
	if want := (store.StepCounts{Total: 4, Pending: 4}); four[0].Steps != want || !four[0].StartTime.IsZero() {
		t.Errorf("b/four = %+v; want steps %+v and no start time", four[0], want)
	}
}

func TestOpenRejectsBadOptions(t *testing.T) {
	ctx := t.Context()
	for _, opts := range []postgres.Options{
		{},
		{URL: "postgres://%zz"},
		{URL: "postgres://127.0.0.1/x", MaxConns: -1},
	} {
		if st, err := postgres.Open(ctx, opts); err == nil {
			_ = st.Close()
			t.Errorf("Open(%+v): no error", opts)
		}
	}
}

// Open fails, saying where, when no server answers.
func TestOpenUnreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	_, err := postgres.Open(ctx, postgres.Options{URL: "postgres://nobody@127.0.0.1:1/none?sslmode=disable&connect_timeout=5"})
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:1/none") {
		t.Errorf("Open of a closed port: err = %v, want one naming 127.0.0.1:1/none", err)
	}
}

// Stores whose URLs set different search_paths keep their tables, and so their runs, apart
// in one database.
func TestSchemasKeepStoresApart(t *testing.T) {
	ctx := t.Context()
	url := newDatabase(t)
	conn := pgtest.Connect(t, url)
	if _, err := conn.Exec(ctx, `CREATE SCHEMA blue; CREATE SCHEMA green`); err != nil {
		t.Fatal(err)
	}
	blue, green := open(t, url+"&search_path=blue"), open(t, url+"&search_path=green")
	run := storetest.NewRun("default", "only-blue")
	if err := blue.Save(ctx, run, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := green.Load(ctx, run.Key()); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("the green store loads the blue store's run: err = %v, want ErrNotFound", err)
	}
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM blue.runs`).Scan(&n); err != nil || n != 1 {
		t.Errorf("blue.runs has %d rows (%v), want 1", n, err)
	}
}

// A save whose context has ended writes nothing.
func TestSaveWithEndedContext(t *testing.T) {
	st := open(t, newDatabase(t))
	run := storetest.NewRun("default", "cancelled")
	if err := st.Save(t.Context(), run, nil); err != nil {
		t.Fatal(err)
	}
	version := run.Version
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	run.Object.Status.Message = "never stored"
	if err := st.Save(ctx, run, []engine.LogEntry{{Step: "fetch"}}); !errors.Is(err, context.Canceled) {
		t.Errorf("Save with a cancelled context: err = %v, want context.Canceled", err)
	}
	got, err := st.Load(t.Context(), run.Key())
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != version || got.Object.Status.Message == "never stored" || run.Version != version {
		t.Errorf("after a cancelled save: stored version %d, message %q, run.Version %d; want version %d unchanged",
			got.Version, got.Object.Status.Message, run.Version, version)
	}
}
