package step_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"cuelang.org/go/cue"
	"cuelang.org/go/cue/cuecontext"
	"k8s.io/apimachinery/pkg/runtime"
	fieldpath "k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/definitions"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/provider/builtin"
	"github.com/stepflow/stepflow/provider/kube"
	"github.com/stepflow/stepflow/step"
)

// The BenchmarkWarmEval benchmarks are issue 7's CUE figures: one step of a definition that is
// already compiled, per operation (ns/op, B/op, allocs/op with -benchmem). go run ./bench/table
// prints them beside their targets (under 100 µs and 30 KB per step).
//
//	go test -run '^$' -bench WarmEval -benchmem ./step/

// BenchmarkWarmEval evaluates print-message-in-status with its definition compiled: parameter
// check, one action, the status message.
func BenchmarkWarmEval(b *testing.B) {
	tmpl, _ := definitions.Template("print-message-in-status")
	r, _ := newRunner(b, defs{"print-message-in-status": tmpl})
	req := request("print-message-in-status", map[string]any{"message": "hello"})
	warmEval(b, r, req, func(res *engine.StepResult) bool { return res.Message == "hello" })
}

// BenchmarkIsolation is what evaluating in a child evaluator costs a step: print-message-in-status
// and the 20-way disjunction, each in this process (Options.InProcess) and in a child, in one
// binary so that both see the same machine:
//
//	go test -run '^$' -bench Isolation -benchmem -count 4 ./step/
//
// B/op and allocs/op count this process only, not the child's; cpu-µs/op counts both.
func BenchmarkIsolation(b *testing.B) {
	msg, _ := definitions.Template("print-message-in-status")
	templates := defs{"print-message-in-status": msg, "notify20": disjunction20}
	for _, inProcess := range []bool{true, false} {
		place := "child"
		if inProcess {
			place = "in-process"
		}
		r, _ := newRunnerWith(b, step.Options{Definitions: templates, InProcess: inProcess})
		b.Run("print-message/"+place, func(b *testing.B) {
			req := request("print-message-in-status", map[string]any{"message": "hello"})
			cpu := cpuTime(b)
			warmEval(b, r, req, func(res *engine.StepResult) bool { return res.Message == "hello" })
			b.ReportMetric(float64((cpuTime(b)-cpu).Microseconds())/float64(b.N), "cpu-µs/op")
		})
		b.Run("disjunction20/"+place, func(b *testing.B) {
			req := request("notify20", map[string]any{
				"target":  map[string]any{"kind": "syslog", "address": "10.0.0.1:514"},
				"message": "deployed",
			})
			cpu := cpuTime(b)
			warmEval(b, r, req, func(res *engine.StepResult) bool { return res.Message == "[info] syslog: deployed" })
			b.ReportMetric(float64((cpuTime(b)-cpu).Microseconds())/float64(b.N), "cpu-µs/op")
		})
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
	warmEval(b, r, req, nil)
}

// BenchmarkWarmEvalApplyObject evaluates the built-in apply-object step with its definition
// compiled, with the real vela/kube package but a kube.apply action that answers at once with
// the object it was given: it measures the CUE evaluation (parameter check, the #Apply action's
// parameters, its result filled back into apply.value), not an API server's server-side apply.
func BenchmarkWarmEvalApplyObject(b *testing.B) {
	full := step.NewRegistry()
	kube.Register(full, kube.Options{})
	pkg, ok := full.Package("vela/kube")
	if !ok {
		b.Fatal("kube.Register supplied no vela/kube package")
	}
	reg := step.NewRegistry()
	reg.AddPackage(pkg)
	reg.Register(step.Action{Provider: "kube", Do: "apply", SideEffect: step.Always,
		Run: func(_ context.Context, c *step.Call) (any, error) {
			return map[string]any{"value": c.Params["value"]}, nil
		}})
	tmpl, _ := definitions.Template("apply-object")
	r := step.NewRunner(step.Options{Registry: reg, Definitions: defs{"apply-object": tmpl}})
	req := request("apply-object", map[string]any{"value": map[string]any{
		"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": "cm", "namespace": "default"},
		"data":     map[string]any{"k": "v"},
	}})
	warmEval(b, r, req, nil)
}

