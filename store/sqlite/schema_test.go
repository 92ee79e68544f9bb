package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
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
