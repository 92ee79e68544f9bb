package postgres

import (
	"strings"
	"sync"
	"testing"

	"github.com/stepflow/stepflow/store/postgres/pgtest"
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
