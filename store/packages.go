package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	cuev1alpha1 "github.com/stepflow/stepflow/api/cue/v1alpha1"
	"github.com/stepflow/stepflow/engine"
)

// RecordPackage is the kind of the records holding Package objects (cue.oam.dev/v1alpha1),
// keyed "<namespace>/<name>", their JSON as data: stored through Records, they need no table
// of their own.
const RecordPackage = "package"

func packageKey(namespace, name string) string { return namespace + "/" + name }

// PutPackages stores Packages, each replacing the one of its namespace and name.
func PutPackages(ctx context.Context, r Records, pkgs []*cuev1alpha1.Package) error {
	for _, p := range pkgs {
		data, err := json.Marshal(p)
		if err != nil {
			return fmt.Errorf("package %s/%s: %w", p.Namespace, p.Name, err)
		}
		key := packageKey(p.Namespace, p.Name)
		for {
			var version int64
			rec, err := r.Record(ctx, RecordPackage, key)
			switch {
			case err == nil:
				version = rec.Version
			case !errors.Is(err, engine.ErrNotFound):
				return fmt.Errorf("package %s: %w", key, err)
			}
			_, err = r.PutRecord(ctx, RecordPackage, key, data, version)
			if errors.Is(err, ErrExists) || errors.Is(err, engine.ErrConflict) || (version > 0 && errors.Is(err, engine.ErrNotFound)) {
				continue // another writer came between: take its version
			}
			if err != nil {
				return fmt.Errorf("package %s: %w", key, err)
			}
			break
		}
	}
	return nil
}

// ReadPackages returns the Packages stored in namespace, by name.
func ReadPackages(ctx context.Context, r Records, namespace string) ([]*cuev1alpha1.Package, error) {
	recs, err := r.Records(ctx, RecordPackage, namespace+"/")
	if err != nil {
		return nil, err
	}
	out := make([]*cuev1alpha1.Package, 0, len(recs))
	for _, rec := range recs {
		p := new(cuev1alpha1.Package)
		if err := json.Unmarshal(rec.Data, p); err != nil {
			return nil, fmt.Errorf("stored Package %s: %w", rec.Key, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// DeletePackage deletes the Package namespace/name; an error wrapping engine.ErrNotFound when
// there is none.
func DeletePackage(ctx context.Context, r Records, namespace, name string) error {
	return r.DeleteRecord(ctx, RecordPackage, packageKey(namespace, name))
}
