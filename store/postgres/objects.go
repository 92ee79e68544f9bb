package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/api/v1beta1"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/store"
)

// PutObjects stores the step definitions and Workflow templates, replacing those of the same
// namespace and name, in one transaction: if any is invalid (no name, a definition without a
// CUE template) none is stored.
//
// A Workflow's metadata.generation is its version: 1 when it is new; the stored one's plus
// one when it differs from it (store.WorkflowChanged), else the stored one's, so that applying
// the same file again changes nothing. The generation given is ignored; once stored, each
// Workflow of wfs has its Generation set to the one stored.
func (s *Store) PutObjects(ctx context.Context, defs []*v1beta1.WorkflowStepDefinition, wfs []*v1alpha1.Workflow) error {
	b := new(pgx.Batch)
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
		b.Queue(`INSERT INTO definitions (namespace, name, template, object) VALUES ($1, $2, $3, $4)
			ON CONFLICT (namespace, name) DO UPDATE SET template = excluded.template, object = excluded.object`,
			d.Namespace, d.Name, d.Spec.Schematic.CUE.Template, data)
	}
	encWfs := make([]workflowRow, len(wfs))
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
		encWfs[i] = workflowRow{wf: c, data: data}
	}
	if b.Len()+len(encWfs) == 0 {
		return nil
	}
	gens := make([]int64, len(encWfs))
	err := pgx.BeginTxFunc(ctx, s.pool, readCommitted, func(tx pgx.Tx) error {
		if b.Len() > 0 {
			if err := tx.SendBatch(ctx, b).Close(); err != nil {
				return err
			}
		}
		for i, o := range encWfs {
			gen, err := putWorkflow(ctx, tx, o)
			if err != nil {
				return err
			}
			gens[i] = gen
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

// workflowRow is a Workflow encoded for writing: a copy without generation, and its JSON.
type workflowRow struct {
	wf   *v1alpha1.Workflow
	data []byte
}

// putWorkflow stores the Workflow in the transaction and returns the generation it stored it
// with: 1 if new, else the stored one's, plus one if it changed (or cannot be decoded). The stored row is locked
// before it is compared, so that of two transactions storing one template at once the second
// compares with what the first stored.
func putWorkflow(ctx context.Context, tx pgx.Tx, o workflowRow) (int64, error) {
	ns, name := o.wf.Namespace, o.wf.Name
	for {
		var data []byte
		var gen int64
		err := tx.QueryRow(ctx, `SELECT object, generation FROM workflows WHERE namespace = $1 AND name = $2 FOR UPDATE`,
			ns, name).Scan(&data, &gen)
		if errors.Is(err, pgx.ErrNoRows) {
			tag, err := tx.Exec(ctx, `INSERT INTO workflows (namespace, name, object, generation) VALUES ($1, $2, $3, 1)
				ON CONFLICT (namespace, name) DO NOTHING`, ns, name, o.data)
			if err != nil {
				return 0, fmt.Errorf("insert workflow %s/%s: %w", ns, name, err)
			}
			if tag.RowsAffected() == 1 {
				return 1, putRevision(ctx, tx, o, 1)
			}
			continue // another transaction stored it first: compare with what it stored
		}
		if err != nil {
			return 0, fmt.Errorf("read stored workflow %s/%s: %w", ns, name, err)
		}
		// A stored Workflow that cannot be decoded counts as changed, so that putting it
		// again repairs it.
		stored := new(v1alpha1.Workflow)
		changed := true
		if json.Unmarshal(data, stored) == nil {
			if changed, err = store.WorkflowChanged(stored, o.wf); err != nil {
				return 0, err
			}
		}
		if changed {
			gen++
		}
		if _, err := tx.Exec(ctx, `UPDATE workflows SET object = $3, generation = $4 WHERE namespace = $1 AND name = $2`,
			ns, name, o.data, gen); err != nil {
			return 0, fmt.Errorf("update workflow %s/%s: %w", ns, name, err)
		}
		return gen, putRevision(ctx, tx, o, gen)
	}
}

// putRevision keeps o as revision gen of its template, unless that revision is kept already
// (the template did not change), and drops the revisions beyond the last store.KeepRevisions.
func putRevision(ctx context.Context, tx pgx.Tx, o workflowRow, gen int64) error {
	ns, name := o.wf.Namespace, o.wf.Name
	if _, err := tx.Exec(ctx, `INSERT INTO workflow_revisions (namespace, name, revision, created, object)
		VALUES ($1, $2, $3, $4, $5) ON CONFLICT (namespace, name, revision) DO NOTHING`,
		ns, name, gen, time.Now().UnixNano(), o.data); err != nil {
		return fmt.Errorf("keep revision %d of workflow %s/%s: %w", gen, ns, name, err)
	}
	if _, err := tx.Exec(ctx, `DELETE FROM workflow_revisions WHERE namespace = $1 AND name = $2 AND revision <= $3`,
		ns, name, gen-store.KeepRevisions); err != nil {
		return fmt.Errorf("drop old revisions of workflow %s/%s: %w", ns, name, err)
	}
	return nil
}

// DeleteDefinition removes the stored definition namespace/name, or returns an error wrapping
// engine.ErrNotFound.
func (s *Store) DeleteDefinition(ctx context.Context, namespace, name string) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM definitions WHERE namespace = $1 AND name = $2`, namespace, name)
	if err == nil && tag.RowsAffected() == 0 {
		err = engine.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("delete definition %s/%s: %w", namespace, name, err)
	}
	return nil
}

// DeleteWorkflow removes the stored Workflow template namespace/name, or returns an error
// wrapping engine.ErrNotFound. Runs of the template keep the steps they resolved.
func (s *Store) DeleteWorkflow(ctx context.Context, namespace, name string) error {
	err := pgx.BeginTxFunc(ctx, s.pool, readCommitted, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM workflows WHERE namespace = $1 AND name = $2`, namespace, name)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return engine.ErrNotFound
		}
		_, err = tx.Exec(ctx, `DELETE FROM workflow_revisions WHERE namespace = $1 AND name = $2`, namespace, name)
		return err
	})
	if err != nil {
		return fmt.Errorf("delete workflow %s/%s: %w", namespace, name, err)
	}
	return nil
}

// Template returns the CUE template of the stored definition namespace/typ, or an error
// wrapping engine.ErrNotFound. It looks in that namespace only.
func (s *Store) Template(ctx context.Context, namespace, typ string) (string, error) {
	var t string
	err := s.pool.QueryRow(ctx, `SELECT template FROM definitions WHERE namespace = $1 AND name = $2`, namespace, typ).Scan(&t)
	if errors.Is(err, pgx.ErrNoRows) {
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
	err := s.pool.QueryRow(ctx, `SELECT object, generation FROM workflows WHERE namespace = $1 AND name = $2`, namespace, name).Scan(&data, &gen)
	if errors.Is(err, pgx.ErrNoRows) {
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
		`SELECT revision, created, object FROM workflow_revisions WHERE namespace = $1 AND name = $2 ORDER BY revision DESC`,
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
		`SELECT revision, created, object FROM workflow_revisions WHERE namespace = $1 AND name = $2 AND revision = $3`,
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
