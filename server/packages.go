package server

import (
	"errors"
	"net/http"
	"strings"

	cuev1alpha1 "github.com/stepflow/stepflow/api/cue/v1alpha1"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/step"
	"github.com/stepflow/stepflow/store"
)

// packageSummary is a Package in a list: where definitions import it from, its provider and
// the actions it declares.
type packageSummary struct {
	Namespace string   `json:"namespace"`
	Name      string   `json:"name"`
	Path      string   `json:"path"`
	Endpoint  string   `json:"endpoint,omitempty"`
	Actions   []string `json:"actions"`
}

func (s *Server) listPackages(w http.ResponseWriter, r *http.Request) error {
	ns := r.URL.Query().Get("namespace")
	var namespaces []string
	if ns != "" {
		namespaces = []string{ns}
	} else {
		recs, err := s.store.Records(r.Context(), store.RecordPackage, "")
		if err != nil {
			return err
		}
		seen := map[string]bool{}
		for _, rec := range recs {
			if n, _, ok := strings.Cut(rec.Key, "/"); ok && !seen[n] {
				seen[n] = true
				namespaces = append(namespaces, n)
			}
		}
	}
	id := identityOf(r.Context())
	items := []packageSummary{}
	for _, n := range namespaces {
		if !id.sees(n) {
			continue
		}
		pkgs, err := store.ReadPackages(r.Context(), s.store, n)
		if err != nil {
			return err
		}
		for _, p := range pkgs {
			items = append(items, summarize(p))
		}
	}
	writeJSON(w, http.StatusOK, listOf[packageSummary]{Items: items})
	return nil
}

func summarize(p *cuev1alpha1.Package) packageSummary {
	sum := packageSummary{Namespace: p.Namespace, Name: p.Name, Path: p.Spec.Path, Actions: []string{}}
	if p.Spec.Provider != nil {
		sum.Endpoint = p.Spec.Provider.Endpoint
	}
	for _, a := range step.PackageActions(p.Spec.Templates) {
		sum.Actions = append(sum.Actions, a.Name)
	}
	return sum
}

func (s *Server) getPackage(w http.ResponseWriter, r *http.Request) error {
	ns, name := r.PathValue("namespace"), r.PathValue("name")
	if err := seesOrNotFound(r.Context(), "package", ns, name); err != nil {
		return err
	}
	pkgs, err := store.ReadPackages(r.Context(), s.store, ns)
	if err != nil {
		return err
	}
	for _, p := range pkgs {
		if p.Name == name {
			p.APIVersion, p.Kind = cuev1alpha1.GroupVersion.String(), cuev1alpha1.KindPackage
			writeJSON(w, http.StatusOK, p)
			return nil
		}
	}
	return errorf(http.StatusNotFound, "package %s/%s: not found", ns, name)
}

func (s *Server) putPackage(w http.ResponseWriter, r *http.Request) error {
	if err := seesOrNotFound(r.Context(), "package", r.PathValue("namespace"), r.PathValue("name")); err != nil {
		return err
	}
	objs, err := s.decodeObjects(r)
	if err != nil {
		return err
	}
	if len(objs.Packages) != 1 || len(objs.Definitions)+len(objs.Runs)+len(objs.Workflows)+len(objs.Delivery()) > 0 {
		return errorf(http.StatusBadRequest, "the body must be one Package (apiVersion %s)", cuev1alpha1.GroupVersion)
	}
	p := objs.Packages[0]
	if p.Namespace != r.PathValue("namespace") || p.Name != r.PathValue("name") {
		return errorf(http.StatusBadRequest, "the body is package %s/%s, the path names %s/%s", p.Namespace, p.Name, r.PathValue("namespace"), r.PathValue("name"))
	}
	err = store.PutPackages(r.Context(), s.store, []*cuev1alpha1.Package{p})
	s.catalog.Invalidate()
	if err != nil {
		return err
	}
	p.APIVersion, p.Kind = cuev1alpha1.GroupVersion.String(), cuev1alpha1.KindPackage
	writeJSON(w, http.StatusOK, p)
	return nil
}

func (s *Server) deletePackage(w http.ResponseWriter, r *http.Request) error {
	ns, name := r.PathValue("namespace"), r.PathValue("name")
	if err := seesOrNotFound(r.Context(), "package", ns, name); err != nil {
		return err
	}
	err := store.DeletePackage(r.Context(), s.store, ns, name)
	s.catalog.Invalidate()
	if errors.Is(err, engine.ErrNotFound) {
		return errorf(http.StatusNotFound, "package %s/%s: not found", ns, name)
	}
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
