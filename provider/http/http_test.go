package http_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"maps"
	nethttp "net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/provider/http"
	"github.com/stepflow/stepflow/step"
)

// session is a step.Session whose clock the test sets; it keeps the action's reports and
// knows one secret, as a run that read it from a Secret would.
type session struct {
	now     time.Time
	secret  string
	reports []step.Report
}

func (s *session) Now() time.Time                          { return s.now }
func (s *session) Wait(string)                             {}
func (s *session) Suspend(time.Duration, string) bool      { return true }
func (s *session) Fail(string)                             {}
func (s *session) Break(string)                            {}
func (s *session) Message(string)                          {}
func (s *session) Var(string) (json.RawMessage, bool)      { return nil, false }
func (s *session) SetVar(string, json.RawMessage)          {}
func (s *session) Log(level int, message string, data any) {}
func (s *session) Sensitive(...string)                     {}
func (s *session) Report(r step.Report)                    { s.reports = append(s.reports, r) }
func (s *session) Redact(v string) string {
	if s.secret == "" {
		return v
	}
	return strings.ReplaceAll(v, s.secret, "<redacted>")
}

// result is the action's result as a definition sees it.
type result struct {
	Body       string              `json:"body"`
	Header     map[string][]string `json:"header"`
	Trailer    map[string][]string `json:"trailer"`
	StatusCode int                 `json:"statusCode"`
}

// action registers the provider with opts and returns its action.
func action(t *testing.T, opts http.Options) *step.Action {
	t.Helper()
	r := step.NewRegistry()
	http.Register(r, opts)
	a, ok := r.Action("http", "do")
	if !ok {
		t.Fatal("action http.do is not registered")
	}
	return a
}

// do calls the action with params as the CUE runtime would, at the session's time.
func do(t *testing.T, a *step.Action, s *session, params map[string]any) (result, error) {
	t.Helper()
	if s == nil {
		s = &session{now: time.Unix(1_700_000_000, 0)}
	}
	out, err := a.Run(context.Background(), &step.Call{Params: params, Path: "req", Step: "s", Session: s})
	if err != nil {
		return result{}, err
	}
	b, err := json.Marshal(out)
	if err != nil {
		t.Fatalf("result does not encode to JSON: %v", err)
	}
	var res result
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatalf("result %s: %v", b, err)
	}
	var raw map[string]any
	_ = json.Unmarshal(b, &raw)
	for _, k := range []string{"header", "trailer"} {
		if v, ok := raw[k]; ok && v == nil {
			t.Errorf("result has %s: null, which the CUE schema rejects", k)
		}
	}
	return res, nil
}

func isTerminal(err error) bool {
	var te *engine.TerminalError
	return errors.As(err, &te)
}

// echo answers with the request's method, body and headers.
func echo(w nethttp.ResponseWriter, r *nethttp.Request) {
	body, _ := io.ReadAll(r.Body)
	w.Header().Set("X-Method", r.Method)
	w.Header().Set("X-Content-Type", r.Header.Get("Content-Type"))
	w.Header()["X-Multi"] = r.Header.Values("X-Multi")
	w.Header().Set("X-Single", r.Header.Get("X-Single"))
	w.Header().Set("X-Host", r.Host)
	w.Header().Set("X-Trailer", r.Trailer.Get("X-Checksum"))
	_, _ = io.WriteString(w, r.Method+" "+string(body))
}

func TestEachMethodIsSentWithItsBody(t *testing.T) {
	srv := httptest.NewServer(nethttp.HandlerFunc(echo))
	defer srv.Close()
	a := action(t, http.Options{})

	for _, m := range []string{"GET", "POST", "PUT", "DELETE", "HEAD", "PATCH"} {
		t.Run(m, func(t *testing.T) {
			res, err := do(t, a, nil, map[string]any{
				"method":  m,
				"url":     srv.URL + "/things",
				"request": map[string]any{"body": `{"n":1}`},
			})
			if err != nil {
				t.Fatal(err)
			}
			if res.StatusCode != nethttp.StatusOK || res.Header["X-Method"][0] != m {
				t.Fatalf("got status %d, method %v", res.StatusCode, res.Header["X-Method"])
			}
			want := m + ` {"n":1}`
			if m == "HEAD" {
				want = ""
			}
			if res.Body != want {
				t.Errorf("body = %q, want %q", res.Body, want)
			}
		})
	}
}

