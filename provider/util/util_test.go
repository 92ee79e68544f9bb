package util_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"cuelang.org/go/cue"
	"cuelang.org/go/cue/cuecontext"

	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/provider/util"
	"github.com/stepflow/stepflow/step"
)

// entry is one Session.Log call.
type entry struct {
	level   int
	message string
	data    any
}

// session is a step.Session that records the log.
type session struct {
	logs []entry
}

func (s *session) Now() time.Time                     { return time.Unix(1_700_000_000, 0) }
func (s *session) Wait(string)                        {}
func (s *session) Suspend(time.Duration, string) bool { return true }
func (s *session) Fail(string)                        {}
func (s *session) Break(string)                       {}
func (s *session) Message(string)                     {}
func (s *session) Var(string) (json.RawMessage, bool) { return nil, false }
func (s *session) SetVar(string, json.RawMessage)     {}
func (s *session) Sensitive(...string)                {}
func (s *session) Log(level int, message string, data any) {
	s.logs = append(s.logs, entry{level, message, data})
}
func (s *session) Report(step.Report)     {}
func (s *session) Redact(v string) string { return v }

func registry(opts util.Options) *step.Registry {
	r := step.NewRegistry()
	util.Register(r, opts)
	return r
}

// run calls the action util.<do> with params and returns its result in JSON form.
func run(t *testing.T, r *step.Registry, do string, s *session, params map[string]any) (any, error) {
	t.Helper()
	a, ok := r.Action("util", do)
	if !ok {
		t.Fatalf("action util.%s is not registered", do)
	}
	if s == nil {
		s = &session{}
	}
	out, err := a.Run(context.Background(), &step.Call{Params: params, Path: "a", Step: "s", Session: s})
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(out)
	if err != nil {
		t.Fatalf("result does not encode to JSON: %v", err)
	}
	var res any
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	return res, nil
}

func wantTerminal(t *testing.T, err error, want string) {
	t.Helper()
	if _, ok := errors.AsType[*engine.TerminalError](err); !ok {
		t.Fatalf("got %v, want a terminal error", err)
	}
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q should say %q", err, want)
	}
}

func TestLogRecordsStringsAndStructs(t *testing.T) {
	r := registry(util.Options{})
	s := &session{}
	if _, err := run(t, r, "log", s, map[string]any{"data": "deploying v2", "level": 3}); err != nil {
		t.Fatal(err)
	}
	if _, err := run(t, r, "log", s, map[string]any{"data": map[string]any{"replicas": 3, "name": "web"}, "level": 5}); err != nil {
		t.Fatal(err)
	}
	// The legacy flat form may leave level out: it is 3.
	if _, err := run(t, r, "log", s, map[string]any{"data": "no level"}); err != nil {
		t.Fatal(err)
	}
	want := []entry{
		{3, "deploying v2", nil},
		{5, "", map[string]any{"replicas": float64(3), "name": "web"}},
		{3, "no level", nil},
	}
	if !reflect.DeepEqual(s.logs, want) {
		t.Errorf("log = %#v\nwant %#v", s.logs, want)
	}
}

