package controller_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/store"
	"github.com/stepflow/stepflow/store/crd"
)

// workflowDoc is the Workflow release whose one step sets the message msg.
func workflowDoc(ns, msg string) string {
	return fmt.Sprintf(`
apiVersion: core.oam.dev/v1alpha1
kind: Workflow
metadata: {name: release, namespace: %s}
steps:
- {name: say, type: print-message-in-status, properties: {message: %q}}
`, ns, msg)
}

// applyWorkflow creates the Workflow release of the test's namespace, or changes its steps.
func (e *env) applyWorkflow(msg string) *v1alpha1.Workflow {
	e.t.Helper()
	ctx := context.Background()
	var want v1alpha1.Workflow
	if err := yaml.UnmarshalStrict([]byte(workflowDoc(e.ns, msg)), &want); err != nil {
		e.t.Fatal(err)
	}
	var wf v1alpha1.Workflow
	err := e.c.Get(ctx, client.ObjectKeyFromObject(&want), &wf)
	switch {
	case apierrors.IsNotFound(err):
		err = e.c.Create(ctx, &want)
		wf = want
	case err == nil:
		wf.Steps = want.Steps
		err = e.c.Update(ctx, &wf)
	}
	if err != nil {
		e.t.Fatal(err)
	}
	return &wf
}

// revisions lists the ControllerRevisions of the Workflow release, by number.
func (e *env) revisions() map[int64]appsv1.ControllerRevision {
	e.t.Helper()
	var list appsv1.ControllerRevisionList
	if err := e.c.List(context.Background(), &list, client.InNamespace(e.ns), client.MatchingLabels{crd.LabelWorkflow: "release"}); err != nil {
		e.t.Fatal(err)
	}
	out := map[int64]appsv1.ControllerRevision{}
	for _, cr := range list.Items {
		out[cr.Revision] = cr
	}
	return out
}

