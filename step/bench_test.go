package step_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stepflow/stepflow/definitions"
	"github.com/stepflow/stepflow/engine"
)

// BenchmarkWarmEval evaluates print-message-in-status with its definition compiled: parameter
// check, one action, the status message.
func BenchmarkWarmEval(b *testing.B) {
	tmpl, _ := definitions.Template("print-message-in-status")
	r, _ := newRunner(b, defs{"print-message-in-status": tmpl})
	req := request("print-message-in-status", map[string]any{"message": "hello"})
	ctx := context.Background()
	if res, err := r.RunStep(ctx, req); err != nil || res.Outcome != engine.Succeeded || res.Message != "hello" {
		b.Fatalf("%+v %v", res, err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.RunStep(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWarmEvalRequest evaluates the built-in request step against a local HTTP server with
// its definition compiled: parameter check, one HTTP call, its result filled back, the status
// check and the decoded response.
func BenchmarkWarmEvalRequest(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"ok":true}`))
	}))
	defer srv.Close()
	tmpl, _ := definitions.Template("request")
	r, _ := newRunner(b, defs{"request": tmpl})
	req := request("request", map[string]any{"url": srv.URL + "/ok"})
	ctx := context.Background()
	if res, err := r.RunStep(ctx, req); err != nil || res.Outcome != engine.Succeeded {
		b.Fatalf("%+v %v", res, err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.RunStep(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}
