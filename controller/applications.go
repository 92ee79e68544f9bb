package controller

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlcontroller "sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/api/v1beta1"
	"github.com/stepflow/stepflow/application"
	"github.com/stepflow/stepflow/definitions"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/lifecycle"
	"github.com/stepflow/stepflow/store"
	crdstore "github.com/stepflow/stepflow/store/crd"
)

// FinalizerResourceTracker is the finalizer that keeps an Application until what it applied
// is deleted, as KubeVela names it.
const FinalizerResourceTracker = "app.oam.dev/resource-tracker-finalizer"

// Annotations of the ApplicationRevisions the controller writes.
const (
	// AnnotationRun names the WorkflowRun delivering the revision.
	AnnotationRun = "app.oam.dev/workflow-run"
)

// unhealthyRecheck is how soon an Application delivered but not healthy yet is looked at again:
// the objects its health is read from are not watched.
const unhealthyRecheck = 2 * time.Second

// appReconciler reconciles Application objects: a new ApplicationRevision and a WorkflowRun
// owned by the Application for every change of its spec, the status written back, and a
// finalizer that deletes what it applied when it is deleted.
type appReconciler struct {
	direct   client.Client
	cache    client.Reader
	clusters lifecycle.Clusters
	runs     *Controller
	log      *slog.Logger
	// rendered keeps the components health renders across reconciles.
	rendered lifecycle.Rendered
	// written are the controller's own writes of Applications, revisions and trackers.
	written *written
}

// appWorkers is how many Applications are reconciled at once: each reconcile renders CUE and
// waits on the API server.
const appWorkers = 8

// setupApplications registers the Application reconciler with the manager.
func (c *Controller) setupApplications(mgr manager.Manager, clusters lifecycle.Clusters) error {
	r := &appReconciler{direct: c.direct, cache: mgr.GetCache(), clusters: clusters, runs: c, log: c.log, written: newWritten()}
	err := builder.ControllerManagedBy(mgr).
		Named("application").
		// The controller's own writes (the finalizer, the status) are made by a reconcile that
		// goes on with what it wrote: their watch events would only reconcile it again.
		For(&v1beta1.Application{}, builder.WithPredicates(predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
			return !r.written.ownApp(client.ObjectKeyFromObject(e.ObjectNew), e.ObjectNew.GetResourceVersion())
		}})).
		Owns(&v1alpha1.WorkflowRun{}).
		WithOptions(ctrlcontroller.Options{MaxConcurrentReconciles: appWorkers}).
		Complete(r)
	if err != nil {
		return fmt.Errorf("set up the Application controller: %w", err)
	}
	return nil
}

// Reconcile implements reconcile.Reconciler; an error is logged before controller-runtime
// retries.
func (r *appReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	res, err := r.reconcile(ctx, req)
	if err != nil {
		r.log.Error("reconcile application", "application", req.String(), "err", err)
	}
	return res, err
}

func (r *appReconciler) reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	var app v1beta1.Application
	if err := r.cache.Get(ctx, req.NamespacedName, &app); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	m := &lifecycle.Manager{Store: &kubeApps{c: r.direct, cache: r.cache, written: r.written}, Runs: &kubeRuns{c: r.direct, ctrl: r.runs, owner: &app}, Clusters: r.clusters, Rendered: &r.rendered, Evaluator: r.runs.evaluator}
	if !app.DeletionTimestamp.IsZero() {
		if !controllerutil.ContainsFinalizer(&app, FinalizerResourceTracker) {
			return reconcile.Result{}, nil
		}
		if err := m.Delete(ctx, app.Namespace, app.Name); err != nil && !errors.Is(err, engine.ErrNotFound) {
			return reconcile.Result{}, err
		}
		return reconcile.Result{}, nil
	}
	if !controllerutil.ContainsFinalizer(&app, FinalizerResourceTracker) {
		patch := client.MergeFrom(app.DeepCopy())
		controllerutil.AddFinalizer(&app, FinalizerResourceTracker)
		if err := r.direct.Patch(ctx, &app, patch); err != nil {
			return reconcile.Result{}, fmt.Errorf("add the finalizer to %s/%s: %w", app.Namespace, app.Name, err)
		}
		r.written.app(&app)
	}
	defs := &kubeDefinitions{r: r.cache, builtin: application.NewSet().Add(definitions.Components(), definitions.Traits(), definitions.Policies())}
	up, err := m.Up(ctx, &app, defs)
	if err != nil {
		if errors.Is(err, lifecycle.ErrUndeliverable) {
			return reconcile.Result{}, r.failed(ctx, &app, err)
		}
		return reconcile.Result{}, err
	}
	if up.Run != nil {
		// A run just started has nothing to sync yet: its creation and its status changes
		// reconcile the Application (it owns the run).
		return reconcile.Result{}, nil
	}
	synced, err := m.Sync(ctx, app.Namespace, app.Name)
	if err != nil {
		return reconcile.Result{}, err
	}
	if synced.Status.Phase == v1beta1.ApplicationUnhealthy {
		return reconcile.Result{RequeueAfter: unhealthyRecheck}, nil
	}
	return reconcile.Result{}, nil
}

