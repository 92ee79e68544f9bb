// Package pgtest runs a real PostgreSQL server for tests: Debian's server binaries (package
// postgresql), a cluster that initdb makes in a temporary directory, and a postgres process
// listening on a free loopback port, which Stop ends and whose directory it removes. The
// server trades durability for speed (fsync is off): it is for tests only.
//
// A package starts one server in its TestMain with Main, and each test takes a database of
// its own from it with NewDatabase.
package pgtest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrNoPostgres says the server binaries are missing, and how to get them.
var ErrNoPostgres = errors.New("PostgreSQL server binaries (initdb, postgres) not found: install Debian's package with `apt-get install -y postgresql` (or run go test -short to skip the tests that need them)")

// superuser is the name of the role initdb makes, which the tests log in as.
const superuser = "postgres"

// BinDir returns the directory holding initdb and postgres: $STEPFLOW_PG_BIN when set, else
// the newest /usr/lib/postgresql/<major>/bin that has both. It returns an error wrapping
// ErrNoPostgres when there is none.
func BinDir() (string, error) {
	if dir := os.Getenv("STEPFLOW_PG_BIN"); dir != "" {
		if !hasServer(dir) {
			return "", fmt.Errorf("%w (STEPFLOW_PG_BIN=%s)", ErrNoPostgres, dir)
		}
		return dir, nil
	}
	majors, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	// The newest major version first: 17 before 9.6.
	slices.SortFunc(majors, func(a, b string) int { return majorOf(b) - majorOf(a) })
	for _, dir := range majors {
		if hasServer(dir) {
			return dir, nil
		}
	}
	return "", fmt.Errorf("%w (looked in /usr/lib/postgresql/*/bin)", ErrNoPostgres)
}

func majorOf(binDir string) int {
	v := filepath.Base(filepath.Dir(binDir))
	major, _ := strconv.Atoi(strings.SplitN(v, ".", 2)[0])
	return major
}

func hasServer(dir string) bool {
	for _, bin := range []string{"initdb", "postgres"} {
		if fi, err := os.Stat(filepath.Join(dir, bin)); err != nil || fi.IsDir() {
			return false
		}
	}
	return true
}

// Server is a running PostgreSQL server.
type Server struct {
	// URL reaches the server's postgres database as the superuser, over TCP without a password.
	URL string

	dir     string // the temporary directory: the cluster's data and the server's socket
	cmd     *exec.Cmd
	log     *logBuffer
	exited  chan struct{} // closed when the process has exited; waitErr is then set
	waitErr error

	admin     *pgxpool.Pool // for CREATE DATABASE
	databases atomic.Int64
}

