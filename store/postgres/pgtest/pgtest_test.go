package pgtest_test

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/stepflow/stepflow/store/postgres/pgtest"
)

var srv *pgtest.Server

func TestMain(m *testing.M) { pgtest.Main(m, &srv) }

// Each test's database is its own: a table made in one is not in another, and both answer.
func TestNewDatabaseIsolates(t *testing.T) {
	a, b := pgtest.Connect(t, srv.NewDatabase(t)), pgtest.Connect(t, srv.NewDatabase(t))
	if _, err := a.Exec(t.Context(), `CREATE TABLE only_in_a (x int)`); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := b.QueryRow(t.Context(), `SELECT count(*) FROM pg_tables WHERE tablename = 'only_in_a'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("a table made in one test database is seen in another")
	}
	var version int
	if err := a.QueryRow(t.Context(), `SELECT current_setting('server_version_num')::int`).Scan(&version); err != nil {
		t.Fatal(err)
	}
	if version < 130000 {
		t.Errorf("server version %d; the tests need PostgreSQL 13 or newer (DROP DATABASE ... WITH (FORCE))", version)
	}
}

// A server of its own stops when asked, and leaves no directory behind.
func TestStartStop(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	s, err := pgtest.Start(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	conn := pgtest.Connect(t, s.URL)
	var one int
	if err := conn.QueryRow(t.Context(), `SELECT 1`).Scan(&one); err != nil || one != 1 {
		t.Fatalf("SELECT 1 = %d, %v", one, err)
	}
	dir := s.Dir()
	if err := s.Stop(); err != nil {
		t.Fatalf("stop: %v\nlog:\n%s", err, s.Log())
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the server's directory %s is still there after Stop (%v)", dir, err)
	}
	if err := conn.Ping(t.Context()); err == nil {
		t.Error("a connection to the stopped server still answers")
	}
}

// Without the server binaries, the error says how to install them.
func TestBinDirMissing(t *testing.T) {
	t.Setenv("STEPFLOW_PG_BIN", t.TempDir())
	_, err := pgtest.BinDir()
	if !errors.Is(err, pgtest.ErrNoPostgres) || !strings.Contains(err.Error(), "apt-get install -y postgresql") {
		t.Errorf("BinDir with no binaries: err = %v, want ErrNoPostgres with the install command", err)
	}
}
