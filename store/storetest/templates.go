package storetest

import (
	"errors"
	"fmt"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/api/v1beta1"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/store"
)

// putWorkflow stores wf alone and returns the generation PutObjects set on it.
func putWorkflow(t *testing.T, st store.Store, wf *v1alpha1.Workflow) int64 {
	t.Helper()
	if err := st.PutObjects(t.Context(), nil, []*v1alpha1.Workflow{wf}); err != nil {
		t.Fatal(err)
	}
	return wf.Generation
}

// storedGeneration is the generation Workflow returns.
func storedGeneration(t *testing.T, st store.Store, namespace, name string) int64 {
	t.Helper()
	wf, err := st.Workflow(t.Context(), namespace, name)
	if err != nil {
		t.Fatal(err)
	}
	return wf.Generation
}

// A Workflow's generation is 1 when new, and grows by one with each put that changes it, but
// not with one that changes only what stores and API servers set.
func testWorkflowGenerations(t *testing.T, st store.Store) {
	ctx := t.Context()
	deploy := func() *v1alpha1.Workflow {
		wf := Workflow("default", "deploy")
		wf.Steps[0].Properties = &runtime.RawExtension{Raw: []byte(`{"a":1,"b":{"c":[1,2]}}`)}
		return wf
	}
	step := func(what string, wf *v1alpha1.Workflow, want int64) {
		t.Helper()
		if got := putWorkflow(t, st, wf); got != want {
			t.Errorf("%s: PutObjects set generation %d, want %d", what, got, want)
		}
		if got := storedGeneration(t, st, "default", "deploy"); got != want {
			t.Errorf("%s: Workflow has generation %d, want %d", what, got, want)
		}
	}

	first := deploy()
	first.Generation = 7 // ignored
	step("new", first, 1)
	step("the same again", deploy(), 1)

	same := deploy()
	same.Generation = 40
	same.ResourceVersion = "123"
	same.UID = "0f1e2d3c"
	same.CreationTimestamp = metav1.Now()
	same.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationApply}}
	same.Steps[0].Properties = &runtime.RawExtension{Raw: []byte(`{ "b": {"c": [1, 2]}, "a": 1 }`)}
	step("the same with server-set metadata and reordered properties", same, 1)

	changed := deploy()
	changed.Steps = append(changed.Steps, v1alpha1.WorkflowStep{WorkflowStepBase: v1alpha1.WorkflowStepBase{Name: "notify", Type: "notification"}})
	step("a step added", changed, 2)
	wf, err := st.Workflow(ctx, "default", "deploy")
	if err != nil {
		t.Fatal(err)
	}
	if len(wf.Steps) != 2 || wf.Steps[1].Name != "notify" {
		t.Errorf("Workflow after the change has steps %+v, want apply and notify", wf.Steps)
	}
	changedAgain := deploy()
	changedAgain.Steps = append(changedAgain.Steps, v1alpha1.WorkflowStep{WorkflowStepBase: v1alpha1.WorkflowStepBase{Name: "notify", Type: "notification"}})
	step("the change again", changedAgain, 2)

	labelled := deploy()
	labelled.Labels = map[string]string{"team": "platform"}
	step("steps back, a label added", labelled, 3)
	props := deploy()
	props.Labels = map[string]string{"team": "platform"}
	props.Steps[0].Properties = &runtime.RawExtension{Raw: []byte(`{"a":2,"b":{"c":[1,2]}}`)}
	step("a property changed", props, 4)

	// The same name twice in one put: the second follows the first.
	one, two := deploy(), deploy()
	two.Steps[0].Type = "apply-objects"
	if err := st.PutObjects(ctx, nil, []*v1alpha1.Workflow{one, two}); err != nil {
		t.Fatal(err)
	}
	if one.Generation != 5 || two.Generation != 6 {
		t.Errorf("one put of two versions set generations %d and %d, want 5 and 6", one.Generation, two.Generation)
	}
	if got := storedGeneration(t, st, "default", "deploy"); got != 6 {
		t.Errorf("stored generation after one put of two versions: %d, want 6", got)
	}

	// Each template has its own.
	if got := putWorkflow(t, st, Workflow("other", "deploy")); got != 1 {
		t.Errorf("a template of the same name in another namespace: generation %d, want 1", got)
	}
	if got := storedGeneration(t, st, "default", "deploy"); got != 6 {
		t.Errorf("default/deploy after another namespace's put: generation %d, want 6", got)
	}
}

