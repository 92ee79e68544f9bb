// Package controller drives WorkflowRun custom resources with the engine: a controller-runtime
// reconciler hands each changed run to the engine's work queue, the engine keeps the run in its
// status and context ConfigMap (store/crd), and the objects that waiting steps read are watched
// so that a change wakes the run at once instead of after a backoff.
package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	cuev1alpha1 "github.com/stepflow/stepflow/api/cue/v1alpha1"
	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/api/v1beta1"
	"github.com/stepflow/stepflow/application"
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
	// Applications has the controller reconcile Application objects too (their CRDs must be
	// installed): a revision and a WorkflowRun for every change of the spec, the status written
	// back, what they applied deleted with them. Its Assembly.Providers.Clusters reaches the
	// clusters their objects are in.
	Applications bool
	// Schedules has the controller reconcile WorkflowSchedules too (their CRD must be
	// installed): a WorkflowRun at each firing of their cron schedules.
	Schedules bool
	// EventsListen, when not empty, is the address of the events listener: a CloudEvent POSTed
	// to /events/{namespace}/{name} starts a run of that WorkflowEventTrigger (its CRD must be
	// installed).
	EventsListen string
}

// Controller is the WorkflowRun controller.
type Controller struct {
	store *crdstore.Store
	// revisions keeps the revisions of Workflow templates as ControllerRevisions.
	revisions *crdstore.Revisions
	cache     client.Reader
	direct    client.Client
	engine    *engine.Engine
	// evaluator renders Applications and judges their health: the assembly's Runner.
	evaluator application.Evaluator
	// conditions evaluates the filters of WorkflowEventTriggers: the assembly's Runner.
	conditions conditions
	watches    *Watches
	log        *slog.Logger
	// retention says when finished runs are deleted; clock tells the time for it.
	retention engine.Retention
	clock     engine.Clock
	// finished hands the runs that finish to the reconciler, which deletes them when their
	// retention has passed; stopped is closed when the manager stops reading it.
	finished chan event.GenericEvent
	stopped  chan struct{}
	// handed are the runs handed to the reconciler that it has not yet seen finished in the
	// cache, which may lag behind the engine's write under load: it looks again a second later.
	handedMu sync.Mutex
	handed   map[engine.Key]bool
	// sweepNow asks the sweep of concurrency slots to look now (a run was deleted).
	sweepNow chan struct{}
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
		store:     crdstore.New(crdstore.Options{Client: direct, Cache: mgr.GetCache()}),
		revisions: &crdstore.Revisions{Client: direct, Workflows: mgr.GetCache()},
		cache:     mgr.GetCache(),
		direct:    direct,
		watches:   opts.Watches,
		log:       opts.Assembly.Logger,
		retention: opts.Assembly.Retention,
		clock:     opts.Assembly.Clock,
		finished:  make(chan event.GenericEvent),
		handed:    map[engine.Key]bool{},
		stopped:   make(chan struct{}),
		sweepNow:  make(chan struct{}, 1),
	}
	if c.clock == nil {
		c.clock = engine.RealClock{}
	}
	cfg := opts.Assembly
	if c.watches != nil {
		cfg.Providers.Reads = c.watches
	}
	a, err := assembly.New(cfg, assembly.Mode{
		Store:       c.store,
		Definitions: cachedDefinitions{r: mgr.GetCache(), revisions: c.revisions},
		Observers:   []engine.Observer{c},
		Cache:       &crdstore.StepCache{Client: direct},
		Slots:       newSlots(mgr.GetCache(), direct),
	})
	if err != nil {
		return nil, err
	}
	c.engine, c.evaluator, c.conditions = a.Engine, a.Runner, a.Runner
	if c.watches != nil {
		c.watches.wake = c.engine.Wake
		if err := mgr.Add(c.watches); err != nil {
			return nil, err
		}
	}
	if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		err := c.engine.Start(ctx)
		// The engine has stopped: the events it queued go out (for a few seconds at most).
		ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		a.Close(ectx)
		return err
	})); err != nil {
		return nil, err
	}
	if err := mgr.Add(manager.RunnableFunc(c.sweepSlots)); err != nil {
		return nil, err
	}
	if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		<-ctx.Done()
		close(c.stopped)
		return nil
	})); err != nil {
		return nil, err
	}
	err = builder.ControllerManagedBy(mgr).
		Named("workflowrun").
		For(&v1alpha1.WorkflowRun{}, builder.WithPredicates(predicate.Funcs{UpdateFunc: c.changedByOthers})).
		WatchesRawSource(source.Channel(c.finished, &handler.EnqueueRequestForObject{})).
		Complete(c)
	if err != nil {
		return nil, fmt.Errorf("set up the WorkflowRun controller: %w", err)
	}
	// A Workflow's revision is its generation: events that leave it (metadata) record nothing.
	err = builder.ControllerManagedBy(mgr).
		Named("workflow-revisions").
		For(&v1alpha1.Workflow{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Complete(reconcile.Func(c.recordRevision))
	if err != nil {
		return nil, fmt.Errorf("set up the Workflow revisions controller: %w", err)
	}
	if opts.Applications {
		if cfg.Providers.Clusters == nil {
			return nil, errors.New("set up the Application controller: Assembly.Providers.Clusters is required")
		}
		if err := c.setupApplications(mgr, cfg.Providers.Clusters); err != nil {
			return nil, err
		}
	}
	if opts.Schedules {
		if err := c.setupSchedules(mgr); err != nil {
			return nil, err
		}
	}
	if opts.EventsListen != "" {
		addr := opts.EventsListen
		// Every replica serves events, not only the leader: creating a run is safe from any.
		if err := mgr.Add(everyReplica(func(ctx context.Context) error { return c.serveEvents(ctx, addr) })); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// recordRevision keeps the Workflow's current generation as a revision (a ControllerRevision).
func (c *Controller) recordRevision(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	var wf v1alpha1.Workflow
	if err := c.cache.Get(ctx, req.NamespacedName, &wf); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err) // gone: its revisions go with it
	}
	created, err := c.revisions.Record(ctx, &wf)
	if err != nil {
		return reconcile.Result{}, err
	}
	if created {
		c.log.Info("kept a revision of a Workflow template", "workflow", req.String(), "revision", wf.Generation)
	}
	return reconcile.Result{}, nil
}

// changedByOthers drops the watch events of the controller's own status writes: the engine
// already holds what they contain.
func (c *Controller) changedByOthers(e event.UpdateEvent) bool {
	o := e.ObjectNew
	return !c.store.Own(engine.Key{Namespace: o.GetNamespace(), Name: o.GetName()}, o.GetResourceVersion())
}

// Reconcile implements reconcile.Reconciler: it hands the run to the engine, and deletes a
// finished run whose retention has passed (or looks again when it will have).
func (c *Controller) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	key := engine.Key{Namespace: req.Namespace, Name: req.Name}
	var wr v1alpha1.WorkflowRun
	err := c.cache.Get(ctx, req.NamespacedName, &wr)
	if apierrors.IsNotFound(err) {
		c.forget(key)
		c.deleted()
	}
	c.engine.Enqueue(key)
	if err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	c.handedMu.Lock()
	handed := c.handed[key]
	if wr.Status.Finished {
		delete(c.handed, key)
	}
	c.handedMu.Unlock()
	if !wr.Status.Finished {
		if handed {
			return reconcile.Result{RequeueAfter: time.Second}, nil // the cache has not seen it finish yet
		}
		return reconcile.Result{}, nil
	}
	if c.retention.Count > 0 {
		gone, err := c.keepNewest(ctx, &wr)
		if err != nil || gone {
			return reconcile.Result{}, err
		}
	}
	return c.expire(ctx, key, &wr)
}

