package pgtest

import (
	"context"
	"flag"
	"fmt"
	"os"
	"testing"
	"time"
)

// Main is the TestMain of a package whose tests need PostgreSQL: it starts a server and sets
// *srv, runs the tests, stops the server and exits with the tests' code. Under -short it
// starts none and leaves *srv nil, and NewDatabase skips the tests that need it. When the
// server binaries are missing it fails, saying how to install them.
func Main(m *testing.M, srv **Server) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	s, err := Start(ctx)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	*srv = s
	code := m.Run()
	if err := s.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = max(code, 1)
	}
	os.Exit(code)
}
