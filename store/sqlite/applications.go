package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/stepflow/stepflow/api/v1beta1"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/store"
)

// PutApplication writes an Application and returns its new version (from the counter runs'
// versions come from): version 0 creates it, a positive version replaces the one stored at
// that version (store.Applications).
func (s *Store) PutApplication(ctx context.Context, app *v1beta1.Application, version int64) (int64, error) {
	data, err := store.EncodeApplication(app, version)
	if err != nil {
		return 0, err
	}
	var stored int64
	err = s.w.submit(ctx, func(b *batch) error {
		v := b.nextVersion()
		if version == 0 {
			created, err := b.changed("insertApp", app.Namespace, app.Name, v, data)
			if err != nil {
				return err
			}
			if !created {
				return reject(store.ErrExists)
			}
			stored = v
			return nil
		}
		updated, err := b.changed("updateApp", v, data, app.Namespace, app.Name, version)
		if err != nil {
			return err
		}
		if !updated {
			var n int
			if err := b.queryRow("appExists", app.Namespace, app.Name).Scan(&n); err != nil {
				return fmt.Errorf("appExists: %w", err)
			}
			if n == 0 {
				return reject(engine.ErrNotFound)
			}
			return reject(engine.ErrConflict)
		}
		stored = v
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("store application %s/%s at version %d: %w", app.Namespace, app.Name, version, err)
	}
	return stored, nil
}

// Application returns the stored Application and its version.
func (s *Store) Application(ctx context.Context, namespace, name string) (*v1beta1.Application, int64, error) {
	app, v, err := store.ReadApplication(s.db.QueryRowContext(ctx,
		`SELECT object, version FROM applications WHERE namespace = ? AND name = ?`, namespace, name))
	if errors.Is(err, sql.ErrNoRows) {
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
		WHERE ? = '' OR namespace = ? ORDER BY namespace, name`, namespace, namespace)
	if err != nil {
		return nil, fmt.Errorf("list applications: %w", err)
	}
	return out, nil
}

// DeleteApplication deletes an Application and its revisions.
func (s *Store) DeleteApplication(ctx context.Context, namespace, name string) error {
	err := s.w.submit(ctx, func(b *batch) error {
		deleted, err := b.changed("deleteApp", namespace, name)
		if err != nil {
			return err
		}
		if !deleted {
			return reject(engine.ErrNotFound)
		}
		_, err = b.exec("deleteRevs", namespace, name)
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
	err = s.w.submit(ctx, func(b *batch) error {
		_, err := b.exec("putRev", rev.Namespace(), rev.App, rev.Number, rev.Object.Name, rev.Hash, rev.Run, object, resources)
		return err
	})
	if err != nil {
		return fmt.Errorf("store revision %s/%s: %w", rev.Namespace(), rev.Object.Name, err)
	}
	return nil
}

// AppRevisions returns an Application's revisions, oldest first.
func (s *Store) AppRevisions(ctx context.Context, namespace, app string) ([]*store.AppRevision, error) {
	out, err := queryAll(ctx, s, store.ReadAppRevision, `SELECT app, number, hash, run, object, resources
		FROM app_revisions WHERE namespace = ? AND app = ? ORDER BY number`, namespace, app)
	if err != nil {
		return nil, fmt.Errorf("revisions of %s/%s: %w", namespace, app, err)
	}
	return out, nil
}
