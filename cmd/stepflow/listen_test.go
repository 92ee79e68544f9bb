package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stepflow/stepflow/server"
	"github.com/stepflow/stepflow/store/sqlite"
)

// limitedServer is `stepflow server`'s HTTP server, with limits, over a real server on an
// embedded store, on a loopback port.
type limitedServer struct {
	t     *testing.T
	addr  string
	token string
}

func startLimited(t *testing.T, limits connLimits) *limitedServer {
	t.Helper()
	st, err := sqlite.Open(context.Background(), sqlite.Options{Path: filepath.Join(t.TempDir(), "stepflow.db")})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Options{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	_, token, err := server.CreateToken(context.Background(), st, "test", server.RoleOperator, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	engineDone := make(chan struct{})
	go func() { _ = srv.Start(ctx); close(engineDone) }()
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := limits.server(srv.Handler(), log.New(io.Discard, "", 0))
	serveDone := make(chan struct{})
	go func() { _ = hs.Serve(limits.listener(ln)); close(serveDone) }()
	t.Cleanup(func() {
		_ = hs.Close()
		<-serveDone
		cancel()
		<-engineDone
		_ = st.Close()
	})
	return &limitedServer{t: t, addr: ln.Addr().String(), token: token}
}

// request sends a request on a connection of its own and returns its status and body; client
// bounds the wait.
func (s *limitedServer) request(client *http.Client, method, path, body string) (int, string, error) {
	req, err := http.NewRequestWithContext(s.t.Context(), method, "http://"+s.addr+path, strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Authorization", "Bearer "+s.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// slowBody sends a request whose body comes a byte every 100ms, and returns the status the
// server answered and when.
func (s *limitedServer) slowBody(path string) (int, time.Duration) {
	s.t.Helper()
	conn, err := (&net.Dialer{}).DialContext(s.t.Context(), "tcp", s.addr)
	if err != nil {
		s.t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	start := time.Now()
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: stepflow\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{", path)
	go func() {
		for range 999 {
			time.Sleep(100 * time.Millisecond)
			if _, err := conn.Write([]byte(" ")); err != nil {
				return
			}
		}
	}()
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, time.Since(start)
	}
	resp.Body.Close()
	return resp.StatusCode, time.Since(start)
}

// A client sending its body slowly is answered 408 at --read-timeout, on the login and the
// hook routes; an idle keep-alive connection is closed at --idle-timeout; past
// --max-connections a connection waits; and event streams and ?wait, which answer late,
// outlive the read and write timeouts. Before, the server had no read, write or idle timeout
// and no cap: slow bodies and idle connections stayed open past a minute.
func TestSlowClientsAreCut(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: waits on timeouts for ten seconds")
	}
	limits := connLimits{readTimeout: time.Second, writeTimeout: 2 * time.Second, idleTimeout: time.Second, maxConnections: 3}
	s := startLimited(t, limits)

	for _, path := range []string{"/api/v1/login", "/api/v1/hooks/some-trigger"} {
		status, took := s.slowBody(path)
		if status != http.StatusRequestTimeout || took > 5*time.Second {
			t.Errorf("a slow body to %s: %d after %s, want 408 after about %s", path, status, took.Round(time.Millisecond), limits.readTimeout)
		}
	}

	// An idle keep-alive connection is closed.
	conn, err := (&net.Dialer{}).DialContext(t.Context(), "tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	fmt.Fprint(conn, "GET /healthz HTTP/1.1\r\nHost: stepflow\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	start := time.Now()
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) || time.Since(start) > 4*time.Second {
		t.Errorf("an idle connection: %v after %s, want closed after about %s", err, time.Since(start).Round(time.Millisecond), limits.idleTimeout)
	}

	// ?wait answers past the write timeout: the run waits three seconds.
	client := &http.Client{Timeout: 20 * time.Second}
	status, body, err := s.request(client, "POST", "/api/v1/runs?wait=20s", `{"apiVersion": "core.oam.dev/v1alpha1", "kind": "WorkflowRun",
		"metadata": {"name": "slow"}, "spec": {"workflowSpec": {"steps": [{"name": "pause", "type": "suspend", "properties": {"duration": "3s"}}]}}}`)
	if err != nil || status != http.StatusOK || !strings.Contains(body, `"status":"succeeded"`) {
		t.Errorf("?wait for a run of three seconds: %d %v %.200s", status, err, body)
	}

	// An event stream outlives the timeouts, and its events still come.
	status, _, err = s.request(client, "POST", "/api/v1/runs", `{"apiVersion": "core.oam.dev/v1alpha1", "kind": "WorkflowRun",
		"metadata": {"name": "gated"}, "spec": {"workflowSpec": {"steps": [{"name": "approve", "type": "suspend"}]}}}`)
	if err != nil || status != http.StatusCreated {
		t.Fatalf("create: %d %v", status, err)
	}
	events := s.stream("/api/v1/runs/default/gated/events")
	time.Sleep(3 * time.Second)
	if status, body, err := s.request(client, "POST", "/api/v1/runs/default/gated/resume", `{}`); err != nil || status != http.StatusOK {
		t.Fatalf("resume: %d %v %s", status, err, body)
	}
	if err := events.until(`"status":"succeeded"`, 10*time.Second); err != nil {
		t.Errorf("the event stream did not tell the run succeeded: %v", err)
	}

	// With every connection taken (three event streams), a fourth waits; one freed, it is
	// served.
	for range limits.maxConnections - 1 {
		s.stream("/api/v1/runs/default/gated/events")
	}
	if _, _, err := s.request(&http.Client{Timeout: time.Second}, "GET", "/healthz", ""); err == nil {
		t.Error("a connection past --max-connections was served")
	}
	events.close()
	if status, _, err := s.request(&http.Client{Timeout: 10 * time.Second}, "GET", "/healthz", ""); err != nil || status != http.StatusOK {
		t.Errorf("with a connection freed: %d %v", status, err)
	}
}

// eventStream is an open event stream: its lines, as they come, then why it ended.
type eventStream struct {
	lines chan string
	ended chan error
	body  io.Closer
}

func (s *limitedServer) stream(path string) *eventStream {
	s.t.Helper()
	req, err := http.NewRequestWithContext(s.t.Context(), http.MethodGet, "http://"+s.addr+path, nil)
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+s.token)
	// A transport of its own: the stream is a connection of its own.
	resp, err := (&http.Client{Transport: &http.Transport{}}).Do(req) //nolint:bodyclose // es.close closes it when the test ends
	if err != nil {
		s.t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		s.t.Fatalf("events: %d", resp.StatusCode)
	}
	es := &eventStream{lines: make(chan string, 1000), ended: make(chan error, 1), body: resp.Body}
	s.t.Cleanup(es.close)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			es.lines <- sc.Text()
		}
		es.ended <- sc.Err()
		close(es.lines)
	}()
	return es
}

// until reads the stream until a line holds want, within d.
func (e *eventStream) until(want string, d time.Duration) error {
	deadline := time.After(d)
	for {
		select {
		case line, ok := <-e.lines:
			if !ok {
				return fmt.Errorf("the stream ended: %w", <-e.ended)
			}
			if strings.Contains(line, want) {
				return nil
			}
		case <-deadline:
			return fmt.Errorf("no line with %s in %s", want, d)
		}
	}
}

func (e *eventStream) close() { _ = e.body.Close() }