// Start makes a cluster in a temporary directory and starts a server on it, returning once
// it accepts connections. As root it runs initdb and postgres as the postgres user, since
// PostgreSQL refuses to run as root. ctx bounds the start only; Stop ends the server.
func Start(ctx context.Context) (*Server, error) {
	bin, err := BinDir()
	if err != nil {
		return nil, err
	}
	as, err := serverUser()
	if err != nil {
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	dir, err := os.MkdirTemp("", "stepflow-pgtest-")
	if err != nil {
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	s, err := start(ctx, bin, dir, as)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

func start(ctx context.Context, bin, dir string, as *syscall.SysProcAttr) (*Server, error) {
	if err := own(dir, as); err != nil {
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	data := filepath.Join(dir, "data")
	initdb := exec.CommandContext(ctx, filepath.Join(bin, "initdb"), "--pgdata="+data, "--username="+superuser,
		"--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync")
	initdb.Dir, initdb.SysProcAttr = dir, as
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %w\n%s", err, out)
	}
	port, err := freePort(ctx)
	if err != nil {
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	// The server outlives ctx, which bounds the start only; Stop ends it.
	cmd := exec.CommandContext(context.WithoutCancel(ctx), filepath.Join(bin, "postgres"), "-D", data,
		"-p", strconv.Itoa(port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories="+dir,
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
	cmd.Dir, cmd.SysProcAttr = dir, withParentDeathSignal(as)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	s := &Server{
		URL:    fmt.Sprintf("postgres://%s@127.0.0.1:%d/postgres?sslmode=disable", superuser, port),
		dir:    dir,
		cmd:    cmd,
		log:    new(logBuffer),
		exited: make(chan struct{}),
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	ready := make(chan struct{})
	go func() {
		s.watch(stderr, ready)
		s.waitErr = cmd.Wait()
		close(s.exited)
	}()
	select {
	case <-ready:
	case <-s.exited:
		return nil, fmt.Errorf("postgres exited before accepting connections: %w\n%s", s.waitErr, s.log)
	case <-ctx.Done():
		_ = s.stop()
		return nil, fmt.Errorf("postgres did not accept connections: %w\n%s", ctx.Err(), s.log)
	}
	s.admin, err = pgxpool.New(ctx, s.URL)
	if err != nil {
		_ = s.stop()
		return nil, fmt.Errorf("connect to postgres: %w", err)
	}
	return s, nil
}

// watch copies the server's log into s.log, and closes ready at the line saying that the
// server accepts connections.
func (s *Server) watch(stderr io.Reader, ready chan struct{}) {
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		line := sc.Text()
		s.log.writeLine(line)
		if ready != nil && strings.Contains(line, "database system is ready to accept connections") {
			close(ready)
			ready = nil
		}
	}
	// Keep the pipe drained after a read error, so the server never blocks on its log.
	_, _ = io.Copy(io.Discard, stderr)
}

// freePort returns a loopback TCP port nothing listens on now.
func freePort(ctx context.Context) (int, error) {
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	return port, l.Close()
}

// NewDatabase creates an empty database for the test, dropped when the test ends, and
// returns its URL. On a nil Server (TestMain under -short started none) it skips the test.
func (s *Server) NewDatabase(t testing.TB) string {
	t.Helper()
	if s == nil {
		t.Skip("needs PostgreSQL: not started under -short")
	}
	name := fmt.Sprintf("test_%d", s.databases.Add(1))
	ctx := context.WithoutCancel(t.Context())
	if _, err := s.admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		// FORCE ends the connections a test left open.
		if _, err := s.admin.Exec(context.Background(), "DROP DATABASE "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	u, err := url.Parse(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}

// Connect opens a connection to the database at url for a test to look into, closed when
// the test ends.
func Connect(t testing.TB, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatalf("connect to %s: %v", url, err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// Dir is the server's temporary directory, holding its data and its socket.
func (s *Server) Dir() string { return s.dir }

// Log returns what the server has logged so far.
func (s *Server) Log() string { return s.log.String() }

// Stop shuts the server down and removes its directory.
func (s *Server) Stop() error {
	s.admin.Close()
	err := s.stop()
	if rerr := os.RemoveAll(s.dir); err == nil && rerr != nil {
		err = fmt.Errorf("remove %s: %w", s.dir, rerr)
	}
	return err
}

// stop asks the server for a fast shutdown (its connections ended, no checkpoint wait
// beyond its own) and waits for it to exit, killing it after a minute.
func (s *Server) stop() error {
	if err := s.cmd.Process.Signal(syscall.SIGINT); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop postgres: %w", err)
	}
	kill := time.AfterFunc(time.Minute, func() { _ = s.cmd.Process.Kill() })
	defer kill.Stop()
	<-s.exited
	var exit *exec.ExitError
	if s.waitErr != nil && !errors.As(s.waitErr, &exit) {
		return fmt.Errorf("stop postgres: %w", s.waitErr)
	}
	if exit != nil && exit.ExitCode() != 0 {
		return fmt.Errorf("stop postgres: %w\n%s", s.waitErr, s.log)
	}
	return nil
}

// logBuffer is the server's log, written by the goroutine reading it and read by tests.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) writeLine(line string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.WriteString(line)
	b.buf.WriteByte('\n')
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
