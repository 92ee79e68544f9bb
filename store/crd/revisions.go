// revisions.go: the revisions of Workflow templates in Kubernetes mode, as ControllerRevisions.

package crd

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/store"
)

// LabelWorkflow names, on a ControllerRevision, the Workflow it is a revision of: the name
// itself, or for a name longer than a label value may be its first 50 bytes and a hash.
const LabelWorkflow = "stepflow.dev/workflow"

// Revisions is store.Revisions of Kubernetes mode: revision N of a Workflow is the
// ControllerRevision RevisionName(name, N) of its namespace (the number in .revision, the
// Workflow's content as it was in .data, owned by the Workflow so that it goes with it,
// labelled LabelWorkflow), N being the Workflow's metadata.generation, which the API server
// raises with every change of its content outside metadata. Record keeps them; the
// controller records every generation it sees. The current generation is a revision even
// before it is recorded.
type Revisions struct {
	// Client reads and writes the ControllerRevisions.
	Client client.Client
	// Workflows is where the Workflows are read (the manager's cache); nil reads them
	// through Client.
	Workflows client.Reader
}

// RevisionName is the name of the ControllerRevision of revision rev of the Workflow name.
func RevisionName(name string, rev int64) string {
	suffix := "-" + strconv.FormatInt(rev, 10)
	const maxName = 253 // a DNS subdomain
	if len(name)+len(suffix) <= maxName {
		return name + suffix
	}
	return name[:maxName-len(suffix)-13] + "-" + nameHash(name) + suffix
}

// workflowLabel is the value of LabelWorkflow for the Workflow name.
func workflowLabel(name string) string {
	const maxValue = 63
	if len(name) <= maxValue {
		return name
	}
	return name[:50] + "-" + nameHash(name)
}

// nameHash is 12 hex digits of the SHA-256 of name.
func nameHash(name string) string {
	sum := sha256.Sum256([]byte(name))
	return hex.EncodeToString(sum[:])[:12]
}

// revisionContent is wf as a revision keeps it: without what the API server sets and the
// annotation kubectl apply writes, so that it can be applied again as it is.
func revisionContent(wf *v1alpha1.Workflow) *v1alpha1.Workflow {
	c := wf.DeepCopy()
	c.APIVersion, c.Kind = v1alpha1.GroupVersion.String(), v1alpha1.KindWorkflow
	c.Generation, c.ResourceVersion, c.UID, c.ManagedFields = 0, "", "", nil
	c.CreationTimestamp, c.DeletionTimestamp, c.DeletionGracePeriodSeconds = metav1.Time{}, nil, nil
	if _, ok := c.Annotations[corev1.LastAppliedConfigAnnotation]; ok {
		delete(c.Annotations, corev1.LastAppliedConfigAnnotation)
		if len(c.Annotations) == 0 {
			c.Annotations = nil
		}
	}
	return c
}

// ownedBy reports whether cr is a revision of the Workflow with the UID uid.
func ownedBy(cr *appsv1.ControllerRevision, uid types.UID) bool {
	return slices.ContainsFunc(cr.OwnerReferences, func(o metav1.OwnerReference) bool { return o.UID == uid })
}