// failed records in the Application's status that it cannot be delivered, unless it says so
// already.
func (r *appReconciler) failed(ctx context.Context, app *v1beta1.Application, cause error) error {
	msg := cause.Error()
	if app.Status.Phase == v1beta1.ApplicationWorkflowFailed && app.Status.Workflow != nil && app.Status.Workflow.Message == msg {
		return nil
	}
	app.Status.Phase = v1beta1.ApplicationWorkflowFailed
	if app.Status.Workflow == nil {
		app.Status.Workflow = &v1beta1.WorkflowStatus{}
	}
	app.Status.Workflow.Message = msg
	if err := r.direct.Status().Update(ctx, app); err != nil {
		return err
	}
	r.written.app(app)
	return nil
}

// kubeDefinitions finds X-Definitions as KubeVela does: in the Application's namespace, then
// vela-system, then the built-ins.
type kubeDefinitions struct {
	r       client.Reader
	builtin *application.Set
}

func findDefinition[T client.Object](ctx context.Context, r client.Reader, namespace, name string, obj T) (bool, error) {
	for _, ns := range []string{namespace, v1alpha1.SystemNamespace} {
		err := r.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, obj)
		if err == nil {
			return true, nil
		}
		if !apierrors.IsNotFound(err) {
			return false, err
		}
	}
	return false, nil
}

// ComponentDefinition implements lifecycle.Definitions.
func (d *kubeDefinitions) ComponentDefinition(ctx context.Context, namespace, name string) (*v1beta1.ComponentDefinition, error) {
	var def v1beta1.ComponentDefinition
	if ok, err := findDefinition(ctx, d.r, namespace, name, &def); ok || err != nil {
		return &def, err
	}
	return d.builtin.ComponentDefinition(ctx, namespace, name)
}

// TraitDefinition implements lifecycle.Definitions.
func (d *kubeDefinitions) TraitDefinition(ctx context.Context, namespace, name string) (*v1beta1.TraitDefinition, error) {
	var def v1beta1.TraitDefinition
	if ok, err := findDefinition(ctx, d.r, namespace, name, &def); ok || err != nil {
		return &def, err
	}
	return d.builtin.TraitDefinition(ctx, namespace, name)
}

// PolicyDefinition implements lifecycle.Definitions.
func (d *kubeDefinitions) PolicyDefinition(ctx context.Context, namespace, name string) (*v1beta1.PolicyDefinition, error) {
	var def v1beta1.PolicyDefinition
	if ok, err := findDefinition(ctx, d.r, namespace, name, &def); ok || err != nil {
		return &def, err
	}
	return d.builtin.PolicyDefinition(ctx, namespace, name)
}

// kubeRuns are the delivery runs as WorkflowRun objects owned by their Application, driven by
// the WorkflowRun controller.
type kubeRuns struct {
	c     client.Client
	ctrl  *Controller
	owner *v1beta1.Application
}

// Start implements lifecycle.Runs: the run is owned by the Application and carries its shard.
func (k *kubeRuns) Start(ctx context.Context, run *v1alpha1.WorkflowRun) error {
	run = run.DeepCopy()
	if shard := k.owner.Labels[ShardLabel]; shard != "" {
		run.Labels[ShardLabel] = shard
	}
	run.OwnerReferences = []metav1.OwnerReference{{
		APIVersion: v1beta1.GroupVersion.String(), Kind: v1beta1.KindApplication,
		Name: k.owner.Name, UID: k.owner.UID, Controller: new(true), BlockOwnerDeletion: new(true),
	}}
	if err := k.c.Create(ctx, run); err != nil {
		return fmt.Errorf("create WorkflowRun %s/%s: %w", run.Namespace, run.Name, err)
	}
	return nil
}

