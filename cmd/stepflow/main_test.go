package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

// TestMain makes the CLI available to scripts as a real process, `exec stepflow-exe` (for what
// needs a process to kill); the custom command `stepflow` runs it in the test process instead.
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"stepflow-exe": func() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) },
	})
}

// TestScripts drives the CLI end to end: each testdata/script/*.txtar is a session at a shell,
// against a local HTTP server ($SERVER) started for it.
func TestScripts(t *testing.T) {
	kube := &scriptCluster{}
	t.Cleanup(kube.stop)
	testscript.Run(t, testscript.Params{
		Dir:                 filepath.Join("testdata", "script"),
		RequireExplicitExec: true,
		UpdateScripts:       os.Getenv("UPDATE_SCRIPTS") != "",
		Setup: func(env *testscript.Env) error {
			srv := newTestServer()
			hs := httptest.NewServer(srv)
			env.Defer(hs.Close)
			env.Defer(srv.releaseAll)
			env.Values["server"] = srv
			env.Values["state"] = &scriptState{}
			env.Setenv("SERVER", hs.URL)
			env.Setenv("STEPFLOW_DATA_DIR", filepath.Join(env.WorkDir, "data"))
			examples, err := filepath.Abs(filepath.Join("..", "..", "examples"))
			env.Setenv("EXAMPLES", examples)
			if err != nil {
				return err
			}
			testdata, err := filepath.Abs("testdata")
			env.Setenv("TESTDATA", testdata)
			return err
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"stepflow":  cmdStepflow,
			"exitcode":  cmdExitCode,
			"calls":     cmdCalls,
			"waitcalls": cmdWaitCalls,
			"lastbody":  cmdLastBody,
			"subst":     cmdSubst,
			"kube":      kube.cmdKube,
			"kready":    kube.cmdKready,
			"filesize":  cmdFileSize,
			"envfile":   cmdEnvFile,
			"envmatch":  cmdEnvMatch,
			"freeport":  cmdFreePort,
			"waithttp":  cmdWaitHTTP,
		},
	})
}

// scriptState is what the commands of one script remember between lines.
type scriptState struct {
	lastCode int
}

// cmdStepflow runs the CLI in the test process, against the script's data directory; its exit
// code is kept for exitcode. `! stepflow ...` expects a non-zero exit.
func cmdStepflow(ts *testscript.TestScript, neg bool, args []string) {
	var stdout, stderr strings.Builder
	// The process environment is not the script's: pass what the CLI reads from it.
	pre := []string{"--data-dir", ts.Getenv("STEPFLOW_DATA_DIR")}
	for _, e := range [][2]string{{"STEPFLOW_SERVER", "--server"}, {"STEPFLOW_TOKEN", "--token"}} {
		if v := ts.Getenv(e[0]); v != "" {
			pre = append(pre, e[1], v)
		}
	}
	code := runIn(ts.Getenv("WORK"), append(pre, args...), &stdout, &stderr)
	ts.Value("state").(*scriptState).lastCode = code
	_, _ = io.WriteString(ts.Stdout(), stdout.String())
	_, _ = io.WriteString(ts.Stderr(), stderr.String())
	if (code != 0) != neg {
		ts.Fatalf("stepflow %s: exit code %d", strings.Join(args, " "), code)
	}
}

// cmdExitCode asserts the exit code of the last stepflow command: exitcode 3
func cmdExitCode(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 || neg {
		ts.Fatalf("usage: exitcode N")
	}
	want, err := strconv.Atoi(args[0])
	ts.Check(err)
	if got := ts.Value("state").(*scriptState).lastCode; got != want {
		ts.Fatalf("exit code %d, want %d", got, want)
	}
}

// cmdSubst expands $VARS of the script's environment in files, in place: subst run.yaml
func cmdSubst(ts *testscript.TestScript, neg bool, args []string) {
	for _, f := range args {
		b, err := os.ReadFile(ts.MkAbs(f))
		ts.Check(err)
		ts.Check(os.WriteFile(ts.MkAbs(f), []byte(os.Expand(string(b), ts.Getenv)), 0o644))
	}
}

// cmdFileSize asserts that a file is at most N bytes: filesize status.json 40000
func cmdFileSize(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 || neg {
		ts.Fatalf("usage: filesize FILE MAXBYTES")
	}
	maxBytes, err := strconv.Atoi(args[1])
	ts.Check(err)
	info, err := os.Stat(ts.MkAbs(args[0]))
	ts.Check(err)
	if info.Size() > int64(maxBytes) {
		ts.Fatalf("%s is %d bytes, more than %d", args[0], info.Size(), maxBytes)
	}
}

