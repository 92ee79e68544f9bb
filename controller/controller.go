// Package controller drives WorkflowRun custom resources with the engine: a controller-runtime
// reconciler hands each changed run to the engine's work queue, the engine keeps the run in its
// status and context ConfigMap (store/kube), and the objects that waiting steps read are watched
// so that a change wakes the run at once instead of after a backoff.
package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
	kubestore "github.com/stepflow/stepflow/store/kube"
)

// Runner evaluates steps and conditions, and checks a run's steps before it starts.
type Runner interface {
	engine.StepRunner
	engine.ConditionEvaluator
	CheckSteps(ctx context.Context, namespace string, steps []v1alpha1.WorkflowStep, base *field.Path) field.ErrorList
}

// Options configure a Controller. Runner is required.
type Options struct {
	Runner Runner
	// Watches is the index of objects waiting steps read; the kube provider of Runner reports
	// reads into it. Nil means runs wait for their backoff.
	Watches *Watches
	// Workers is how many runs advance at once (--concurrent-reconciles).
	Workers int
	// MaxEvaluations bounds the step evaluations under way before runs to start wait
	// (engine.Options.MaxEvaluations, --max-evaluations).
	MaxEvaluations int
	// Retry and Wait are the engine's backoffs.
	Retry engine.RetryPolicy
	Wait  engine.Backoff
	// Limits bound what one run may hold (engine.Limits).
	Limits engine.Limits
	// Logger receives the controller's logs; discarded when nil.
	Logger *slog.Logger
}

// Controller is the WorkflowRun controller.
type Controller struct {
	store   *kubestore.Store
	cache   client.Reader
	engine  *engine.Engine
	watches *Watches
	log     *slog.Logger
}

// Setup registers the controller with a manager. The manager's cache must cover WorkflowRuns,
// Workflows, WorkflowStepDefinitions and the runs' context ConfigMaps (see CacheOptions); its
// scheme must know the core and core.oam.dev kinds (see NewScheme).
func Setup(mgr manager.Manager, opts Options) (*Controller, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	direct, err := client.New(mgr.GetConfig(), client.Options{
		Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper(), HTTPClient: mgr.GetHTTPClient(),
	})
	if err != nil {
		return nil, fmt.Errorf("API client: %w", err)
	}
	c := &Controller{
		store:   kubestore.New(kubestore.Options{Client: direct, Cache: mgr.GetCache()}),
		cache:   mgr.GetCache(),
		watches: opts.Watches,
		log:     opts.Logger,
	}
	c.engine = engine.New(engine.Options{
		Store:          c.store,
		Runner:         opts.Runner,
		Conditions:     opts.Runner,
		Workflows:      workflows{mgr.GetClient()},
		Observer:       c,
		Logger:         opts.Logger,
		Workers:        opts.Workers,
		MaxEvaluations: opts.MaxEvaluations,
		Retry:          opts.Retry,
		Wait:           opts.Wait,
		Limits:         opts.Limits,
		Check:          check(opts.Runner),
	})
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

// check vets a run before its first step starts: the run's own fields, then each step against
// its step type. A run that fails is marked failed with every problem and its field path.
func check(r Runner) func(ctx context.Context, run *engine.Run) error {
	return func(ctx context.Context, run *engine.Run) error {
		obj := run.Object
		errs := v1alpha1.ValidateWorkflowRun(obj)
		if len(errs) == 0 {
			base := field.NewPath("spec", "workflowSpec", "steps")
			if obj.Spec.WorkflowSpec == nil {
				base = field.NewPath("spec", "workflowRef")
			}
			errs = r.CheckSteps(ctx, obj.Namespace, run.Spec.Steps, base)
		}
		if len(errs) == 0 {
			return nil
		}
		msgs := make([]string, len(errs))
		for i, e := range errs {
			msgs[i] = e.Error()
		}
		return errors.New("invalid WorkflowRun: " + strings.Join(msgs, "; "))
	}
}

// workflows finds Workflow templates through the manager's cache.
type workflows struct{ r client.Reader }

// Workflow implements engine.Workflows.
func (w workflows) Workflow(ctx context.Context, namespace, name string) (*v1alpha1.Workflow, error) {
	var wf v1alpha1.Workflow
	if err := w.r.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, &wf); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("no Workflow %q in namespace %q", name, namespace)
		}
		return nil, err
	}
	return &wf, nil
}
