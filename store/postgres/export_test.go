package postgres

import "github.com/stepflow/stepflow/store/postgres/pgtest"

// PGServer is the server TestMain started, for the tests outside the package; nil under -short.
func PGServer() *pgtest.Server { return srv }