func TestMethodDefaultsToGET(t *testing.T) {
	srv := httptest.NewServer(nethttp.HandlerFunc(echo))
	defer srv.Close()
	res, err := do(t, action(t, http.Options{}), nil, map[string]any{"url": srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	if res.Body != "GET " {
		t.Errorf("body = %q, want a GET", res.Body)
	}
}

func TestHeadersGoBothWays(t *testing.T) {
	srv := httptest.NewServer(nethttp.HandlerFunc(echo))
	defer srv.Close()
	a := action(t, http.Options{})

	res, err := do(t, a, nil, map[string]any{
		"method": "POST",
		"url":    srv.URL,
		"request": map[string]any{
			"body": "a=1",
			"header": map[string]any{
				"x-single":     "one",
				"X-Multi":      []any{"a", "b"},
				"Content-Type": "application/x-www-form-urlencoded",
				"Host":         "api.example",
			},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	h := res.Header
	if got := h["X-Single"]; len(got) != 1 || got[0] != "one" {
		t.Errorf("X-Single reached the server as %v", got)
	}
	if got := h["X-Multi"]; len(got) != 2 || got[0] != "a" || got[1] != "b" {
		t.Errorf("X-Multi reached the server as %v", got)
	}
	if got := h["X-Content-Type"][0]; got != "application/x-www-form-urlencoded" {
		t.Errorf("Content-Type reached the server as %q", got)
	}
	if got := h["X-Host"][0]; got != "api.example" {
		t.Errorf("Host reached the server as %q", got)
	}

	// A body without a Content-Type is sent as JSON, as KubeVela does.
	res, err = do(t, a, nil, map[string]any{"method": "POST", "url": srv.URL, "request": map[string]any{"body": "{}"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Header["X-Content-Type"][0]; got != "application/json" {
		t.Errorf("default Content-Type = %q, want application/json", got)
	}
}

func TestTrailersGoBothWays(t *testing.T) {
	srv := httptest.NewServer(nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		_, _ = io.ReadAll(r.Body)
		w.Header().Set("Trailer", "X-Received, X-Never-Sent")
		_, _ = io.WriteString(w, "ok")
		w.Header().Set("X-Received", r.Trailer.Get("X-Checksum"))
	}))
	defer srv.Close()

	res, err := do(t, action(t, http.Options{}), nil, map[string]any{
		"method": "PUT",
		"url":    srv.URL,
		"request": map[string]any{
			"body":    "data",
			"trailer": map[string]any{"X-Checksum": "abc"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Trailer["X-Received"]; len(got) != 1 || got[0] != "abc" {
		t.Errorf("trailer = %v, want X-Received: abc (the request trailer the server saw)", res.Trailer)
	}
	if _, ok := res.Trailer["X-Never-Sent"]; ok {
		t.Errorf("trailer lists X-Never-Sent, which the server announced but never sent: %v", res.Trailer)
	}
}

func TestErrorStatusIsAResult(t *testing.T) {
	for _, code := range []int{404, 500, 503} {
		srv := httptest.NewServer(nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
			w.WriteHeader(code)
			_, _ = io.WriteString(w, "nope")
		}))
		res, err := do(t, action(t, http.Options{}), nil, map[string]any{"url": srv.URL})
		srv.Close()
		if err != nil {
			t.Fatalf("status %d: got error %v, want statusCode", code, err)
		}
		if res.StatusCode != code || res.Body != "nope" {
			t.Errorf("got statusCode %d body %q, want %d \"nope\"", res.StatusCode, res.Body, code)
		}
	}
}

// blocking is a server whose handler, once entered (reported on entered), waits until release
// is called or the client gives up.
func blocking(t *testing.T) (url string, entered <-chan struct{}, release func()) {
	ch := make(chan struct{})
	in := make(chan struct{}, 16)
	srv := httptest.NewServer(nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		in <- struct{}{}
		select {
		case <-ch:
			_, _ = io.WriteString(w, "released")
		case <-r.Context().Done():
		}
	}))
	var once sync.Once
	release = func() { once.Do(func() { close(ch) }) }
	t.Cleanup(func() { release(); srv.Close() })
	return srv.URL, in, release
}

func TestTimeoutIsARetryableError(t *testing.T) {
	url, _, _ := blocking(t)

	// request.timeout bounds the request.
	_, err := do(t, action(t, http.Options{}), nil, map[string]any{
		"url": url, "request": map[string]any{"timeout": "50ms"},
	})
	if err == nil || isTerminal(err) {
		t.Fatalf("got %v, want a retryable error", err)
	}
	if !strings.Contains(err.Error(), "no answer within 50ms") || !strings.Contains(err.Error(), "request.timeout") {
		t.Errorf("error %q should say the time waited and how to wait longer", err)
	}

	// Options.DefaultTimeout bounds a request that sets none.
	_, err = do(t, action(t, http.Options{DefaultTimeout: 50 * time.Millisecond}), nil, map[string]any{"url": url})
	if err == nil || isTerminal(err) || !strings.Contains(err.Error(), "no answer within 50ms") {
		t.Fatalf("got %v, want a retryable timeout after 50ms", err)
	}
}

func TestBlockedRequestSucceedsWhenReleased(t *testing.T) {
	url, entered, release := blocking(t)
	a := action(t, http.Options{})
	type outcome struct {
		res any
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		call := &step.Call{Params: map[string]any{"url": url, "request": map[string]any{"timeout": "1m"}}, Session: &session{}}
		res, err := a.Run(context.Background(), call)
		done <- outcome{res, err}
	}()
	<-entered
	release()
	got := <-done
	b, _ := json.Marshal(got.res)
	if got.err != nil || !strings.Contains(string(b), `"body":"released"`) {
		t.Fatalf("request released before its timeout: got %s, %v", b, got.err)
	}
}

// deadlineRecorder is a transport that answers at once and records the request's deadline.
type deadlineRecorder struct {
	deadline time.Time
	set      bool
}

func (d *deadlineRecorder) RoundTrip(r *nethttp.Request) (*nethttp.Response, error) {
	d.deadline, d.set = r.Context().Deadline()
	return &nethttp.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader("")), Header: nethttp.Header{}, Request: r}, nil
}

func TestTimeoutDefaultsToThreeSeconds(t *testing.T) {
	for _, tc := range []struct {
		request map[string]any
		want    time.Duration
	}{
		{nil, 3 * time.Second},
		{map[string]any{"timeout": "10s"}, 10 * time.Second},
	} {
		rec := &deadlineRecorder{}
		a := action(t, http.Options{Client: &nethttp.Client{Transport: rec}})
		params := map[string]any{"url": "http://example.invalid/"}
		if tc.request != nil {
			params["request"] = tc.request
		}
		before := time.Now()
		if _, err := do(t, a, nil, params); err != nil {
			t.Fatal(err)
		}
		after := time.Now()
		if !rec.set || rec.deadline.Before(before.Add(tc.want)) || rec.deadline.After(after.Add(tc.want)) {
			t.Errorf("request %v: deadline %v after the call, want %v", tc.request, rec.deadline.Sub(before), tc.want)
		}
	}
}

func TestConnectionRefusedIsRetryable(t *testing.T) {
	srv := httptest.NewServer(nethttp.HandlerFunc(echo))
	url := srv.URL
	srv.Close()

	_, err := do(t, action(t, http.Options{}), nil, map[string]any{"url": url})
	if err == nil {
		t.Fatal("request to a closed server succeeded")
	}
	if isTerminal(err) {
		t.Errorf("connection refused is terminal, want retryable: %v", err)
	}
}

// A webhook's URL is its secret: errors, which reach status and logs, show its host only.
func TestErrorsDoNotShowTheURLPath(t *testing.T) {
	srv := httptest.NewServer(nethttp.HandlerFunc(echo))
	url := srv.URL
	srv.Close()

	_, err := do(t, action(t, http.Options{}), nil, map[string]any{"url": url + "/services/T0/B0/secret-token?key=also-secret"})
	if err == nil {
		t.Fatal("request to a closed server succeeded")
	}
	if msg := err.Error(); strings.Contains(msg, "secret") || !strings.Contains(msg, url+"/<redacted>") {
		t.Errorf("error %q: want the host and no path or query", msg)
	}
}

func TestBodyIsBounded(t *testing.T) {
	srv := httptest.NewServer(nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		_, _ = io.WriteString(w, strings.Repeat("x", 10+len(r.URL.Query().Get("extra"))))
	}))
	defer srv.Close()
	a := action(t, http.Options{MaxBodyBytes: 10})

	res, err := do(t, a, nil, map[string]any{"url": srv.URL})
	if err != nil || len(res.Body) != 10 {
		t.Fatalf("body at the bound: got %q, %v", res.Body, err)
	}
	_, err = do(t, a, nil, map[string]any{"url": srv.URL + "?extra=1"})
	if !isTerminal(err) {
		t.Fatalf("body over the bound: got %v, want a terminal error", err)
	}
	if !strings.Contains(err.Error(), "10 bytes") || !strings.Contains(err.Error(), "MaxBodyBytes") {
		t.Errorf("error %q should name the bound and how to raise it", err)
	}
}

func TestRateLimiter(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		hits.Add(1)
	}))
	defer srv.Close()
	a := action(t, http.Options{})
	s := &session{now: time.Unix(1_700_000_000, 0)}
	limited := func(url string, extra map[string]any) map[string]any {
		rl := map[string]any{"limit": 2, "period": "1m"}
		maps.Copy(rl, extra)
		return map[string]any{"url": url, "request": map[string]any{"ratelimiter": rl}}
	}

	for i := range 2 {
		if _, err := do(t, a, s, limited(srv.URL+"/a?i=1", nil)); err != nil {
			t.Fatalf("call %d within the limit: %v", i+1, err)
		}
		s.now = s.now.Add(10 * time.Second)
	}
	// The query is not part of the key: a third call to /a within the minute is refused.
	_, err := do(t, a, s, limited(srv.URL+"/a?i=2", nil))
	if err == nil || isTerminal(err) || !strings.Contains(err.Error(), "rate limited") {
		t.Fatalf("third call within a minute: got %v, want a retryable rate-limited error", err)
	}
	if hits.Load() != 2 {
		t.Errorf("server saw %d requests, want 2: a refused call must not be sent", hits.Load())
	}
	// Another URL has its own limiter.
	if _, err := do(t, a, s, limited(srv.URL+"/b", nil)); err != nil {
		t.Errorf("another URL is limited too: %v", err)
	}
	// A minute after the first call, one more is allowed, and only one.
	s.now = time.Unix(1_700_000_000, 0).Add(time.Minute)
	if _, err := do(t, a, s, limited(srv.URL+"/a", nil)); err != nil {
		t.Errorf("call a minute after the first: %v", err)
	}
	if _, err := do(t, a, s, limited(srv.URL+"/a", nil)); err == nil {
		t.Error("second call at the same time is allowed, but the call 50s earlier is still in the window")
	}
	// A key shares one limiter across URLs.
	for i, u := range []string{"/c", "/d", "/e"} {
		_, err := do(t, a, s, limited(srv.URL+u, map[string]any{"key": "shared"}))
		if (err == nil) != (i < 2) {
			t.Errorf("call %d under a shared key: got %v", i+1, err)
		}
	}
	// Another registration has its own limiters.
	if _, err := do(t, action(t, http.Options{}), s, limited(srv.URL+"/a", nil)); err != nil {
		t.Errorf("a new provider inherited the limiter state: %v", err)
	}
}

