package server_test

import (
	"context"
	"testing"

	"github.com/stepflow/stepflow/server/servertest"
	"github.com/stepflow/stepflow/store/postgres"
	"github.com/stepflow/stepflow/store/postgres/pgtest"
)

var pg *pgtest.Server

func TestMain(m *testing.M) { pgtest.Main(m, &pg) }

// onPostgres is a server's options over a new database of the real PostgreSQL; the test is
// skipped under -short, which has none.
func onPostgres(t *testing.T) servertest.Options {
	t.Helper()
	if pg == nil {
		t.Skip("-short: no PostgreSQL")
	}
	st, err := postgres.Open(context.Background(), postgres.Options{URL: pg.NewDatabase(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return servertest.Options{Store: st}
}

// The API over a real PostgreSQL: the same run, from creation to deletion.
func TestRunOverTheAPIOnPostgres(t *testing.T) {
	testRunOverTheAPI(t, onPostgres(t))
}
