package external_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stepflow/stepflow/egress"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/provider/external"
	"github.com/stepflow/stepflow/step"
)

// provider is a real HTTP server answering each action with handler.
func provider(t *testing.T, handler http.HandlerFunc) *step.ExternalPackage {
	t.Helper()
	srv := httptest.NewServer(handler)
	t.Cleanup(srv.Close)
	return &step.ExternalPackage{Name: "my", Path: "ext/my", Endpoint: srv.URL + "/v1/"}
}

func call(params map[string]any) *step.Call { return &step.Call{Params: params, Path: "act"} }

func TestCallPostsParamsToEndpointSlashDo(t *testing.T) {
	var got struct {
		method, path, contentType string
		body                      map[string]any
	}
	pkg := provider(t, func(w http.ResponseWriter, r *http.Request) {
		got.method, got.path, got.contentType = r.Method, r.URL.Path, r.Header.Get("Content-Type")
		_ = json.NewDecoder(r.Body).Decode(&got.body)
		_, _ = io.WriteString(w, `{"text": "cba", "n": 3}`)
	})
	out, err := external.New(external.Options{}).Call(context.Background(), pkg, "reverse", call(map[string]any{"text": "abc"}))
	if err != nil {
		t.Fatal(err)
	}
	if got.method != http.MethodPost || got.path != "/v1/reverse" || got.contentType != "application/json" || got.body["text"] != "abc" {
		t.Errorf("request = %+v, want POST /v1/reverse with the params as JSON", got)
	}
	m, ok := out.(map[string]any)
	if !ok || m["text"] != "cba" || m["n"] != float64(3) {
		t.Errorf("result = %#v, want the answer's JSON", out)
	}
}

func TestCallErrors(t *testing.T) {
	for _, tc := range []struct {
		name     string
		status   int
		body     string
		terminal bool
		want     string
	}{
		{"4xx fails the step with the answer's message", 400, `{"message": "numbers must be a list"}`, true, "400 Bad Request: numbers must be a list"},
		{"4xx with an error field", 422, `{"error": "no such thing"}`, true, "no such thing"},
		{"4xx with a text answer", 404, "nothing here\n", true, "404 Not Found: nothing here"},
		{"5xx is retried", 503, `{"message": "busy"}`, false, "503 Service Unavailable: busy"},
		{"an answer that is not JSON", 200, "<html>", true, "the answer is not JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pkg := provider(t, func(w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(tc.status)
				_, _ = io.WriteString(w, tc.body)
			})
			_, err := external.New(external.Options{}).Call(context.Background(), pkg, "do", call(nil))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want it to say %q", err, tc.want)
			}
			if _, terminal := errors.AsType[*engine.TerminalError](err); terminal != tc.terminal {
				t.Errorf("terminal = %t, want %t (%v)", terminal, tc.terminal, err)
			}
		})
	}
}

func TestCallEmptyAnswerReturnsNothing(t *testing.T) {
	pkg := provider(t, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	out, err := external.New(external.Options{}).Call(context.Background(), pkg, "do", call(nil))
	if err != nil || out != nil {
		t.Fatalf("Call = %v, %v; want nil, nil", out, err)
	}
}

func TestCallBoundsTheAnswer(t *testing.T) {
	pkg := provider(t, func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, `{"big": "`+strings.Repeat("x", 2000)+`"}`)
	})
	_, err := external.New(external.Options{MaxBodyBytes: 1000}).Call(context.Background(), pkg, "do", call(nil))
	if _, terminal := errors.AsType[*engine.TerminalError](err); !terminal || !strings.Contains(err.Error(), "larger than 1000 bytes") {
		t.Fatalf("error = %v, want a terminal error naming the bound", err)
	}
}

func TestCallNoAnswerIsRetried(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there now
	pkg := &step.ExternalPackage{Name: "my", Path: "ext/my", Endpoint: url}
	_, err := external.New(external.Options{}).Call(context.Background(), pkg, "do", call(nil))
	if err == nil {
		t.Fatal("no error from a closed endpoint")
	}
	if _, terminal := errors.AsType[*engine.TerminalError](err); terminal {
		t.Errorf("a connection refused is terminal: %v", err)
	}
}

func TestCallGoesThroughTheEgressPolicy(t *testing.T) {
	var calls atomic.Int32
	pkg := provider(t, func(http.ResponseWriter, *http.Request) { calls.Add(1) })
	policy, err := egress.New(egress.Options{Deny: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = external.New(external.Options{Client: policy.Client()}).Call(context.Background(), pkg, "do", call(nil))
	if _, terminal := errors.AsType[*engine.TerminalError](err); !terminal || !strings.Contains(err.Error(), "--egress-deny") {
		t.Fatalf("error = %v, want a terminal refusal naming the flag", err)
	}
	if calls.Load() != 0 {
		t.Error("the denied endpoint was called")
	}
}

func TestCallEndsWithTheContext(t *testing.T) {
	release := make(chan struct{})
	pkg := provider(t, func(http.ResponseWriter, *http.Request) { <-release })
	defer close(release)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := external.New(external.Options{}).Call(ctx, pkg, "do", call(nil)); !errors.Is(err, context.Canceled) {
		t.Fatalf("error = %v, want context.Canceled", err)
	}
}
