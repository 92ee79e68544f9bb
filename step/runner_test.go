package step_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/definitions"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/step"
)

func TestNewAndLegacyFormsFillResultsBack(t *testing.T) {
	r, rec := newRunner(t, defs{"both": `
import (
	"vela/builtin"
	"vela/op"
	"vela/test"
)
parameter: key: string
got: test.#Get & {$params: key: parameter.key}
// The legacy form fills the result into the action's own fields.
read: op.#Read & {value: {kind: "ConfigMap", metadata: name: got.$returns.name}}
msg: builtin.#Message & {$params: message: "\(got.$returns.name) has \(read.value.data.size) items"}
`})
	rec.returns["test.get"] = []any{map[string]any{"name": "cm-1"}}
	rec.returns["kube.read"] = []any{map[string]any{"value": map[string]any{"data": map[string]any{"size": 3}}}}
	res := mustRun(t, r, request("both", map[string]any{"key": "k"}))
	wantOutcome(t, res, engine.Succeeded, "")
	if res.Message != "cm-1 has 3 items" {
		t.Errorf("message %q", res.Message)
	}
	want := []string{
		`test.get got {"key":"k"}`,
		`kube.read read {"cluster":"","value":{"kind":"ConfigMap","metadata":{"name":"cm-1"}}}`,
	}
	if strings.Join(rec.calls, "\n") != strings.Join(want, "\n") {
		t.Errorf("calls:\n%s\nwant:\n%s", strings.Join(rec.calls, "\n"), strings.Join(want, "\n"))
	}
	// Every action is in the log, the definition logging or not.
	var logged []string
	for _, l := range res.Logs {
		logged = append(logged, l.Action+" "+l.Message+" "+l.Outcome)
	}
	if got := strings.Join(logged, ", "); got != "test.get got ok, kube.read read ok, builtin.message msg ok" {
		t.Errorf("logs: %s", got)
	}
}

// readyServer answers GET /ready with {"ready": false, "count": n} until the nth GET, then
// ready; it counts POST /start.
type readyServer struct {
	*httptest.Server
	posts, gets atomic.Int32
}

func newReadyServer(t *testing.T, readyAfter int32) *readyServer {
	s := &readyServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodPost && r.URL.Path == "/start":
			s.posts.Add(1)
			fmt.Fprint(w, `{"id": "job-7"}`)
		case r.Method == http.MethodGet && r.URL.Path == "/ready":
			n := s.gets.Add(1)
			fmt.Fprintf(w, `{"ready": %t, "count": %d}`, n >= readyAfter, n)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(s.Close)
	return s
}

// The seed's pattern in the legacy form: a side effect, a read, then a wait on what was read.
// The side effect runs once for the attempt; the read runs on every evaluation.
func TestSideEffectOnceAcrossWaitsWhileReadsRunAgain(t *testing.T) {
	srv := newReadyServer(t, 3)
	r, _ := newRunner(t, defs{"start-and-wait": `
import (
	"encoding/json"
	"vela/op"
)
parameter: base: string
start: op.#HTTPPost & {url: parameter.base + "/start", request: body: "{}"}
job: json.Unmarshal(start.response.body)
check: op.#HTTPGet & {url: parameter.base + "/ready"}
state: json.Unmarshal(check.response.body)
wait: op.#ConditionalWait & {
	continue: state.ready
	message:  "\(job.id) not ready after \(state.count) checks"
}
`})
	req := request("start-and-wait", map[string]any{"base": srv.URL})
	req.Step.Outputs = v1alpha1.StepOutputs{{Name: "job", ValueFrom: "job.id"}, {Name: "checks", ValueFrom: "state.count"}}

	res := mustRun(t, r, req)
	wantOutcome(t, res, engine.Waiting, v1alpha1.ReasonWait)
	if res.Message != "job-7 not ready after 1 checks" {
		t.Errorf("message %q", res.Message)
	}
	res = mustRun(t, r, again(req, res))
	wantOutcome(t, res, engine.Waiting, v1alpha1.ReasonWait)
	if got := res.Logs[0].Action + " " + res.Logs[0].Outcome; got != "http.do replayed" {
		t.Errorf("first log of the second evaluation: %s", got)
	}
	res = mustRun(t, r, again(req, res))
	wantOutcome(t, res, engine.Succeeded, "")
	if srv.posts.Load() != 1 || srv.gets.Load() != 3 {
		t.Errorf("POSTs %d (want 1), GETs %d (want 3)", srv.posts.Load(), srv.gets.Load())
	}
	if string(res.Outputs["job"]) != `"job-7"` || string(res.Outputs["checks"]) != "3" {
		t.Errorf("outputs %s %s", res.Outputs["job"], res.Outputs["checks"])
	}
}