// Record keeps wf's content as its revision wf.Generation unless that is kept already (a
// change of metadata alone leaves the generation, so it makes no revision), then deletes the
// revisions numbered KeepRevisions below the newest kept, as the SQL stores do. A
// ControllerRevision of that name left by an earlier Workflow of the same name (one the
// garbage collector has not deleted yet) is replaced. created says whether it kept a new one.
func (r *Revisions) Record(ctx context.Context, wf *v1alpha1.Workflow) (created bool, err error) {
	if wf.Generation < 1 || wf.UID == "" {
		return false, fmt.Errorf("revision of Workflow %s/%s: it has no generation or UID (not read from the API server)", wf.Namespace, wf.Name)
	}
	data, err := json.Marshal(revisionContent(wf))
	if err != nil {
		return false, fmt.Errorf("revision %d of Workflow %s/%s: %w", wf.Generation, wf.Namespace, wf.Name, err)
	}
	cr := &appsv1.ControllerRevision{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: wf.Namespace,
			Name:      RevisionName(wf.Name, wf.Generation),
			Labels:    map[string]string{LabelWorkflow: workflowLabel(wf.Name)},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: v1alpha1.GroupVersion.String(), Kind: v1alpha1.KindWorkflow,
				Name: wf.Name, UID: wf.UID, Controller: new(true),
			}},
		},
		Revision: wf.Generation,
		Data:     runtime.RawExtension{Raw: data},
	}
	for range 2 { // a second time after a stale one was deleted
		err = r.Client.Create(ctx, cr.DeepCopy())
		if !apierrors.IsAlreadyExists(err) {
			break
		}
		var old appsv1.ControllerRevision
		if err := r.Client.Get(ctx, client.ObjectKeyFromObject(cr), &old); err != nil {
			return false, fmt.Errorf("revision %d of Workflow %s/%s: %w", wf.Generation, wf.Namespace, wf.Name, client.IgnoreNotFound(err))
		}
		if ownedBy(&old, wf.UID) {
			return false, nil // kept already
		}
		err = r.Client.Delete(ctx, &old, client.Preconditions{UID: &old.UID})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return false, fmt.Errorf("delete the stale ControllerRevision %s/%s: %w", old.Namespace, old.Name, err)
		}
	}
	if err != nil {
		return false, fmt.Errorf("keep revision %d of Workflow %s/%s: %w", wf.Generation, wf.Namespace, wf.Name, err)
	}
	return true, r.prune(ctx, wf)
}

// prune deletes the revisions of wf numbered store.KeepRevisions or more below the newest.
func (r *Revisions) prune(ctx context.Context, wf *v1alpha1.Workflow) error {
	kept, err := r.list(ctx, wf)
	if err != nil {
		return err
	}
	if len(kept) == 0 {
		return nil
	}
	oldest := kept[0].Revision - store.KeepRevisions // kept is newest first
	for i := range kept {
		cr := &kept[i]
		if cr.Revision > oldest {
			continue
		}
		if err := r.Client.Delete(ctx, cr, client.Preconditions{UID: &cr.UID}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete revision %d of Workflow %s/%s beyond the %d kept: %w", cr.Revision, wf.Namespace, wf.Name, store.KeepRevisions, err)
		}
	}
	return nil
}

// list lists the ControllerRevisions of wf, newest first.
func (r *Revisions) list(ctx context.Context, wf *v1alpha1.Workflow) ([]appsv1.ControllerRevision, error) {
	var list appsv1.ControllerRevisionList
	err := r.Client.List(ctx, &list, client.InNamespace(wf.Namespace), client.MatchingLabels{LabelWorkflow: workflowLabel(wf.Name)})
	if err != nil {
		return nil, fmt.Errorf("list the revisions of Workflow %s/%s: %w", wf.Namespace, wf.Name, err)
	}
	kept := slices.DeleteFunc(list.Items, func(cr appsv1.ControllerRevision) bool { return !ownedBy(&cr, wf.UID) })
	slices.SortFunc(kept, func(a, b appsv1.ControllerRevision) int { return cmp.Compare(b.Revision, a.Revision) })
	return kept, nil
}

// workflow reads the Workflow namespace/name; a missing one wraps engine.ErrNotFound.
func (r *Revisions) workflow(ctx context.Context, namespace, name string) (*v1alpha1.Workflow, error) {
	reader := r.Workflows
	if reader == nil {
		reader = r.Client
	}
	wf := new(v1alpha1.Workflow)
	if err := reader.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, wf); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("no Workflow %q in namespace %q: %w", name, namespace, engine.ErrNotFound)
		}
		return nil, fmt.Errorf("read Workflow %s/%s: %w", namespace, name, err)
	}
	return wf, nil
}

