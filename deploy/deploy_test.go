package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// stepflowBinary builds the stepflow command once for the tests of this package, stamped as a
// release is, and returns its path.
var stepflowBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "stepflow-deploy-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "stepflow")
	// Static, as `make image` builds it (and as the other tests that build it do, sharing the
	// build cache).
	cmd := exec.CommandContext(context.Background(), "go", "build", "-trimpath", "-ldflags", "-X main.version=v0.0.0-test -X main.commit=deadbeef", "-o", bin, "../cmd/stepflow")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %w\n%s", err, out)
	}
	return bin, nil
})

// built says that a test built the binary, for TestMain to remove it (and not build it).
var built atomic.Bool

func TestMain(m *testing.M) {
	code := m.Run()
	if built.Load() {
		if bin, err := stepflowBinary(); err == nil {
			_ = os.RemoveAll(filepath.Dir(bin))
		}
	}
	os.Exit(code)
}

func binary(t *testing.T) string {
	t.Helper()
	built.Store(true)
	bin, err := stepflowBinary()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// tool finds a program the test needs; CI installs it (scripts/test.sh).
func tool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is not installed (scripts/test.sh installs it): %v", name, err)
	}
	return path
}

// freePort is a loopback port free at the time of the call.
func freePort(t *testing.T) int {
	t.Helper()
	var lc net.ListenConfig
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().(*net.TCPAddr).Port
}

// waitHTTP waits until url answers 200.
func waitHTTP(t *testing.T, url string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not answer 200 within %s: %v", url, within, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// start runs a long-lived process until the test ends, its output in the test's log on failure.
func start(t *testing.T, name string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.CommandContext(context.WithoutCancel(t.Context()), name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("%s:\n%s", filepath.Base(name), out.String())
		}
	})
	return cmd
}

