package op_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"cuelang.org/go/cue"
	"cuelang.org/go/cue/cuecontext"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/provider/builtin"
	httpprovider "github.com/stepflow/stepflow/provider/http"
	"github.com/stepflow/stepflow/provider/multicluster"
	"github.com/stepflow/stepflow/provider/oam"
	"github.com/stepflow/stepflow/provider/op"
	timeprovider "github.com/stepflow/stepflow/provider/time"
	"github.com/stepflow/stepflow/provider/util"
	"github.com/stepflow/stepflow/step"
)

// later are the actions vela/op declares whose Go handlers are not in the build yet.
var later = map[string]bool{
	"kube.apply": true, "kube.apply-in-parallel": true, "kube.patch": true, "kube.read": true,
	"kube.list": true, "kube.delete": true, "config.create": true, "config.read": true,
	"config.list": true, "config.delete": true, "email.send": true, "metrics.promCheck": true,
}

func registry() *step.Registry {
	r := step.NewRegistry()
	builtin.Register(r)
	httpprovider.Register(r, httpprovider.Options{})
	util.Register(r, util.Options{})
	timeprovider.Register(r, timeprovider.Options{})
	multicluster.Register(r, oam.Register(r, oam.Options{}))
	op.Register(r)
	return r
}

// Each flat form names an action that exists (or is expected later), and declares the result
// fields its action fills back.
func TestFlatFormsMatchTheirActions(t *testing.T) {
	r := registry()
	p, _ := r.Package("vela/op")
	pkg := cuecontext.New().CompileString(p.Source, cue.Filename("vela/op"))
	if err := pkg.Validate(); err != nil {
		t.Fatalf("vela/op does not compile: %v", err)
	}
	it, err := pkg.Fields(cue.Definitions(true))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for it.Next() {
		def, v := it.Selector().String(), it.Value()
		provider, perr := v.LookupPath(cue.MakePath(cue.Def("provider"))).String()
		do, _ := v.LookupPath(cue.MakePath(cue.Def("do"))).String()
		if perr != nil {
			continue // #Steps
		}
		n++
		name := provider + "." + do
		a, ok := r.Action(provider, do)
		if !ok {
			if !later[name] {
				t.Errorf("%s calls %s, which no provider registers", def, name)
			}
			continue
		}
		declared := map[string]bool{}
		for fi, _ := v.Fields(cue.Optional(true)); fi.Next(); {
			declared[fi.Selector().Unquoted()] = true
		}
		for _, f := range append([]string{a.LegacyResult}, a.LegacyOutputs...) {
			if f != "" && !declared[f] {
				t.Errorf("%s: %s fills its result into %s, which the flat form does not declare", def, name, f)
			}
		}
	}
	if n < 25 {
		t.Errorf("only %d actions in vela/op", n)
	}
}

// The flat forms run: parameters are the fields, results come back into the action.
func TestFlatFormsRun(t *testing.T) {
	r := step.NewRunner(step.Options{Registry: registry(), Definitions: defs{"t": `
import "vela/op"

str: op.#ConvertString & {bt: 'hello'}
ts: op.#DateToTimestamp & {date: "2026-01-02T03:04:05Z"}
put: op.#DoVar & {method: "Put", path: "greeting", value: str.str}
get: op.#DoVar & {path: "greeting"}
patched: op.#PatchK8sObject & {value: {a: 1, b: {c: 2}}, patch: {b: {c: 3}}}
msg: op.#Message & {message: "\(get.value) \(ts.timestamp) \(patched.result.b.c)"}
`}})
	req := &engine.StepRequest{Step: v1alpha1.WorkflowStepBase{Name: "s", Type: "t"}, Now: time.Now()}
	res, err := r.RunStep(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("hello %d 3", time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).Unix())
	if res.Outcome != engine.Succeeded || res.Message != want {
		t.Errorf("outcome %v, message %q; want %q", res.Outcome, res.Message, want)
	}
	if got := string(res.VarWrites["greeting"]); got != `"hello"` {
		t.Errorf("var greeting = %s", got)
	}
}

// A definition using an action not in the build compiles; the step reaching it fails.
func TestActionsNotInTheBuildFailClearly(t *testing.T) {
	tmpl := `
import "vela/op"
parameter: name: string
apply: op.#Apply & {value: {apiVersion: "v1", kind: "ConfigMap", metadata: name: parameter.name}}
`
	r := step.NewRunner(step.Options{Registry: registry(), Definitions: defs{"t": tmpl}})
	if err := r.Check(context.Background(), "t", tmpl); err != nil {
		t.Fatalf("Check: %v", err)
	}
	req := &engine.StepRequest{Step: v1alpha1.WorkflowStepBase{Name: "s", Type: "t"}, Properties: json.RawMessage(`{"name": "x"}`)}
	_, err := r.RunStep(context.Background(), req)
	var te *engine.TerminalError
	if err == nil || !strings.Contains(err.Error(), "action kube.apply is not available in this build") || !errors.As(err, &te) {
		t.Errorf("err = %v", err)
	}
}

type defs map[string]string

func (d defs) Template(_ context.Context, _, typ string) (string, error) {
	if t, ok := d[typ]; ok {
		return t, nil
	}
	return "", fmt.Errorf("%q: %w", typ, step.ErrUnknownType)
}
