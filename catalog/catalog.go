// Package catalog finds what a run's steps refer to, step types and Workflow templates, as
// KubeVela does (the run's namespace, then vela-system, then the built-in step types), and
// checks runs, templates and definitions against them before anything runs. The CLI and the
// server check with it, so that `stepflow vet` and the API give the same messages.
package catalog

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/definitions"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/manifest"
	"github.com/stepflow/stepflow/step"
)

// Store is where stored step types and templates are found. Both return an error wrapping
// engine.ErrNotFound for what is not stored.
type Store interface {
	Template(ctx context.Context, namespace, typ string) (string, error)
	Workflow(ctx context.Context, namespace, name string) (*v1alpha1.Workflow, error)
}

// Catalog looks step types and templates up: first among the objects of the request at hand
// (WithObjects), then in the store, then among the built-ins.
type Catalog struct {
	store Store
	// limits bound the loops of the runs and templates Check checks.
	limits engine.Limits
	ttl    time.Duration
	mu     sync.Mutex
	cache  map[[2]string]cached
	// refuse, when set, is what a step may not be here (RefuseSteps).
	refuse func(*v1alpha1.WorkflowStepBase) error
	// packages are the Packages of each namespace as found in the store (when cache is set).
	packages map[string]cachedPackages
	// imports are the imports that may be Packages' of the templates looked up, by text.
	importsMu sync.Mutex
	imports   map[string][]string
}

// RefuseSteps makes Check and CheckRun refuse every step f returns an error for, at the step's
// type, with f's message: a step type the operator did not allow (vela/run's local commands
// without --allow-local-run). Call it before the catalog is used.
func (c *Catalog) RefuseSteps(f func(*v1alpha1.WorkflowStepBase) error) { c.refuse = f }

// cached is a step type's template as looked up in the store ("" when none is stored), and
// until when it may be used.
type cached struct {
	template string
	until    time.Time
}

// New returns a catalog over store; a nil store has nothing stored. Check refuses loops of
// more items than limits allow (engine.Limits.CheckLoops), as the engine would.
func New(store Store, limits engine.Limits) *Catalog {
	return &Catalog{store: store, limits: limits}
}

// NewCached returns a catalog that keeps what it found in the store for ttl: a step type
// stored or changed by another process is seen within ttl, and one changed through this
// process at once if it calls Invalidate. A server evaluating many runs saves two store
// queries per step this way.
func NewCached(store Store, ttl time.Duration, limits engine.Limits) *Catalog {
	return &Catalog{store: store, limits: limits, ttl: ttl, cache: map[[2]string]cached{}, packages: map[string]cachedPackages{}}
}

// Invalidate forgets what the catalog keeps: a step type was stored or deleted.
func (c *Catalog) Invalidate() {
	if c.cache == nil {
		return
	}
	c.mu.Lock()
	clear(c.cache)
	clear(c.packages)
	c.mu.Unlock()
}

// stored returns the template of namespace/typ in the store, "" when none is stored.
func (c *Catalog) stored(ctx context.Context, namespace, typ string) (string, error) {
	key := [2]string{namespace, typ}
	now := time.Now()
	if c.cache != nil {
		c.mu.Lock()
		e, ok := c.cache[key]
		c.mu.Unlock()
		if ok && now.Before(e.until) {
			return e.template, nil
		}
	}
	t, err := c.store.Template(ctx, namespace, typ)
	if err != nil && !errors.Is(err, engine.ErrNotFound) {
		return "", err
	}
	if c.cache != nil {
		c.mu.Lock()
		c.cache[key] = cached{template: t, until: now.Add(c.ttl)}
		c.mu.Unlock()
	}
	return t, nil
}

type objectsKey struct{}

// WithObjects returns a context under which the catalog also sees the step types and
// templates of objs, before the stored ones: those of files being vetted or of a request
// being checked, not stored yet.
func WithObjects(ctx context.Context, objs *manifest.Objects) context.Context {
	return context.WithValue(ctx, objectsKey{}, objs)
}

func objectsOf(ctx context.Context) *manifest.Objects {
	objs, _ := ctx.Value(objectsKey{}).(*manifest.Objects)
	return objs
}

// Template implements step.Definitions: the CUE template of step type typ as seen from
// namespace, with the Packages it imports bundled (step.Bundle).
func (c *Catalog) Template(ctx context.Context, namespace, typ string) (string, error) {
	t, err := c.template(ctx, namespace, typ)
	if err != nil {
		return "", err
	}
	return c.bundle(ctx, namespace, t)
}

// template is the CUE template of step type typ as seen from namespace.
func (c *Catalog) template(ctx context.Context, namespace, typ string) (string, error) {
	objs := objectsOf(ctx)
	for _, ns := range []string{namespace, v1alpha1.SystemNamespace} {
		if objs != nil {
			for _, d := range objs.Definitions {
				if d.Namespace == ns && d.Name == typ && d.Spec.Schematic != nil && d.Spec.Schematic.CUE != nil {
					return d.Spec.Schematic.CUE.Template, nil
				}
			}
		}
		if c.store != nil {
			t, err := c.stored(ctx, ns, typ)
			if err != nil {
				return "", err
			}
			if t != "" {
				return t, nil
			}
		}
	}
	if t, ok := definitions.Template(typ); ok {
		return t, nil
	}
	return "", fmt.Errorf("step type %q: %w (looked in namespace %q, %s and the built-ins)", typ, step.ErrUnknownType, namespace, v1alpha1.SystemNamespace)
}

// Workflow implements engine.Workflows: the template namespace/name, or an error wrapping
// engine.ErrNotFound.
func (c *Catalog) Workflow(ctx context.Context, namespace, name string) (*v1alpha1.Workflow, error) {
	if objs := objectsOf(ctx); objs != nil {
		for _, wf := range objs.Workflows {
			if wf.Namespace == namespace && wf.Name == name {
				return wf, nil
			}
		}
	}
	if c.store != nil {
		wf, err := c.store.Workflow(ctx, namespace, name)
		if err == nil || !errors.Is(err, engine.ErrNotFound) {
			return wf, err
		}
	}
	return nil, &missingWorkflow{namespace: namespace, name: name}
}

// revisionStore is a Store that keeps templates' past revisions (the SQL stores; the
// controller's, as ControllerRevisions).
type revisionStore interface {
	WorkflowAt(ctx context.Context, namespace, name string, rev int64) (*v1alpha1.Workflow, error)
}

// WorkflowAt implements engine.WorkflowRevisions: revision rev of the stored template
// namespace/name, or an error wrapping engine.ErrNotFound. A store that keeps no revisions
// has none.
func (c *Catalog) WorkflowAt(ctx context.Context, namespace, name string, rev int64) (*v1alpha1.Workflow, error) {
	revs, ok := c.store.(revisionStore)
	if !ok {
		return nil, fmt.Errorf("revision %d of Workflow %s/%s: revisions are not kept here: %w", rev, namespace, name, engine.ErrNotFound)
	}
	return revs.WorkflowAt(ctx, namespace, name, rev)
}

// missingWorkflow is the error of a template that is nowhere; it is an engine.ErrNotFound.
type missingWorkflow struct{ namespace, name string }

func (e *missingWorkflow) Error() string {
	return fmt.Sprintf("no Workflow %q in namespace %q", e.name, e.namespace)
}

func (e *missingWorkflow) Is(target error) bool { return target == engine.ErrNotFound }
