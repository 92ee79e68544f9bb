package definitions_test

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/txtar"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/assembly"
	"github.com/stepflow/stepflow/definitions"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/step"
)

var update = flag.Bool("update", false, "rewrite the want section of testdata/*.txtar with what the definitions do")

// A case is testdata/<name>.txtar holding request.json (the step and what the fake actions
// return) and want (the actions called, with their parameters, and the step's result).
type goldenRequest struct {
	Type       string            `json:"type"`
	Properties json.RawMessage   `json:"properties"`
	Context    map[string]any    `json:"context"`
	Outputs    map[string]string `json:"outputs"` // name: valueFrom
	// Returns holds, by "provider.do", the results of successive calls (the last repeats);
	// Errors, by "provider.do", an error the call returns.
	Returns map[string][]any  `json:"returns"`
	Errors  map[string]string `json:"errors"`
	Memo    map[string]any    `json:"memo"`
	Resumed bool              `json:"resumed"`
}

var now = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func TestGolden(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.txtar")
	if len(files) == 0 {
		t.Fatal("no testdata")
	}
	covered := map[string]bool{}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txtar"), func(t *testing.T) {
			ar, err := txtar.ParseFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var req goldenRequest
			if err := json.Unmarshal(section(ar, "request.json"), &req); err != nil {
				t.Fatalf("request.json: %v", err)
			}
			covered[req.Type] = true
			got := run(t, req)
			if *update {
				setSection(ar, "want", got)
				if err := os.WriteFile(file, txtar.Format(ar), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if want := string(section(ar, "want")); got != want {
				t.Errorf("got:\n%s\nwant:\n%s", got, want)
			}
		})
	}
	for _, d := range definitions.Builtin() {
		if !covered[d.Name] && d.Name != "step-group" {
			t.Errorf("no golden case for %s", d.Name)
		}
	}
}

// run evaluates the step once with fake actions and renders what happened.
func run(t *testing.T, req goldenRequest) string {
	var calls []string
	reg := fakeRegistry(func(name string, c *step.Call) (any, error) {
		p, _ := json.Marshal(c.Params)
		calls = append(calls, fmt.Sprintf("%s %s %s", name, c.Path, p))
		if msg, ok := req.Errors[name]; ok {
			return nil, errors.New(msg)
		}
		rs := req.Returns[name]
		if len(rs) == 0 {
			return nil, nil
		}
		out := rs[0]
		if len(rs) > 1 {
			req.Returns[name] = rs[1:]
		}
		return out, nil
	})
	r := step.NewRunner(step.Options{Registry: reg, Definitions: builtins{}})
	sr := &engine.StepRequest{
		Run:        engine.Key{Namespace: "default", Name: "run"},
		Step:       v1alpha1.WorkflowStepBase{Name: "s", Type: req.Type},
		Properties: req.Properties,
		Context:    map[string]any{"name": "run", "namespace": "default", "stepName": "s", "stepSessionID": "s-1"},
		Resumed:    req.Resumed,
		Now:        now,
	}
	maps.Copy(sr.Context, req.Context)
	names := make([]string, 0, len(req.Outputs))
	for n := range req.Outputs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		sr.Step.Outputs = append(sr.Step.Outputs, v1alpha1.OutputItem{Name: n, ValueFrom: req.Outputs[n]})
	}
	for k, v := range req.Memo {
		b, _ := json.Marshal(v)
		if sr.Memo == nil {
			sr.Memo = map[string]json.RawMessage{}
		}
		sr.Memo[k] = b
	}
	res, err := r.RunStep(context.Background(), sr)

	var b strings.Builder
	fmt.Fprintln(&b, "calls:")
	for _, c := range calls {
		fmt.Fprintln(&b, "  "+c)
	}
	if err != nil {
		var te *engine.TerminalError
		fmt.Fprintf(&b, "error (terminal %t): %v\n", errors.As(err, &te), err)
		return b.String()
	}
	fmt.Fprintf(&b, "outcome: %v\n", res.Outcome)
	if res.Reason != "" {
		fmt.Fprintf(&b, "reason: %s\n", res.Reason)
	}
	if res.Message != "" {
		fmt.Fprintf(&b, "message: %s\n", res.Message)
	}
	if !res.SuspendUntil.IsZero() {
		fmt.Fprintf(&b, "suspend until: +%v\n", res.SuspendUntil.Sub(now))
	}
	for _, n := range names {
		if o, ok := res.Outputs[n]; ok {
			fmt.Fprintf(&b, "output %s: %s\n", n, o)
		}
	}
	return b.String()
}

