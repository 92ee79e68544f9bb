package sqlite_test

import (
	"errors"
	"fmt"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/api/v1beta1"
	"github.com/stepflow/stepflow/engine"
)

func definition(namespace, name, template string) *v1beta1.WorkflowStepDefinition {
	d := &v1beta1.WorkflowStepDefinition{
		TypeMeta:   metav1.TypeMeta{APIVersion: "core.oam.dev/v1beta1", Kind: v1beta1.KindWorkflowStepDefinition},
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
	}
	if template != "" {
		d.Spec.Schematic = &v1beta1.Schematic{CUE: &v1beta1.CUE{Template: template}}
	}
	return d
}

func workflow(namespace, name string) *v1alpha1.Workflow {
	return &v1alpha1.Workflow{
		TypeMeta:   metav1.TypeMeta{APIVersion: "core.oam.dev/v1alpha1", Kind: v1alpha1.KindWorkflow},
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Mode:       &v1alpha1.WorkflowExecuteMode{Steps: v1alpha1.ModeDAG},
		WorkflowSpec: v1alpha1.WorkflowSpec{Steps: []v1alpha1.WorkflowStep{
			{WorkflowStepBase: v1alpha1.WorkflowStepBase{Name: "apply", Type: "apply-object"}},
		}},
	}
}

func TestPutObjects(t *testing.T) {
	ctx := t.Context()
	st := open(t, tempPath(t))
	defs := []*v1beta1.WorkflowStepDefinition{
		definition("default", "notify", "parameter: {to: string}"),
		definition("vela-system", "notify", "parameter: {channel: string}"),
		definition("default", "apply", "parameter: {}"),
	}
	if err := st.PutObjects(ctx, defs, []*v1alpha1.Workflow{workflow("default", "deploy")}); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct{ ns, typ, want string }{
		{"default", "notify", "parameter: {to: string}"},
		{"vela-system", "notify", "parameter: {channel: string}"},
	} {
		got, err := st.Template(ctx, c.ns, c.typ)
		if err != nil || got != c.want {
			t.Errorf("Template(%s, %s) = %q, %v; want %q", c.ns, c.typ, got, err, c.want)
		}
	}
	// No fallback to another namespace: the caller chains namespaces.
	if _, err := st.Template(ctx, "vela-system", "apply"); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("Template of a definition stored only in another namespace: err = %v, want ErrNotFound", err)
	}

	listed, err := st.Definitions(ctx, "default")
	if err != nil {
		t.Fatal(err)
	}
	if got := defNames(listed); got != "[default/apply default/notify]" {
		t.Errorf("Definitions(default) = %s", got)
	}
	if listed[1].Spec.Schematic.CUE.Template != "parameter: {to: string}" || listed[1].Kind != v1beta1.KindWorkflowStepDefinition {
		t.Errorf("listed definition = %+v, want the stored object", listed[1])
	}
	all, err := st.Definitions(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if got := defNames(all); got != "[default/apply default/notify vela-system/notify]" {
		t.Errorf("Definitions(every namespace) = %s", got)
	}

	wf, err := st.Workflow(ctx, "default", "deploy")
	if err != nil {
		t.Fatal(err)
	}
	if wf.Mode == nil || wf.Mode.Steps != v1alpha1.ModeDAG || len(wf.Steps) != 1 || wf.Steps[0].Type != "apply-object" {
		t.Errorf("Workflow = %+v, want the stored template", wf)
	}
	if _, err := st.Workflow(ctx, "other", "deploy"); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("Workflow in another namespace: err = %v, want ErrNotFound", err)
	}

	// Applying again replaces.
	if err := st.PutObjects(ctx, []*v1beta1.WorkflowStepDefinition{definition("default", "notify", "parameter: {to: [...string]}")}, nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := st.Template(ctx, "default", "notify"); got != "parameter: {to: [...string]}" {
		t.Errorf("Template after applying again = %q, want the new template", got)
	}
}

func TestPutObjectsIsAllOrNothing(t *testing.T) {
	ctx := t.Context()
	st := open(t, tempPath(t))
	if err := st.PutObjects(ctx, []*v1beta1.WorkflowStepDefinition{definition("default", "notify", "parameter: {}")}, nil); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		defs []*v1beta1.WorkflowStepDefinition
		wfs  []*v1alpha1.Workflow
	}{
		"definition without template": {
			defs: []*v1beta1.WorkflowStepDefinition{
				definition("default", "good", "parameter: {}"),
				definition("default", "notify", "parameter: {changed: true}"),
				definition("default", "broken", ""),
			},
			wfs: []*v1alpha1.Workflow{workflow("default", "deploy")},
		},
		"workflow without name": {
			defs: []*v1beta1.WorkflowStepDefinition{definition("default", "good", "parameter: {}")},
			wfs:  []*v1alpha1.Workflow{workflow("default", "deploy"), workflow("default", "")},
		},
	} {
		t.Run(name, func(t *testing.T) {
			if err := st.PutObjects(ctx, c.defs, c.wfs); err == nil {
				t.Fatal("PutObjects with an invalid object: no error")
			}
			if _, err := st.Template(ctx, "default", "good"); !errors.Is(err, engine.ErrNotFound) {
				t.Errorf("valid definition of a failed PutObjects: err = %v, want ErrNotFound", err)
			}
			if _, err := st.Workflow(ctx, "default", "deploy"); !errors.Is(err, engine.ErrNotFound) {
				t.Errorf("workflow of a failed PutObjects: err = %v, want ErrNotFound", err)
			}
			if got, _ := st.Template(ctx, "default", "notify"); got != "parameter: {}" {
				t.Errorf("definition stored before = %q, want it unchanged", got)
			}
		})
	}
}

func defNames(defs []*v1beta1.WorkflowStepDefinition) string {
	var names []string
	for _, d := range defs {
		names = append(names, d.Namespace+"/"+d.Name)
	}
	return fmt.Sprint(names)
}
