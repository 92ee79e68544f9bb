package step_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/step"
)

// fakeExternal stands in for provider/external (whose HTTP calls have tests of their own): it
// records the calls the runtime dispatches to it and answers each with what answer returns.
type fakeExternal struct {
	mu     sync.Mutex
	calls  []string // "<package name>.<do>"
	answer func(do string, params map[string]any) (any, error)
}

func (f *fakeExternal) Call(_ context.Context, pkg *step.ExternalPackage, do string, c *step.Call) (any, error) {
	f.mu.Lock()
	f.calls = append(f.calls, pkg.Name+"."+do)
	f.mu.Unlock()
	return f.answer(do, c.Params)
}

func (f *fakeExternal) count(name string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		if c == name {
			n++
		}
	}
	return n
}

const counterPackage = `package counter

// #Add changes the counter: a side effect.
#Add: {
	#do:       "add"
	#provider: "counter"
	$params: n: int
	$returns?: total: int
}

// #Get reads it.
#Get: {
	#do:       "get"
	#provider: "counter"
	$params: {}
	$returns?: total: int
}
`

const counterTemplate = `import (
	"vela/op"
	"ext/counter"
)

parameter: n: int
add: counter.#Add & {$params: n: parameter.n}
get: counter.#Get & {$params: {}}
wait: op.#ConditionalWait & {continue: get.$returns.total >= 10}
`

func counterPkg(files map[string]string) step.ExternalPackage {
	return step.ExternalPackage{Name: "counter", Path: "ext/counter", Endpoint: "http://counter.invalid", Files: files, Reads: []string{"get"}}
}

func TestExternalActionsRunOncePerTryUnlessReads(t *testing.T) {
	total := 0
	ext := &fakeExternal{answer: func(do string, params map[string]any) (any, error) {
		if do == "add" {
			total += int(params["n"].(float64))
		} else {
			total++ // each read sees the counter move on
		}
		return map[string]any{"total": total}, nil
	}}
	tmpl := step.Bundle(counterTemplate, []step.ExternalPackage{counterPkg(map[string]string{"counter.cue": counterPackage})})
	r, _ := newRunnerWith(t, step.Options{Definitions: defs{"count": tmpl}, External: ext})
	req := request("count", map[string]any{"n": 7})
	req.Step.Outputs = v1alpha1.StepOutputs{{Name: "total", ValueFrom: "get.$returns.total"}}

	res := mustRun(t, r, req) // add → 7, get → 8: waits
	wantOutcome(t, res, engine.Waiting, v1alpha1.ReasonWait)
	res = mustRun(t, r, again(req, res)) // add replayed, get → 9
	wantOutcome(t, res, engine.Waiting, v1alpha1.ReasonWait)
	res = mustRun(t, r, again(req, res)) // get → 10
	wantOutcome(t, res, engine.Succeeded, "")
	if ext.count("counter.add") != 1 || ext.count("counter.get") != 3 {
		t.Errorf("calls %v: want add once (a side effect, replayed from the memo) and get at every evaluation", ext.calls)
	}
	if string(res.Outputs["total"]) != "10" {
		t.Errorf("output total = %s, want 10 ($returns filled back)", res.Outputs["total"])
	}
	if got := res.Logs[0].Action; got != "counter.add" {
		t.Errorf("log action = %q, want counter.add", got)
	}
}

func TestAChangedPackageIsCompiledAgain(t *testing.T) {
	ext := &fakeExternal{answer: func(string, map[string]any) (any, error) { return map[string]any{"total": 10}, nil }}
	d := defs{}
	r, _ := newRunnerWith(t, step.Options{Definitions: d, External: ext})
	for _, do := range []string{"add", "plus"} {
		// The same template, its package's #Add now calling another action.
		src := strings.Replace(counterPackage, `#do:       "add"`, `#do:       "`+do+`"`, 1)
		d["count"] = step.Bundle(counterTemplate, []step.ExternalPackage{counterPkg(map[string]string{"counter.cue": src})})
		wantOutcome(t, mustRun(t, r, request("count", map[string]any{"n": 1})), engine.Succeeded, "")
	}
	if !slices.Equal(ext.calls, []string{"counter.add", "counter.get", "counter.plus", "counter.get"}) {
		t.Errorf("calls %v: the second run did not see the package's new version", ext.calls)
	}
}

func TestExternalActionErrors(t *testing.T) {
	tmpl := step.Bundle(counterTemplate, []step.ExternalPackage{counterPkg(map[string]string{"counter.cue": counterPackage})})
	t.Run("a provider error is retried", func(t *testing.T) {
		ext := &fakeExternal{answer: func(string, map[string]any) (any, error) { return nil, errors.New("503 busy") }}
		r, _ := newRunnerWith(t, step.Options{Definitions: defs{"count": tmpl}, External: ext})
		_, err := r.RunStep(context.Background(), request("count", map[string]any{"n": 1}))
		if _, terminal := errors.AsType[*engine.TerminalError](err); err == nil || terminal || !strings.Contains(err.Error(), "503 busy") {
			t.Fatalf("error = %v, want a provider error to retry", err)
		}
	})
	t.Run("without External the step fails", func(t *testing.T) {
		r, _ := newRunnerWith(t, step.Options{Definitions: defs{"count": tmpl}})
		_, err := r.RunStep(context.Background(), request("count", map[string]any{"n": 1}))
		if _, terminal := errors.AsType[*engine.TerminalError](err); !terminal || !strings.Contains(err.Error(), "external providers are not configured") {
			t.Fatalf("error = %v, want a terminal error", err)
		}
	})
	t.Run("a template importing a package it was not given", func(t *testing.T) {
		r, _ := newRunnerWith(t, step.Options{Definitions: defs{"count": counterTemplate}})
		res := mustRun(t, r, request("count", map[string]any{"n": 1}))
		wantOutcome(t, res, engine.Failed, v1alpha1.ReasonRendering)
		if !strings.Contains(res.Message, "ext/counter") {
			t.Errorf("message %q does not name the import", res.Message)
		}
	})
}

func TestBundleRoundTrip(t *testing.T) {
	pkgs := []step.ExternalPackage{counterPkg(map[string]string{"a.cue": "package counter\n", "b.cue": "package counter\nx: 1\n"})}
	b := step.Bundle(counterTemplate, pkgs)
	tmpl, got := step.Unbundle(b)
	if tmpl != counterTemplate || len(got) != 1 || got[0].Files["b.cue"] != pkgs[0].Files["b.cue"] || got[0].Reads[0] != "get" {
		t.Fatalf("Unbundle(Bundle()) = %q, %+v", tmpl, got)
	}
	if step.Bundle(counterTemplate, nil) != counterTemplate {
		t.Error("a template without packages is changed")
	}
	if imports := step.Imports(counterTemplate); !slices.Equal(imports, []string{"ext/counter", "vela/op"}) {
		t.Errorf("Imports = %v", imports)
	}
	acts := step.PackageActions(map[string]string{"c.cue": counterPackage})
	if len(acts) != 2 || acts[0] != (step.PackageAction{Name: "#Add", Do: "add", Provider: "counter"}) || acts[1].Name != "#Get" {
		t.Errorf("PackageActions = %+v", acts)
	}
}
