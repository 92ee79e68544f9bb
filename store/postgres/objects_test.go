package postgres_test

import (
	"errors"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/api/v1beta1"
	"github.com/stepflow/stepflow/engine"
)

func definition(namespace, name, template string) *v1beta1.WorkflowStepDefinition {
	return &v1beta1.WorkflowStepDefinition{
		TypeMeta:   metav1.TypeMeta{APIVersion: "core.oam.dev/v1beta1", Kind: "WorkflowStepDefinition"},
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: v1beta1.WorkflowStepDefinitionSpec{
			Schematic: &v1beta1.Schematic{CUE: &v1beta1.CUE{Template: template}},
		},
	}
}

func workflow(namespace, name string) *v1alpha1.Workflow {
	return &v1alpha1.Workflow{
		TypeMeta:     metav1.TypeMeta{APIVersion: "core.oam.dev/v1alpha1", Kind: "Workflow"},
		ObjectMeta:   metav1.ObjectMeta{Namespace: namespace, Name: name},
		WorkflowSpec: v1alpha1.WorkflowSpec{Steps: []v1alpha1.WorkflowStep{{WorkflowStepBase: v1alpha1.WorkflowStepBase{Name: "s", Type: "suspend"}}}},
	}
}

func TestObjects(t *testing.T) {
	ctx := t.Context()
	st := open(t, newDatabase(t))
	if err := st.PutObjects(ctx,
		[]*v1beta1.WorkflowStepDefinition{definition("vela-system", "notify", "template: 1"), definition("team", "deploy", "template: 2")},
		[]*v1alpha1.Workflow{workflow("team", "release")},
	); err != nil {
		t.Fatal(err)
	}
	if tpl, err := st.Template(ctx, "vela-system", "notify"); err != nil || tpl != "template: 1" {
		t.Errorf("Template vela-system/notify = %q, %v", tpl, err)
	}
	if _, err := st.Template(ctx, "team", "notify"); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("Template of another namespace's definition: err = %v, want ErrNotFound", err)
	}

	// A second put replaces by namespace and name.
	if err := st.PutObjects(ctx, []*v1beta1.WorkflowStepDefinition{definition("vela-system", "notify", "template: 3")}, nil); err != nil {
		t.Fatal(err)
	}
	if tpl, _ := st.Template(ctx, "vela-system", "notify"); tpl != "template: 3" {
		t.Errorf("Template after replacing = %q, want %q", tpl, "template: 3")
	}
	all, err := st.Definitions(ctx, "")
	if err != nil || len(all) != 2 || all[0].Namespace != "team" || all[1].Name != "notify" {
		t.Errorf("Definitions() = %v, %v; want team/deploy then vela-system/notify", all, err)
	}
	if got := all[1].Spec.Schematic.CUE.Template; got != "template: 3" {
		t.Errorf("stored definition's template %q, want the replacement", got)
	}
	team, err := st.Definitions(ctx, "team")
	if err != nil || len(team) != 1 || team[0].Name != "deploy" {
		t.Errorf("Definitions(team) = %v, %v", team, err)
	}
	wf, err := st.Workflow(ctx, "team", "release")
	if err != nil || len(wf.Steps) != 1 || wf.Steps[0].Type != "suspend" {
		t.Errorf("Workflow team/release = %+v, %v", wf, err)
	}
	if _, err := st.Workflow(ctx, "team", "missing"); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("Workflow of a missing one: err = %v, want ErrNotFound", err)
	}

	// One invalid object stores none of the batch.
	bad := definition("team", "broken", "")
	if err := st.PutObjects(ctx, []*v1beta1.WorkflowStepDefinition{definition("team", "fine", "x: 1"), bad}, nil); err == nil {
		t.Error("PutObjects with a definition without a template: no error")
	}
	if _, err := st.Template(ctx, "team", "fine"); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("the valid definition of a rejected batch was stored (err = %v)", err)
	}
	if err := st.PutObjects(ctx, nil, []*v1alpha1.Workflow{{}}); err == nil {
		t.Error("PutObjects with a workflow without a name: no error")
	}
}
