package assembly_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stepflow/stepflow/assembly"
	"github.com/stepflow/stepflow/egress"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/step"
)

// session is the least a step.Session must be for an action called alone.
type session struct{}

func (session) Now() time.Time                     { return time.Now() }
func (session) Wait(string)                        {}
func (session) Suspend(time.Duration, string) bool { return true }
func (session) Fail(string)                        {}
func (session) Break(string)                       {}
func (session) Message(string)                     {}
func (session) Var(string) (json.RawMessage, bool) { return nil, false }
func (session) SetVar(string, json.RawMessage)     {}
func (session) Log(int, string, any)               {}
func (session) Report(step.Report)                 {}
func (session) Redact(v string) string             { return v }
func (session) Sensitive(...string)                {}

// call runs the action provider.do of r with params.
func call(t *testing.T, r *step.Registry, provider, do string, params map[string]any) error {
	t.Helper()
	a, ok := r.Action(provider, do)
	if !ok {
		t.Fatalf("%s.%s is not registered", provider, do)
	}
	_, err := a.Run(context.Background(), &step.Call{Params: params, Path: "a", Run: engine.Key{Namespace: "team", Name: "wr"}, Step: "s", Session: session{}})
	return err
}

// Every action that fetches a URL of the definition's choosing goes through the egress policy:
// the HTTP request, and #Log's source.url.
func TestEgressPolicyCoversTheURLsStepsFetch(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { calls.Add(1) }))
	defer srv.Close()
	policy, err := egress.New(egress.Options{Deny: []string{"127.0.0.0/8"}})
	if err != nil {
		t.Fatal(err)
	}
	r := assembly.Registry(assembly.Providers{Egress: policy})
	for _, c := range []struct {
		provider, do string
		params       map[string]any
	}{
		{"http", "do", map[string]any{"url": srv.URL}},
		{"util", "log", map[string]any{"source": map[string]any{"url": srv.URL + "/build.log"}}},
	} {
		err := call(t, r, c.provider, c.do, c.params)
		if err == nil || !strings.Contains(err.Error(), `denied by the egress deny entry "127.0.0.0/8"`) {
			t.Errorf("%s.%s: got %v, want the egress policy's refusal", c.provider, c.do, err)
		}
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("the denied server was called %d times", n)
	}
}

// unreachable is a Clusters whose every cluster is out of reach.
type unreachable struct{}

var errUnreachable = errors.New("cluster out of reach for this test")

func (unreachable) Client(context.Context, string) (client.Client, error) { return nil, errUnreachable }
func (unreachable) Config(context.Context, string) (*rest.Config, error)  { return nil, errUnreachable }

// Providers.Clusters reaches the http action's Secrets and #Log's pods as it reaches the kube
// actions; without it they say no cluster is configured and which flag gives one.
func TestClustersReachEveryActionThatNeedsOne(t *testing.T) {
	secretHeader := map[string]any{"url": "https://example.com", "request": map[string]any{"headersFromSecret": []any{
		map[string]any{"header": "Authorization", "secret": "api", "key": "token"}}}}
	podLogs := map[string]any{"source": map[string]any{"resources": []any{map[string]any{"name": "build"}}}}
	read := map[string]any{"value": map[string]any{"apiVersion": "v1", "kind": "ConfigMap", "metadata": map[string]any{"name": "x"}}}
	actions := []struct {
		provider, do string
		params       map[string]any
	}{
		{"http", "do", secretHeader},
		{"http", "do", map[string]any{"url": "https://example.com", "tls_config": map[string]any{"secret": "certs"}}},
		{"util", "log", podLogs},
		{"kube", "read", read},
	}

	with := assembly.Registry(assembly.Providers{Clusters: unreachable{}})
	without := assembly.Registry(assembly.Providers{})
	for _, a := range actions {
		if err := call(t, with, a.provider, a.do, a.params); !errors.Is(err, errUnreachable) {
			t.Errorf("%s.%s %v with Clusters: got %v, want the cluster's error", a.provider, a.do, a.params, err)
		}
		err := call(t, without, a.provider, a.do, a.params)
		if _, ok := errors.AsType[*engine.TerminalError](err); !ok || !strings.Contains(err.Error(), "no cluster is configured") && !strings.Contains(err.Error(), "none is configured") {
			t.Errorf("%s.%s %v without Clusters: got %v, want a terminal error saying no cluster is configured", a.provider, a.do, a.params, err)
		}
	}
}