// Run implements lifecycle.Runs: the WorkflowRun, and its variables from its context
// ConfigMap once it has finished (what it applied is read from them then).
func (k *kubeRuns) Run(ctx context.Context, namespace, name string) (*engine.Run, error) {
	var wr v1alpha1.WorkflowRun
	err := k.ctrl.cache.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, &wr)
	if apierrors.IsNotFound(err) {
		// The cache may not have seen a run just created.
		err = k.c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, &wr)
	}
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("WorkflowRun %s/%s: %w", namespace, name, engine.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	if !wr.Status.Finished {
		return &engine.Run{Object: &wr}, nil
	}
	return k.ctrl.store.Load(ctx, engine.Key{Namespace: namespace, Name: name})
}

// Terminate implements lifecycle.Runs with the controller's engine: a run of another shard
// gets the operation in its stored state, which its own controller then carries out.
func (k *kubeRuns) Terminate(ctx context.Context, namespace, name, reason string) (bool, error) {
	return lifecycle.Terminate(ctx, k.ctrl.engine, engine.Key{Namespace: namespace, Name: name}, reason)
}

// Delete implements lifecycle.Runs: the run, its context and its large values.
func (k *kubeRuns) Delete(ctx context.Context, namespace, name string) error {
	wr := &v1alpha1.WorkflowRun{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
	if err := k.c.Delete(ctx, wr); err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: crdstore.ContextName(name)}}
	if err := k.c.Delete(ctx, cm); err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	key := engine.Key{Namespace: namespace, Name: name}
	if err := crdstore.DeleteBlobs(ctx, k.c, key); err != nil {
		return err
	}
	k.ctrl.forget(key)
	return nil
}

// kubeApps is store.Applications over the Application objects themselves: an Application's
// version is its resourceVersion and only its status is written (the spec is its user's); a
// revision is an ApplicationRevision (spec and status) and a versioned ResourceTracker named
// <revision>-<namespace>, as KubeVela names it, holding what its run applied. They are read
// from the manager's cache, and from the API server when the cache has not yet seen the
// controller's last write of them.
type kubeApps struct {
	c       client.Client
	cache   client.Reader
	written *written
}

// Application implements store.Applications.
func (k *kubeApps) Application(ctx context.Context, namespace, name string) (*v1beta1.Application, int64, error) {
	var app v1beta1.Application
	key := client.ObjectKey{Namespace: namespace, Name: name}
	err := k.cache.Get(ctx, key, &app)
	if err == nil {
		if last := k.written.newerApp(key, app.ResourceVersion); last != nil {
			app = *last
		}
	} else {
		// Not in the cache: not seen yet, or of another shard.
		err = k.c.Get(ctx, key, &app)
	}
	if err != nil {
		if apierrors.IsNotFound(err) {
			return nil, 0, fmt.Errorf("application %s/%s: %w", namespace, name, engine.ErrNotFound)
		}
		return nil, 0, err
	}
	v, _ := strconv.ParseInt(app.ResourceVersion, 10, 64)
	return &app, v, nil
}

// PutApplication implements store.Applications: it writes the status at the resourceVersion
// given.
func (k *kubeApps) PutApplication(ctx context.Context, app *v1beta1.Application, version int64) (int64, error) {
	obj := app.DeepCopy()
	obj.ResourceVersion = ""
	if version > 0 {
		obj.ResourceVersion = strconv.FormatInt(version, 10)
	}
	if err := k.c.Status().Update(ctx, obj); err != nil {
		switch {
		case apierrors.IsConflict(err):
			return 0, fmt.Errorf("application %s/%s: %w", app.Namespace, app.Name, engine.ErrConflict)
		case apierrors.IsNotFound(err):
			return 0, fmt.Errorf("application %s/%s: %w", app.Namespace, app.Name, engine.ErrNotFound)
		}
		return 0, fmt.Errorf("write the status of application %s/%s: %w", app.Namespace, app.Name, err)
	}
	k.written.app(obj)
	v, _ := strconv.ParseInt(obj.ResourceVersion, 10, 64)
	return v, nil
}

// Applications implements store.Applications.
func (k *kubeApps) Applications(ctx context.Context, namespace string) ([]*v1beta1.Application, error) {
	var list v1beta1.ApplicationList
	if err := k.c.List(ctx, &list, client.InNamespace(namespace)); err != nil {
		return nil, err
	}
	out := make([]*v1beta1.Application, 0, len(list.Items))
	for i := range list.Items {
		out = append(out, &list.Items[i])
	}
	return out, nil
}

