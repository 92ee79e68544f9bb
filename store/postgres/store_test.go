package postgres_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

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

func TestCatalogSuite(t *testing.T) {
	storetest.RunStore(t, func(t *testing.T) store.Store { return open(t, newDatabase(t)) })
}

func TestTwoStoresOnOneDatabase(t *testing.T) {
	url := newDatabase(t)
	storetest.TwoStores(t, open(t, url), open(t, url))
}

func TestReopenKeepsRunsLogsAndObjects(t *testing.T) {
	url := newDatabase(t)
	storetest.Reopen(t, func() (store.Store, error) { return postgres.Open(t.Context(), postgres.Options{URL: url}) })
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

// A stored Workflow that cannot be decoded counts as changed: putting it again replaces it
// with the next generation.
func TestPutObjectsRepairsAnUnreadableWorkflow(t *testing.T) {
	ctx := t.Context()
	url := newDatabase(t)
	st := open(t, url)
	if err := st.PutObjects(ctx, nil, []*v1alpha1.Workflow{storetest.Workflow("default", "deploy")}); err != nil {
		t.Fatal(err)
	}
	if _, err := pgtest.Connect(t, url).Exec(ctx, `UPDATE workflows SET object = 'not JSON'`); err != nil {
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