// keepNewest deletes the finished runs of wr's template in its namespace (the runs with inline
// steps counting as one template, as in the SQL stores) that are not among the
// engine.Retention.Count that ended last; gone says that wr was one of them. The runs are
// listed from the cache, so only those of the controller's shard count.
func (c *Controller) keepNewest(ctx context.Context, wr *v1alpha1.WorkflowRun) (gone bool, err error) {
	var list v1alpha1.WorkflowRunList
	if err := c.cache.List(ctx, &list, client.InNamespace(wr.Namespace)); err != nil {
		return false, fmt.Errorf("list the runs of namespace %s: %w", wr.Namespace, err)
	}
	finished := slices.DeleteFunc(list.Items, func(o v1alpha1.WorkflowRun) bool {
		return !o.Status.Finished || o.Spec.WorkflowRef != wr.Spec.WorkflowRef
	})
	if len(finished) <= c.retention.Count {
		return false, nil
	}
	ended := func(o *v1alpha1.WorkflowRun) time.Time { return engine.Ended(&engine.Run{Object: o}) }
	slices.SortFunc(finished, func(a, b v1alpha1.WorkflowRun) int {
		if n := ended(&b).Compare(ended(&a)); n != 0 {
			return n
		}
		return strings.Compare(b.Name, a.Name)
	})
	for i := c.retention.Count; i < len(finished); i++ {
		o := &finished[i]
		if err := c.remove(ctx, o); errors.Is(err, errChanged) {
			continue // restarted since: kept, and counted again when it finishes
		} else if err != nil {
			return false, fmt.Errorf("delete run %s/%s beyond the runs kept: %w", o.Namespace, o.Name, err)
		}
		c.log.Info("deleted a finished run beyond the runs kept of its template", "run", engine.Key{Namespace: o.Namespace, Name: o.Name},
			"template", o.Spec.WorkflowRef, "kept", c.retention.Count)
		gone = gone || o.Name == wr.Name
	}
	return gone, nil
}

