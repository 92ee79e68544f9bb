package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/api/v1beta1"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/store"
)

// object is a definition or Workflow encoded for writing.
type object struct {
	namespace, name string
	template        string             // definitions only
	wf              *v1alpha1.Workflow // Workflows only: a copy without generation, as stored
	data            []byte
}

// PutObjects stores the step definitions and Workflow templates, replacing those of the same
// namespace and name, in one transaction: if any is invalid (no name, a definition without a
// CUE template) none is stored.
//
// A Workflow's metadata.generation is its version: 1 when it is new; the stored one's plus
// one when it differs from it (store.WorkflowChanged), else the stored one's, so that applying
// the same file again changes nothing. The generation given is ignored; once stored, each
// Workflow of wfs has its Generation set to the one stored.
func (s *Store) PutObjects(ctx context.Context, defs []*v1beta1.WorkflowStepDefinition, wfs []*v1alpha1.Workflow) error {
	var encDefs, encWfs []object
	for i, d := range defs {
		if d == nil || d.Name == "" {
			return fmt.Errorf("store definitions: definition %d has no name", i)
		}
		if d.Spec.Schematic == nil || d.Spec.Schematic.CUE == nil || d.Spec.Schematic.CUE.Template == "" {
			return fmt.Errorf("store definitions: definition %s/%s has no spec.schematic.cue.template", d.Namespace, d.Name)
		}
		data, err := json.Marshal(d)
		if err != nil {
			return fmt.Errorf("store definitions: encode %s/%s: %w", d.Namespace, d.Name, err)
		}
		encDefs = append(encDefs, object{namespace: d.Namespace, name: d.Name, template: d.Spec.Schematic.CUE.Template, data: data})
	}
	for i, wf := range wfs {
		if wf == nil || wf.Name == "" {
			return fmt.Errorf("store workflows: workflow %d has no name", i)
		}
		c := wf.DeepCopy()
		c.Generation = 0 // the column's
		data, err := json.Marshal(c)
		if err != nil {
			return fmt.Errorf("store workflows: encode %s/%s: %w", wf.Namespace, wf.Name, err)
		}
		encWfs = append(encWfs, object{namespace: wf.Namespace, name: wf.Name, wf: c, data: data})
	}
	if len(encDefs)+len(encWfs) == 0 {
		return nil
	}
	gens := make([]int64, len(encWfs))
	err := s.w.submit(ctx, func(b *batch) error {
		// Every generation is decided before anything is written: a rejection fails this
		// request alone and must find nothing of it written.
		for i, o := range encWfs {
			gen, err := b.generation(o, encWfs[:i], gens[:i])
			if err != nil {
				return err
			}
			gens[i] = gen
		}
		for _, o := range encDefs {
			if _, err := b.exec("putDefinition", o.namespace, o.name, o.template, o.data); err != nil {
				return err
			}
		}
		now := time.Now().UnixNano()
		for i, o := range encWfs {
			if _, err := b.exec("putWorkflow", o.namespace, o.name, o.data, gens[i]); err != nil {
				return err
			}
			// An unchanged template's generation is kept already: nothing is written.
			if _, err := b.exec("putRevision", o.namespace, o.name, gens[i], now, o.data); err != nil {
				return err
			}
			if _, err := b.exec("pruneRevisions", o.namespace, o.name, gens[i]-store.KeepRevisions); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store definitions and workflows: %w", err)
	}
	for i, wf := range wfs {
		wf.Generation = gens[i]
	}
	return nil
}

// generation is the generation to store the Workflow o with: it follows the last of the same
// name among earlier, stored in the same PutObjects with the generations gens, or else the
// stored one. A stored Workflow that cannot be decoded counts as changed, so that putting it
// again repairs it.
func (b *batch) generation(o object, earlier []object, gens []int64) (int64, error) {
	for i, e := range slices.Backward(earlier) {
		if e.namespace == o.namespace && e.name == o.name {
			return nextGeneration(e.wf, gens[i], o.wf)
		}
	}
	var data []byte
	var gen int64
	err := b.queryRow("readWorkflow", o.namespace, o.name).Scan(&data, &gen)
	if errors.Is(err, sql.ErrNoRows) {
		return 1, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read stored workflow %s/%s: %w", o.namespace, o.name, err)
	}
	stored := new(v1alpha1.Workflow)
	if err := json.Unmarshal(data, stored); err != nil {
		return gen + 1, nil // unreadable counts as changed, and is replaced
	}
	gen, err = nextGeneration(stored, gen, o.wf)
	if err != nil {
		return 0, reject(err)
	}
	return gen, nil
}

// nextGeneration is the generation of wf replacing stored, of generation gen.
func nextGeneration(stored *v1alpha1.Workflow, gen int64, wf *v1alpha1.Workflow) (int64, error) {
	changed, err := store.WorkflowChanged(stored, wf)
	if err != nil {
		return 0, err
	}
	if changed {
		return gen + 1, nil
	}
	return gen, nil
}

// DeleteDefinition removes the stored definition namespace/name, or returns an error wrapping
// engine.ErrNotFound.
func (s *Store) DeleteDefinition(ctx context.Context, namespace, name string) error {
	if err := s.deleteObject(ctx, "deleteDefinition", namespace, name); err != nil {
		return fmt.Errorf("delete definition %s/%s: %w", namespace, name, err)
	}
	return nil
}

// DeleteWorkflow removes the stored Workflow template namespace/name, or returns an error
// wrapping engine.ErrNotFound. Runs of the template keep the steps they resolved.
func (s *Store) DeleteWorkflow(ctx context.Context, namespace, name string) error {
	if err := s.deleteObject(ctx, "deleteWorkflow", namespace, name); err != nil {
		return fmt.Errorf("delete workflow %s/%s: %w", namespace, name, err)
	}
	return nil
}

// deleteObject runs the named delete statement of one row, or fails with engine.ErrNotFound;
// a Workflow's revisions go with it.
func (s *Store) deleteObject(ctx context.Context, stmt, namespace, name string) error {
	return s.w.submit(ctx, func(b *batch) error {
		deleted, err := b.changed(stmt, namespace, name)
		if err != nil {
			return err
		}
		if !deleted {
			return reject(engine.ErrNotFound)
		}
		if stmt == "deleteWorkflow" {
			if _, err := b.exec("deleteRevisions", namespace, name); err != nil {
				return err
			}
		}
		return nil
	})
}

// Template returns the CUE template of the stored definition namespace/typ, or an error
// wrapping engine.ErrNotFound. It looks in that namespace only.
func (s *Store) Template(ctx context.Context, namespace, typ string) (string, error) {
	var t string
	err := s.db.QueryRowContext(ctx, `SELECT template FROM definitions WHERE namespace = ? AND name = ?`, namespace, typ).Scan(&t)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("definition %s/%s: %w", namespace, typ, engine.ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("definition %s/%s: %w", namespace, typ, err)
	}
	return t, nil
}

// Definitions returns the stored definitions of the namespace (of every namespace when it is
// empty), ordered by namespace and name.
func (s *Store) Definitions(ctx context.Context, namespace string) ([]*v1beta1.WorkflowStepDefinition, error) {
	return store.ListObjects(dialect, "definitions", "object", namespace, query(ctx, s, store.ReadDefinition))
}

// Workflow returns the stored Workflow template namespace/name, with its generation, or an
// error wrapping engine.ErrNotFound.
func (s *Store) Workflow(ctx context.Context, namespace, name string) (*v1alpha1.Workflow, error) {
	var data []byte
	var gen int64
	err := s.db.QueryRowContext(ctx, `SELECT object, generation FROM workflows WHERE namespace = ? AND name = ?`, namespace, name).Scan(&data, &gen)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("workflow %s/%s: %w", namespace, name, engine.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("workflow %s/%s: %w", namespace, name, err)
	}
	return store.DecodeWorkflow(namespace, name, data, gen)
}

// Workflows returns the stored Workflow templates of the namespace (of every namespace when
// it is empty), with their generations, ordered by namespace and name.
func (s *Store) Workflows(ctx context.Context, namespace string) ([]*v1alpha1.Workflow, error) {
	return store.ListObjects(dialect, "workflows", "namespace, name, object, generation", namespace, query(ctx, s, store.ReadWorkflow))
}

// WorkflowRevisions lists the kept revisions of the Workflow template namespace/name, newest
// first.
func (s *Store) WorkflowRevisions(ctx context.Context, namespace, name string) ([]store.WorkflowRevision, error) {
	out, err := query(ctx, s, store.ReadWorkflowRevision(namespace, name))(
		`SELECT revision, created, object FROM workflow_revisions WHERE namespace = ? AND name = ? ORDER BY revision DESC`,
		namespace, name)
	if err != nil {
		return nil, fmt.Errorf("revisions of workflow %s/%s: %w", namespace, name, err)
	}
	return out, nil
}

// WorkflowRevision is revision rev of the Workflow template namespace/name, or an error
// wrapping engine.ErrNotFound when it is not kept.
func (s *Store) WorkflowRevision(ctx context.Context, namespace, name string, rev int64) (*store.WorkflowRevision, error) {
	out, err := query(ctx, s, store.ReadWorkflowRevision(namespace, name))(
		`SELECT revision, created, object FROM workflow_revisions WHERE namespace = ? AND name = ? AND revision = ?`,
		namespace, name, rev)
	if err != nil {
		return nil, fmt.Errorf("revision %d of workflow %s/%s: %w", rev, namespace, name, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("revision %d of workflow %s/%s: %w", rev, namespace, name, engine.ErrNotFound)
	}
	return &out[0], nil
}

// WorkflowAt is the template of revision rev of the Workflow namespace/name, with that
// generation (engine.WorkflowRevisions), or an error wrapping engine.ErrNotFound.
func (s *Store) WorkflowAt(ctx context.Context, namespace, name string, rev int64) (*v1alpha1.Workflow, error) {
	return store.WorkflowAt(ctx, s, namespace, name, rev)
}
