package catalog_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/api/v1beta1"
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
