package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/store"
)

// PutRecord writes the record kind/key and returns its new version. Version 0 creates it,
// failing with an error wrapping store.ErrExists when it is stored already; a positive version
// replaces its data only if that is the stored version, failing with an error wrapping
// engine.ErrConflict when it is not, or engine.ErrNotFound when there is no such record.
// Versions come from the sequence runs' versions come from, so none is handed out twice.
func (s *Store) PutRecord(ctx context.Context, kind, key string, data []byte, version int64) (int64, error) {
	switch {
	case kind == "" || key == "":
		return 0, fmt.Errorf("put record %q/%q: kind and key are required", kind, key)
	case version < 0:
		return 0, fmt.Errorf("put record %s/%s: negative version %d", kind, key, version)
	}
	if data == nil {
		data = []byte{} // the column is NOT NULL
	}
	var stored int64
	if version == 0 {
		err := s.pool.QueryRow(ctx, `INSERT INTO records (kind, key, version, data)
			VALUES ($1, $2, nextval('run_versions'), $3)
			ON CONFLICT (kind, key) DO NOTHING
			RETURNING version`, kind, key, data).Scan(&stored)
		if errors.Is(err, pgx.ErrNoRows) {
			err = store.ErrExists
		}
		if err != nil {
			return 0, fmt.Errorf("put record %s/%s at version 0: %w", kind, key, err)
		}
		return stored, nil
	}
	// The update returns no version unless it wrote; then whether the record was there (as
	// the statement began) tells a conflict from a missing record.
	var updated *int64
	var existed bool
	err := s.pool.QueryRow(ctx, `WITH updated AS (
			UPDATE records SET version = nextval('run_versions'), data = $3
			WHERE kind = $1 AND key = $2 AND version = $4
			RETURNING version
		)
		SELECT (SELECT version FROM updated), EXISTS (SELECT 1 FROM records WHERE kind = $1 AND key = $2)`,
		kind, key, data, version).Scan(&updated, &existed)
	switch {
	case err != nil:
	case updated != nil:
		return *updated, nil
	case existed:
		err = engine.ErrConflict
	default:
		err = engine.ErrNotFound
	}
	return 0, fmt.Errorf("put record %s/%s at version %d: %w", kind, key, version, err)
}

// Record returns the record kind/key, or an error wrapping engine.ErrNotFound.
func (s *Store) Record(ctx context.Context, kind, key string) (store.Record, error) {
	r := store.Record{Key: key}
	err := s.pool.QueryRow(ctx, `SELECT version, data FROM records WHERE kind = $1 AND key = $2`, kind, key).Scan(&r.Version, &r.Data)
	if errors.Is(err, pgx.ErrNoRows) {
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
	// The range starts the index scan at prefix; left, unlike LIKE, gives no character of
	// prefix a meaning. Keys compare in the C collation, byte by byte.
	out, err := queryAll(ctx, s, store.ReadRecord, `SELECT key, version, data FROM records
		WHERE kind = $1 AND key >= $2 AND left(key, length($2)) = $2
		ORDER BY key`, kind, prefix)
	if err != nil {
		return nil, fmt.Errorf("list records %s/%s*: %w", kind, prefix, err)
	}
	return out, nil
}

// DeleteRecord removes the record kind/key, or returns an error wrapping engine.ErrNotFound.
func (s *Store) DeleteRecord(ctx context.Context, kind, key string) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM records WHERE kind = $1 AND key = $2`, kind, key)
	if err == nil && tag.RowsAffected() == 0 {
		err = engine.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("delete record %s/%s: %w", kind, key, err)
	}
	return nil
}