// KubeVela's seed example, in its definition-file form (`template: {...}`): a guard with
// `!= _|_ &&` on a field the read did not return is false, not an error.
func TestSeedExampleWaitsOnWhatWasRead(t *testing.T) {
	r, rec := newRunner(t, defs{"read-and-wait": `
import "vela/op"

template: {
  read: op.#Read & {
    value: {apiVersion: parameter.apiVersion, kind: parameter.kind,
            metadata: {name: parameter.name, namespace: parameter.namespace}}
    cluster: parameter.cluster
  }
  wait: op.#ConditionalWait & {
    continue: read.value.status != _|_ && read.value.status.phase == "Ready"
  }
  parameter: {
    apiVersion: string
    kind:       string
    name:       string
    namespace:  *context.namespace | string
    cluster:    *"" | string
  }
}
`})
	obj := func(status map[string]any) map[string]any {
		v := map[string]any{"apiVersion": "v1", "kind": "Pod", "metadata": map[string]any{"name": "p", "namespace": "default"}}
		if status != nil {
			v["status"] = status
		}
		return map[string]any{"value": v}
	}
	rec.returns["kube.read"] = []any{obj(nil), obj(map[string]any{"phase": "Pending"}), obj(map[string]any{"phase": "Ready"})}
	req := request("read-and-wait", map[string]any{"apiVersion": "v1", "kind": "Pod", "name": "p"})
	req.Step.Outputs = v1alpha1.StepOutputs{{Name: "phase", ValueFrom: "read.value.status.phase"}}
	res := mustRun(t, r, req)
	wantOutcome(t, res, engine.Waiting, v1alpha1.ReasonWait)
	res = mustRun(t, r, again(req, res))
	wantOutcome(t, res, engine.Waiting, v1alpha1.ReasonWait)
	res = mustRun(t, r, again(req, res))
	wantOutcome(t, res, engine.Succeeded, "")
	if rec.count("kube.read template.read ") != 3 {
		t.Errorf("calls: %v", rec.calls)
	}
	if !strings.Contains(rec.calls[0], `"namespace":"default"`) {
		t.Errorf("the namespace default from context is not in the call: %s", rec.calls[0])
	}
	if string(res.Outputs["phase"]) != `"Ready"` {
		t.Errorf("output phase %s", res.Outputs["phase"])
	}
}

// A wait on a field an earlier action has not returned yet waits, as KubeVela's
// apply-deployment expects of `status.readyReplicas == parameter.replicas`.
func TestWaitOnAFieldNotReturnedYetWaits(t *testing.T) {
	r, rec := newRunner(t, defs{"deploy": `
import (
	"vela/builtin"
	"vela/test"
)
parameter: replicas: *1 | int
apply: test.#Apply & {$params: value: {kind: "Deployment", spec: replicas: parameter.replicas}}
wait: builtin.#ConditionalWait & {
	$params: {
		continue: apply.$returns.value.status.readyReplicas == parameter.replicas
		message:  "waiting for \(parameter.replicas) replicas"
	}
}
`})
	rec.returns["kube.apply"] = []any{map[string]any{"value": map[string]any{"kind": "Deployment"}}}
	req := request("deploy", map[string]any{"replicas": 2})
	res := mustRun(t, r, req)
	wantOutcome(t, res, engine.Waiting, v1alpha1.ReasonWait)
	if res.Message != "waiting for 2 replicas" {
		t.Errorf("message %q", res.Message)
	}
	if l := res.Logs[len(res.Logs)-1]; !strings.Contains(l.Message, "incomplete") {
		t.Errorf("the wait's log does not say its condition was incomplete: %+v", l)
	}
	if !strings.Contains(rec.calls[0], `"replicas":2`) {
		t.Errorf("apply params: %s", rec.calls[0])
	}
}

func TestAnActionThatNeverCompletesFailsNamingIt(t *testing.T) {
	r, rec := newRunner(t, defs{"stuck": `
import "vela/test"
parameter: {}
source: {...}
note: test.#Note & {$params: text: source.missing}
`})
	res := mustRun(t, r, request("stuck", nil))
	wantOutcome(t, res, engine.Failed, v1alpha1.ReasonRendering)
	if !strings.Contains(res.Message, "note is incomplete") || !strings.Contains(res.Message, "missing") {
		t.Errorf("message %q", res.Message)
	}
	if len(rec.calls) != 0 {
		t.Errorf("calls: %v", rec.calls)
	}
}

