package email_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/provider/builtin"
	"github.com/stepflow/stepflow/provider/email"
	"github.com/stepflow/stepflow/provider/op"
	"github.com/stepflow/stepflow/step"
)

type defs map[string]string

func (d defs) Template(_ context.Context, _, typ string) (string, error) {
	if t, ok := d[typ]; ok {
		return t, nil
	}
	return "", fmt.Errorf("%q: %w", typ, step.ErrUnknownType)
}

const newForm = `
import "vela/email"
import "vela/builtin"

send: email.#SendEmail & {$params: {
	from: {address: "ci@example.com", alias: "CI Bot", password: "", host: "127.0.0.1", port: parameter.port}
	to: ["dev@example.com", "Ops <ops@example.org>"]
	content: {subject: "Deploy of shop: ✓ done", body: "<b>shop</b> is live = ok"}
}}
wait: builtin.#ConditionalWait & {$params: continue: parameter.go}
parameter: {port: int, go: bool}
`

const legacyForm = `
import "vela/op"

send: op.#SendEmail & {
	from: {address: "ci@example.com", alias: "CI Bot", password: "", host: "127.0.0.1", port: parameter.port}
	to: ["dev@example.com", "Ops <ops@example.org>"]
	content: {subject: "Deploy of shop: ✓ done", body: "<b>shop</b> is live = ok"}
}
parameter: {port: int, go: bool}
`

// A step that sends and then waits is evaluated again: the message goes out once.
func TestTheStepSendsOncePerAttempt(t *testing.T) {
	ts := startServer(t, serverConfig{})
	reg := step.NewRegistry()
	builtin.Register(reg)
	op.Register(reg)
	email.Register(reg, email.Options{})
	r := step.NewRunner(step.Options{Registry: reg, Definitions: defs{"new": newForm, "legacy": legacyForm}})

	req := &engine.StepRequest{
		Run:        engine.Key{Namespace: "default", Name: "run"},
		Step:       v1alpha1.WorkflowStepBase{Name: "notify", Type: "new"},
		Properties: json.RawMessage(fmt.Sprintf(`{"port": %d, "go": false}`, ts.port)),
		Now:        time.Now(),
	}
	res, err := r.RunStep(context.Background(), req)
	if err != nil || res.Outcome != engine.Waiting {
		t.Fatalf("first evaluation: %v, %+v", err, res)
	}
	wantMessage(t, ts)
	req.Memo, req.Properties = res.Memo, json.RawMessage(fmt.Sprintf(`{"port": %d, "go": true}`, ts.port))
	res, err = r.RunStep(context.Background(), req)
	if err != nil || res.Outcome != engine.Succeeded {
		t.Fatalf("second evaluation: %v, %+v", err, res)
	}
	if len(ts.got) != 0 {
		t.Error("the second evaluation sent the message again")
	}

	req.Step.Type, req.Memo = "legacy", nil
	res, err = r.RunStep(context.Background(), req)
	if err != nil || res.Outcome != engine.Succeeded {
		t.Fatalf("op.#SendEmail: %v, %+v", err, res)
	}
	wantMessage(t, ts)
}