func wfNames(wfs []*v1alpha1.Workflow) string {
	var names []string
	for _, wf := range wfs {
		names = append(names, fmt.Sprintf("%s/%s@%d", wf.Namespace, wf.Name, wf.Generation))
	}
	return fmt.Sprint(names)
}

func testWorkflows(t *testing.T, st store.Store) {
	ctx := t.Context()
	if wfs, err := st.Workflows(ctx, ""); err != nil || len(wfs) != 0 {
		t.Errorf("Workflows of an empty store = %v, %v; want none", wfs, err)
	}
	if err := st.PutObjects(ctx, nil, []*v1alpha1.Workflow{
		Workflow("team-b", "zeta"), Workflow("team-a", "beta"), Workflow("team-a", "alpha"),
	}); err != nil {
		t.Fatal(err)
	}
	changed := Workflow("team-a", "beta")
	changed.Steps[0].Type = "apply-objects"
	putWorkflow(t, st, changed)

	all, err := st.Workflows(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if got := wfNames(all); got != "[team-a/alpha@1 team-a/beta@2 team-b/zeta@1]" {
		t.Errorf("Workflows(every namespace) = %s", got)
	}
	if len(all) == 3 && (all[1].Kind != v1alpha1.KindWorkflow || len(all[1].Steps) != 1 || all[1].Steps[0].Type != "apply-objects") {
		t.Errorf("listed team-a/beta = %+v, want the stored template", all[1])
	}
	teamA, err := st.Workflows(ctx, "team-a")
	if err != nil {
		t.Fatal(err)
	}
	if got := wfNames(teamA); got != "[team-a/alpha@1 team-a/beta@2]" {
		t.Errorf("Workflows(team-a) = %s", got)
	}
	if none, err := st.Workflows(ctx, "nobody"); err != nil || len(none) != 0 {
		t.Errorf("Workflows(nobody) = %v, %v; want none", none, err)
	}
}

func testDeleteObjects(t *testing.T, st store.Store) {
	ctx := t.Context()
	if err := st.PutObjects(ctx,
		[]*v1beta1.WorkflowStepDefinition{Definition("default", "notify", "parameter: {}"), Definition("vela-system", "notify", "parameter: {x: int}")},
		[]*v1alpha1.Workflow{Workflow("default", "deploy"), Workflow("other", "deploy")},
	); err != nil {
		t.Fatal(err)
	}
	changed := Workflow("default", "deploy")
	changed.Steps[0].Type = "apply-objects"
	putWorkflow(t, st, changed) // generation 2

	if err := st.DeleteDefinition(ctx, "default", "notify"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Template(ctx, "default", "notify"); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("Template after DeleteDefinition: err = %v, want ErrNotFound", err)
	}
	if got, err := st.Template(ctx, "vela-system", "notify"); err != nil || got != "parameter: {x: int}" {
		t.Errorf("the other namespace's definition after the delete = %q, %v; want it kept", got, err)
	}
	if defs, err := st.Definitions(ctx, ""); err != nil || defNames(defs) != "[vela-system/notify]" {
		t.Errorf("Definitions after the delete = %s, %v; want [vela-system/notify]", defNames(defs), err)
	}
	if err := st.DeleteDefinition(ctx, "default", "notify"); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("second DeleteDefinition: err = %v, want ErrNotFound", err)
	}

	if err := st.DeleteWorkflow(ctx, "default", "deploy"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Workflow(ctx, "default", "deploy"); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("Workflow after DeleteWorkflow: err = %v, want ErrNotFound", err)
	}
	if wfs, err := st.Workflows(ctx, ""); err != nil || wfNames(wfs) != "[other/deploy@1]" {
		t.Errorf("Workflows after the delete = %s, %v; want [other/deploy@1]", wfNames(wfs), err)
	}
	if err := st.DeleteWorkflow(ctx, "default", "deploy"); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("second DeleteWorkflow: err = %v, want ErrNotFound", err)
	}
	if err := st.DeleteWorkflow(ctx, "default", "never"); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("DeleteWorkflow of a template never stored: err = %v, want ErrNotFound", err)
	}
	// Stored again, it is new.
	if got := putWorkflow(t, st, Workflow("default", "deploy")); got != 1 {
		t.Errorf("a deleted template stored again: generation %d, want 1", got)
	}
}
