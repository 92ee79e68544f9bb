package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/api/v1beta1"
	"github.com/stepflow/stepflow/engine"
)

// PutObjects stores the step definitions and Workflow templates, replacing those of the same
// namespace and name, in one transaction: if any is invalid (no name, a definition without a
// CUE template) none is stored.
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
	for i, wf := range wfs {
		if wf == nil || wf.Name == "" {
			return fmt.Errorf("store workflows: workflow %d has no name", i)
		}
		data, err := json.Marshal(wf)
		if err != nil {
			return fmt.Errorf("store workflows: encode %s/%s: %w", wf.Namespace, wf.Name, err)
		}
		b.Queue(`INSERT INTO workflows (namespace, name, object) VALUES ($1, $2, $3)
			ON CONFLICT (namespace, name) DO UPDATE SET object = excluded.object`,
			wf.Namespace, wf.Name, data)
	}
	if b.Len() == 0 {
		return nil
	}
	err := pgx.BeginTxFunc(ctx, s.pool, readCommitted, func(tx pgx.Tx) error {
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return fmt.Errorf("store definitions and workflows: %w", err)
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
	q := `SELECT object FROM definitions`
	var args []any
	if namespace != "" {
		q += ` WHERE namespace = $1`
		args = append(args, namespace)
	}
	rows, err := s.pool.Query(ctx, q+` ORDER BY namespace, name`, args...)
	if err != nil {
		return nil, fmt.Errorf("list definitions: %w", err)
	}
	defer rows.Close()
	var out []*v1beta1.WorkflowStepDefinition
	for rows.Next() {
		var data []byte
		if err := rows.Scan(&data); err != nil {
			return nil, fmt.Errorf("list definitions: %w", err)
		}
		d := new(v1beta1.WorkflowStepDefinition)
		if err := json.Unmarshal(data, d); err != nil {
			return nil, fmt.Errorf("list definitions: decode: %w", err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list definitions: %w", err)
	}
	return out, nil
}

// Workflow returns the stored Workflow template namespace/name, or an error wrapping
// engine.ErrNotFound.
func (s *Store) Workflow(ctx context.Context, namespace, name string) (*v1alpha1.Workflow, error) {
	var data []byte
	err := s.pool.QueryRow(ctx, `SELECT object FROM workflows WHERE namespace = $1 AND name = $2`, namespace, name).Scan(&data)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("workflow %s/%s: %w", namespace, name, engine.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("workflow %s/%s: %w", namespace, name, err)
	}
	wf := new(v1alpha1.Workflow)
	if err := json.Unmarshal(data, wf); err != nil {
		return nil, fmt.Errorf("workflow %s/%s: decode: %w", namespace, name, err)
	}
	return wf, nil
}
