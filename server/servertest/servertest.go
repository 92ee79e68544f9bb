// Package servertest starts a real `stepflow server` for tests: the server package's handler
// on a loopback port, over the embedded SQLite store in a temporary directory (or a store the
// test gives), with its engine running until the test ends. Every answer of the API is
// checked against the server's OpenAPI document, and a mismatch fails the test.
package servertest

import (
	"context"
	"io/fs"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/stepflow/stepflow/assembly"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/server"
	"github.com/stepflow/stepflow/store"
	"github.com/stepflow/stepflow/store/sqlite"
)

// Options adjust the server a test starts; the zero value is a server on a new SQLite store.
type Options struct {
	// Store, when set, is used instead of a new SQLite store; the test owns it.
	Store store.Store
	// Web is the dashboard's files; nil serves none.
	Web fs.FS
	// Clock, when set, is the engine's and the triggers' clock.
	Clock engine.Clock
	// Configure, when set, adjusts the server's options before it is built.
	Configure func(*server.Options)
}

// Server is a running server.
type Server struct {
	// URL is the server's address, http://127.0.0.1:PORT.
	URL    string
	Server *server.Server
	Store  store.Store
}

// Start starts a server and stops it when the test ends.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	st := opts.Store
	if st == nil {
		s, err := sqlite.Open(context.Background(), sqlite.Options{Path: filepath.Join(t.TempDir(), "stepflow.db")})
		if err != nil {
			t.Fatalf("open the store: %v", err)
		}
		t.Cleanup(func() { _ = s.Close() })
		st = s
	}
	sopts := server.Options{
		Store: st,
		Web:   opts.Web,
		Assembly: assembly.Config{
			Clock: opts.Clock,
			Retry: engine.RetryPolicy{Limit: 2, Backoff: engine.Backoff{Initial: 50 * time.Millisecond, Factor: 2, Max: time.Second}},
			Wait:  engine.Backoff{Initial: 50 * time.Millisecond, Factor: 2, Max: time.Second},
		},
	}
	if opts.Configure != nil {
		opts.Configure(&sopts)
	}
	srv, err := server.New(sopts)
	if err != nil {
		t.Fatalf("new server: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = srv.Start(ctx); close(done) }()
	checked, err := newAnswerChecker(t, srv.OpenAPI(), srv.Handler())
	if err != nil {
		t.Fatalf("route the OpenAPI document: %v", err)
	}
	hs := httptest.NewServer(checked)
	t.Cleanup(func() {
		hs.CloseClientConnections()
		hs.Close()
		checked.end()
		cancel()
		<-done
	})
	return &Server{URL: hs.URL, Server: srv, Store: st}
}

// Token creates an API token of role, limited to namespaces when any are given, and returns
// its secret.
func (s *Server) Token(t testing.TB, role string, namespaces ...string) string {
	t.Helper()
	r, err := server.ParseRole(role)
	if err != nil {
		t.Fatal(err)
	}
	_, secret, err := server.CreateToken(context.Background(), s.Store, "test-"+role, r, namespaces, time.Now())
	if err != nil {
		t.Fatalf("create a token: %v", err)
	}
	return secret
}
