package step_test

import (
	"context"
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
