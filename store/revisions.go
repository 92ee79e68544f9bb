package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/rogpeppe/go-internal/diff"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/stepflow/stepflow/api/v1alpha1"
)

// KeepRevisions is how many revisions of a Workflow template the SQL stores keep: the write
// that stores a template's revision N deletes those numbered N-KeepRevisions and below.
const KeepRevisions = 50

// WorkflowRevision is one revision of a Workflow template: its content as stored by the
// PutObjects that made it (metadata.generation is the revision's number).
type WorkflowRevision struct {
	// Revision is the template's generation this content had.
	Revision int64 `json:"revision"`
	// Created is when the revision was stored; zero for the revisions a store's migration
	// made of the templates stored before revisions were kept.
	Created time.Time `json:"created,omitzero"`
	// Hash is the hex SHA-256 of the content (WorkflowHash).
	Hash string `json:"hash"`
	// Workflow is the template as it was, with Generation set to Revision.
	Workflow *v1alpha1.Workflow `json:"workflow"`
}

// Revisions reads the kept revisions of Workflow templates. A look-up of what is not kept
// fails with an error wrapping engine.ErrNotFound.
type Revisions interface {
	// WorkflowRevisions lists the kept revisions of the template namespace/name, newest
	// first; none (and no error) when there are none.
	WorkflowRevisions(ctx context.Context, namespace, name string) ([]WorkflowRevision, error)
	// WorkflowRevision is the revision rev of the template namespace/name.
	WorkflowRevision(ctx context.Context, namespace, name string, rev int64) (*WorkflowRevision, error)
}

// WorkflowHash is the hex SHA-256 of wf's content: its JSON without what WorkflowChanged
// ignores, so that two revisions of one content have one hash.
func WorkflowHash(wf *v1alpha1.Workflow) (string, error) {
	b, err := workflowContent(wf)
	if err != nil {
		return "", fmt.Errorf("hash workflow %s/%s: %w", wf.Namespace, wf.Name, err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// ReadWorkflowRevision reads a row of the columns revision, created (Unix nanoseconds, 0 when
// unknown) and object (the Workflow's JSON, without its generation) of the template
// namespace/name.
func ReadWorkflowRevision(namespace, name string) func(rows Scanner) (WorkflowRevision, error) {
	return func(rows Scanner) (WorkflowRevision, error) {
		var r WorkflowRevision
		var created int64
		var data []byte
		if err := rows.Scan(&r.Revision, &created, &data); err != nil {
			return r, err
		}
		if created != 0 {
			r.Created = time.Unix(0, created).UTC()
		}
		wf := new(v1alpha1.Workflow)
		if err := json.Unmarshal(data, wf); err != nil {
			return r, fmt.Errorf("decode revision %d of workflow %s/%s: %w", r.Revision, namespace, name, err)
		}
		wf.Namespace, wf.Name, wf.Generation = namespace, name, r.Revision
		r.Workflow = wf
		hash, err := WorkflowHash(wf)
		if err != nil {
			return r, err
		}
		r.Hash = hash
		return r, nil
	}
}

// Rollback stores the content of revision rev of the template namespace/name as its newest
// revision and returns the template as stored: a new revision when the content differs from
// the current one, else the current one unchanged.
func Rollback(ctx context.Context, st interface {
	Objects
	Revisions
}, namespace, name string, rev int64) (*v1alpha1.Workflow, error) {
	r, err := st.WorkflowRevision(ctx, namespace, name, rev)
	if err != nil {
		return nil, fmt.Errorf("roll back workflow %s/%s: %w", namespace, name, err)
	}
	wf := r.Workflow.DeepCopy()
	wf.Generation = 0
	if err := st.PutObjects(ctx, nil, []*v1alpha1.Workflow{wf}); err != nil {
		return nil, fmt.Errorf("roll back workflow %s/%s to revision %d: %w", namespace, name, rev, err)
	}
	return wf, nil
}

// WorkflowAt is the Workflow of revision rev of the template namespace/name in revs, for the
// stores' own WorkflowAt (engine.WorkflowRevisions).
func WorkflowAt(ctx context.Context, revs Revisions, namespace, name string, rev int64) (*v1alpha1.Workflow, error) {
	r, err := revs.WorkflowRevision(ctx, namespace, name, rev)
	if err != nil {
		return nil, err
	}
	return r.Workflow, nil
}

// RevisionYAML is the template of r as YAML, without what stores set (generation,
// resourceVersion, uid, creationTimestamp, managedFields): what DiffRevisions compares.
func RevisionYAML(r *WorkflowRevision) ([]byte, error) {
	c := r.Workflow.DeepCopy()
	c.APIVersion, c.Kind = v1alpha1.GroupVersion.String(), v1alpha1.KindWorkflow
	c.Generation, c.ResourceVersion, c.UID, c.ManagedFields = 0, "", "", nil
	c.CreationTimestamp = metav1.Time{}
	b, err := yaml.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("revision %d of workflow %s/%s as YAML: %w", r.Revision, c.Namespace, c.Name, err)
	}
	return b, nil
}

// DiffRevisions is the unified diff of the YAML of revision a to that of revision b (files
// named <name>@<revision>), "" when their content is the same. It takes O(n log n) time in
// their lines (an anchored diff).
func DiffRevisions(a, b *WorkflowRevision) (string, error) {
	ya, err := RevisionYAML(a)
	if err != nil {
		return "", err
	}
	yb, err := RevisionYAML(b)
	if err != nil {
		return "", err
	}
	name := a.Workflow.Name
	return string(diff.Diff(fmt.Sprintf("%s@%d", name, a.Revision), ya, fmt.Sprintf("%s@%d", name, b.Revision), yb)), nil
}