func TestUnusedImportsAreDropped(t *testing.T) {
	tmpl := `import (
	"strings"
	"encoding/yaml"
	"vela/op"
	"vela/builtin"
)

msg: op.#Message & {message: "hi"}
`
	r, _ := newRunner(t, defs{"t": tmpl})
	if err := r.Check(context.Background(), "t", tmpl); err != nil {
		t.Fatalf("Check: %v", err)
	}
	res := mustRun(t, r, request("t", nil))
	wantOutcome(t, res, engine.Succeeded, "")
	if res.Message != "hi" {
		t.Errorf("message %q", res.Message)
	}
	// A field named like an unused import is not a use of it.
	shadow := "import \"strings\"\nx: {strings: 1, y: strings}\n"
	if err := r.Check(context.Background(), "shadow", shadow); err != nil {
		t.Errorf("Check: %v", err)
	}
}

func TestPackagesMayImportSuppliedPackages(t *testing.T) {
	r, rec := newRunner(t, defs{"loud": `
import "vela/test/more"
note: more.#Loud & {$params: text: parameter.text}
parameter: text: string
`})
	res := mustRun(t, r, request("loud", map[string]any{"text": "hey!"}))
	wantOutcome(t, res, engine.Succeeded, "")
	if rec.count("test.note note ") != 1 {
		t.Errorf("calls %v", rec.calls)
	}
	res = mustRun(t, r, request("loud", map[string]any{"text": "hey"}))
	wantOutcome(t, res, engine.Failed, v1alpha1.ReasonRendering)
}

func TestParameterErrorsNameThePath(t *testing.T) {
	r, rec := newRunner(t, defs{"p": `
import "vela/test"
parameter: {
	url:      string
	replicas: *1 | int
	target:   close({value: string}) | close({secretRef: name: string})
	url2?:    {value: string} | {secretRef: name: string}
	opts: close({verbose?: bool})
}
note: test.#Note & {$params: text: parameter.url}
`})
	for _, tc := range []struct {
		props map[string]any
		want  []string
	}{
		{map[string]any{"target": map[string]any{"value": "x"}}, []string{"parameter.url: required, not set (want string)"}},
		{map[string]any{"url": "u", "replicas": "two", "target": map[string]any{"value": "x"}},
			[]string{`parameter.replicas: no alternative fits: conflicting values "two" and 1`, `conflicting values "two" and int`}},
		{map[string]any{"url": "u", "replicas": 2.5, "target": map[string]any{"value": "x"}},
			[]string{"parameter.replicas: no alternative fits: conflicting values 2.5 and 1 (mismatched types float and int)"}},
		{map[string]any{"url": "u"}, []string{"parameter.target: required"}},
		{map[string]any{"url": "u", "target": map[string]any{"value": "x"}, "opts": map[string]any{"verbos": true}},
			[]string{"parameter.opts.verbos: field not allowed"}},
		{map[string]any{"url": "u", "target": map[string]any{"value": "x"}, "url2": map[string]any{"value": "x"}},
			[]string{"parameter.url2: the value given is incomplete or matches more than one alternative"}},
	} {
		res := mustRun(t, r, request("p", tc.props))
		wantOutcome(t, res, engine.Failed, v1alpha1.ReasonParameter)
		for _, w := range tc.want {
			if !strings.Contains(res.Message, w) {
				t.Errorf("props %v: message %q does not say %q", tc.props, res.Message, w)
			}
		}
	}
	if len(rec.calls) != 0 {
		t.Errorf("an action ran with a bad parameter: %v", rec.calls)
	}
	// Whole numbers from JSON are ints.
	res := mustRun(t, r, request("p", map[string]any{"url": "u", "replicas": float64(3), "target": map[string]any{"value": "x"}}))
	wantOutcome(t, res, engine.Succeeded, "")
}

func TestCheckPropertiesTakesInputsAsGiven(t *testing.T) {
	r, _ := newRunner(t, defs{"p": `
parameter: {
	url:   string
	slack: message: text: string
	count: int
}
`})
	ctx := context.Background()
	err := r.CheckProperties(ctx, "default", "p", map[string]any{"count": 1}, []string{"url", "slack.message.text"})
	if err != nil {
		t.Errorf("inputs fill url and slack.message.text: %v", err)
	}
	err = r.CheckProperties(ctx, "default", "p", map[string]any{"count": "x"}, []string{"url"})
	if err == nil || !strings.Contains(err.Error(), "parameter.count: conflicting values") || strings.Contains(err.Error(), "parameter.url") {
		t.Errorf("err = %v", err)
	}
	err = r.CheckProperties(ctx, "default", "p", map[string]any{"count": 1}, []string{"url"})
	if err == nil || err.Error() != "parameter.slack.message.text: required, not set (want string)" {
		t.Errorf("err = %v", err)
	}
	if err := r.CheckProperties(ctx, "default", "nope", nil, nil); !errors.Is(err, step.ErrUnknownType) {
		t.Errorf("unknown type: %v", err)
	}
}