func TestLogSourceURL(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/build.log":
			_, _ = io.WriteString(w, "line 1\nline 2\n")
		case "/big.log":
			_, _ = io.WriteString(w, strings.Repeat("x", 20))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	r := registry(util.Options{MaxSourceBytes: 16})
	s := &session{}

	params := map[string]any{"level": 3, "data": "before", "source": map[string]any{"url": srv.URL + "/build.log"}}
	if _, err := run(t, r, "log", s, params); err != nil {
		t.Fatal(err)
	}
	if _, err := run(t, r, "log", s, map[string]any{"level": 2, "source": map[string]any{"url": srv.URL + "/big.log"}}); err != nil {
		t.Fatal(err)
	}
	want := []entry{
		{3, "before", nil},
		{3, "line 1\nline 2\n", map[string]any{"url": srv.URL + "/build.log"}},
		{2, strings.Repeat("x", 16), map[string]any{"url": srv.URL + "/big.log", "truncatedAfterBytes": int64(16)}},
	}
	if !reflect.DeepEqual(s.logs, want) {
		t.Errorf("log = %#v\nwant %#v", s.logs, want)
	}

	// A source that cannot be read now may be readable later: the error is retryable.
	_, err := run(t, r, "log", s, map[string]any{"level": 3, "source": map[string]any{"url": srv.URL + "/missing"}})
	var te *engine.TerminalError
	if err == nil || errors.As(err, &te) || !strings.Contains(err.Error(), "404") {
		t.Errorf("missing source: got %v, want a retryable error naming the status", err)
	}
	_, err = run(t, r, "log", s, map[string]any{"level": 3, "source": map[string]any{"url": "not a url"}})
	wantTerminal(t, err, "source.url")
	_, err = run(t, r, "log", s, map[string]any{"level": 3, "source": map[string]any{"resources": []any{map[string]any{"name": "pod"}}}})
	wantTerminal(t, err, "source.resources reads pods' logs from a cluster, and none is configured (give stepflow one with --kubeconfig)")
}

func TestConvertString(t *testing.T) {
	r := registry(util.Options{})
	for name, bt := range map[string]any{
		"bytes":             []byte("héllo"),
		"JSON form, base64": "aMOpbGxv",
	} {
		res, err := run(t, r, "string", nil, map[string]any{"bt": bt})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if want := map[string]any{"str": "héllo"}; !reflect.DeepEqual(res, want) {
			t.Errorf("%s: got %v, want %v", name, res, want)
		}
	}
	_, err := run(t, r, "string", nil, map[string]any{})
	wantTerminal(t, err, "bt is required")
	_, err = run(t, r, "string", nil, map[string]any{"bt": 5})
	wantTerminal(t, err, "parameter bt")
}

func TestPatchK8sObject(t *testing.T) {
	r := registry(util.Options{})
	value := map[string]any{
		"apiVersion": "apps/v1",
		"kind":       "Deployment",
		"metadata":   map[string]any{"name": "web", "labels": map[string]any{"app": "web", "tier": "front"}},
		"spec": map[string]any{
			"replicas": 1,
			"template": map[string]any{"spec": map[string]any{"containers": []any{
				map[string]any{"name": "web", "image": "web:1"},
				map[string]any{"name": "sidecar", "image": "proxy:1"},
			}}},
		},
	}
	patch := map[string]any{
		"metadata": map[string]any{"labels": map[string]any{"tier": nil, "version": "v2"}, "annotations": map[string]any{"a": "1", "gone": nil}},
		"spec": map[string]any{
			"replicas": 3,
			"template": map[string]any{"spec": map[string]any{"containers": []any{
				map[string]any{"name": "web", "image": "web:2"},
			}}},
		},
	}
	res, err := run(t, r, "patch-k8s-object", nil, map[string]any{"value": value, "patch": patch})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"result": map[string]any{
		"apiVersion": "apps/v1",
		"kind":       "Deployment",
		"metadata": map[string]any{
			"name":        "web",
			"labels":      map[string]any{"app": "web", "version": "v2"},
			"annotations": map[string]any{"a": "1"},
		},
		"spec": map[string]any{
			"replicas": float64(3),
			"template": map[string]any{"spec": map[string]any{"containers": []any{
				map[string]any{"name": "web", "image": "web:2"},
			}}},
		},
	}}
	if !reflect.DeepEqual(res, want) {
		got, _ := json.MarshalIndent(res, "", "  ")
		t.Errorf("got %s", got)
	}
	// The input is left as it was.
	if labels := value["metadata"].(map[string]any)["labels"].(map[string]any); labels["tier"] != "front" {
		t.Errorf("the patch changed the value passed in: %v", labels)
	}

	_, err = run(t, r, "patch-k8s-object", nil, map[string]any{"patch": patch})
	wantTerminal(t, err, "parameter value")
	_, err = run(t, r, "patch-k8s-object", nil, map[string]any{"value": value, "patch": "x"})
	wantTerminal(t, err, "parameter patch")
}

