package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// shutdownGrace is the time a stopping server is given before it is killed: the least of the
// systemd unit's TimeoutStopSec (40 s) and the Helm chart's terminationGracePeriodSeconds for
// the server (30 s), less a margin.
const shutdownGrace = 25 * time.Second

// TestServerSIGTERMMidRun stops a real stepflow server process with SIGTERM, as systemd and
// Kubernetes do, while a step of a run is in flight (its POST hangs), and starts it again on the
// same data directory: the server exits cleanly within the grace period, handing the step back
// (it is still recorded running) without waiting on the event stream the CLI holds open, and
// after the restart the run finishes; the steps that had
// finished, whose POSTs are not idempotent, are not repeated, and the step that was in flight
// runs again (at least once).
func TestServerSIGTERMMidRun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts stepflow server processes")
	}
	exe, err := exec.LookPath("stepflow-exe")
	if err != nil {
		t.Fatal(err)
	}
	hooks := newTestServer()
	hs := httptest.NewServer(hooks)
	defer hs.Close()
	defer hooks.releaseAll()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	cli := func(args ...string) string {
		t.Helper()
		var out, errOut strings.Builder
		if code := run(append([]string{"--data-dir", data}, args...), &out, &errOut); code != 0 {
			t.Fatalf("stepflow %s: exit code %d\n%s%s", strings.Join(args, " "), code, out.String(), errOut.String())
		}
		return out.String()
	}
	token := strings.TrimSpace(cli("token", "create", "--name", "ci", "--role", "admin"))
	runFile := filepath.Join(dir, "run.yaml")
	if err := os.WriteFile(runFile, []byte(os.Expand(`apiVersion: core.oam.dev/v1alpha1
kind: WorkflowRun
metadata: {name: stopped}
spec:
  workflowSpec:
    steps:
    - name: first
      type: webhook
      properties: {url: {value: "$SERVER/hook/first"}, data: {n: 1}}
    - name: second
      type: webhook
      properties: {url: {value: "$SERVER/block/second"}, data: {n: 2}}
    - name: third
      type: webhook
      properties: {url: {value: "$SERVER/hook/third"}, data: {n: 3}}
`, func(string) string { return hs.URL })), 0o644); err != nil {
		t.Fatal(err)
	}

	startServer := func() (*process, string) {
		t.Helper()
		addr := freeAddr(t)
		p := startProcess(t, exe, "--data-dir", data, "server", "--listen", addr)
		waitOK(t, "http://"+addr+"/healthz")
		return p, "http://" + addr
	}
	srv, url := startServer()
	// The run is created through the API by a CLI that follows it, as a user would.
	startProcess(t, exe, "--server", url, "--token", token, "run", runFile)
	deadline := time.Now().Add(30 * time.Second)
	for hooks.count("POST /block/second") < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("the step second did not make its request within 30s; server:\n%s", srv.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}

	began := time.Now()
	if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-srv.exited:
	case <-time.After(shutdownGrace):
		t.Fatalf("the server had not exited %s after SIGTERM", shutdownGrace)
	}
	took := time.Since(began)
	t.Logf("the server exited %s after SIGTERM", took.Round(time.Millisecond))
	if srv.err != nil {
		t.Fatalf("the server exited with %v after SIGTERM, want 0:\n%s", srv.err, srv.output())
	}
	// The CLI's event stream is open: it must not hold the shutdown for the HTTP server's
	// whole 10 s (requestGrace ends it after 2 s).
	if took >= 9*time.Second {
		t.Errorf("the server took %s to exit: an open event stream held its shutdown", took)
	}
	if !strings.Contains(srv.output(), "stepflow server stopped") {
		t.Errorf("the server did not say it stopped:\n%s", srv.output())
	}
	got := cli("get", "stopped", "-o", "table")
	if !strings.Contains(got, "second") || !strings.Contains(cli("get", "stopped"), "status: executing") {
		t.Fatalf("after SIGTERM the run is not executing with second in flight:\n%s", got)
	}

	// Started again, the server takes the run up and finishes it.
	srv2, _ := startServer()
	deadline = time.Now().Add(60 * time.Second)
	for !strings.Contains(cli("get", "stopped", "-o", "json"), `"status": "succeeded"`) {
		if time.Now().After(deadline) {
			t.Fatalf("the run did not succeed within 60s of the restart:\n%s\nserver:\n%s", cli("get", "stopped"), srv2.out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	for key, want := range map[string]int{"POST /hook/first": 1, "POST /block/second": 2, "POST /hook/third": 1} {
		if n := hooks.count(key); n != want {
			t.Errorf("%s: %d calls, want %d", key, n, want)
		}
	}
}

// freeAddr is a loopback address with a port free at the time of the call.
func freeAddr(t *testing.T) string {
	t.Helper()
	var lc net.ListenConfig
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().String()
}

// waitOK waits up to 30 s for url to answer 200.
func waitOK(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatal(fmt.Errorf("%s did not answer 200 within 30s: %w", url, err))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
