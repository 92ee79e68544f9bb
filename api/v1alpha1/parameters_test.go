package v1alpha1

import (
	"fmt"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func raw(s string) *runtime.RawExtension { return &runtime.RawExtension{Raw: []byte(s)} }

func TestApplyParameters(t *testing.T) {
	params := []Parameter{
		{Name: "image", Type: ParamString, Required: true},
		{Name: "replicas", Type: ParamInteger, Default: raw("2")},
		{Name: "env", Enum: []runtime.RawExtension{*raw(`"staging"`), *raw(`"prod"`)}, Default: raw(`"staging"`)},
		{Name: "labels", Type: ParamObject},
	}
	cases := []struct {
		name string
		ctx  map[string]any
		want map[string]any
		errs []string // "field: fragment"
	}{
		{name: "defaults filled", ctx: map[string]any{"image": "nginx"},
			want: map[string]any{"image": "nginx", "replicas": float64(2), "env": "staging"}},
		{name: "given win", ctx: map[string]any{"image": "nginx", "replicas": float64(5), "env": "prod", "labels": map[string]any{"a": "b"}},
			want: map[string]any{"image": "nginx", "replicas": float64(5), "env": "prod", "labels": map[string]any{"a": "b"}}},
		{name: "missing required", ctx: map[string]any{}, errs: []string{"context.image: Required"}},
		{name: "not an integer", ctx: map[string]any{"image": "x", "replicas": 1.5}, errs: []string{"context.replicas: must be of type integer, not number"}},
		{name: "wrong type", ctx: map[string]any{"image": float64(3)}, errs: []string{"context.image: must be of type string, not number"}},
		{name: "outside enum", ctx: map[string]any{"image": "x", "env": "dev"}, errs: []string{`context.env: must be one of ["staging" "prod"]`}},
		{name: "undeclared", ctx: map[string]any{"image": "x", "imgae": "y"}, errs: []string{"context.imgae: Unsupported value"}},
		{name: "scheduledTime undeclared", ctx: map[string]any{"image": "x", "scheduledTime": "2026-03-01T10:00:00Z"},
			want: map[string]any{"image": "x", "replicas": float64(2), "env": "staging", "scheduledTime": "2026-03-01T10:00:00Z"}},
		{name: "scheduledTime not a string", ctx: map[string]any{"image": "x", "scheduledTime": float64(1)}, errs: []string{"context.scheduledTime: Unsupported value"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, errs := ApplyParameters(params, c.ctx, field.NewPath("context"))
			if len(errs) != len(c.errs) {
				t.Fatalf("errors %v, want %d: %v", errs, len(c.errs), c.errs)
			}
			for i, want := range c.errs {
				if f, frag, _ := strings.Cut(want, ": "); errs[i].Field != f || !strings.Contains(errs[i].Error(), frag) {
					t.Errorf("error %d = %q, want at %s containing %q", i, errs[i].Error(), f, frag)
				}
			}
			if c.want != nil && !equalJSON(got, c.want) {
				t.Errorf("context = %v, want %v", got, c.want)
			}
		})
	}
	if _, errs := ApplyParameters(nil, map[string]any{"anything": 1.0}, field.NewPath("context")); len(errs) != 0 {
		t.Errorf("a template without parameters refused a context: %v", errs)
	}
}

func TestValidateParameters(t *testing.T) {
	wf := &Workflow{Parameters: []Parameter{
		{Name: "a", Type: "float"},
		{Name: "b", Type: ParamInteger, Default: raw(`"two"`)},
		{Name: "b"},
		{Type: ParamString},
	}}
	wf.Name = "t"
	wf.Steps = []WorkflowStep{{WorkflowStepBase: WorkflowStepBase{Name: "s", Type: "suspend"}}}
	errs := ValidateWorkflow(wf)
	var got []string
	for _, e := range errs {
		got = append(got, e.Field)
	}
	want := "parameters[0].type parameters[1].default parameters[2].name parameters[3].name"
	if strings.Join(got, " ") != want {
		t.Errorf("problems at %v, want %s (%v)", got, want, errs)
	}
}

func equalJSON(a, b map[string]any) bool {
	return fmt.Sprint(a) == fmt.Sprint(b)
}

func TestSensitiveValues(t *testing.T) {
	params := []Parameter{
		{Name: "token", Sensitive: true},
		{Name: "image"},
		{Name: "creds", Type: ParamObject, Sensitive: true},
		{Name: "absent", Sensitive: true},
	}
	ctx := map[string]any{"token": "t0k3n", "image": "nginx", "creds": map[string]any{"user": "u"}}
	got := SensitiveValues(params, ctx)
	if want := []any{"t0k3n", map[string]any{"user": "u"}}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("SensitiveValues = %v, want %v", got, want)
	}
}
