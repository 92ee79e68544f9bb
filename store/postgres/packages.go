package postgres

import (
	"context"

	cuev1alpha1 "github.com/stepflow/stepflow/api/cue/v1alpha1"
	"github.com/stepflow/stepflow/store"
)

// Packages returns the Packages stored in namespace (store.ReadPackages): what the catalog
// supplies to the definitions that import them.
func (s *Store) Packages(ctx context.Context, namespace string) ([]*cuev1alpha1.Package, error) {
	return store.ReadPackages(ctx, s, namespace)
}