// current is the revision the Workflow wf is at.
func current(wf *v1alpha1.Workflow) (store.WorkflowRevision, error) {
	c := revisionContent(wf)
	c.Generation = wf.Generation
	return revision(c, wf.Generation, metav1.Time{})
}

// revision is the store.WorkflowRevision of wf's content as revision rev.
func revision(wf *v1alpha1.Workflow, rev int64, created metav1.Time) (store.WorkflowRevision, error) {
	hash, err := store.WorkflowHash(wf)
	if err != nil {
		return store.WorkflowRevision{}, err
	}
	return store.WorkflowRevision{Revision: rev, Created: created.UTC(), Hash: hash, Workflow: wf}, nil
}

// decode is the store.WorkflowRevision a ControllerRevision of the Workflow namespace/name holds.
func decode(cr *appsv1.ControllerRevision, namespace, name string) (store.WorkflowRevision, error) {
	wf := new(v1alpha1.Workflow)
	if err := json.Unmarshal(cr.Data.Raw, wf); err != nil {
		return store.WorkflowRevision{}, fmt.Errorf("decode revision %d of Workflow %s/%s (ControllerRevision %s): %w", cr.Revision, namespace, name, cr.Name, err)
	}
	wf.Namespace, wf.Name, wf.Generation = namespace, name, cr.Revision
	return revision(wf, cr.Revision, cr.CreationTimestamp)
}

// WorkflowRevisions implements store.Revisions: the revisions kept of the Workflow
// namespace/name, newest first, its current generation among them; none when there is no
// such Workflow.
func (r *Revisions) WorkflowRevisions(ctx context.Context, namespace, name string) ([]store.WorkflowRevision, error) {
	wf, err := r.workflow(ctx, namespace, name)
	if err != nil {
		if errors.Is(err, engine.ErrNotFound) {
			return nil, nil
		}
		return nil, err
	}
	kept, err := r.list(ctx, wf)
	if err != nil {
		return nil, err
	}
	var out []store.WorkflowRevision
	if len(kept) == 0 || kept[0].Revision < wf.Generation {
		cur, err := current(wf)
		if err != nil {
			return nil, err
		}
		out = append(out, cur)
	}
	for i := range kept {
		rev, err := decode(&kept[i], namespace, name)
		if err != nil {
			return nil, err
		}
		out = append(out, rev)
	}
	return out, nil
}

// WorkflowRevision implements store.Revisions: revision rev of the Workflow namespace/name, or
// an error wrapping engine.ErrNotFound that names the ControllerRevision when it is not kept.
func (r *Revisions) WorkflowRevision(ctx context.Context, namespace, name string, rev int64) (*store.WorkflowRevision, error) {
	wf, err := r.workflow(ctx, namespace, name)
	if err != nil {
		return nil, err
	}
	var cr appsv1.ControllerRevision
	err = r.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: RevisionName(name, rev)}, &cr)
	switch {
	case err == nil && ownedBy(&cr, wf.UID) && cr.Revision == rev:
		out, err := decode(&cr, namespace, name)
		return &out, err
	case err != nil && !apierrors.IsNotFound(err):
		return nil, fmt.Errorf("revision %d of Workflow %s/%s: %w", rev, namespace, name, err)
	case rev == wf.Generation: // not recorded yet: it is the Workflow as it is
		out, err := current(wf)
		return &out, err
	}
	return nil, fmt.Errorf("revision %d of Workflow %s/%s is not kept (no ControllerRevision %s of it; the Workflow is at revision %d): %w",
		rev, namespace, name, RevisionName(name, rev), wf.Generation, engine.ErrNotFound)
}

// WorkflowAt implements engine.WorkflowRevisions.
func (r *Revisions) WorkflowAt(ctx context.Context, namespace, name string, rev int64) (*v1alpha1.Workflow, error) {
	return store.WorkflowAt(ctx, r, namespace, name, rev)
}
