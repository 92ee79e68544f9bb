package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/stepflow/stepflow/api/v1beta1"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/store"
)

// PutApplication writes an Application and returns its new version (from run_versions):
// version 0 creates it, a positive version replaces the one stored at that version
// (store.Applications).
func (s *Store) PutApplication(ctx context.Context, app *v1beta1.Application, version int64) (int64, error) {
	data, err := store.EncodeApplication(app, version)
	if err != nil {
		return 0, err
	}
	var stored int64
	if version == 0 {
		err := s.pool.QueryRow(ctx, `INSERT INTO applications (namespace, name, version, object)
			VALUES ($1, $2, nextval('run_versions'), $3)
			ON CONFLICT (namespace, name) DO NOTHING
			RETURNING version`, app.Namespace, app.Name, data).Scan(&stored)
		if errors.Is(err, pgx.ErrNoRows) {
			err = store.ErrExists
		}
		if err != nil {
			return 0, fmt.Errorf("store application %s/%s at version 0: %w", app.Namespace, app.Name, err)
		}
		return stored, nil
	}
	var updated *int64
	var existed bool
	err = s.pool.QueryRow(ctx, `WITH updated AS (
			UPDATE applications SET version = nextval('run_versions'), object = $3
			WHERE namespace = $1 AND name = $2 AND version = $4
			RETURNING version
		)
		SELECT (SELECT version FROM updated), EXISTS (SELECT 1 FROM applications WHERE namespace = $1 AND name = $2)`,
		app.Namespace, app.Name, data, version).Scan(&updated, &existed)
	switch {
	case err != nil:
	case updated != nil:
		return *updated, nil
	case existed:
		err = engine.ErrConflict
	default:
		err = engine.ErrNotFound
	}
	return 0, fmt.Errorf("store application %s/%s at version %d: %w", app.Namespace, app.Name, version, err)
}

// Application returns the stored Application and its version.
func (s *Store) Application(ctx context.Context, namespace, name string) (*v1beta1.Application, int64, error) {
	app, v, err := store.ReadApplication(s.pool.QueryRow(ctx,
		`SELECT object, version FROM applications WHERE namespace = $1 AND name = $2`, namespace, name))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, 0, fmt.Errorf("application %s/%s: %w", namespace, name, engine.ErrNotFound)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("application %s/%s: %w", namespace, name, err)
	}
	return app, v, nil
}

// Applications lists the Applications of a namespace ("" for every namespace).
func (s *Store) Applications(ctx context.Context, namespace string) ([]*v1beta1.Application, error) {
	read := func(row store.Scanner) (*v1beta1.Application, error) {
		app, _, err := store.ReadApplication(row)
		return app, err
	}
	out, err := queryAll(ctx, s, read, `SELECT object, version FROM applications
		WHERE $1 = '' OR namespace = $1 ORDER BY namespace, name`, namespace)
	if err != nil {
		return nil, fmt.Errorf("list applications: %w", err)
	}
	return out, nil
}

// DeleteApplication deletes an Application and its revisions, in one transaction.
func (s *Store) DeleteApplication(ctx context.Context, namespace, name string) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM applications WHERE namespace = $1 AND name = $2`, namespace, name)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return engine.ErrNotFound
		}
		_, err = tx.Exec(ctx, `DELETE FROM app_revisions WHERE namespace = $1 AND app = $2`, namespace, name)
		return err
	})
	if err != nil {
		return fmt.Errorf("delete application %s/%s: %w", namespace, name, err)
	}
	return nil
}

// PutAppRevision creates or replaces a revision.
func (s *Store) PutAppRevision(ctx context.Context, rev *store.AppRevision) error {
	if err := store.CheckAppRevision(rev); err != nil {
		return err
	}
	object, resources, err := store.EncodeAppRevision(rev)
	if err != nil {
		return err
	}
	_, err = s.pool.Exec(ctx, `INSERT INTO app_revisions (namespace, app, number, name, hash, run, object, resources)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
		ON CONFLICT (namespace, app, number) DO UPDATE SET name = excluded.name, hash = excluded.hash,
		run = excluded.run, object = excluded.object, resources = excluded.resources`,
		rev.Namespace(), rev.App, rev.Number, rev.Object.Name, rev.Hash, rev.Run, object, resources)
	if err != nil {
		return fmt.Errorf("store revision %s/%s: %w", rev.Namespace(), rev.Object.Name, err)
	}
	return nil
}

// AppRevisions returns an Application's revisions, oldest first.
func (s *Store) AppRevisions(ctx context.Context, namespace, app string) ([]*store.AppRevision, error) {
	out, err := queryAll(ctx, s, store.ReadAppRevision, `SELECT app, number, hash, run, object, resources
		FROM app_revisions WHERE namespace = $1 AND app = $2 ORDER BY number`, namespace, app)
	if err != nil {
		return nil, fmt.Errorf("revisions of %s/%s: %w", namespace, app, err)
	}
	return out, nil
}
