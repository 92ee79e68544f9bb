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

// The API over a real PostgreSQL: the same run, from creation to deletion.
func TestRunOverTheAPIOnPostgres(t *testing.T) {
	if pg == nil {
		t.Skip("-short: no PostgreSQL")
	}
	st, err := postgres.Open(context.Background(), postgres.Options{URL: pg.NewDatabase(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	testRunOverTheAPI(t, servertest.Options{Store: st})
}
