package step_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/provider/builtin"
	httpprovider "github.com/stepflow/stepflow/provider/http"
	"github.com/stepflow/stepflow/provider/op"
	"github.com/stepflow/stepflow/step"
)

// defs is a Definitions holding templates by type.
type defs map[string]string

func (d defs) Template(_ context.Context, _, typ string) (string, error) {
	if t, ok := d[typ]; ok {
		return t, nil
	}
	return "", fmt.Errorf("step type %q: %w", typ, step.ErrUnknownType)
}

// recorder is a fake provider: its actions record their calls and return what the test set.
type recorder struct {
	mu      sync.Mutex
	calls   []string         // "provider.do path params-as-JSON"
	returns map[string][]any // by "provider.do": the results of successive calls; the last repeats
	errs    map[string]error
}

func (r *recorder) handler(name string) step.Handler {
	return func(_ context.Context, c *step.Call) (any, error) {
		r.mu.Lock()
		defer r.mu.Unlock()
		p, _ := json.Marshal(c.Params)
		r.calls = append(r.calls, name+" "+c.Path+" "+string(p))
		if err := r.errs[name]; err != nil {
			return nil, err
		}
		rs := r.returns[name]
		if len(rs) == 0 {
			return nil, nil
		}
		out := rs[0]
		if len(rs) > 1 {
			r.returns[name] = rs[1:]
		}
		return out, nil
	}
}

func (r *recorder) count(prefix string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.calls {
		if strings.HasPrefix(c, prefix) {
			n++
		}
	}
	return n
}

// newRunner wires a runner with the real builtin, op and http packages, and fake kube actions
// and a fake "test" package whose actions record their calls.
func newRunner(t testing.TB, templates defs) (*step.Runner, *recorder) {
	t.Helper()
	return newRunnerWith(t, step.Options{Definitions: templates})
}

// newRunnerWith is newRunner with options, whose Registry it sets.
func newRunnerWith(t testing.TB, opts step.Options) (*step.Runner, *recorder) {
	t.Helper()
	rec := &recorder{returns: map[string][]any{}, errs: map[string]error{}}
	reg := step.NewRegistry()
	builtin.Register(reg)
	op.Register(reg)
	httpprovider.Register(reg, httpprovider.Options{})
	reg.Register(step.Action{Provider: "kube", Do: "read", Run: rec.handler("kube.read")})
	reg.Register(step.Action{Provider: "kube", Do: "apply", Run: rec.handler("kube.apply"), SideEffect: step.Always, Idempotent: true})
	reg.AddPackage(step.Package{Path: "vela/test", Source: testPackage})
	reg.AddPackage(step.Package{Path: "vela/test/more", Source: morePackage})
	for _, do := range []string{"get", "put", "note"} {
		a := step.Action{Provider: "test", Do: do, Run: rec.handler("test." + do)}
		if do == "put" {
			a.SideEffect = step.Always
		}
		reg.Register(a)
	}
	opts.Registry = reg
	return step.NewRunner(opts), rec
}

const testPackage = `
// #Get reads: it has no side effect.
#Get: {
	#provider: "test"
	#do:       "get"
	$params: key: string
	$returns?: {...}
	...
}
// #Put writes: it runs once per attempt.
#Put: {
	#provider: "test"
	#do:       "put"
	$params: {...}
	$returns?: {...}
	...
}
#Note: {
	#provider: "test"
	#do:       "note"
	$params: text: string
	...
}
#Apply: {
	#provider: "kube"
	#do:       "apply"
	$params: value: {...}
	$returns?: value: {...}
	...
}
`

// morePackage imports another supplied package.
const morePackage = `
import "vela/test"

#Loud: test.#Note & {$params: text: =~"!$"}
`

// request is a StepRequest for a step of type typ with properties props, given as the engine
// gives them: their JSON.
func request(typ string, props map[string]any) *engine.StepRequest {
	raw, err := json.Marshal(props)
	if err != nil {
		panic(err)
	}
	return &engine.StepRequest{
		Run:        engine.Key{Namespace: "default", Name: "run"},
		Step:       v1alpha1.WorkflowStepBase{Name: "s", Type: typ},
		StepID:     "s-id",
		Properties: raw,
		Context:    map[string]any{"name": "run", "namespace": "default", "stepName": "s"},
		Now:        time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
	}
}

// again is the request of the next evaluation of the same attempt after res.
func again(req *engine.StepRequest, res *engine.StepResult) *engine.StepRequest {
	next := *req
	next.Memo = res.Memo
	next.Resumed = false
	return &next
}

func mustRun(t *testing.T, r *step.Runner, req *engine.StepRequest) *engine.StepResult {
	t.Helper()
	res, err := r.RunStep(context.Background(), req)
	if err != nil {
		t.Fatalf("RunStep: %v", err)
	}
	return res
}

func wantOutcome(t *testing.T, res *engine.StepResult, o engine.Outcome, reason string) {
	t.Helper()
	if res.Outcome != o || res.Reason != reason {
		t.Fatalf("outcome %v reason %q (message %q), want %v reason %q", res.Outcome, res.Reason, res.Message, o, reason)
	}
}