// forget drops what the controller holds of a run that is gone.
func (c *Controller) forget(key engine.Key) {
	c.handedMu.Lock()
	delete(c.handed, key)
	c.handedMu.Unlock()
	c.store.Forget(key)
	if c.watches != nil {
		c.watches.Forget(key)
	}
}

// expire deletes the finished run wr, with its context ConfigMap and the ConfigMaps of its large
// variables, once its retention
// (engine.Retention.ExpiresAt: its own TTL, its template's, or the controller's --retain) has
// passed, and otherwise asks to be called again then. The delete is conditional on the
// resourceVersion read, so that a run restarted meanwhile is kept.
func (c *Controller) expire(ctx context.Context, key engine.Key, wr *v1alpha1.WorkflowRun) (reconcile.Result, error) {
	run, err := c.store.Load(ctx, key)
	if err != nil {
		return reconcile.Result{}, fmt.Errorf("run %s: %w", key, err)
	}
	at := c.retention.ExpiresAt(run)
	if at.IsZero() {
		return reconcile.Result{}, nil
	}
	if wait := at.Sub(c.clock.Now()); wait > 0 {
		return reconcile.Result{RequeueAfter: wait}, nil
	}
	if err := c.remove(ctx, wr); errors.Is(err, errChanged) {
		return reconcile.Result{RequeueAfter: time.Second}, nil // changed since: look again
	} else if err != nil {
		return reconcile.Result{}, fmt.Errorf("delete run %s past its retention: %w", key, err)
	}
	c.log.Info("deleted a finished run past its retention", "run", key, "expired", at)
	return reconcile.Result{}, nil
}

// errChanged is remove's answer for a run that changed since it was read: it is kept.
var errChanged = errors.New("the run changed since it was read")