func TestCUEErrorsHavePositions(t *testing.T) {
	r, _ := newRunner(t, defs{
		"syntax":   "import \"vela/op\"\nmsg: op.#Message & {\n\tmessage: \"a\" +\n}\n",
		"conflict": "x: 1\nx: 2\n",
		"first":    "x: int & \"s\"\n",
		"later": `
import "vela/test"
parameter: n: int
got: test.#Get & {$params: key: "k"}
y: parameter.n & 3
`,
	})
	ctx := context.Background()
	for typ, want := range map[string]string{
		"syntax":   "syntax.cue:4:1: ",
		"conflict": "conflict.cue:2:4: x: conflicting values 2 and 1",
		"first":    "first.cue:1:4: x: conflicting values",
	} {
		res := mustRun(t, r, request(typ, nil))
		wantOutcome(t, res, engine.Failed, v1alpha1.ReasonRendering)
		if !strings.Contains(res.Message, want) {
			t.Errorf("%s: message %q does not contain %q", typ, res.Message, want)
		}
	}
	// An error that needs the parameter to show fails before any action runs.
	res := mustRun(t, r, request("later", map[string]any{"n": 4}))
	wantOutcome(t, res, engine.Failed, v1alpha1.ReasonRendering)
	if !strings.Contains(res.Message, "later.cue:5:") || len(res.Logs) != 0 {
		t.Errorf("message %q, logs %v", res.Message, res.Logs)
	}
	if err := r.Check(ctx, "bad", "x: 1 &\n"); err == nil || !strings.Contains(err.Error(), "bad.cue:1:") {
		t.Errorf("Check: %v", err)
	}
}

func TestOutputs(t *testing.T) {
	r, rec := newRunner(t, defs{"o": `
import "vela/test"
parameter: key: string
got: test.#Get & {$params: key: parameter.key}
response: {tag: got.$returns.tag, n: 2}
`})
	rec.returns["test.get"] = []any{map[string]any{"tag": "v1.2"}}
	req := request("o", map[string]any{"key": "k"})
	req.Step.Outputs = v1alpha1.StepOutputs{
		{Name: "tag", ValueFrom: "response.tag"},
		{Name: "all", ValueFrom: "response"},
		{Name: "key", ValueFrom: `parameter.key + "-" + context.stepName`},
		{Name: "upper", ValueFrom: `strings.ToUpper(response.tag)`},
	}
	res := mustRun(t, r, req)
	wantOutcome(t, res, engine.Succeeded, "")
	for name, want := range map[string]string{"tag": `"v1.2"`, "all": `{"tag":"v1.2","n":2}`, "key": `"k-s"`, "upper": `"V1.2"`} {
		if got := string(res.Outputs[name]); got != want {
			t.Errorf("output %s = %s, want %s", name, got, want)
		}
	}
	req.Step.Outputs = v1alpha1.StepOutputs{{Name: "nope", ValueFrom: "response.missing"}}
	res = mustRun(t, r, req)
	wantOutcome(t, res, engine.Failed, v1alpha1.ReasonOutput)
	if !strings.Contains(res.Message, "output nope") || !strings.Contains(res.Message, "response.missing") {
		t.Errorf("message %q", res.Message)
	}
}

func TestEvalIf(t *testing.T) {
	r, _ := newRunner(t, nil)
	scope := map[string]any{
		"status": map[string]any{
			"approve":     map[string]any{"phase": "succeeded", "succeeded": true, "failed": false},
			"deploy-prod": map[string]any{"phase": "failed", "succeeded": false, "failed": true},
		},
		"inputs":  map[string]any{"count": float64(3)},
		"context": map[string]any{"env": "prod"},
	}
	ctx := context.Background()
	for expr, want := range map[string]bool{
		`status.approve.succeeded`:                                true,
		`status["deploy-prod"].failed`:                            true,
		`context.env == "prod" && status.approve.succeeded`:       true,
		`context.env == "dev" && status.nosuch.succeeded`:         false, // short-circuit
		`inputs.count > 2`:                                        true,
		`inputs.count == 3.0`:                                     true,
		`strings.HasPrefix(context.env, "pr")`:                    true,
		"status.approve.succeeded &&\n  !status.approve.failed\n": true,
	} {
		got, err := r.EvalIf(ctx, expr, scope)
		if err != nil || got != want {
			t.Errorf("%q = %v, %v; want %v", expr, got, err, want)
		}
	}
	for expr, want := range map[string]string{
		`context.env`:                 "not a boolean",
		`status.nosuch.succeeded`:     "cannot be decided",
		`status.approve.succeeded &&`: "not a single CUE expression",
		"true)\nstatus: (1":           "not a single CUE expression",
		`true // )`:                   "not a single CUE expression",
		`context.missing == "x"`:      "cannot be decided",
	} {
		if _, err := r.EvalIf(ctx, expr, scope); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err %v, want %q", expr, err, want)
		}
	}
}

