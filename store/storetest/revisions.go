package storetest

import (
	"errors"
	"fmt"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/store"
)

// Each generation of a template is kept as a revision with its content, listed newest first;
// a put that changes nothing adds none; a rollback is a new revision with the old content;
// only the last store.KeepRevisions are kept; deleting the template deletes them.
func testWorkflowRevisions(t *testing.T, st store.Store) {
	ctx := t.Context()
	withProps := func(props string) *v1alpha1.Workflow {
		wf := Workflow("default", "deploy")
		wf.Steps[0].Properties = &runtime.RawExtension{Raw: []byte(props)}
		return wf
	}
	putWorkflow(t, st, withProps(`{"v":1}`))
	putWorkflow(t, st, withProps(`{"v":1}`)) // unchanged: no revision
	putWorkflow(t, st, withProps(`{"v":2}`))
	putWorkflow(t, st, Workflow("default", "other"))

	revs, err := st.WorkflowRevisions(ctx, "default", "deploy")
	if err != nil {
		t.Fatal(err)
	}
	if got := revNumbers(revs); got != "[2 1]" {
		t.Fatalf("revisions %s, want [2 1]", got)
	}
	for _, r := range revs {
		if r.Created.IsZero() || r.Hash == "" || r.Workflow == nil || r.Workflow.Generation != r.Revision || r.Workflow.Name != "deploy" {
			t.Errorf("revision %d = %+v; want its time, hash and template at its generation", r.Revision, r)
		}
	}
	if revs[0].Hash == revs[1].Hash {
		t.Errorf("revisions 2 and 1 have one hash %s though their content differs", revs[0].Hash)
	}
	one, err := st.WorkflowRevision(ctx, "default", "deploy", 1)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(one.Workflow.Steps[0].Properties.Raw); got != `{"v":1}` {
		t.Errorf("revision 1 has properties %s, want {\"v\":1}", got)
	}
	if _, err := st.WorkflowRevision(ctx, "default", "deploy", 3); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("revision 3: %v, want engine.ErrNotFound", err)
	}

	rolled, err := store.Rollback(ctx, st, "default", "deploy", 1)
	if err != nil {
		t.Fatal(err)
	}
	if rolled.Generation != 3 {
		t.Errorf("rollback to 1 stored generation %d, want 3", rolled.Generation)
	}
	cur, err := st.Workflow(ctx, "default", "deploy")
	if err != nil {
		t.Fatal(err)
	}
	if got := string(cur.Steps[0].Properties.Raw); got != `{"v":1}` || cur.Generation != 3 {
		t.Errorf("after the rollback the template is generation %d with %s, want 3 with {\"v\":1}", cur.Generation, got)
	}
	three, err := st.WorkflowRevision(ctx, "default", "deploy", 3)
	if err != nil {
		t.Fatal(err)
	}
	if three.Hash != one.Hash {
		t.Errorf("revision 3 (a rollback to 1) has hash %s, revision 1 %s: want one", three.Hash, one.Hash)
	}

	// Past the bound, the oldest go.
	var wfs []*v1alpha1.Workflow
	for i := range store.KeepRevisions + 2 {
		wfs = append(wfs, withProps(fmt.Sprintf(`{"v":%d}`, 100+i)))
	}
	if err := st.PutObjects(ctx, nil, wfs); err != nil {
		t.Fatal(err)
	}
	revs, err = st.WorkflowRevisions(ctx, "default", "deploy")
	if err != nil {
		t.Fatal(err)
	}
	last := int64(3 + store.KeepRevisions + 2)
	if len(revs) != store.KeepRevisions || revs[0].Revision != last || revs[len(revs)-1].Revision != last-store.KeepRevisions+1 {
		t.Errorf("kept %d revisions %d..%d; want %d, %d..%d", len(revs), revs[len(revs)-1].Revision, revs[0].Revision,
			store.KeepRevisions, last-store.KeepRevisions+1, last)
	}

	if err := st.DeleteWorkflow(ctx, "default", "deploy"); err != nil {
		t.Fatal(err)
	}
	if revs, err := st.WorkflowRevisions(ctx, "default", "deploy"); err != nil || len(revs) != 0 {
		t.Errorf("after delete: revisions %s, %v; want none", revNumbers(revs), err)
	}
	putWorkflow(t, st, withProps(`{"v":"again"}`))
	if revs, err := st.WorkflowRevisions(ctx, "default", "deploy"); err != nil || revNumbers(revs) != "[1]" {
		t.Errorf("created again: revisions %s, %v; want [1]", revNumbers(revs), err)
	}
	if revs, err := st.WorkflowRevisions(ctx, "default", "other"); err != nil || revNumbers(revs) != "[1]" {
		t.Errorf("other template: revisions %s, %v; want [1]", revNumbers(revs), err)
	}
}

func revNumbers(revs []store.WorkflowRevision) string {
	var n []int64
	for _, r := range revs {
		n = append(n, r.Revision)
	}
	return fmt.Sprint(n)
}
