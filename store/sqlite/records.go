package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/store"
)

// PutRecord writes the record kind/key and returns its new version. Version 0 creates it,
// failing with an error wrapping store.ErrExists when it is stored already; a positive version
// replaces its data only if that is the stored version, failing with an error wrapping
// engine.ErrConflict when it is not, or engine.ErrNotFound when there is no such record.
// Versions come from the counter runs' versions come from, so none is handed out twice.
func (s *Store) PutRecord(ctx context.Context, kind, key string, data []byte, version int64) (int64, error) {
	if err := checkRecord(kind, key, version); err != nil {
		return 0, err
	}
	if data == nil {
		data = []byte{} // the column is NOT NULL
	}
	var stored int64
	err := s.w.submit(ctx, func(b *batch) error {
		v := b.nextVersion()
		if version == 0 {
			created, err := b.changed("insertRecord", kind, key, v, data)
			if err != nil {
				return err
			}
			if !created {
				return reject(store.ErrExists)
			}
			stored = v
			return nil
		}
		updated, err := b.changed("updateRecord", v, data, kind, key, version)
		if err != nil {
			return err
		}
		if !updated {
			var n int
			if err := b.queryRow("recordExists", kind, key).Scan(&n); err != nil {
				return fmt.Errorf("recordExists: %w", err)
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
		return 0, fmt.Errorf("put record %s/%s at version %d: %w", kind, key, version, err)
	}
	return stored, nil
}

// checkRecord refuses a record without kind or key, or a negative version.
func checkRecord(kind, key string, version int64) error {
	switch {
	case kind == "" || key == "":
		return fmt.Errorf("put record %q/%q: kind and key are required", kind, key)
	case version < 0:
		return fmt.Errorf("put record %s/%s: negative version %d", kind, key, version)
	}
	return nil
}

// Record returns the record kind/key, or an error wrapping engine.ErrNotFound.
func (s *Store) Record(ctx context.Context, kind, key string) (store.Record, error) {
	r := store.Record{Key: key}
	err := s.db.QueryRowContext(ctx, `SELECT version, data FROM records WHERE kind = ? AND key = ?`, kind, key).Scan(&r.Version, &r.Data)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Record{}, fmt.Errorf("record %s/%s: %w", kind, key, engine.ErrNotFound)
	}
	if err != nil {
		return store.Record{}, fmt.Errorf("record %s/%s: %w", kind, key, err)
	}
	return r, nil
}

// Records returns the records of the kind whose key starts with prefix (every one when it is
// empty), ordered by key (byte by byte).
func (s *Store) Records(ctx context.Context, kind, prefix string) ([]store.Record, error) {
	// The range starts the index scan at prefix; substr, unlike LIKE, gives no character of
	// prefix a meaning.
	out, err := queryAll(ctx, s, store.ReadRecord, `SELECT key, version, data FROM records
		WHERE kind = ? AND key >= ? AND substr(key, 1, length(?)) = ?
		ORDER BY key`, kind, prefix, prefix, prefix)
	if err != nil {
		return nil, fmt.Errorf("list records %s/%s*: %w", kind, prefix, err)
	}
	return out, nil
}

// DeleteRecord removes the record kind/key, or returns an error wrapping engine.ErrNotFound.
func (s *Store) DeleteRecord(ctx context.Context, kind, key string) error {
	err := s.w.submit(ctx, func(b *batch) error {
		deleted, err := b.changed("deleteRecord", kind, key)
		if err != nil {
			return err
		}
		if !deleted {
			return reject(engine.ErrNotFound)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete record %s/%s: %w", kind, key, err)
	}
	return nil
}