// disjunction20 is a step type whose parameter is a disjunction of twenty closed struct shapes
// told apart by their kind and their required fields, with a twenty-way enum with a default
// beside it: the shape of a notification step that takes one of many channel kinds.
const disjunction20 = `// Sends a message to one of twenty kinds of channel (a benchmark's definition).
import "vela/builtin"

#Slack: {kind: "slack", channel: string, token: string}
#Email: {kind: "email", to: [...string], subject: string}
#Webhook: {kind: "webhook", url: string, method: *"POST" | "PUT"}
#PagerDuty: {kind: "pagerduty", routingKey: string, dedupKey?: string}
#Teams: {kind: "teams", webhookURL: string}
#DingTalk: {kind: "dingtalk", url: string, secret?: string}
#Lark: {kind: "lark", url: string, secret?: string}
#Discord: {kind: "discord", webhookURL: string, username?: string}
#Telegram: {kind: "telegram", botToken: string, chatID: int}
#SNS: {kind: "sns", topicARN: string, region: string}
#SQS: {kind: "sqs", queueURL: string, region: string}
#PubSub: {kind: "pubsub", project: string, topic: string}
#Kafka: {kind: "kafka", brokers: [...string], topic: string}
#NATS: {kind: "nats", url: string, subject: string}
#Opsgenie: {kind: "opsgenie", apiKey: string, priority: *"P3" | "P1" | "P2" | "P4" | "P5"}
#Matrix: {kind: "matrix", homeserver: string, room: string}
#Mattermost: {kind: "mattermost", url: string, channel?: string}
#RocketChat: {kind: "rocketchat", url: string, channel: string}
#Twilio: {kind: "twilio", accountSID: string, from: string, to: string}
#Syslog: {kind: "syslog", address: string, facility: *"local0" | "local1" | "user"}

parameter: {
	target: #Slack | #Email | #Webhook | #PagerDuty | #Teams | #DingTalk | #Lark | #Discord |
		#Telegram | #SNS | #SQS | #PubSub | #Kafka | #NATS | #Opsgenie | #Matrix | #Mattermost |
		#RocketChat | #Twilio | #Syslog
	severity: *"info" | "trace" | "debug" | "notice" | "warning" | "error" | "critical" | "alert" |
		"emergency" | "success" | "failure" | "started" | "finished" | "skipped" | "suspended" |
		"resumed" | "timeout" | "retry" | "cancelled" | "unknown"
	message: string
}

msg: builtin.#Message & {
	$params: message: "[\(parameter.severity)] \(parameter.target.kind): \(parameter.message)"
}
`

// BenchmarkWarmEvalDisjunction20 evaluates disjunction20 with its definition compiled, the
// target being the last of the twenty shapes and the severity left to its default.
func BenchmarkWarmEvalDisjunction20(b *testing.B) {
	reg := step.NewRegistry()
	builtin.Register(reg)
	r := step.NewRunner(step.Options{Registry: reg, Definitions: defs{"notify20": disjunction20}})
	req := request("notify20", map[string]any{
		"target":  map[string]any{"kind": "syslog", "address": "10.0.0.1:514"},
		"message": "deployed",
	})
	warmEval(b, r, req, func(res *engine.StepResult) bool { return res.Message == "[info] syslog: deployed" })
}

// warmEval runs req once, checks that it succeeded (and ok, when given, for its result), then
// measures running it again and again.
func warmEval(b *testing.B, r *step.Runner, req *engine.StepRequest, ok func(*engine.StepResult) bool) {
	b.Helper()
	ctx := context.Background()
	res, err := r.RunStep(ctx, req)
	if err != nil || res.Outcome != engine.Succeeded || (ok != nil && !ok(res)) {
		b.Fatalf("first evaluation: %+v %v", res, err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.RunStep(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCUEFill is the bound under the WarmEval figures: CUE's evaluator alone, with no
// stepflow code, filling a parameter into a compiled template and checking the result, as a
// step evaluation does once for its parameter and once per action result (each fill evaluates
// the whole template again from its conjuncts: CUE v0.17 does not evaluate incrementally).
// tiny is a two-field template; action is the shape of a one-action step: a parameter with a
// default and an action whose $params read it.
func BenchmarkCUEFill(b *testing.B) {
	for _, c := range []struct{ name, src string }{
		{"tiny", `a: int, b: a + 1`},
		{"action", `
parameter: {url: string, method: *"GET" | "POST"}
req: {
	#do:       "do"
	#provider: "http"
	$params: {method: parameter.method, url: parameter.url}
}`},
	} {
		b.Run(c.name, func(b *testing.B) {
			v := cuecontext.New().CompileString(c.src)
			in := map[string]any{"parameter": map[string]any{"url": "http://127.0.0.1/ok"}}
			if c.name == "tiny" {
				in = map[string]any{"a": 1}
			}
			b.ReportAllocs()
			for b.Loop() {
				if err := v.FillPath(cue.Path{}, in).Validate(cue.Concrete(true)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCheckSteps checks a run of four steps against their types as the engine does at
// every create (catalog.CheckRun): two requests and two print-message-in-status, with the
// properties of each step the same from one run to the next.
func BenchmarkCheckSteps(b *testing.B) {
	r, _ := newRunner(b, defs{"request": mustTemplate(b, "request"), "print-message-in-status": mustTemplate(b, "print-message-in-status")})
	steps := []v1alpha1.WorkflowStep{
		checkStep("a", "request", `{"url": "http://example.com/a", "method": "POST", "body": {"n": 1}}`),
		checkStep("b", "print-message-in-status", `{"message": "hello"}`),
		checkStep("c", "request", `{"url": "http://example.com/c"}`),
		checkStep("d", "print-message-in-status", `{"message": "bye"}`),
	}
	ctx := context.Background()
	if errs := r.CheckSteps(ctx, "default", steps, fieldpath.NewPath("steps")); len(errs) > 0 {
		b.Fatal(errs)
	}
	b.ReportAllocs()
	for b.Loop() {
		if errs := r.CheckSteps(ctx, "default", steps, fieldpath.NewPath("steps")); len(errs) > 0 {
			b.Fatal(errs)
		}
	}
}

func mustTemplate(b *testing.B, typ string) string {
	t, ok := definitions.Template(typ)
	if !ok {
		b.Fatalf("no built-in step type %s", typ)
	}
	return t
}

func checkStep(name, typ, props string) v1alpha1.WorkflowStep {
	return v1alpha1.WorkflowStep{WorkflowStepBase: v1alpha1.WorkflowStepBase{
		Name: name, Type: typ, Properties: &runtime.RawExtension{Raw: []byte(props)}}}
}
