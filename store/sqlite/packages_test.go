package sqlite_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	cuev1alpha1 "github.com/stepflow/stepflow/api/cue/v1alpha1"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/store"
	"github.com/stepflow/stepflow/store/sqlite"
)

// Packages are kept as records: stored, replaced, listed by namespace, deleted, and still
// there after the store is opened again.
func TestPackagesRoundTrip(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "stepflow.db")
	st, err := sqlite.Open(ctx, sqlite.Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	pkg := func(ns, name, endpoint string) *cuev1alpha1.Package {
		return &cuev1alpha1.Package{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: cuev1alpha1.PackageSpec{
			Path: "ext/" + name, Templates: map[string]string{"a.cue": "package " + name + "\n"},
			Provider: &cuev1alpha1.Provider{Protocol: "http", Endpoint: endpoint}}}
	}
	if err := store.PutPackages(ctx, st, []*cuev1alpha1.Package{pkg("a", "one", "http://old"), pkg("a", "two", "http://two"), pkg("ab", "three", "http://three")}); err != nil {
		t.Fatal(err)
	}
	if err := store.PutPackages(ctx, st, []*cuev1alpha1.Package{pkg("a", "one", "http://new")}); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if st, err = sqlite.Open(ctx, sqlite.Options{Path: path}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Error(err)
		}
	})
	got, err := st.Packages(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Name != "one" || got[0].Spec.Provider.Endpoint != "http://new" || got[1].Name != "two" {
		t.Fatalf("namespace a holds %+v; want one (replaced) and two, not namespace ab's", got)
	}
	if err := store.DeletePackage(ctx, st, "a", "one"); err != nil {
		t.Fatal(err)
	}
	if err := store.DeletePackage(ctx, st, "a", "one"); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("deleting it again: %v, want ErrNotFound", err)
	}
	if got, _ := st.Packages(ctx, "a"); len(got) != 1 || got[0].Name != "two" {
		t.Errorf("after the delete: %+v", got)
	}
}
