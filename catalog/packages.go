package catalog

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	cuev1alpha1 "github.com/stepflow/stepflow/api/cue/v1alpha1"
	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/step"
)

// PackageStore is a Store that also holds Package objects (the SQL stores do).
type PackageStore interface {
	// Packages returns the Packages stored in namespace.
	Packages(ctx context.Context, namespace string) ([]*cuev1alpha1.Package, error)
}

// stdRoots are the first elements of CUE's standard library's import paths, and vela, the
// registry's: an import under them is never a Package's, and costs no look-up.
var stdRoots = map[string]bool{
	"crypto": true, "encoding": true, "html": true, "list": true, "math": true, "net": true,
	"path": true, "regexp": true, "strconv": true, "strings": true, "struct": true, "text": true,
	"time": true, "tool": true, "uuid": true, "vela": true,
}

func external(path string) bool {
	root, _, _ := strings.Cut(path, "/")
	return !stdRoots[root]
}

// bundle returns template with the Packages it imports (and those they import) appended
// (step.Bundle), as seen from namespace: among the objects of the request at hand, then in the
// store, in namespace, then in vela-system. An import no Package declares is left for CUE to
// report.
func (c *Catalog) bundle(ctx context.Context, namespace, template string) (string, error) {
	queue := slices.Clone(c.externalImports(template)) // the queue grows: not the kept slice
	if len(queue) == 0 {
		return template, nil
	}
	var pkgs []step.ExternalPackage
	seen := map[string]bool{}
	for len(queue) > 0 {
		path := queue[0]
		queue = queue[1:]
		if seen[path] {
			continue
		}
		seen[path] = true
		p, err := c.findPackage(ctx, namespace, path)
		if err != nil {
			return "", err
		}
		if p == nil {
			continue
		}
		ep := ExternalPackage(p)
		pkgs = append(pkgs, ep)
		for _, f := range ep.Files {
			for _, imp := range step.Imports(f) {
				if external(imp) && !seen[imp] {
					queue = append(queue, imp)
				}
			}
		}
	}
	return step.Bundle(template, pkgs), nil
}

// maxImportsKept bounds the templates whose imports the catalog keeps (externalImports).
const maxImportsKept = 1024

// externalImports returns the imports of template that may be Packages', read once per
// template text: every evaluation of a step looks its template up, and reading the imports
// (a parse) costs ten times the rest of the look-up.
func (c *Catalog) externalImports(template string) []string {
	c.importsMu.Lock()
	imps, ok := c.imports[template]
	c.importsMu.Unlock()
	if ok {
		return imps
	}
	for _, p := range step.Imports(template) {
		if external(p) {
			imps = append(imps, p)
		}
	}
	c.importsMu.Lock()
	if c.imports == nil || len(c.imports) >= maxImportsKept {
		c.imports = map[string][]string{}
	}
	c.imports[template] = imps
	c.importsMu.Unlock()
	return imps
}

// ExternalPackage is what the step runtime takes of a Package.
func ExternalPackage(p *cuev1alpha1.Package) step.ExternalPackage {
	ep := step.ExternalPackage{Name: p.Name, Path: p.Spec.Path, Files: p.Spec.Templates}
	if p.Spec.Provider != nil {
		ep.Endpoint = p.Spec.Provider.Endpoint
	}
	for r := range strings.SplitSeq(p.Annotations[cuev1alpha1.AnnotationReads], ",") {
		if r = strings.TrimSpace(r); r != "" {
			ep.Reads = append(ep.Reads, r)
		}
	}
	return ep
}

// findPackage returns the Package of import path path seen from namespace, or nil.
func (c *Catalog) findPackage(ctx context.Context, namespace, path string) (*cuev1alpha1.Package, error) {
	objs := objectsOf(ctx)
	for _, ns := range []string{namespace, v1alpha1.SystemNamespace} {
		if objs != nil {
			for _, p := range objs.Packages {
				if p.Namespace == ns && p.Spec.Path == path {
					return p, nil
				}
			}
		}
		stored, err := c.storedPackages(ctx, ns)
		if err != nil {
			return nil, err
		}
		for _, p := range stored {
			if p.Spec.Path == path {
				return p, nil
			}
		}
	}
	return nil, nil
}

// storedPackages returns the Packages stored in namespace, kept for the catalog's ttl.
func (c *Catalog) storedPackages(ctx context.Context, namespace string) ([]*cuev1alpha1.Package, error) {
	ps, ok := c.store.(PackageStore)
	if !ok {
		return nil, nil
	}
	now := time.Now()
	if c.cache != nil {
		c.mu.Lock()
		e, ok := c.packages[namespace]
		c.mu.Unlock()
		if ok && now.Before(e.until) {
			return e.pkgs, nil
		}
	}
	pkgs, err := ps.Packages(ctx, namespace)
	if err != nil && !errors.Is(err, engine.ErrNotFound) {
		return nil, fmt.Errorf("reading the Packages of namespace %s: %w", namespace, err)
	}
	if c.cache != nil {
		c.mu.Lock()
		c.packages[namespace] = cachedPackages{pkgs: pkgs, until: now.Add(c.ttl)}
		c.mu.Unlock()
	}
	return pkgs, nil
}

type cachedPackages struct {
	pkgs  []*cuev1alpha1.Package
	until time.Time
}

// Packages lists the Packages seen from namespace, those of namespace before vela-system's of
// the same path: the request's objects, then the stored ones.
func (c *Catalog) Packages(ctx context.Context, namespace string) ([]*cuev1alpha1.Package, error) {
	var out []*cuev1alpha1.Package
	paths := map[string]bool{}
	objs := objectsOf(ctx)
	for _, ns := range []string{namespace, v1alpha1.SystemNamespace} {
		var all []*cuev1alpha1.Package
		if objs != nil {
			for _, p := range objs.Packages {
				if p.Namespace == ns {
					all = append(all, p)
				}
			}
		}
		stored, err := c.storedPackages(ctx, ns)
		if err != nil {
			return nil, err
		}
		for _, p := range append(all, stored...) {
			if !paths[p.Spec.Path] {
				paths[p.Spec.Path] = true
				out = append(out, p)
			}
		}
		if namespace == v1alpha1.SystemNamespace {
			break
		}
	}
	return out, nil
}