// cmdWaitCalls waits (up to 30s) until the server has seen at least N requests: waitcalls 'POST /block/a' 1
func cmdWaitCalls(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 || neg {
		ts.Fatalf("usage: waitcalls 'METHOD /path' N")
	}
	want, err := strconv.Atoi(args[1])
	ts.Check(err)
	srv := ts.Value("server").(*testServer)
	deadline := time.Now().Add(30 * time.Second)
	for srv.count(args[0]) < want {
		if time.Now().After(deadline) {
			ts.Fatalf("%s: %d calls after 30s, want %d", args[0], srv.count(args[0]), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// cmdCalls asserts how many requests the server saw: calls 'POST /hook/a' 1
func cmdCalls(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: calls 'METHOD /path' N")
	}
	want, err := strconv.Atoi(args[1])
	ts.Check(err)
	got := ts.Value("server").(*testServer).count(args[0])
	if (got == want) == neg {
		ts.Fatalf("%s: %d calls, want %s%d", args[0], got, map[bool]string{true: "not ", false: ""}[neg], want)
	}
}

// cmdLastBody writes the body of the last request to a path into a file: lastbody /hook/a out.json
func cmdLastBody(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 || neg {
		ts.Fatalf("usage: lastbody /path FILE")
	}
	body := ts.Value("server").(*testServer).lastBody(args[0])
	ts.Check(os.WriteFile(ts.MkAbs(args[1]), []byte(body), 0o644))
}

// testServer is the HTTP service the scripts' workflows talk to.
//
//	GET  /version               {"tag":"v1.2.3","build":42}
//	ANY  /hook/NAME             records the body, answers {"ok":true,"name":NAME}
//	GET  /ready/NAME?after=N    {"ready": <the N-th call or later>, "count": calls so far}
//	ANY  /status/CODE           answers that status with {"error":"status CODE"}
//	ANY  /block/NAME            the first call hangs until the client goes away; later ones answer at once
type testServer struct {
	mu      sync.Mutex
	calls   map[string]int
	bodies  map[string]string
	release chan struct{}
}

func newTestServer() *testServer {
	return &testServer{calls: map[string]int{}, bodies: map[string]string{}, release: make(chan struct{})}
}

func (s *testServer) releaseAll() { close(s.release) }

func (s *testServer) count(key string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[key]
}

func (s *testServer) lastBody(path string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bodies[path]
}

func (s *testServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	s.calls[r.Method+" "+r.URL.Path]++
	n := s.calls[r.Method+" "+r.URL.Path]
	s.bodies[r.URL.Path] = string(body)
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	reply := func(code int, v any) {
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(v)
	}
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	switch {
	case r.URL.Path == "/version":
		reply(200, map[string]any{"tag": "v1.2.3", "build": 42})
	case parts[0] == "hook" && len(parts) == 2:
		reply(200, map[string]any{"ok": true, "name": parts[1]})
	case parts[0] == "ready" && len(parts) == 2:
		after, _ := strconv.Atoi(r.URL.Query().Get("after"))
		reply(200, map[string]any{"ready": n >= after, "count": n})
	case parts[0] == "block" && len(parts) == 2:
		if n == 1 {
			select {
			case <-r.Context().Done():
			case <-s.release:
			}
			return
		}
		reply(200, map[string]any{"ok": true})
	case parts[0] == "status" && len(parts) == 2:
		code, err := strconv.Atoi(parts[1])
		if err != nil || code < 100 || code > 599 {
			code = 400
		}
		reply(code, map[string]any{"error": fmt.Sprintf("status %d", code)})
	default:
		reply(404, map[string]any{"error": "no such path " + r.URL.Path})
	}
}

// cmdEnvFile sets an environment variable to a file's content, trimmed: envfile VAR FILE
func cmdEnvFile(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 || neg {
		ts.Fatalf("usage: envfile VAR FILE")
	}
	ts.Setenv(args[0], strings.TrimSpace(ts.ReadFile(args[1])))
}

// cmdEnvMatch sets an environment variable to the first group of a regular expression's first
// match in a file: envmatch SECRET stderr.txt 'secret (\S+)'
func cmdEnvMatch(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 3 || neg {
		ts.Fatalf("usage: envmatch VAR FILE REGEXP")
	}
	re, err := regexp.Compile(args[2])
	ts.Check(err)
	m := re.FindStringSubmatch(ts.ReadFile(args[1]))
	if len(m) < 2 {
		ts.Fatalf("%s: no match of %s with a group", args[1], args[2])
	}
	ts.Setenv(args[0], m[1])
}

// cmdFreePort sets an environment variable to a free loopback port: freeport VAR
func cmdFreePort(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 || neg {
		ts.Fatalf("usage: freeport VAR")
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	ts.Check(err)
	port := ln.Addr().(*net.TCPAddr).Port
	ts.Check(ln.Close())
	ts.Setenv(args[0], strconv.Itoa(port))
}

// cmdWaitHTTP waits (up to 30s) until a URL answers 200: waithttp URL
func cmdWaitHTTP(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 || neg {
		ts.Fatalf("usage: waithttp URL")
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, args[0], nil)
		ts.Check(err)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			ts.Fatalf("%s did not answer 200 in 30s: %v", args[0], err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