// A cache key evaluates to any concrete value, as JSON, in a child evaluator as in process; a
// key that is not an expression, or not concrete, is a terminal error.
func TestEvalKey(t *testing.T) {
	scope := map[string]any{
		"parameter": map[string]any{"image": "api:3.1", "replicas": float64(3)},
		"inputs":    map[string]any{"commit": "abc123"},
		"context":   map[string]any{"name": "release"},
	}
	for _, c := range []struct {
		name string
		r    *step.Runner
	}{{"child", step.NewRunner(step.Options{Evaluators: 1})}, {"in-process", step.NewRunner(step.Options{InProcess: true})}} {
		ctx := context.Background()
		for expr, want := range map[string]string{
			`parameter.image`:                               `"api:3.1"`,
			`[parameter.image, inputs.commit]`:              `["api:3.1","abc123"]`,
			`{img: parameter.image, n: parameter.replicas}`: `{"img":"api:3.1","n":3}`,
			`"\(context.name)-\(inputs.commit)"`:            `"release-abc123"`,
		} {
			got, err := c.r.EvalKey(ctx, expr, scope)
			if err != nil || string(got) != want {
				t.Errorf("%s: %q = %s, %v; want %s", c.name, expr, got, err, want)
			}
		}
		for expr, want := range map[string]string{
			`parameter.nosuch`:  "not concrete",
			`parameter.image +`: "not a single CUE expression",
			`status.a`:          `reference "status" not found`,
			`string`:            "not concrete",
		} {
			_, err := c.r.EvalKey(ctx, expr, scope)
			if _, terminal := errors.AsType[*engine.TerminalError](err); !terminal || !strings.Contains(err.Error(), want) {
				t.Errorf("%s: %q: err %v, want a terminal error like %q", c.name, expr, err, want)
			}
		}
	}
}

func TestStepAttributesOrderActions(t *testing.T) {
	r, rec := newRunner(t, defs{"ordered": `
import "vela/test"
c: test.#Note & {$params: text: "c"}
b: test.#Note & {$params: text: "b"} @step(2)
group: {
	y: test.#Note & {$params: text: "y"} @step(2)
	x: test.#Note & {$params: text: "x"} @step(1)
}
a: test.#Note & {$params: text: "a"} @step(1)
`})
	wantOutcome(t, mustRun(t, r, request("ordered", nil)), engine.Succeeded, "")
	var order []string
	for _, c := range rec.calls {
		order = append(order, strings.Fields(c)[1])
	}
	if got := strings.Join(order, " "); got != "a b c group.x group.y" {
		t.Errorf("order %s", got)
	}
}

func TestActionsUnderIfRunOnceWhatTheyTestIsKnown(t *testing.T) {
	r, rec := newRunner(t, defs{"cond": `
import (
	"vela/builtin"
	"vela/test"
)
got: test.#Get & {$params: key: "k"}
check: builtin.#Steps & {
	if got.$returns.code >= 400 {
		fail: builtin.#Fail & {$params: message: "code \(got.$returns.code)"}
	}
	if got.$returns.code < 400 {
		ok: test.#Note & {$params: text: "fine"}
	}
}
`})
	rec.returns["test.get"] = []any{map[string]any{"code": 200}, map[string]any{"code": 404}}
	wantOutcome(t, mustRun(t, r, request("cond", nil)), engine.Succeeded, "")
	res := mustRun(t, r, request("cond", nil))
	wantOutcome(t, res, engine.Failed, v1alpha1.ReasonAction)
	if res.Message != "code 404" {
		t.Errorf("message %q", res.Message)
	}
	if got := rec.count("test.note check.ok "); got != 1 {
		t.Errorf("note ran %d times: %v", got, rec.calls)
	}
}

