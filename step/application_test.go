package step_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/api/v1beta1"
	"github.com/stepflow/stepflow/application"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/step"
)

// xApp is an Application of one component of type typ, rendered with def.
func xApp(typ string, def string) application.Request {
	d := &v1beta1.ComponentDefinition{}
	d.Name = typ
	d.Spec.Schematic = &v1beta1.Schematic{CUE: &v1beta1.CUE{Template: def}}
	app := &v1beta1.Application{}
	app.Name, app.Namespace = "shop", "default"
	app.Spec.Components = []v1beta1.ApplicationComponent{{Name: "web", Type: typ}}
	return application.Request{App: app, Definitions: application.NewSet().Add([]*v1beta1.ComponentDefinition{d}, nil, nil)}
}

// cpuDefinition renders a ConfigMap after summing a list of n numbers.
const cpuDefinition = `import "list"

parameter: {}
output: {apiVersion: "v1", kind: "ConfigMap", data: n: "\(list.Sum(list.Range(0, %s, 1)))"}
`

// A render past EvalTimeout fails naming the bound and its flag, its evaluator is killed at
// once (the CPU is free again), and the next render works.
func TestRenderPastTheTimeBoundFails(t *testing.T) {
	r := step.NewRunner(step.Options{EvalTimeout: time.Second})
	began := time.Now()
	_, err := r.Render(context.Background(), xApp("sum", strings.Replace(cpuDefinition, "%s", "100000000", 1)))
	if err == nil || !strings.Contains(err.Error(), "evaluating the rendering of Application shop took longer than 1s, the limit of one evaluation") ||
		!strings.Contains(err.Error(), "--eval-timeout") {
		t.Errorf("the bomb: %v", err)
	}
	if took := time.Since(began); took > 30*time.Second {
		t.Errorf("failed after %s", took)
	}
	assertCPUFree(t)
	comps, err := r.Render(context.Background(), xApp("sum", strings.Replace(cpuDefinition, "%s", "3", 1)))
	if err != nil || len(comps) != 1 || comps[0].Workload.Object["data"].(map[string]any)["n"] != "3" {
		t.Errorf("after the bomb: %v %v", comps, err)
	}
}

// A deploy-like action, called back in this process while its step waits parked in the only
// child evaluator, renders a definition that passes the memory bound: the render takes that
// child down, and the step fails with the bound's message, not with the loss of its child.
func TestRenderBombFromAnActionFailsItsStep(t *testing.T) {
	reg := step.NewRegistry()
	reg.AddPackage(step.Package{Path: "vela/render", Source: `
#Render: {
	#provider: "render"
	#do:       "render"
	$params: {}
	...
}
`})
	reg.Register(step.Action{Provider: "render", Do: "render", Run: func(ctx context.Context, call *step.Call) (any, error) {
		_, err := call.Runner.Render(ctx, xApp("bomb", bomb(t, "memory")+
			`output: {apiVersion: "v1", kind: "ConfigMap", data: n: "\(len(doubled))"}`))
		if err != nil {
			return nil, engine.Terminal(v1alpha1.ReasonRendering, err)
		}
		return map[string]any{}, nil
	}})
	r := step.NewRunner(step.Options{Registry: reg, Evaluators: 1, EvalMemory: 128 << 20, EvalTimeout: 2 * time.Minute,
		Definitions: defs{"deploy": "import \"vela/render\"\n\nparameter: {}\nr: render.#Render & {$params: {}}\n"}})
	_, err := r.RunStep(context.Background(), request("deploy", nil))
	if _, ok := errors.AsType[*engine.TerminalError](err); !ok || !strings.Contains(err.Error(), "evaluating the rendering of Application shop used more than 128 MiB, the limit of one evaluation") ||
		!strings.Contains(err.Error(), "--eval-memory") {
		t.Errorf("the step: %v, want the action's terminal error naming the memory bound", err)
	}
}

// BenchmarkRender renders a one-component Application in a child evaluator and in process:
// the difference is the round trip to the child (the Application, the definition and the
// rendered objects as JSON).
func BenchmarkRender(b *testing.B) {
	req := xApp("sum", strings.Replace(cpuDefinition, "%s", "3", 1))
	for _, mode := range []struct {
		name string
		ev   application.Evaluator
	}{{"child", step.NewRunner(step.Options{Evaluators: 1})}, {"in-process", application.InProcess{}}} {
		b.Run(mode.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := mode.ev.Render(context.Background(), req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// A render of the same job is evaluated once: a deploy step evaluated again while its
// components get ready renders from the cache, and gets components of its own to change; a
// job that differs (here the target's cluster version) is rendered anew.
func TestRenderOfTheSameJobIsKept(t *testing.T) {
	r := step.NewRunner(step.Options{})
	req := xApp("sum", strings.Replace(cpuDefinition, "%s", "3", 1))
	first, err := r.Render(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	first[0].Workload.Object["data"].(map[string]any)["n"] = "changed by its caller"
	again, err := r.Render(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if n := step.RendersKept(r); n != 1 {
		t.Errorf("%d renders kept after rendering one job twice, want 1", n)
	}
	if got := again[0].Workload.Object["data"].(map[string]any)["n"]; got != "3" {
		t.Errorf("the kept render shows n = %v: a caller's change reached it", got)
	}
	req.Target.ClusterVersion.GitVersion = "v1.36.3"
	if _, err := r.Render(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if n := step.RendersKept(r); n != 2 {
		t.Errorf("%d renders kept after a job of another cluster version, want 2", n)
	}
}