// DeleteApplication implements store.Applications: the revisions and resource trackers are
// deleted, then the finalizer is removed, which lets the Application go.
func (k *kubeApps) DeleteApplication(ctx context.Context, namespace, name string) error {
	revs, err := k.AppRevisions(ctx, namespace, name)
	if err != nil {
		return err
	}
	for _, r := range revs {
		if err := k.c.Delete(ctx, r.Object); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
		rt := &v1beta1.ResourceTracker{ObjectMeta: metav1.ObjectMeta{Name: trackerName(r.Object.Name, namespace)}}
		if err := k.c.Delete(ctx, rt); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	var app v1beta1.Application
	if err := k.c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, &app); err != nil {
		return client.IgnoreNotFound(err)
	}
	patch := client.MergeFromWithOptions(app.DeepCopy(), client.MergeFromWithOptimisticLock{})
	controllerutil.RemoveFinalizer(&app, FinalizerResourceTracker)
	if err := k.c.Patch(ctx, &app, patch); err != nil {
		return client.IgnoreNotFound(err)
	}
	k.written.forget(client.ObjectKey{Namespace: namespace, Name: name})
	return nil
}

// trackerName is the versioned ResourceTracker of a revision, as KubeVela names it.
func trackerName(revision, namespace string) string { return revision + "-" + namespace }

// PutAppRevision implements store.Applications: the ApplicationRevision (owned by its
// Application), its status, and its ResourceTracker, each created or updated.
func (k *kubeApps) PutAppRevision(ctx context.Context, rev *store.AppRevision) error {
	if err := store.CheckAppRevision(rev); err != nil {
		return err
	}
	obj := rev.Object.DeepCopy()
	if obj.Labels == nil {
		obj.Labels = map[string]string{}
	}
	obj.Labels[lifecycle.LabelRevisionHash] = rev.Hash
	obj.Labels[lifecycle.LabelRevisionNumber] = strconv.FormatInt(rev.Number, 10)
	obj.Labels[application.LabelAppName] = rev.App
	if obj.Annotations == nil {
		obj.Annotations = map[string]string{}
	}
	obj.Annotations[AnnotationRun] = rev.Run
	status := obj.Status
	appKey := client.ObjectKey{Namespace: obj.Namespace, Name: rev.App}
	var current v1beta1.ApplicationRevision
	err := k.fresh(ctx, appKey, "rev", client.ObjectKeyFromObject(obj), &current)
	switch {
	case apierrors.IsNotFound(err):
		if app, _, err := k.Application(ctx, obj.Namespace, rev.App); err == nil {
			obj.OwnerReferences = []metav1.OwnerReference{{APIVersion: v1beta1.GroupVersion.String(), Kind: v1beta1.KindApplication, Name: app.Name, UID: app.UID}}
		}
		obj.ResourceVersion = ""
		if err := k.c.Create(ctx, obj); err != nil {
			return fmt.Errorf("create ApplicationRevision %s/%s: %w", obj.Namespace, obj.Name, err)
		}
	case err != nil:
		return err
	default:
		obj.ResourceVersion = current.ResourceVersion
		obj.UID, obj.OwnerReferences, obj.CreationTimestamp = current.UID, current.OwnerReferences, current.CreationTimestamp
	}
	if status.Workflow != nil || status.Succeeded {
		obj.Status = status
		if err := k.c.Status().Update(ctx, obj); err != nil {
			return fmt.Errorf("write the status of ApplicationRevision %s/%s: %w", obj.Namespace, obj.Name, err)
		}
	}
	k.written.part(appKey, "rev", obj.Name, obj.ResourceVersion)
	return k.putTracker(ctx, appKey, rev)
}

// fresh reads obj, one of app's revisions (kind rev) or trackers (kind rt), from the cache, or
// from the API server when the cache does not hold the controller's last write of it.
func (k *kubeApps) fresh(ctx context.Context, app client.ObjectKey, kind string, key client.ObjectKey, obj client.Object) error {
	err := k.cache.Get(ctx, key, obj)
	cached := map[string]string{}
	if err == nil {
		cached[kind+"/"+key.Name] = obj.GetResourceVersion()
	}
	if (err == nil || apierrors.IsNotFound(err)) && !k.written.partBehind(app, kind+"/"+key.Name, cached) {
		return err
	}
	return k.c.Get(ctx, key, obj)
}