func TestSuspend(t *testing.T) {
	r, _ := newRunner(t, defs{
		"timed": `
import "vela/builtin"
s: builtin.#Suspend & {$params: {duration: "1m", message: "hold on"}}
after: builtin.#Message & {$params: message: "released"}
`,
		"multi": `
import "vela/op"
suspend1: op.#Suspend & {}
suspend2: op.#Suspend & {}
`,
	})
	req := request("timed", nil)
	res := mustRun(t, r, req)
	wantOutcome(t, res, engine.Suspended, v1alpha1.ReasonSuspend)
	if !res.SuspendUntil.Equal(req.Now.Add(time.Minute)) || res.Message != "hold on" {
		t.Fatalf("until %v, message %q", res.SuspendUntil, res.Message)
	}
	early := again(req, res)
	early.Now = req.Now.Add(30 * time.Second)
	res2 := mustRun(t, r, early)
	wantOutcome(t, res2, engine.Suspended, v1alpha1.ReasonSuspend)
	if !res2.SuspendUntil.Equal(req.Now.Add(time.Minute)) {
		t.Errorf("the deadline moved: %v", res2.SuspendUntil)
	}
	due := again(req, res2)
	due.Now = req.Now.Add(time.Minute)
	res3 := mustRun(t, r, due)
	wantOutcome(t, res3, engine.Succeeded, "")
	if res3.Message != "released" {
		t.Errorf("message %q", res3.Message)
	}

	// Each resume releases one suspend.
	req = request("multi", nil)
	res = mustRun(t, r, req)
	wantOutcome(t, res, engine.Suspended, v1alpha1.ReasonSuspend)
	if !res.SuspendUntil.IsZero() {
		t.Errorf("a suspend without duration has a deadline: %v", res.SuspendUntil)
	}
	same := mustRun(t, r, again(req, res))
	wantOutcome(t, same, engine.Suspended, v1alpha1.ReasonSuspend)
	resumed := again(req, same)
	resumed.Resumed = true
	res = mustRun(t, r, resumed)
	wantOutcome(t, res, engine.Suspended, v1alpha1.ReasonSuspend)
	resumed = again(req, res)
	resumed.Resumed = true
	wantOutcome(t, mustRun(t, r, resumed), engine.Succeeded, "")
}

func TestBreakFailMessageAndVariables(t *testing.T) {
	r, rec := newRunner(t, defs{
		"break": `
import ("vela/builtin", "vela/test")
b: builtin.#Break & {$params: message: "enough"}
never: test.#Note & {$params: text: "x"}
`,
		"fail": `
import "vela/op"
f: op.#Fail & {}
`,
		"vars": `
import ("vela/builtin", "vela/op")
put: builtin.#DoVar & {$params: {method: "Put", path: "greeting", value: {text: "hi", n: 2}}}
get: builtin.#DoVar & {$params: path: "greeting"}
old: op.#DoVar & {method: "Get", path: "count"}
msg: builtin.#Message & {$params: message: "\(get.$returns.value.text) \(get.$returns.value.n) \(old.value)"}
`,
	})
	res := mustRun(t, r, request("break", nil))
	wantOutcome(t, res, engine.Broke, "")
	if res.Message != "enough" || len(rec.calls) != 0 {
		t.Errorf("message %q, calls %v", res.Message, rec.calls)
	}
	res = mustRun(t, r, request("fail", nil))
	wantOutcome(t, res, engine.Failed, v1alpha1.ReasonAction)
	if !strings.Contains(res.Message, "f") {
		t.Errorf("message %q", res.Message)
	}
	req := request("vars", nil)
	req.Vars = map[string]json.RawMessage{"count": json.RawMessage("7")}
	res = mustRun(t, r, req)
	wantOutcome(t, res, engine.Succeeded, "")
	if res.Message != "hi 2 7" || string(res.VarWrites["greeting"]) != `{"n":2,"text":"hi"}` {
		t.Errorf("message %q, writes %s", res.Message, res.VarWrites)
	}
}

func TestProviderErrors(t *testing.T) {
	tmpl := defs{
		"err": `
import "vela/test"
p: test.#Put & {$params: {x: 1}}
g: test.#Get & {$params: key: "k"}
`,
		"missing": `
import ("vela/op", "vela/test")
p: test.#Put & {$params: {x: 1}}
cfg: op.#ReadConfig & {name: "c"}
`,
	}
	r, rec := newRunner(t, tmpl)
	rec.errs["test.get"] = errors.New("connection refused")
	res, err := r.RunStep(context.Background(), request("err", nil))
	var te *engine.TerminalError
	if err == nil || errors.As(err, &te) || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("err = %v", err)
	}
	if res == nil || res.Memo["p"] == nil {
		t.Fatalf("the result of the side effect before the error is not kept: %+v", res)
	}
	// The failing action's line is marked failed, an error, and says why.
	if l := res.Logs[len(res.Logs)-1]; l.Action != "test.get" || l.Outcome != "failed" || l.Severity != engine.SeverityError || l.Message != "g: connection refused" {
		t.Errorf("log %+v", l)
	}
	rec.errs["test.get"] = engine.Terminal(v1alpha1.ReasonExecute, errors.New("bad url"))
	if _, err := r.RunStep(context.Background(), request("err", nil)); !errors.As(err, &te) {
		t.Errorf("a terminal error is not terminal: %v", err)
	}

	// An action whose provider is not in the build fails the step before anything runs.
	before := rec.count("test.put")
	_, err = r.RunStep(context.Background(), request("missing", nil))
	if !errors.As(err, &te) || !strings.Contains(err.Error(), "action config.read is not available in this build") {
		t.Errorf("err = %v", err)
	}
	if rec.count("test.put") != before {
		t.Error("a side effect ran before the unavailable action was found")
	}
}