// TestAlertRules checks the alert rules with promtool and runs their unit tests.
func TestAlertRules(t *testing.T) {
	promtool := tool(t, "promtool")
	for _, args := range [][]string{
		{"check", "rules", "rules.yaml"},
		{"test", "rules", "rules_test.yaml"},
	} {
		cmd := exec.CommandContext(t.Context(), promtool, args...)
		cmd.Dir = "prometheus"
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// dashboard is what the test reads of a Grafana dashboard.
type dashboard struct {
	Title  string  `json:"title"`
	Panels []panel `json:"panels"`
}

type panel struct {
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

// TestDashboardQueriesAgainstPrometheus starts a real stepflow server, has it run runs that
// succeed, wait, time out, lose their evaluator and fail an action, has a real Prometheus
// scrape it, and runs every query of every panel of the dashboard in that Prometheus: each
// must return at least one series. Prometheus loads the alert rules too, and must find each
// of them healthy against the real metrics.
func TestDashboardQueriesAgainstPrometheus(t *testing.T) {
	if testing.Short() {
		t.Skip("starts stepflow server and Prometheus")
	}
	prometheus := tool(t, "prometheus")
	var d dashboard
	b, err := os.ReadFile(filepath.Join("grafana", "stepflow.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("grafana/stepflow.json: %v", err)
	}
	var exprs []string
	for _, p := range d.Panels {
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: its datasource is not the dashboard's ${datasource}", p.Title)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}

	bin := binary(t)
	work := t.TempDir()
	data := filepath.Join(work, "data")
	token := stepflowOut(t, bin, "--data-dir", data, "token", "create", "--name", "ci", "--role", "admin")
	port := freePort(t)
	srvURL := fmt.Sprintf("http://127.0.0.1:%d", port)
	start(t, bin, "--data-dir", data, "--eval-timeout", "10s", "--eval-memory", "64", "--retry-limit", "1",
		"--retry-backoff", "100ms", "server", "--listen", fmt.Sprintf("127.0.0.1:%d", port))
	waitHTTP(t, srvURL+"/healthz", 30*time.Second)

	// Prometheus, scraping the server every second, with the alert rules.
	rules, err := filepath.Abs(filepath.Join("prometheus", "rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(work, "prometheus.yml")
	if err := os.WriteFile(config, fmt.Appendf(nil, `global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: [%q]
scrape_configs:
- job_name: stepflow
  static_configs: [{targets: ["127.0.0.1:%d"]}]
`, rules, port), 0o644); err != nil {
		t.Fatal(err)
	}
	promPort := freePort(t)
	promURL := fmt.Sprintf("http://127.0.0.1:%d", promPort)
	start(t, prometheus, "--config.file="+config, "--storage.tsdb.path="+filepath.Join(work, "tsdb"),
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", promPort))
	waitHTTP(t, promURL+"/-/ready", 60*time.Second)

	// Two scrapes before the runs, so that the counters' first values (0) are in Prometheus and
	// increase() sees them rise.
	deadline := time.Now().Add(60 * time.Second)
	for query(t, promURL, `count_over_time(stepflow_build_info[1m]) >= 2`) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("Prometheus did not scrape the server twice within 60s")
		}
		time.Sleep(200 * time.Millisecond)
	}

	// The runs, through the server's API (the CLI with --server). The slow step's request is
	// answered only when the test ends.
	never := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-never:
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	defer close(never)
	runs, err := os.ReadFile(filepath.Join("testdata", "runs.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	runsFile := filepath.Join(work, "runs.yaml")
	if err := os.WriteFile(runsFile, bytes.ReplaceAll(runs, []byte("$SLOW_URL"), []byte(slow.URL+"/never")), 0o644); err != nil {
		t.Fatal(err)
	}
	run := exec.CommandContext(t.Context(), bin, "--server", srvURL, "--token", token, "run", runsFile)
	out, err := run.CombinedOutput()
	if code := run.ProcessState.ExitCode(); code != 1 && code != 3 {
		t.Fatalf("stepflow run: %v (exit code %d)\n%s", err, code, out)
	}
	for _, want := range []string{"fine succeeded", "took longer than 10s", "used more than 64 MiB", "approve suspending"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("stepflow run printed no %q:\n%s", want, out)
		}
	}

	// Every query returns a series once Prometheus has a few scrapes since the runs.
	deadline = time.Now().Add(90 * time.Second)
	pending := exprs
	for len(pending) > 0 {
		var still []string
		for _, e := range pending {
			if n := query(t, promURL, e); n == 0 {
				still = append(still, e)
			}
		}
		pending = still
		if len(pending) > 0 {
			if time.Now().After(deadline) {
				t.Fatalf("queries with no series after 90s:\n%s", strings.Join(pending, "\n"))
			}
			time.Sleep(time.Second)
		}
	}
	t.Logf("%d queries of %d panels each returned series", len(exprs), len(d.Panels))

	// The rules evaluate without error against the real series.
	var rulesResp struct {
		Data struct {
			Groups []struct {
				Rules []struct {
					Name, Health, LastError string
				} `json:"rules"`
			} `json:"groups"`
		} `json:"data"`
	}
	getJSON(t, promURL+"/api/v1/rules", &rulesResp)
	n := 0
	for _, g := range rulesResp.Data.Groups {
		for _, r := range g.Rules {
			n++
			if r.Health != "ok" {
				t.Errorf("rule %s: health %q %s", r.Name, r.Health, r.LastError)
			}
		}
	}
	if n < 5 {
		t.Errorf("Prometheus loaded %d rules, want 5", n)
	}
	// The timeout's alert fires from the real counter.
	var alerts struct {
		Data struct {
			Alerts []struct {
				Labels map[string]string `json:"labels"`
			} `json:"alerts"`
		} `json:"data"`
	}
	deadline = time.Now().Add(30 * time.Second)
	for {
		getJSON(t, promURL+"/api/v1/alerts", &alerts)
		names := map[string]bool{}
		for _, a := range alerts.Data.Alerts {
			names[a.Labels["alertname"]] = true
		}
		if names["StepflowEvaluationsTimingOut"] && names["StepflowEvaluatorDeaths"] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("alerts %v, want StepflowEvaluationsTimingOut and StepflowEvaluatorDeaths", names)
		}
		time.Sleep(time.Second)
	}
}

// stepflowOut runs the binary and returns its standard output, trimmed.
func stepflowOut(t *testing.T, bin string, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), bin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("stepflow %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

// query runs an instant query as Grafana would for the last point of a panel, with Grafana's
// $__rate_interval given a value, and returns how many series it answered.
func query(t *testing.T, promURL, expr string) int {
	t.Helper()
	q := strings.ReplaceAll(expr, "$__rate_interval", "30s")
	var resp struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []json.RawMessage `json:"result"`
		} `json:"data"`
	}
	getJSON(t, promURL+"/api/v1/query?query="+url.QueryEscape(q), &resp)
	if resp.Status != "success" {
		t.Fatalf("query %s: %s %s", q, resp.Status, resp.Error)
	}
	return len(resp.Data.Result)
}

func getJSON(t *testing.T, u string, v any) {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
}

// TestSystemdUnit verifies the server's unit with systemd-analyze, as systemd would load it,
// with its ExecStart pointed at a real stepflow binary: no error and no warning (an unknown or
// misspelled setting is a warning that systemd ignores). It then starts the server from the
// unit's own command line, with the environment systemd gives it, and checks it serves.
func TestSystemdUnit(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the stepflow binary")
	}
	analyze := tool(t, "systemd-analyze")
	bin := binary(t)
	unit, err := os.ReadFile(filepath.Join("systemd", "stepflow.service"))
	if err != nil {
		t.Fatal(err)
	}
	var exec0 string
	for line := range strings.Lines(string(unit)) {
		if after, ok := strings.CutPrefix(line, "ExecStart="); ok {
			exec0 = strings.TrimSpace(after)
		}
	}
	if !strings.HasPrefix(exec0, "/usr/local/bin/stepflow ") {
		t.Fatalf("ExecStart=%q, want /usr/local/bin/stepflow as docs/operations.md installs it", exec0)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "stepflow.service")
	if err := os.WriteFile(path, bytes.ReplaceAll(unit, []byte("/usr/local/bin/stepflow"), []byte(bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(t.Context(), analyze, "verify", path).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}

	// The command line as systemd runs it: $STATE_DIRECTORY and the default $STEPFLOW_ARGS
	// (from Environment=) put in, the listen address moved to a free port.
	state := filepath.Join(dir, "state")
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	argv := strings.Fields(exec0)[1:]
	for i, a := range argv {
		switch a {
		case "--data-dir=${STATE_DIRECTORY}":
			argv[i] = "--data-dir=" + state
		case "$STEPFLOW_ARGS":
			argv[i] = fmt.Sprintf("--listen=127.0.0.1:%d", port)
		}
	}
	start(t, bin, argv...)
	waitHTTP(t, fmt.Sprintf("http://127.0.0.1:%d/healthz", port), 30*time.Second)
	if _, err := os.Stat(filepath.Join(state, "stepflow.db")); err != nil {
		t.Errorf("the server's store is not in the state directory: %v", err)
	}
}
