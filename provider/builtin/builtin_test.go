package builtin_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/provider/builtin"
	"github.com/stepflow/stepflow/step"
)

type defs map[string]string

func (d defs) Template(_ context.Context, _, typ string) (string, error) {
	if t, ok := d[typ]; ok {
		return t, nil
	}
	return "", fmt.Errorf("%q: %w", typ, step.ErrUnknownType)
}

func run(t *testing.T, tmpl string, vars map[string]json.RawMessage) (*engine.StepResult, error) {
	t.Helper()
	reg := step.NewRegistry()
	builtin.Register(reg)
	r := step.NewRunner(step.Options{Registry: reg, Definitions: defs{"t": tmpl}})
	req := &engine.StepRequest{Step: v1alpha1.WorkflowStepBase{Name: "s", Type: "t"}, Vars: vars, Now: time.Now()}
	return r.RunStep(context.Background(), req)
}

func TestConditionalWait(t *testing.T) {
	for cont, want := range map[string]engine.Outcome{"true": engine.Succeeded, "false": engine.Waiting} {
		res, err := run(t, `
import "vela/builtin"
w: builtin.#ConditionalWait & {$params: {continue: `+cont+`, message: "not yet"}}
`, nil)
		if err != nil || res.Outcome != want {
			t.Errorf("continue %s: %v %v, want %v", cont, res, err, want)
		}
		if want == engine.Waiting && (res.Reason != v1alpha1.ReasonWait || res.Message != "not yet") {
			t.Errorf("reason %q message %q", res.Reason, res.Message)
		}
	}
}

func TestDoVar(t *testing.T) {
	res, err := run(t, `
import "vela/builtin"
unset: builtin.#DoVar & {$params: path: "nope"}
set: builtin.#DoVar & {$params: path: "n"}
msg: builtin.#Message & {$params: message: "\([if unset.$returns.value != _|_ {"set"}, "unset"][0]) \(set.$returns.value + 1)"}
`, map[string]json.RawMessage{"n": json.RawMessage("41")})
	if err != nil || res.Message != "unset 42" {
		t.Errorf("%v %v", res, err)
	}
	_, err = run(t, `
import "vela/builtin"
v: builtin.#DoVar & {$params: {method: "Put", path: ""}}
`, nil)
	var te *engine.TerminalError
	if !errors.As(err, &te) || !strings.Contains(err.Error(), "path is empty") {
		t.Errorf("err = %v", err)
	}
}