func TestAResultThatDoesNotFitFails(t *testing.T) {
	r, rec := newRunner(t, defs{
		"apply": `
import "vela/test"
a: test.#Apply & {$params: value: {kind: "X"}}
`,
		"var": `
import "vela/builtin"
g: builtin.#DoVar & {$params: path: "x"}
n: g.$returns.value & int
`})
	rec.returns["kube.apply"] = []any{map[string]any{"value": "not an object"}}
	res := mustRun(t, r, request("apply", nil))
	wantOutcome(t, res, engine.Failed, v1alpha1.ReasonRendering)
	if !strings.Contains(res.Message, "the result of kube.apply does not fit") {
		t.Errorf("message %q", res.Message)
	}
	req := request("var", nil)
	req.Vars = map[string]json.RawMessage{"x": json.RawMessage(`"text"`)}
	res = mustRun(t, r, req)
	wantOutcome(t, res, engine.Failed, v1alpha1.ReasonRendering)
	if !strings.Contains(res.Message, "n: conflicting values") {
		t.Errorf("message %q", res.Message)
	}
}

func TestCancellationStopsBetweenActions(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var ran []string
	reg := step.NewRegistry()
	reg.AddPackage(step.Package{Path: "vela/test", Source: testPackage})
	reg.Register(step.Action{Provider: "test", Do: "note", Run: func(_ context.Context, c *step.Call) (any, error) {
		ran = append(ran, c.Path)
		cancel()
		return nil, nil
	}})
	r := step.NewRunner(step.Options{Registry: reg, Definitions: defs{"t": `
import "vela/test"
a: test.#Note & {$params: text: "a"}
b: test.#Note & {$params: text: "b"}
`}})
	if _, err := r.RunStep(ctx, request("t", nil)); !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v", err)
	}
	if strings.Join(ran, " ") != "a" {
		t.Errorf("ran %v", ran)
	}
}