// remove deletes the run wr as it was read (its UID and resourceVersion), then its context
// ConfigMap and its large values' ConfigMaps, and forgets it. A run changed since (restarted, say) is kept: errChanged.
func (c *Controller) remove(ctx context.Context, wr *v1alpha1.WorkflowRun) error {
	err := c.direct.Delete(ctx, wr, client.Preconditions{UID: &wr.UID, ResourceVersion: &wr.ResourceVersion})
	switch {
	case apierrors.IsConflict(err):
		return errChanged
	case err != nil && !apierrors.IsNotFound(err):
		return err
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: wr.Namespace, Name: crdstore.ContextName(wr.Name)}}
	if err := c.direct.Delete(ctx, cm); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete the context of run %s/%s: %w", wr.Namespace, wr.Name, err)
	}
	key := engine.Key{Namespace: wr.Namespace, Name: wr.Name}
	if err := crdstore.DeleteBlobs(ctx, c.direct, key); err != nil {
		return err
	}
	c.forget(key)
	return nil
}

// RunChanged implements engine.Observer: a finished run needs no watches, and is handed to
// the reconciler, which deletes it when its retention has passed.
func (c *Controller) RunChanged(run *engine.Run) {
	if !run.Object.Status.Finished {
		return
	}
	if c.watches != nil {
		c.watches.Forget(run.Key())
	}
	if c.retention.Count > 0 {
		// The reconciler deletes the runs of its template beyond the count: after a second,
		// when the cache has seen this one finish.
		c.handOver(run, time.Second)
	}
	if at := c.retention.ExpiresAt(run); !at.IsZero() {
		c.handOver(run, at.Sub(c.clock.Now()))
	}
}

// handOver hands the finished run to the reconciler after d, not now: the cache has seen the
// run finish by then, so the reconciler's look at it costs no request. A controller restarted
// meanwhile finds it among the runs it reconciles as it starts.
func (c *Controller) handOver(run *engine.Run, d time.Duration) {
	obj := &v1alpha1.WorkflowRun{ObjectMeta: metav1.ObjectMeta{Namespace: run.Object.Namespace, Name: run.Object.Name}}
	c.clock.AfterFunc(d, func() {
		c.handedMu.Lock()
		c.handed[engine.Key{Namespace: obj.Namespace, Name: obj.Name}] = true
		c.handedMu.Unlock()
		select { // the observer must not wait for the reconciler
		case c.finished <- event.GenericEvent{Object: obj}:
		case <-c.stopped:
		}
	})
}

// Engine is the engine the controller drives, for operations and tests.
func (c *Controller) Engine() *engine.Engine { return c.engine }

// cachedDefinitions finds the stored step types and Workflow templates through the manager's
// cache, so that a look-up costs no request, and the templates' past revisions through
// revisions; the catalog adds vela-system and the built-ins.
type cachedDefinitions struct {
	r         client.Reader
	revisions *crdstore.Revisions
}

// WorkflowAt implements the catalog's revision store (engine.WorkflowRevisions): revision rev
// of the Workflow namespace/name, from its ControllerRevision.
func (d cachedDefinitions) WorkflowAt(ctx context.Context, namespace, name string, rev int64) (*v1alpha1.Workflow, error) {
	return d.revisions.WorkflowAt(ctx, namespace, name, rev)
}

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

// Packages implements catalog.PackageStore: the Package objects of namespace, from the cache.
// A cluster without the Package CRD (config/crd/cue.oam.dev_packages.yaml) has none.
func (d cachedDefinitions) Packages(ctx context.Context, namespace string) ([]*cuev1alpha1.Package, error) {
	var list cuev1alpha1.PackageList
	if err := d.r.List(ctx, &list, client.InNamespace(namespace)); err != nil {
		if meta.IsNoMatchError(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("listing the Packages of namespace %s: %w", namespace, err)
	}
	out := make([]*cuev1alpha1.Package, len(list.Items))
	for i := range list.Items {
		out[i] = &list.Items[i]
	}
	return out, nil
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