func TestParametersThatCannotWorkAreTerminal(t *testing.T) {
	srv := httptest.NewServer(nethttp.HandlerFunc(echo))
	defer srv.Close()
	a := action(t, http.Options{})
	for name, tc := range map[string]struct {
		params map[string]any
		want   string
	}{
		"malformed url":      {map[string]any{"url": "http://[::1"}, "url"},
		"relative url":       {map[string]any{"url": "/just/a/path"}, "not an absolute http or https URL"},
		"other scheme":       {map[string]any{"url": "ftp://example.com/x"}, "not an absolute http or https URL"},
		"unsupported method": {map[string]any{"url": srv.URL, "method": "BREW"}, `method "BREW" is not supported`},
		"bad timeout":        {map[string]any{"url": srv.URL, "request": map[string]any{"timeout": "soon"}}, "request.timeout"},
		"bad period":         {map[string]any{"url": srv.URL, "request": map[string]any{"ratelimiter": map[string]any{"limit": 1, "period": "x"}}}, "ratelimiter.period"},
		"zero limit":         {map[string]any{"url": srv.URL, "request": map[string]any{"ratelimiter": map[string]any{"limit": 0, "period": "1s"}}}, "ratelimiter.limit"},
		"url not a string":   {map[string]any{"url": 42}, "parameter url"},
		"bad header value":   {map[string]any{"url": srv.URL, "request": map[string]any{"header": map[string]any{"A": 1}}}, "header value"},
		// Without a cluster, what reads Secrets says so and which flag gives one.
		"tls_config without a cluster": {map[string]any{"url": srv.URL, "tls_config": map[string]any{"secret": "certs"}},
			"tls_config reads Secrets, which needs a cluster, and none is configured (give stepflow one with --kubeconfig)"},
		"headersFromSecret without a cluster": {map[string]any{"url": srv.URL, "request": map[string]any{"headersFromSecret": []any{
			map[string]any{"header": "Authorization", "secret": "s", "key": "k"}}}},
			"request.headersFromSecret reads Secrets, which needs a cluster, and none is configured (give stepflow one with --kubeconfig)"},
		"headersFromSecret without a header name": {map[string]any{"url": srv.URL, "request": map[string]any{"headersFromSecret": []any{
			map[string]any{"secret": "s", "key": "k"}}}}, "request.headersFromSecret[0]: header (the header's name) is required"},
		"headersFromSecret with two names": {map[string]any{"url": srv.URL, "request": map[string]any{"headersFromSecret": []any{
			map[string]any{"header": "A", "name": "B", "secret": "s", "key": "k"}}}}, "not both"},
	} {
		_, err := do(t, a, nil, tc.params)
		var te *engine.TerminalError
		if !errors.As(err, &te) {
			t.Errorf("%s: got %v, want a terminal error", name, err)
			continue
		}
		if te.Reason != "Execute" || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got reason %q error %q, want reason Execute and %q", name, te.Reason, err, tc.want)
		}
	}
}

