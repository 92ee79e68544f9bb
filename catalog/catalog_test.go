package catalog_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/api/v1beta1"
	"github.com/stepflow/stepflow/application"
	"github.com/stepflow/stepflow/catalog"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/manifest"
	"github.com/stepflow/stepflow/step"
)

// store is an in-memory catalog.Store that counts its look-ups.
type store struct {
	defs    map[string]string // namespace/type -> template
	lookups int
}

func (s *store) Template(_ context.Context, ns, typ string) (string, error) {
	s.lookups++
	if t, ok := s.defs[ns+"/"+typ]; ok {
		return t, nil
	}
	return "", fmt.Errorf("%s/%s: %w", ns, typ, engine.ErrNotFound)
}

func (s *store) Workflow(_ context.Context, ns, name string) (*v1alpha1.Workflow, error) {
	return nil, fmt.Errorf("%s/%s: %w", ns, name, engine.ErrNotFound)
}

// A step type is found in the run's namespace, then in vela-system, then among the built-ins;
// the objects of the request come before the store.
func TestLookupOrder(t *testing.T) {
	st := &store{defs: map[string]string{"team/greet": "team", "vela-system/greet": "system", "vela-system/suspend": "shadowed"}}
	c := catalog.New(st, engine.Limits{})
	ctx := context.Background()
	for _, tc := range []struct{ ns, typ, want string }{
		{"team", "greet", "team"}, {"other", "greet", "system"}, {"other", "suspend", "shadowed"},
	} {
		if got, err := c.Template(ctx, tc.ns, tc.typ); err != nil || got != tc.want {
			t.Errorf("%s/%s = %q, %v; want %q", tc.ns, tc.typ, got, err, tc.want)
		}
	}
	if got, err := c.Template(ctx, "other", "print-message-in-status"); err != nil || !strings.Contains(got, "parameter") {
		t.Errorf("built-in: %v", err)
	}
	if _, err := c.Template(ctx, "team", "nope"); !errors.Is(err, step.ErrUnknownType) {
		t.Errorf("unknown type: %v", err)
	}
	objs := &manifest.Objects{Definitions: []*v1beta1.WorkflowStepDefinition{{}}}
	objs.Definitions[0].Namespace, objs.Definitions[0].Name = "team", "greet"
	objs.Definitions[0].Spec.Schematic = &v1beta1.Schematic{CUE: &v1beta1.CUE{Template: "overlay"}}
	if got, _ := c.Template(catalog.WithObjects(ctx, objs), "team", "greet"); got != "overlay" {
		t.Errorf("the request's definition: %q", got)
	}
	if _, err := c.Workflow(ctx, "team", "wf"); !errors.Is(err, engine.ErrNotFound) || err.Error() != `no Workflow "wf" in namespace "team"` {
		t.Errorf("missing Workflow: %v", err)
	}
}

// A cached catalog asks the store once per type and namespace within its time to live, and
// again after Invalidate.
func TestCachedLookups(t *testing.T) {
	st := &store{defs: map[string]string{"team/greet": "v1"}}
	c := catalog.NewCached(st, time.Hour, engine.Limits{})
	ctx := context.Background()
	for range 5 {
		if got, _ := c.Template(ctx, "team", "greet"); got != "v1" {
			t.Fatalf("got %q", got)
		}
		_, _ = c.Template(ctx, "team", "suspend") // built-in: two misses in the store
	}
	if st.lookups != 3 {
		t.Errorf("%d store look-ups, want 3", st.lookups)
	}
	st.defs["team/greet"] = "v2"
	c.Invalidate()
	if got, _ := c.Template(ctx, "team", "greet"); got != "v2" {
		t.Errorf("after Invalidate: %q", got)
	}
}

// unavailable stands in for step.Runner when its child evaluators fail (one could not
// start, or those holding an evaluation kept ending for others): every check says so.
type unavailable struct{}

func (unavailable) Check(context.Context, string, string) error {
	return fmt.Errorf("definition: %w: starting one: fork failed", step.ErrUnavailable)
}

func (unavailable) CheckSteps(_ context.Context, _ string, steps []v1alpha1.WorkflowStep, base *field.Path) field.ErrorList {
	return field.ErrorList{field.InternalError(base.Index(0).Child("properties"),
		fmt.Errorf("step %s: %w: those holding the evaluation ended 4 times for others", steps[0].Name, step.ErrUnavailable))}
}

func (unavailable) CheckXTemplate(context.Context, string) error {
	return fmt.Errorf("%w: starting one: fork failed", step.ErrUnavailable)
}

func (unavailable) CheckXProperties(context.Context, string, json.RawMessage, []string) ([]application.PropertyError, error) {
	return nil, fmt.Errorf("%w: starting one: fork failed", step.ErrUnavailable)
}

// A check the CUE evaluators could not make is not a problem of the objects: Check returns
// an ErrUnchecked (the server's 503), not a manifest.Errors (its 400), for a run's steps and
// for a definition alike; CheckRun, the engine's check before a run starts, does not fail
// the run for it either way but returns it as an error to retry.
func TestEvaluatorsFailingAreNotInvalidInput(t *testing.T) {
	c := catalog.New(&store{}, engine.Limits{})
	objs, err := manifest.Decode("run.yaml", []byte(`
apiVersion: core.oam.dev/v1alpha1
kind: WorkflowRun
metadata: {name: r}
spec:
  workflowSpec:
    steps:
    - {name: s, type: suspend}
---
apiVersion: core.oam.dev/v1beta1
kind: WorkflowStepDefinition
metadata: {name: t}
spec: {schematic: {cue: {template: "parameter: {}"}}}
`))
	if err != nil {
		t.Fatal(err)
	}
	err = c.Check(t.Context(), unavailable{}, objs)
	if _, ok := errors.AsType[manifest.Errors](err); ok || !errors.Is(err, catalog.ErrUnchecked) {
		t.Fatalf("Check: %T %v, want an ErrUnchecked", err, err)
	}
	run := &engine.Run{Object: objs.Runs[0], Spec: objs.Runs[0].Spec.WorkflowSpec}
	if err := c.CheckRun(t.Context(), unavailable{}, run); !errors.Is(err, catalog.ErrUnchecked) {
		t.Errorf("CheckRun: %v, want an ErrUnchecked", err)
	}
}
