package lifecycle

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/api/v1beta1"
	"github.com/stepflow/stepflow/application"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/store"
)

// Sync brings an Application's status up to date with its latest revision's run: the
// workflow's state and the phase; once the run has finished, what it applied is recorded in
// the revision; once it has succeeded, what earlier revisions applied and this one does not
// is deleted (garbage collection), and the services' health is read from the live objects.
// It writes only what changed: an Application whose run, objects and health did not change
// since the last Sync is not written.
func (m *Manager) Sync(ctx context.Context, namespace, name string) (*v1beta1.Application, error) {
	// Two syncs of one Application (a request's and the run's observer's) may race: the one
	// whose write conflicts reads again and finds the other's status.
	for attempt := 0; ; attempt++ {
		app, err := m.sync(ctx, namespace, name)
		if errors.Is(err, engine.ErrConflict) && attempt < 3 {
			continue
		}
		return app, err
	}
}

func (m *Manager) sync(ctx context.Context, namespace, name string) (*v1beta1.Application, error) {
	app, version, err := m.Store.Application(ctx, namespace, name)
	if err != nil {
		return nil, err
	}
	if app.Status.Phase == v1beta1.ApplicationDeleting || app.Status.LatestRevision == nil {
		return app, nil
	}
	revs, err := m.Store.AppRevisions(ctx, namespace, name)
	if err != nil {
		return nil, err
	}
	idx := slices.IndexFunc(revs, func(r *store.AppRevision) bool { return r.Object.Name == app.Status.LatestRevision.Name })
	if idx < 0 {
		return nil, fmt.Errorf("application %s/%s: its latest revision %s is not stored", namespace, name, app.Status.LatestRevision.Name)
	}
	rev := revs[idx]
	status := *app.Status.DeepCopy()
	run, err := m.Runs.Run(ctx, namespace, rev.Run)
	switch {
	case errors.Is(err, engine.ErrNotFound):
		status.Phase = v1beta1.ApplicationWorkflowFailed
		if status.Workflow == nil {
			status.Workflow = &v1beta1.WorkflowStatus{AppRevision: rev.Object.Name}
		}
		status.Workflow.Message = fmt.Sprintf("the delivery run %s is gone", rev.Run)
	case err != nil:
		return nil, err
	default:
		if err := m.settle(ctx, app, revs, idx, run, &status); err != nil {
			return nil, err
		}
	}
	if same, err := sameJSON(app.Status, status); err != nil || same {
		return app, err
	}
	app.Status = status
	v, err := m.Store.PutApplication(ctx, app, version)
	if err != nil {
		return nil, err
	}
	app.ResourceVersion = fmt.Sprint(v)
	return app, nil
}