func TestConcurrentEvaluationsAndContextRotation(t *testing.T) {
	reg := step.NewRegistry()
	var calls atomic.Int32
	reg.AddPackage(step.Package{Path: "vela/test", Source: testPackage})
	reg.Register(step.Action{Provider: "test", Do: "get", Run: func(_ context.Context, c *step.Call) (any, error) {
		calls.Add(1)
		return map[string]any{"echo": c.Params["key"]}, nil
	}})
	r := step.NewRunner(step.Options{Registry: reg, ContextLifetime: 3, Definitions: defs{"echo": `
import "vela/test"
parameter: key: string
got: test.#Get & {$params: key: parameter.key}
`}})
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 40 {
		wg.Go(func() {
			req := request("echo", map[string]any{"key": fmt.Sprint(i)})
			req.Step.Outputs = v1alpha1.StepOutputs{{Name: "echo", ValueFrom: "got.$returns.echo"}}
			res, err := r.RunStep(context.Background(), req)
			if err == nil && string(res.Outputs["echo"]) != fmt.Sprintf("%q", fmt.Sprint(i)) {
				err = fmt.Errorf("evaluation %d: outcome %v %q, output %s", i, res.Outcome, res.Message, res.Outputs["echo"])
			}
			if err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if calls.Load() != 40 {
		t.Errorf("calls %d", calls.Load())
	}
}

// CUE reorders fields once a comprehension adds some, or a fill comes in; actions still run in
// the order they are written.
func TestFieldOrderIsTheOrderWritten(t *testing.T) {
	r, rec := newRunner(t, defs{"order": `
import "vela/test"
parameter: flag: bool
zeta: test.#Note & {$params: text: "z"}
if parameter.flag {
	mid: test.#Note & {$params: text: "m"}
}
alpha: test.#Note & {$params: text: "a"}
group: {
	if parameter.flag {
		second: test.#Note & {$params: text: "2"}
	}
	first: test.#Note & {$params: text: "1"}
}
`})
	wantOutcome(t, mustRun(t, r, request("order", map[string]any{"flag": true})), engine.Succeeded, "")
	var order []string
	for _, c := range rec.calls {
		order = append(order, strings.Fields(c)[1])
	}
	if got := strings.Join(order, " "); got != "zeta mid alpha group.second group.first" {
		t.Errorf("order %s", got)
	}
}

// KubeVela's definitions default parameters to context fields; such a parameter left out of
// the properties is not missing.
func TestCheckPropertiesKnowsTheContext(t *testing.T) {
	r, _ := newRunner(t, defs{"p": `
parameter: {
	name:      string
	namespace: *context.namespace | string
	cluster:   *"" | string
}
`})
	if err := r.CheckProperties(context.Background(), "team-a", "p", map[string]any{"name": "x"}, nil); err != nil {
		t.Errorf("namespace defaults to context.namespace: %v", err)
	}
}

// A resume releases a step whose template is nothing but a suspend without evaluating it
// again; what it returns must be what the evaluation would have returned.
func TestResumedLoneSuspendIsReleasedAsEvaluated(t *testing.T) {
	lone, _ := definitions.Template("suspend")
	r, _ := newRunner(t, defs{
		"suspend": lone,
		// The same, but with a field that is not an action: evaluated as usual.
		"evaluated": lone + "\nnote: \"x\"\n",
	})
	results := map[string]*engine.StepResult{}
	for _, typ := range []string{"suspend", "evaluated"} {
		req := request(typ, map[string]any{"message": "waiting"})
		res := mustRun(t, r, req)
		wantOutcome(t, res, engine.Suspended, v1alpha1.ReasonSuspend)
		if res.Message != "waiting" {
			t.Fatalf("%s: message %q", typ, res.Message)
		}
		resumed := again(req, res)
		resumed.Resumed = true
		res = mustRun(t, r, resumed)
		wantOutcome(t, res, engine.Succeeded, "")
		for i := range res.Logs {
			res.Logs[i].Time, res.Logs[i].Duration = time.Time{}, 0
		}
		results[typ] = res
	}
	if got, want := results["suspend"], results["evaluated"]; !reflect.DeepEqual(got, want) {
		t.Errorf("released without evaluation:\n%+v\nevaluated:\n%+v", got, want)
	}
	if got := results["suspend"]; len(got.Logs) != 1 || got.Logs[0].Action != "builtin.suspend" || got.Logs[0].Outcome != "ok" {
		t.Errorf("logs %+v", got.Logs)
	}
}

// RunQuick makes an evaluation whose actions are all local, as RunStep would; at an action
// that is not local it gives up before the action runs, and does not try that type again.
func TestRunQuickMakesOnlyLocalEvaluations(t *testing.T) {
	say, _ := definitions.Template("print-message-in-status")
	lone, _ := definitions.Template("suspend")
	r, rec := newRunner(t, defs{
		"say":     say,
		"suspend": lone,
		"read-then-say": `import ("vela/builtin", "vela/test")
parameter: key: string
get: test.#Get & {$params: key: parameter.key}
say: builtin.#Message & {$params: message: "read " + parameter.key}
`,
	})
	ctx := context.Background()

	req := request("say", map[string]any{"message": "hello"})
	res, ok, err := r.RunQuick(ctx, req)
	if err != nil || !ok {
		t.Fatalf("say: RunQuick = %v, %v; want it made", ok, err)
	}
	wantOutcome(t, res, engine.Succeeded, "")
	if res.Message != "hello" {
		t.Errorf("say: message %q, want hello", res.Message)
	}

	req = request("suspend", map[string]any{"message": "approve"})
	res, ok, err = r.RunQuick(ctx, req)
	if err != nil || !ok {
		t.Fatalf("suspend: RunQuick = %v, %v; want it made", ok, err)
	}
	wantOutcome(t, res, engine.Suspended, v1alpha1.ReasonSuspend)
	resumed := again(req, res)
	resumed.Resumed = true
	if res, ok, err = r.RunQuick(ctx, resumed); err != nil || !ok {
		t.Fatalf("resumed suspend: RunQuick = %v, %v; want it made", ok, err)
	}
	wantOutcome(t, res, engine.Succeeded, "")

	req = request("read-then-say", map[string]any{"key": "k"})
	for i := range 2 {
		if res, ok, err := r.RunQuick(ctx, req); ok || res != nil {
			t.Fatalf("read-then-say, try %d: RunQuick = %v, %v (%v); want not made", i, res, ok, err)
		}
	}
	if n := rec.count("test.get"); n != 0 {
		t.Fatalf("RunQuick ran test.get %d times; it is not local", n)
	}
	res = mustRun(t, r, req)
	if res.Message != "read k" || rec.count("test.get") != 1 {
		t.Errorf("RunStep after RunQuick gave up: message %q, %d reads; want \"read k\", 1", res.Message, rec.count("test.get"))
	}
}