func TestRegistration(t *testing.T) {
	r := step.NewRegistry()
	http.Register(r, http.Options{})
	if p, ok := r.Package("vela/http"); !ok || !strings.Contains(p.Source, "#HTTPPost") {
		t.Fatal("package vela/http is not supplied")
	}
	a, _ := r.Action("http", "do")
	if a.LegacyResult != "response" || len(a.LegacyOutputs) != 1 || a.LegacyOutputs[0] != "response" {
		t.Errorf("legacy form: result %q outputs %v, want the response field", a.LegacyResult, a.LegacyOutputs)
	}
	for method, want := range map[string]bool{"": false, "GET": false, "HEAD": false, "POST": true, "PUT": true, "DELETE": true, "PATCH": true} {
		params := map[string]any{"url": "http://x"}
		if method != "" {
			params["method"] = method
		}
		if got := a.SideEffect(params); got != want {
			t.Errorf("SideEffect(%q) = %v, want %v", method, got, want)
		}
	}
}

// TestReportShowsRequestAndAnswer: the action's log line says what was asked (method, host,
// path, the query's names without their values) and what came back (status, an excerpt of
// the body, a warning for a status of 400 or more); a URL holding a secret of the run shows
// only its scheme and host.
func TestReportShowsRequestAndAnswer(t *testing.T) {
	long := `{"error":"` + strings.Repeat("é", 2000) + `"}`
	srv := httptest.NewServer(nethttp.HandlerFunc(func(w nethttp.ResponseWriter, _ *nethttp.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(nethttp.StatusServiceUnavailable)
		_, _ = io.WriteString(w, long)
	}))
	defer srv.Close()
	a := action(t, http.Options{})
	host := strings.TrimPrefix(srv.URL, "http://")

	s := &session{now: time.Now()}
	if _, err := do(t, a, s, map[string]any{"url": srv.URL + "/v1/items?token=hunter22&page=2"}); err != nil {
		t.Fatal(err)
	}
	if len(s.reports) == 0 {
		t.Fatal("the action reported nothing")
	}
	rep := s.reports[len(s.reports)-1]
	if want := "GET " + host + "/v1/items?page=<redacted>&token=<redacted> → 503 Service Unavailable"; rep.Summary != want {
		t.Errorf("summary %q, want %q", rep.Summary, want)
	}
	if rep.Severity != engine.SeverityWarning {
		t.Errorf("severity %q, want a warning for 503", rep.Severity)
	}
	b, err := json.Marshal(rep.Data)
	if err != nil {
		t.Fatal(err)
	}
	var data struct {
		Status int
		Bytes  int
		Body   string
	}
	if err := json.Unmarshal(b, &data); err != nil {
		t.Fatal(err)
	}
	if data.Status != 503 || data.Bytes != len(long) {
		t.Errorf("data %s: want status 503 and the body's %d bytes", b, len(long))
	}
	if !strings.HasPrefix(data.Body, `{"error":"éé`) || !strings.HasSuffix(data.Body, "…") || len(data.Body) > 1024+len("…") || !utf8.ValidString(data.Body) {
		t.Errorf("excerpt of %d bytes, want the body's first KiB cut at a character and marked: %.60q…", len(data.Body), data.Body)
	}

	secret := &session{now: time.Now(), secret: "T0KEN/B0T/XYZ123"}
	if _, err := do(t, a, secret, map[string]any{"url": srv.URL + "/services/T0KEN/B0T/XYZ123"}); err != nil {
		t.Fatal(err)
	}
	if got := secret.reports[len(secret.reports)-1].Summary; got != "GET "+srv.URL+"/<redacted> → 503 Service Unavailable" {
		t.Errorf("a URL holding a secret shows as %q", got)
	}
}