// putTracker writes a revision's ResourceTracker when what it tracks changed; a revision that
// tracks nothing yet (its run just started) has none.
func (k *kubeApps) putTracker(ctx context.Context, app client.ObjectKey, rev *store.AppRevision) error {
	ns := rev.Namespace()
	rt := &v1beta1.ResourceTracker{
		TypeMeta: metav1.TypeMeta{APIVersion: v1beta1.GroupVersion.String(), Kind: v1beta1.KindResourceTracker},
		ObjectMeta: metav1.ObjectMeta{
			Name: trackerName(rev.Object.Name, ns),
			Labels: map[string]string{
				application.LabelAppName: rev.App, application.LabelAppNamespace: ns,
				lifecycle.LabelRevisionNumber: strconv.FormatInt(rev.Number, 10),
			},
		},
		Spec: v1beta1.ResourceTrackerSpec{Type: v1beta1.ResourceTrackerVersioned, ApplicationGeneration: rev.Object.Spec.Application.Generation, ManagedResources: rev.Resources},
	}
	var current v1beta1.ResourceTracker
	err := k.fresh(ctx, app, "rt", client.ObjectKeyFromObject(rt), &current)
	switch {
	case apierrors.IsNotFound(err):
		if len(rt.Spec.ManagedResources) == 0 {
			return nil // made once its run has applied something
		}
		if err := k.c.Create(ctx, rt); err != nil {
			return err
		}
		k.written.part(app, "rt", rt.Name, rt.ResourceVersion)
		return nil
	case err != nil:
		return err
	}
	if same, err := sameSpec(current.Spec, rt.Spec); err != nil || same {
		return err
	}
	current.Spec = rt.Spec
	if err := k.c.Update(ctx, &current); err != nil {
		return err
	}
	k.written.part(app, "rt", current.Name, current.ResourceVersion)
	return nil
}

// AppRevisions implements store.Applications: the ApplicationRevisions labelled with the
// Application's name, each with its ResourceTracker's objects, by number.
func (k *kubeApps) AppRevisions(ctx context.Context, namespace, app string) ([]*store.AppRevision, error) {
	appKey := client.ObjectKey{Namespace: namespace, Name: app}
	list, rts, versions, err := k.listParts(ctx, k.cache, namespace, app)
	if err != nil || k.written.partsBehind(appKey, versions) {
		if list, rts, versions, err = k.listParts(ctx, k.c, namespace, app); err != nil {
			return nil, err
		}
		k.written.settle(appKey, versions)
	}
	out := make([]*store.AppRevision, 0, len(list.Items))
	for i := range list.Items {
		obj := &list.Items[i]
		n, err := strconv.ParseInt(obj.Labels[lifecycle.LabelRevisionNumber], 10, 64)
		if err != nil {
			continue // not one of ours
		}
		r := &store.AppRevision{Object: obj, App: app, Number: n, Hash: obj.Labels[lifecycle.LabelRevisionHash], Run: obj.Annotations[AnnotationRun]}
		for _, rt := range rts.Items {
			if rt.Name == trackerName(obj.Name, namespace) {
				r.Resources = rt.Spec.ManagedResources
			}
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b *store.AppRevision) int { return int(a.Number - b.Number) })
	return out, nil
}

// listParts lists an Application's revisions and trackers with r, and their versions by kind
// and name.
func (k *kubeApps) listParts(ctx context.Context, r client.Reader, namespace, app string) (*v1beta1.ApplicationRevisionList, *v1beta1.ResourceTrackerList, map[string]string, error) {
	var list v1beta1.ApplicationRevisionList
	if err := r.List(ctx, &list, client.InNamespace(namespace), client.MatchingLabels{application.LabelAppName: app}); err != nil {
		return nil, nil, nil, fmt.Errorf("list the revisions of %s/%s: %w", namespace, app, err)
	}
	var rts v1beta1.ResourceTrackerList
	if err := r.List(ctx, &rts, client.MatchingLabels{application.LabelAppName: app, application.LabelAppNamespace: namespace}); err != nil {
		return nil, nil, nil, fmt.Errorf("list the resource trackers of %s/%s: %w", namespace, app, err)
	}
	versions := map[string]string{}
	for _, r := range list.Items {
		versions["rev/"+r.Name] = r.ResourceVersion
	}
	for _, t := range rts.Items {
		versions["rt/"+t.Name] = t.ResourceVersion
	}
	return &list, &rts, versions, nil
}

// sameSpec says whether two tracker specs encode alike.
func sameSpec(a, b v1beta1.ResourceTrackerSpec) (bool, error) {
	ja, err := json.Marshal(a)
	if err != nil {
		return false, err
	}
	jb, err := json.Marshal(b)
	if err != nil {
		return false, err
	}
	return bytes.Equal(ja, jb), nil
}