// settle fills status from the revision's run, records what a finished run applied, and
// collects garbage and reads health once it succeeded.
func (m *Manager) settle(ctx context.Context, app *v1beta1.Application, revs []*store.AppRevision, idx int,
	run *engine.Run, status *v1beta1.AppStatus) error {
	rev := revs[idx]
	rs := run.Object.Status
	status.Workflow = &v1beta1.WorkflowStatus{
		AppRevision: rev.Object.Name, Mode: modeString(run.Object.Spec.Mode), Phase: rs.Phase, Message: rs.Message,
		Suspend: rs.Suspend, SuspendState: rs.SuspendState, Terminated: rs.Terminated, Finished: rs.Finished,
		Steps: rs.Steps, StartTime: rs.StartTime, EndTime: rs.EndTime,
	}
	switch rs.Phase {
	case v1alpha1.RunSuspending:
		status.Phase = v1beta1.ApplicationWorkflowSuspended
	case v1alpha1.RunFailed, v1alpha1.RunTerminated:
		status.Phase = v1beta1.ApplicationWorkflowFailed
	case v1alpha1.RunSucceeded:
		status.Phase = v1beta1.ApplicationRunning
	default:
		status.Phase = v1beta1.ApplicationRunningWorkflow
	}
	if rs.Finished && (rev.Object.Status.Workflow == nil || !rev.Object.Status.Workflow.Finished) {
		applied, err := application.AppliedBy(run.Vars)
		if err != nil {
			return err
		}
		rev.Resources = union(rev.Resources, applied)
		rev.Object.Status.Workflow = status.Workflow.DeepCopy()
		rev.Object.Status.Succeeded = rs.Phase == v1alpha1.RunSucceeded
		if rev.Object.Status.Succeeded {
			if err := m.collect(ctx, app, revs, idx); err != nil {
				return err
			}
		}
		if err := m.Store.PutAppRevision(ctx, rev); err != nil {
			return err
		}
	}
	status.AppliedResources = nil
	for _, r := range revs {
		for _, res := range r.Resources {
			if !res.Deleted && !slices.ContainsFunc(status.AppliedResources, func(c v1beta1.ClusterObjectReference) bool {
				return application.SameResource(v1beta1.ManagedResource{ClusterObjectReference: c}, res)
			}) {
				status.AppliedResources = append(status.AppliedResources, res.ClusterObjectReference)
			}
		}
	}
	if rs.Phase != v1alpha1.RunSucceeded {
		return nil
	}
	// The first health reported for a revision is the one its run judged as it succeeded, on
	// the objects as its applies returned them a moment ago; later Syncs judge the live objects.
	services, comps, ok, err := judgedHealth(rev, run.Vars, len(app.Status.Services) == 0)
	if err != nil {
		return err
	}
	if !ok {
		if services, comps, err = m.health(ctx, rev); err != nil {
			return err
		}
	}
	status.Services, status.Components = services, comps
	for _, s := range services {
		if !s.Healthy {
			status.Phase = v1beta1.ApplicationUnhealthy
		}
	}
	return nil
}

// collect deletes, in every cluster, what earlier revisions applied and revision idx did not,
// as the Application's garbage-collect policy allows (application.GCPolicy: its rules, then
// keepLegacyResource), and marks it deleted in their trackers.
func (m *Manager) collect(ctx context.Context, app *v1beta1.Application, revs []*store.AppRevision, idx int) error {
	gc, err := application.GCPolicy(app)
	if err != nil {
		return err
	}
	current := revs[idx].Resources
	for _, old := range revs[:idx] {
		changed := false
		for i := range old.Resources {
			res := &old.Resources[i]
			if res.Deleted || res.SkipGC || slices.ContainsFunc(current, func(c v1beta1.ManagedResource) bool { return application.SameResource(c, *res) }) ||
				!gc.MayDelete(&application.Applied{ManagedResource: *res}, false) {
				continue
			}
			if err := m.deleteObject(ctx, *res); err != nil {
				return fmt.Errorf("garbage-collect %s/%s (revision %s): %w", app.Namespace, app.Name, old.Object.Name, err)
			}
			res.Deleted, changed = true, true
		}
		if changed {
			if err := m.Store.PutAppRevision(ctx, old); err != nil {
				return err
			}
		}
	}
	return nil
}

// deleteObject deletes a tracked object in its cluster; one already gone is no error.
func (m *Manager) deleteObject(ctx context.Context, res v1beta1.ManagedResource) error {
	c, err := m.Clusters.Client(ctx, clusterName(res.Cluster))
	if err != nil {
		return fmt.Errorf("cluster %q: %w", res.Cluster, err)
	}
	obj := &unstructured.Unstructured{}
	obj.SetAPIVersion(res.APIVersion)
	obj.SetKind(res.Kind)
	obj.SetNamespace(res.Namespace)
	obj.SetName(res.Name)
	err = c.Delete(ctx, obj, client.PropagationPolicy("Background"))
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete %s %s/%s in cluster %q: %w", res.Kind, res.Namespace, res.Name, res.Cluster, err)
	}
	return nil
}

// places are the places (cluster, namespace) a revision's component was applied to, in the
// order its tracker lists them; one empty place when it has none.
func places(rev *store.AppRevision, component string) []application.Target {
	var out []application.Target
	for _, res := range rev.Resources {
		p := application.Target{Cluster: clusterName(res.Cluster), Namespace: res.Namespace}
		if res.Component == component && res.Namespace != "" && !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		out = []application.Target{{}}
	}
	return out
}