// builtins serves the built-in definitions only.
type builtins struct{}

func (builtins) Template(_ context.Context, _, typ string) (string, error) {
	if t, ok := definitions.Template(typ); ok {
		return t, nil
	}
	return "", fmt.Errorf("step type %q: %w", typ, step.ErrUnknownType)
}

// fakeRegistry holds the real CUE packages vela/builtin, vela/op, vela/http and vela/util. The
// builtin actions are real; the http and util ones keep their real settings (side effects,
// legacy results) but call a fake. Every call is recorded.
func fakeRegistry(record func(name string, c *step.Call) (any, error)) *step.Registry {
	// Every package and action the modes offer (assembly.Registry), each action replaced by
	// one that records its call; the builtin ones still act, since they steer the evaluation.
	full := assembly.Registry(assembly.Providers{})
	reg := step.NewRegistry()
	for _, path := range full.PackagePaths() {
		p, _ := full.Package(path)
		reg.AddPackage(p)
	}
	for _, a := range full.Actions() {
		id := a.Provider + "." + a.Do
		fake := *a
		fake.Run = func(ctx context.Context, c *step.Call) (any, error) {
			out, err := record(id, c)
			if a.Provider == "builtin" {
				return a.Run(ctx, c)
			}
			return out, err
		}
		reg.Register(fake)
	}
	return reg
}

func section(ar *txtar.Archive, name string) []byte {
	for _, f := range ar.Files {
		if f.Name == name {
			return f.Data
		}
	}
	return nil
}

func setSection(ar *txtar.Archive, name, data string) {
	for i, f := range ar.Files {
		if f.Name == name {
			ar.Files[i].Data = []byte(data)
			return
		}
	}
	ar.Files = append(ar.Files, txtar.File{Name: name, Data: []byte(data)})
}

func TestBuiltinDefinitionsCompileAndDescribeThemselves(t *testing.T) {
	reg := fakeRegistry(nil)
	r := step.NewRunner(step.Options{Registry: reg, Definitions: builtins{}})
	want := []string{"addon-operation", "apply-app", "apply-component", "apply-deployment", "apply-job", "apply-object",
		"apply-terraform-config", "apply-terraform-provider", "build-push-image", "chat-gpt", "check-metrics",
		"clean-jobs", "create-config", "delete-config", "deploy", "export2config", "export2secret", "list-config",
		"notification", "print-message-in-status", "read-app", "read-config", "read-object", "request", "run",
		"step-group", "suspend", "vela-cli", "webhook"}
	var names []string
	for _, d := range definitions.Builtin() {
		names = append(names, d.Name)
		if d.Namespace != "" || d.Annotations["definition.oam.dev/description"] == "" {
			t.Errorf("%s: namespace %q, annotations %v", d.Name, d.Namespace, d.Annotations)
		}
		if err := r.Check(context.Background(), d.Name, d.Spec.Schematic.CUE.Template); err != nil {
			t.Errorf("%s does not compile: %v", d.Name, err)
		}
		params, err := definitions.Describe(d.Spec.Schematic.CUE.Template)
		if err != nil {
			t.Errorf("%s: %v", d.Name, err)
		}
		for _, p := range params {
			if p.Usage == "" && !strings.Contains(p.Name, ".") {
				t.Errorf("%s: parameter %s has no +usage comment", d.Name, p.Name)
			}
		}
	}
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Errorf("built-ins %v, want %v", names, want)
	}
	if _, ok := definitions.Template("../definitions"); ok {
		t.Error("Template reads outside its directory")
	}
}