// waitRevision waits until the ControllerRevision of revision rev of release is owned by the
// Workflow with the UID uid.
func (e *env) waitRevision(rev int64, uid types.UID) appsv1.ControllerRevision {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		cr, ok := e.revisions()[rev]
		if ok && slices.ContainsFunc(cr.OwnerReferences, func(o metav1.OwnerReference) bool { return o.UID == uid }) {
			return cr
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out waiting for revision %d of Workflow release as a ControllerRevision; have %v", rev, keys(e.revisions()))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func keys(m map[int64]appsv1.ControllerRevision) []int64 {
	var out []int64
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// message is what the revision's Workflow has its step say.
func message(t *testing.T, cr appsv1.ControllerRevision) string {
	t.Helper()
	var wf v1alpha1.Workflow
	if err := json.Unmarshal(cr.Data.Raw, &wf); err != nil {
		t.Fatal(err)
	}
	if len(wf.Steps) != 1 || wf.Steps[0].Properties == nil {
		t.Fatalf("revision %d holds %s", cr.Revision, cr.Data.Raw)
	}
	var props struct{ Message string }
	if err := json.Unmarshal(wf.Steps[0].Properties.Raw, &props); err != nil {
		t.Fatal(err)
	}
	return props.Message
}

// runOf creates a run of release, asking for revision rev unless it is 0.
func (e *env) runOf(name string, rev int) {
	e.t.Helper()
	ann := ""
	if rev != 0 {
		ann = fmt.Sprintf(`, annotations: {%s: "%d"}`, v1alpha1.AnnotationTemplateRevision, rev)
	}
	e.create(fmt.Sprintf("metadata: {name: %s%s}\nspec: {workflowRef: release}\n", name, ann))
}

// In Kubernetes mode each generation of a Workflow is kept as a ControllerRevision owned by
// it; a run records the revision it started from and one annotated with a kept revision runs
// that revision's steps; a change of labels alone makes no revision.
func TestWorkflowRevisionsAsControllerRevisions(t *testing.T) {
	e := newEnv(t)
	e.start(controllerOptions{})
	ctx := context.Background()

	wf := e.applyWorkflow("one")
	e.waitRevision(1, wf.UID)
	e.applyWorkflow("two")
	e.waitRevision(2, wf.UID)
	e.runOf("after-two", 0)
	run := e.waitPhase("after-two", v1alpha1.RunSucceeded)
	if run.Status.TemplateRevision != 2 || run.Status.Steps[0].Message != "two" {
		t.Errorf("run after the first change: templateRevision %d, message %q; want 2, two", run.Status.TemplateRevision, run.Status.Steps[0].Message)
	}
	e.applyWorkflow("three")
	e.waitRevision(3, wf.UID)

	revs := e.revisions()
	if got := keys(revs); !slices.Equal(got, []int64{1, 2, 3}) {
		t.Fatalf("revisions %v, want 1 2 3", got)
	}
	for rev, want := range map[int64]string{1: "one", 2: "two", 3: "three"} {
		cr := revs[rev]
		if got := message(t, cr); got != want {
			t.Errorf("revision %d says %q, want %q", rev, got, want)
		}
		if cr.Name != crd.RevisionName("release", rev) {
			t.Errorf("revision %d is named %s", rev, cr.Name)
		}
	}

	e.runOf("replay", 1)
	replay := e.waitPhase("replay", v1alpha1.RunSucceeded)
	if replay.Status.TemplateRevision != 1 || replay.Status.Steps[0].Message != "one" {
		t.Errorf("run of revision 1: templateRevision %d, message %q; want 1, one", replay.Status.TemplateRevision, replay.Status.Steps[0].Message)
	}
	e.runOf("current", 0)
	cur := e.waitPhase("current", v1alpha1.RunSucceeded)
	if cur.Status.TemplateRevision != 3 || cur.Status.Steps[0].Message != "three" {
		t.Errorf("run of the current template: templateRevision %d, message %q; want 3, three", cur.Status.TemplateRevision, cur.Status.Steps[0].Message)
	}

	e.runOf("not-kept", 7)
	failed := e.waitPhase("not-kept", v1alpha1.RunFailed)
	for _, want := range []string{v1alpha1.AnnotationTemplateRevision, "revision 7", "not kept"} {
		if !strings.Contains(failed.Status.Message, want) {
			t.Errorf("run of revision 7: message %q does not say %q", failed.Status.Message, want)
		}
	}

	// Labels alone: the generation stays, and no revision is added. The change after it is
	// revision 4, and revision 3 holds the content it was made of, without the label.
	var labelled v1alpha1.Workflow
	if err := e.c.Get(ctx, client.ObjectKeyFromObject(wf), &labelled); err != nil {
		t.Fatal(err)
	}
	labelled.Labels = map[string]string{"team": "blue"}
	if err := e.c.Update(ctx, &labelled); err != nil {
		t.Fatal(err)
	}
	if labelled.Generation != 3 {
		t.Fatalf("a label changed the generation to %d", labelled.Generation)
	}
	e.applyWorkflow("four")
	e.waitRevision(4, wf.UID)
	revs = e.revisions()
	if got := keys(revs); !slices.Equal(got, []int64{1, 2, 3, 4}) {
		t.Fatalf("revisions after a label change and a change: %v, want 1 2 3 4", got)
	}
	var three v1alpha1.Workflow
	if err := json.Unmarshal(revs[3].Data.Raw, &three); err != nil {
		t.Fatal(err)
	}
	if three.Labels["team"] != "" {
		t.Errorf("revision 3 took the later label: %v", three.Labels)
	}

	// The revisions go with the Workflow through their owner reference. The test API server
	// runs no garbage collector (kube-controller-manager), so this checks the reference the
	// collector follows rather than waiting for the deletion.
	for rev, cr := range revs {
		refs := cr.OwnerReferences
		if len(refs) != 1 || refs[0].Kind != v1alpha1.KindWorkflow || refs[0].APIVersion != v1alpha1.GroupVersion.String() ||
			refs[0].Name != "release" || refs[0].UID != wf.UID || refs[0].Controller == nil || !*refs[0].Controller {
			t.Errorf("revision %d's owner references: %+v", rev, refs)
		}
	}

	// A Workflow made again under the same name starts again at revision 1: the revisions the
	// collector has not deleted yet are not its own.
	if err := e.c.Delete(ctx, wf); err != nil {
		t.Fatal(err)
	}
	again := e.applyWorkflow("again")
	if again.UID == wf.UID {
		t.Fatal("the Workflow made again has the same UID")
	}
	if got := message(t, e.waitRevision(1, again.UID)); got != "again" {
		t.Errorf("revision 1 of the Workflow made again says %q", got)
	}
	e.runOf("stale", 2)
	stale := e.waitPhase("stale", v1alpha1.RunFailed)
	if !strings.Contains(stale.Status.Message, "revision 2") || !strings.Contains(stale.Status.Message, "not kept") {
		t.Errorf("run of a revision of the deleted Workflow: message %q", stale.Status.Message)
	}
}

// Revisions numbered store.KeepRevisions below the newest are deleted, as in the SQL stores.
func TestWorkflowRevisionsKeepTheNewest(t *testing.T) {
	e := newEnv(t)
	e.start(controllerOptions{})
	wf := e.applyWorkflow("v1")
	last := int64(store.KeepRevisions + 2)
	for i := int64(2); i <= last; i++ {
		e.applyWorkflow(fmt.Sprintf("v%d", i))
	}
	e.waitRevision(last, wf.UID)
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := keys(e.revisions())
		if len(got) <= store.KeepRevisions && got[0] > last-store.KeepRevisions {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("revisions %v: want at most %d, none at or below %d", got, store.KeepRevisions, last-store.KeepRevisions)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
