// Package controller drives WorkflowRun custom resources with the engine: a controller-runtime
// reconciler hands each changed run to the engine's work queue, the engine keeps the run in its
// status and context ConfigMap (store/crd), and the objects that waiting steps read are watched
// so that a change wakes the run at once instead of after a backoff.
package controller

import (
	"context"
	"fmt"
	"log/slog"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/api/v1beta1"
	"github.com/stepflow/stepflow/assembly"
	"github.com/stepflow/stepflow/engine"
	crdstore "github.com/stepflow/stepflow/store/crd"
)

// Options configure a Controller; the zero value works.
type Options struct {
	// Assembly is the engine's, the step runtime's and the providers' configuration, as in
	// every mode; the controller sets its Providers.Reads to Watches. Its Providers.Clusters
	// should resolve the clusters steps name (cluster.Registry over the manager's client).
	Assembly assembly.Config
	// Watches is the index of objects waiting steps read; the kube provider reports reads into
	// it. Nil means runs wait for their backoff.
	Watches *Watches
}

// Controller is the WorkflowRun controller.
type Controller struct {
	store   *crdstore.Store
	cache   client.Reader
	engine  *engine.Engine
	watches *Watches
	log     *slog.Logger
}

// Setup registers the controller with a manager. The manager's cache must cover WorkflowRuns,
// Workflows, WorkflowStepDefinitions and the runs' context ConfigMaps (see CacheOptions); its
// scheme must know the core and core.oam.dev kinds (see NewScheme).
func Setup(mgr manager.Manager, opts Options) (*Controller, error) {
	if opts.Assembly.Logger == nil {
		opts.Assembly.Logger = slog.New(slog.DiscardHandler)
	}
	direct, err := client.New(mgr.GetConfig(), client.Options{
		Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper(), HTTPClient: mgr.GetHTTPClient(),
	})
	if err != nil {
		return nil, fmt.Errorf("API client: %w", err)
	}
	c := &Controller{
		store:   crdstore.New(crdstore.Options{Client: direct, Cache: mgr.GetCache()}),
		cache:   mgr.GetCache(),
		watches: opts.Watches,
		log:     opts.Assembly.Logger,
	}
	cfg := opts.Assembly
	if c.watches != nil {
		cfg.Providers.Reads = c.watches
	}
	a, err := assembly.New(cfg, assembly.Mode{
		Store:       c.store,
		Definitions: cachedDefinitions{mgr.GetCache()},
		Observers:   []engine.Observer{c},
	})
	if err != nil {
		return nil, err
	}
	c.engine = a.Engine
	if c.watches != nil {
		c.watches.wake = c.engine.Wake
		if err := mgr.Add(c.watches); err != nil {
			return nil, err
		}
	}
	if err := mgr.Add(manager.RunnableFunc(c.engine.Start)); err != nil {
		return nil, err
	}
	err = builder.ControllerManagedBy(mgr).
		Named("workflowrun").
		For(&v1alpha1.WorkflowRun{}, builder.WithPredicates(predicate.Funcs{UpdateFunc: c.changedByOthers})).
		Complete(c)
	if err != nil {
		return nil, fmt.Errorf("set up the WorkflowRun controller: %w", err)
	}
	return c, nil
}

// changedByOthers drops the watch events of the controller's own status writes: the engine
// already holds what they contain.
func (c *Controller) changedByOthers(e event.UpdateEvent) bool {
	o := e.ObjectNew
	return !c.store.Own(engine.Key{Namespace: o.GetNamespace(), Name: o.GetName()}, o.GetResourceVersion())
}

// Reconcile implements reconcile.Reconciler: it hands the run to the engine.
func (c *Controller) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	key := engine.Key{Namespace: req.Namespace, Name: req.Name}
	var wr v1alpha1.WorkflowRun
	err := c.cache.Get(ctx, req.NamespacedName, &wr)
	if apierrors.IsNotFound(err) {
		c.store.Forget(key)
		if c.watches != nil {
			c.watches.Forget(key)
		}
	}
	c.engine.Enqueue(key)
	return reconcile.Result{}, nil
}

// RunChanged implements engine.Observer: a finished run needs no watches.
func (c *Controller) RunChanged(run *engine.Run) {
	if run.Object.Status.Finished && c.watches != nil {
		c.watches.Forget(run.Key())
	}
}

// Engine is the engine the controller drives, for operations and tests.
func (c *Controller) Engine() *engine.Engine { return c.engine }

// cachedDefinitions finds the stored step types and Workflow templates through the manager's
// cache, so that a look-up costs no request; the catalog adds vela-system and the built-ins.
type cachedDefinitions struct{ r client.Reader }

// Template implements catalog.Store: the template of the WorkflowStepDefinition namespace/typ.
func (d cachedDefinitions) Template(ctx context.Context, namespace, typ string) (string, error) {
	var def v1beta1.WorkflowStepDefinition
	if err := d.r.Get(ctx, client.ObjectKey{Namespace: namespace, Name: typ}, &def); err != nil {
		if apierrors.IsNotFound(err) {
			return "", fmt.Errorf("WorkflowStepDefinition %s/%s: %w", namespace, typ, engine.ErrNotFound)
		}
		return "", fmt.Errorf("step type %q: %w", typ, err)
	}
	if def.Spec.Schematic == nil || def.Spec.Schematic.CUE == nil {
		return "", fmt.Errorf("step type %q: WorkflowStepDefinition %s/%s has no spec.schematic.cue.template", typ, namespace, typ)
	}
	return def.Spec.Schematic.CUE.Template, nil
}

// Workflow implements catalog.Store: the Workflow template namespace/name.
func (d cachedDefinitions) Workflow(ctx context.Context, namespace, name string) (*v1alpha1.Workflow, error) {
	var wf v1alpha1.Workflow
	if err := d.r.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, &wf); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("no Workflow %q in namespace %q: %w", name, namespace, engine.ErrNotFound)
		}
		return nil, err
	}
	return &wf, nil
}