// judgedHealth is, when first is set, the services and workloads as health would give them,
// from the health the revision's run judged (application.JudgedBy); ok is false when first is
// not set or the run did not judge every component in every place.
func judgedHealth(rev *store.AppRevision, vars map[string]json.RawMessage, first bool) (services []v1beta1.ApplicationComponentStatus, workloads []v1beta1.ObjectReference, ok bool, err error) {
	if !first {
		return nil, nil, false, nil
	}
	judged, err := application.JudgedBy(vars)
	if err != nil {
		return nil, nil, false, err
	}
	for _, c := range rev.Object.Spec.Application.Spec.Components {
		for i, place := range places(rev, c.Name) {
			at := slices.IndexFunc(judged, func(j application.Judged) bool {
				return j.Status.Name == c.Name && clusterName(j.Status.Cluster) == place.Cluster && j.Status.Namespace == place.Namespace
			})
			if at < 0 {
				return nil, nil, false, nil
			}
			st := *judged[at].Status.DeepCopy()
			st.Cluster = place.Cluster
			services = append(services, st)
			if w := judged[at].Workload; w != nil && i == 0 {
				workloads = append(workloads, *w)
			}
		}
	}
	return services, workloads, true, nil
}

// health renders the revision's components again for each cluster and namespace they were
// applied to and judges them against the live objects.
func (m *Manager) health(ctx context.Context, rev *store.AppRevision) ([]v1beta1.ApplicationComponentStatus, []v1beta1.ObjectReference, error) {
	app := rev.Object.Spec.Application.DeepCopy()
	app.Status.LatestRevision = &v1beta1.Revision{Name: rev.Object.Name, Revision: rev.Number}
	defs := RevisionDefinitions(rev)
	var services []v1beta1.ApplicationComponentStatus
	var workloads []v1beta1.ObjectReference
	for _, c := range app.Spec.Components {
		for i, place := range places(rev, c.Name) {
			cl := place.Cluster
			key := strings.Join([]string{app.Namespace, rev.Object.Name, rev.Hash, place.Cluster, place.Namespace, c.Name}, "\x00")
			comps, ok := m.Rendered.get(key)
			if !ok {
				versions, _ := m.Clusters.(application.ClusterVersions)
				place.ClusterVersion = application.VersionOf(ctx, versions, cl)
				var err error
				comps, err = m.evaluator().Render(ctx, application.Request{
					App: app, Definitions: defs, Target: place,
					Revision: rev.Object.Name, RevisionNum: rev.Number, Components: []string{c.Name},
				})
				if err != nil {
					return nil, nil, err
				}
				m.Rendered.put(key, comps)
			}
			kc, err := m.Clusters.Client(ctx, cl)
			if err != nil {
				return nil, nil, fmt.Errorf("cluster %q: %w", cl, err)
			}
			live := func(rendered *unstructured.Unstructured) *unstructured.Unstructured {
				obj := &unstructured.Unstructured{}
				obj.SetGroupVersionKind(rendered.GroupVersionKind())
				if err := kc.Get(ctx, client.ObjectKeyFromObject(rendered), obj); err != nil {
					return nil
				}
				return obj
			}
			for _, rc := range comps {
				st, err := m.evaluator().Health(ctx, defs, app.Namespace, rc, live)
				if err != nil {
					return nil, nil, err
				}
				st.Cluster = cl
				services = append(services, st)
				if rc.Workload != nil && i == 0 {
					w := rc.Workload
					workloads = append(workloads, v1beta1.ObjectReference{APIVersion: w.GetAPIVersion(), Kind: w.GetKind(), Namespace: w.GetNamespace(), Name: w.GetName()})
				}
			}
		}
	}
	return services, workloads, nil
}

// clusterName is the registry's name of a cluster: "local" is "".
func clusterName(c string) string {
	if c == "local" {
		return ""
	}
	return c
}

// union is a with the objects of b it does not track yet.
func union(a, b []v1beta1.ManagedResource) []v1beta1.ManagedResource {
	out := slices.Clone(a)
	for _, r := range b {
		if !slices.ContainsFunc(out, func(x v1beta1.ManagedResource) bool { return application.SameResource(x, r) }) {
			out = append(out, r)
		}
	}
	return out
}

// sameJSON says whether two values encode alike.
func sameJSON(a, b any) (bool, error) {
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
