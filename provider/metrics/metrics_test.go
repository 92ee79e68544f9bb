package metrics_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/definitions"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/provider/builtin"
	"github.com/stepflow/stepflow/provider/metrics"
	"github.com/stepflow/stepflow/provider/op"
	"github.com/stepflow/stepflow/step"
)

const prometheusBinary = "/usr/bin/prometheus"

// target is the endpoint Prometheus scrapes: one gauge whose value the test sets. Every scrape
// sends the value it served on scraped.
type target struct {
	mu      sync.Mutex
	value   float64
	scraped chan float64
}

func (g *target) set(v float64) {
	g.mu.Lock()
	g.value = v
	g.mu.Unlock()
}

func (g *target) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	g.mu.Lock()
	v := g.value
	g.mu.Unlock()
	fmt.Fprintf(w, "# TYPE app_success_ratio gauge\napp_success_ratio %s\n", strconv.FormatFloat(v, 'g', -1, 64))
	select {
	case g.scraped <- v:
	default:
	}
}

// prometheus is a real Prometheus scraping a target every second.
type prometheus struct {
	url    string
	target *target
}

// startPrometheus runs Debian's prometheus on a free loopback port with its storage in a
// temporary directory, until the test ends.
func startPrometheus(t *testing.T) *prometheus {
	t.Helper()
	if _, err := os.Stat(prometheusBinary); err != nil {
		if testing.Short() {
			t.Skip("no Prometheus: " + err.Error())
		}
		t.Fatalf("this test runs a real Prometheus and %s is missing: install Debian's package with `apt-get install -y prometheus` (or run go test -short to skip)", prometheusBinary)
	}
	g := &target{scraped: make(chan float64, 1)}
	ts := httptest.NewServer(g)
	t.Cleanup(ts.Close)

	dir := t.TempDir()
	config := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: app
    static_configs:
      - targets: [%q]
`, strings.TrimPrefix(ts.URL, "http://"))
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	cmd := exec.CommandContext(t.Context(), prometheusBinary,
		"--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--log.level=warn")
	log, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		if err := <-exited; t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "prometheus.log"))
			t.Logf("prometheus (%v) log:\n%s", err, b)
		}
	})
	// Prometheus is up once it scrapes.
	select {
	case <-g.scraped:
	case err := <-exited:
		b, _ := os.ReadFile(filepath.Join(dir, "prometheus.log"))
		t.Fatalf("prometheus exited: %v\n%s", err, b)
	case <-time.After(60 * time.Second):
		t.Fatal("prometheus did not scrape within a minute")
	}
	return &prometheus{url: "http://" + addr, target: g}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := new(net.ListenConfig).Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// show sets the target's value and returns once Prometheus answers a query with it: after
// each scrape, it asks again.
func (p *prometheus) show(t *testing.T, v float64) {
	t.Helper()
	p.target.set(v)
	deadline := time.After(60 * time.Second)
	for {
		select {
		case <-p.target.scraped:
		case <-deadline:
			t.Fatalf("prometheus does not show app_success_ratio %v within a minute", v)
		}
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, p.url+"/api/v1/query?query=app_success_ratio", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			continue
		}
		var ar struct {
			Data struct {
				Result []struct {
					Value [2]any `json:"value"`
				} `json:"result"`
			} `json:"data"`
		}
		err = json.NewDecoder(resp.Body).Decode(&ar)
		resp.Body.Close()
		if err == nil && len(ar.Data.Result) == 1 && ar.Data.Result[0].Value[1] == strconv.FormatFloat(v, 'g', -1, 64) {
			return
		}
	}
}

// session is a fake step session: a clock the test moves, and the run variables.
type session struct {
	now  time.Time
	vars map[string]json.RawMessage
}

func (s *session) Now() time.Time                          { return s.now }
func (s *session) Wait(string)                             {}
func (s *session) Suspend(time.Duration, string) bool      { return true }
func (s *session) Fail(string)                             {}
func (s *session) Break(string)                            {}
func (s *session) Message(string)                          {}
func (s *session) Log(int, string, any)                    {}
func (s *session) Report(step.Report)                      {}
func (s *session) Redact(v string) string                  { return v }
func (s *session) Sensitive(...string)                     {}
func (s *session) SetVar(name string, v json.RawMessage)   { s.vars[name] = v }
func (s *session) Var(name string) (json.RawMessage, bool) { v, ok := s.vars[name]; return v, ok }

func promCheck(t *testing.T, opts metrics.Options) *step.Action {
	t.Helper()
	r := step.NewRegistry()
	metrics.Register(r, opts)
	a, ok := r.Action("metrics", "promCheck")
	if !ok {
		t.Fatal("metrics.promCheck is not registered")
	}
	return a
}

type result struct {
	Result  bool   `json:"result"`
	Failed  bool   `json:"failed"`
	Message string `json:"message"`
}

func check(t *testing.T, a *step.Action, s *session, p map[string]any) (result, error) {
	t.Helper()
	out, err := a.Run(context.Background(), &step.Call{Params: p, Path: "check", Step: "gate", Session: s})
	if err != nil {
		return result{}, err
	}
	var r result
	b, _ := json.Marshal(out)
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	return r, nil
}

func TestPromCheckAgainstPrometheus(t *testing.T) {
	prom := startPrometheus(t)
	a := promCheck(t, metrics.Options{})
	t0 := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	s := &session{now: t0, vars: map[string]json.RawMessage{}}
	p := map[string]any{"query": "app_success_ratio", "metricEndpoint": prom.url, "condition": ">=0.95",
		"duration": "5m", "failDuration": "2m"}

	at := func(d time.Duration, wantResult, wantFailed bool, wantMessage string) {
		t.Helper()
		s.now = t0.Add(d)
		r, err := check(t, a, s, p)
		if err != nil {
			t.Fatalf("at +%v: %v", d, err)
		}
		if r.Result != wantResult || r.Failed != wantFailed || !strings.Contains(r.Message, wantMessage) {
			t.Errorf("at +%v: %+v, want result %t failed %t and a message with %q", d, r, wantResult, wantFailed, wantMessage)
		}
	}

	prom.show(t, 0.99)
	at(0, false, false, "value 0.99 meets >=0.95; held for 0s of 5m0s")
	at(4*time.Minute, false, false, "held for 4m0s")
	at(5*time.Minute, true, false, "held for 5m0s")

	prom.show(t, 0.5)
	at(6*time.Minute, false, false, "value 0.5 does not meet >=0.95; failing for 0s of 2m0s")
	at(7*time.Minute, false, false, "failing for 1m0s")

	// Holding again starts the count again, and so does failing again.
	prom.show(t, 0.97)
	at(7*time.Minute+30*time.Second, false, false, "held for 0s")
	prom.show(t, 0.1)
	at(8*time.Minute, false, false, "failing for 0s")
	at(10*time.Minute, false, true, "failing for 2m0s")

	t.Run("no data does not hold", func(t *testing.T) {
		s := &session{now: t0, vars: map[string]json.RawMessage{}}
		r, err := check(t, a, s, map[string]any{"query": "no_such_metric", "metricEndpoint": prom.url, "condition": "<1"})
		if err != nil || r.Result || !strings.Contains(r.Message, "no data") {
			t.Errorf("got %+v, %v", r, err)
		}
	})
	t.Run("scalar", func(t *testing.T) {
		s := &session{now: t0, vars: map[string]json.RawMessage{}}
		r, err := check(t, a, s, map[string]any{"query": "scalar(app_success_ratio) * 10", "metricEndpoint": prom.url, "condition": "== 1", "duration": "0s"})
		if err != nil || !r.Result {
			t.Errorf("got %+v, %v", r, err)
		}
	})
	t.Run("PromQL syntax error is terminal with Prometheus's message", func(t *testing.T) {
		_, err := check(t, a, s, map[string]any{"query": "sum(app_success_ratio", "metricEndpoint": prom.url, "condition": ">1"})
		var te *engine.TerminalError
		if !errors.As(err, &te) || !strings.Contains(err.Error(), "bad_data") || !strings.Contains(err.Error(), "parse error") {
			t.Errorf("got %v, want a terminal error with Prometheus's parse error", err)
		}
	})
	t.Run("a range vector is terminal", func(t *testing.T) {
		_, err := check(t, a, s, map[string]any{"query": "app_success_ratio[1m]", "metricEndpoint": prom.url, "condition": ">1"})
		var te *engine.TerminalError
		if !errors.As(err, &te) || !strings.Contains(err.Error(), "matrix") {
			t.Errorf("got %v", err)
		}
	})
	t.Run("the check-metrics step type", func(t *testing.T) { checkMetricsStep(t, prom) })
}

// checkMetricsStep evaluates the built-in check-metrics definition as the engine would:
// waiting until the value has held for duration, with the clock moved between evaluations.
func checkMetricsStep(t *testing.T, prom *prometheus) {
	reg := step.NewRegistry()
	builtin.Register(reg)
	op.Register(reg)
	metrics.Register(reg, metrics.Options{})
	r := step.NewRunner(step.Options{Registry: reg, Definitions: builtinDefs{}})
	prom.show(t, 0.99)
	t0 := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	props, _ := json.Marshal(map[string]any{"query": "app_success_ratio", "metricEndpoint": prom.url,
		"condition": ">=0.95", "duration": "1m", "failDuration": "30s"})
	req := &engine.StepRequest{
		Run:        engine.Key{Namespace: "default", Name: "run"},
		Step:       v1alpha1.WorkflowStepBase{Name: "gate", Type: "check-metrics"},
		Properties: props,
		Context:    map[string]any{"name": "run", "namespace": "default", "stepName": "gate", "stepSessionID": "gate-1"},
		Vars:       map[string]json.RawMessage{},
		Now:        t0,
	}
	eval := func(d time.Duration) *engine.StepResult {
		t.Helper()
		req.Now = t0.Add(d)
		res, err := r.RunStep(context.Background(), req)
		if err != nil {
			t.Fatalf("at +%v: %v", d, err)
		}
		maps.Copy(req.Vars, res.VarWrites)
		return res
	}
	if res := eval(0); res.Outcome != engine.Waiting || !strings.Contains(res.Message, "held for 0s of 1m0s") {
		t.Fatalf("at +0: %v %q, want Waiting", res.Outcome, res.Message)
	}
	if res := eval(time.Minute); res.Outcome != engine.Succeeded {
		t.Fatalf("at +1m: %v %q, want Succeeded", res.Outcome, res.Message)
	}

	prom.show(t, 0.2)
	req.Context["stepSessionID"], req.Vars = "gate-2", map[string]json.RawMessage{}
	if res := eval(2 * time.Minute); res.Outcome != engine.Waiting {
		t.Fatalf("at +2m: %v %q, want Waiting", res.Outcome, res.Message)
	}
	res := eval(2*time.Minute + 30*time.Second)
	if res.Outcome != engine.Failed || res.Reason != v1alpha1.ReasonAction || !strings.Contains(res.Message, "value 0.2 does not meet >=0.95") {
		t.Fatalf("at +2m30s: %v %s %q, want Failed (Action) with the value", res.Outcome, res.Reason, res.Message)
	}
}

type builtinDefs struct{}

func (builtinDefs) Template(_ context.Context, _, typ string) (string, error) {
	if t, ok := definitions.Template(typ); ok {
		return t, nil
	}
	return "", fmt.Errorf("%q: %w", typ, step.ErrUnknownType)
}

func TestTransientErrorsAreRetriedAndEndpointsRedacted(t *testing.T) {
	closed := "http://" + freeAddr(t) // nothing listens there any more
	unavailable := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, `{"status":"error","errorType":"unavailable","error":"storage is starting"}`, http.StatusServiceUnavailable)
	}))
	defer unavailable.Close()
	block := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	defer close(block)

	a := promCheck(t, metrics.Options{Timeout: 200 * time.Millisecond})
	s := &session{now: time.Now(), vars: map[string]json.RawMessage{}}
	for name, endpoint := range map[string]string{
		"connection refused": closed + "/prom/s3cr3t-token?key=s3cr3t-token",
		"503":                unavailable.URL + "/prom/s3cr3t-token",
		"timeout":            "http://user:s3cr3t-token@" + strings.TrimPrefix(slow.URL, "http://") + "/prom/",
	} {
		_, err := check(t, a, s, map[string]any{"query": "up", "metricEndpoint": endpoint, "condition": ">0"})
		var te *engine.TerminalError
		if err == nil || errors.As(err, &te) {
			t.Errorf("%s: got %v, want a retryable error", name, err)
			continue
		}
		if strings.Contains(err.Error(), "s3cr3t-token") || !strings.Contains(err.Error(), "/<redacted>") {
			t.Errorf("%s: error %q shows the endpoint's path, query or credentials", name, err)
		}
	}
	if _, err := check(t, a, s, map[string]any{"query": "up", "metricEndpoint": unavailable.URL, "condition": ">0"}); err == nil ||
		!strings.Contains(err.Error(), "storage is starting") {
		t.Errorf("503: %v, want Prometheus's message", err)
	}
}

func TestBadParametersAreTerminal(t *testing.T) {
	var queried atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		queried.Store(true)
		if _, err := io.WriteString(w, `{"status":"success","data":{"resultType":"scalar","result":[1,"1"]}}`); err != nil {
			t.Error(err)
		}
	}))
	defer srv.Close()
	a := promCheck(t, metrics.Options{})
	s := &session{now: time.Now(), vars: map[string]json.RawMessage{}}
	for _, p := range []map[string]any{
		{"query": "up", "metricEndpoint": srv.URL, "condition": "about 1"},
		{"query": "up", "metricEndpoint": srv.URL, "condition": ">1", "duration": "five minutes"},
		{"query": "up", "metricEndpoint": srv.URL, "condition": ">1", "failDuration": "-1m"},
		{"query": "up", "metricEndpoint": "prometheus:9090", "condition": ">1"},
	} {
		_, err := check(t, a, s, p)
		if _, ok := errors.AsType[*engine.TerminalError](err); !ok {
			t.Errorf("%v: got %v, want a terminal error", p, err)
		}
	}
	if queried.Load() {
		t.Error("a check with bad parameters queried the server")
	}
}

func TestAClientErrorIsTerminalAndRedacted(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnprocessableEntity)
		if _, err := io.WriteString(w, `{"status":"error","errorType":"execution","error":"query processing would load too many samples"}`); err != nil {
			t.Error(err)
		}
	}))
	defer srv.Close()
	a := promCheck(t, metrics.Options{})
	s := &session{now: time.Now(), vars: map[string]json.RawMessage{}}
	u, _ := url.Parse(srv.URL)
	u.Path = "/tenant/s3cr3t"
	_, err := check(t, a, s, map[string]any{"query": "up", "metricEndpoint": u.String(), "condition": ">1"})
	var te *engine.TerminalError
	if !errors.As(err, &te) || !strings.Contains(err.Error(), "too many samples") || strings.Contains(err.Error(), "s3cr3t") {
		t.Errorf("got %v, want a terminal error with the server's message and no path", err)
	}
}