func TestRegistration(t *testing.T) {
	r := registry(util.Options{})
	for do, outputs := range map[string][]string{"log": nil, "string": {"str"}, "patch-k8s-object": {"result"}} {
		a, ok := r.Action("util", do)
		if !ok {
			t.Fatalf("util.%s is not registered", do)
		}
		if a.SideEffect != nil || a.LegacyResult != "" || !reflect.DeepEqual(a.LegacyOutputs, outputs) {
			t.Errorf("util.%s: side effect %v, legacy result %q outputs %v; want none, \"\", %v",
				do, a.SideEffect != nil, a.LegacyResult, a.LegacyOutputs, outputs)
		}
	}
}

// A #Log of its data alone, a conversion, a patch are local (step.Action.Local): a quick
// evaluation may make them. A #Log with a source reads a URL or a cluster: it is not.
func TestLocalActions(t *testing.T) {
	r := registry(util.Options{})
	for _, c := range []struct {
		do     string
		params map[string]any
		local  bool
	}{
		{"log", map[string]any{"data": "hello"}, true},
		{"log", map[string]any{"data": "hello", "source": map[string]any{"url": "http://example.com"}}, false},
		{"log", map[string]any{"source": map[string]any{"resources": []any{}}}, false},
		{"string", map[string]any{"bt": "aGk="}, true},
		{"patch-k8s-object", map[string]any{}, true},
	} {
		a, _ := r.Action("util", c.do)
		if got := a.Local != nil && a.Local(c.params); got != c.local {
			t.Errorf("util.%s %v: local %v, want %v", c.do, c.params, got, c.local)
		}
	}
}

func TestCUEPackage(t *testing.T) {
	p, ok := registry(util.Options{}).Package("vela/util")
	if !ok {
		t.Fatal("package vela/util is not supplied")
	}
	ctx := cuecontext.New()
	pkg := ctx.CompileString(p.Source, cue.Filename("vela/util"))
	if err := pkg.Err(); err != nil {
		t.Fatalf("vela/util does not compile: %v", err)
	}
	use := func(expr string) (cue.Value, error) {
		v := ctx.CompileString("x: "+expr, cue.Scope(pkg))
		x := v.LookupPath(cue.ParsePath("x"))
		if v.Err() != nil {
			return x, v.Err()
		}
		return x, x.Validate()
	}
	for _, expr := range []string{
		`#Log & {$params: data: "hi"}`,
		`#Log & {$params: {data: {a: 1}, level: 5}}`,
		`#Log & {$params: source: url: "http://x/log"}`,
		`#Log & {$params: source: resources: [{name: "p", namespace: "default", labelSelector: {app: "x"}}]}`,
		`#ConvertString & {$params: bt: 'abc'}`,
		`#PatchK8sObject & {$params: {value: {a: 1}, patch: {b: 2}}}`,
	} {
		if _, err := use(expr); err != nil {
			t.Errorf("%s: %v", expr, err)
		}
	}
	x, _ := use(`#Log & {$params: data: "hi"}`)
	if level, err := x.LookupPath(cue.ParsePath("$params.level")).Int64(); err != nil || level != 3 {
		t.Errorf("#Log level defaults to %d (%v), want 3", level, err)
	}
	for _, expr := range []string{
		`#Log & {$params: source: {url: "http://x", resources: []}}`,
		`#ConvertString & {$params: bt: "a string"}`,
	} {
		if _, err := use(expr); err == nil {
			t.Errorf("%s: accepted, want an error", expr)
		}
	}
	for def, do := range map[string]string{"#Log": "log", "#ConvertString": "string", "#PatchK8sObject": "patch-k8s-object"} {
		v := pkg.LookupPath(cue.MakePath(cue.Def(def), cue.Def("do")))
		if got, _ := v.String(); got != do {
			t.Errorf("%s.#do = %q, want %q", def, got, do)
		}
	}
}
