package server

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/api/v1beta1"
	"github.com/stepflow/stepflow/application"
	"github.com/stepflow/stepflow/catalog"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/lifecycle"
	"github.com/stepflow/stepflow/manifest"
)

// AppUp is the answer to POST /api/v1/applications for one Application.
type AppUp struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Revision is the new revision, or the latest when Unchanged.
	Revision  string `json:"revision"`
	Run       string `json:"run"`
	Unchanged bool   `json:"unchanged"`
}

// AppRevision is one revision as GET .../revisions lists it.
type AppRevision struct {
	Number    int64                        `json:"number"`
	Hash      string                       `json:"hash"`
	Run       string                       `json:"run"`
	Resources []v1beta1.ManagedResource    `json:"resources"`
	Object    *v1beta1.ApplicationRevision `json:"object"`
}

// lifecycle is the Applications' lifecycle over the server's store, engine and clusters.
func (s *Server) lifecycle() *lifecycle.Manager {
	return &lifecycle.Manager{Store: s.store, Runs: serverRuns{s}, Clusters: s.clusters, Rendered: &s.rendered, Evaluator: s.runner}
}

// serverRuns are the delivery runs in the server's store, driven by its engine.
type serverRuns struct{ s *Server }

// Start implements lifecycle.Runs.
func (r serverRuns) Start(ctx context.Context, run *v1alpha1.WorkflowRun) error {
	_, err := r.s.createRun(ctx, run, nil)
	return err
}

// Run implements lifecycle.Runs.
func (r serverRuns) Run(ctx context.Context, namespace, name string) (*engine.Run, error) {
	return r.s.store.Load(ctx, engine.Key{Namespace: namespace, Name: name})
}

// Terminate implements lifecycle.Runs with the server's engine.
func (r serverRuns) Terminate(ctx context.Context, namespace, name, reason string) (bool, error) {
	return lifecycle.Terminate(ctx, r.s.eng, engine.Key{Namespace: namespace, Name: name}, reason)
}

// Delete implements lifecycle.Runs: an unfinished run is terminated first.
func (r serverRuns) Delete(ctx context.Context, namespace, name string) error {
	key := engine.Key{Namespace: namespace, Name: name}
	run, err := r.s.store.Load(ctx, key)
	if errors.Is(err, engine.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if !run.Object.Status.Finished {
		op := engine.Operation{Kind: engine.OpTerminate, By: "stepflow", Reason: "its Application was deleted"}
		if _, err := r.s.eng.Operate(ctx, key, op); err != nil && !errors.Is(err, engine.ErrInvalidOperation) {
			return err
		}
	}
	if err := r.s.store.Delete(ctx, key); err != nil && !errors.Is(err, engine.ErrNotFound) {
		return err
	}
	r.s.hub.deleted(key)
	return nil
}

// appSyncer brings an Application's status up to date when its delivery run settles, so that
// garbage collection follows a run's success without anyone asking.
type appSyncer struct{ s *Server }

// RunChanged implements engine.Observer.
func (a appSyncer) RunChanged(run *engine.Run) {
	name := run.Object.Labels[application.LabelAppName]
	if name == "" || !engine.Settled(run) {
		return
	}
	ns := run.Object.Namespace
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := a.s.lifecycle().Sync(ctx, ns, name); err != nil && !errors.Is(err, engine.ErrNotFound) {
			a.s.log.Error("sync application", "namespace", ns, "name", name, "err", err)
		}
	}()
}

func (s *Server) upApplications(w http.ResponseWriter, r *http.Request) error {
	objs, err := s.decodeObjects(r)
	if err != nil {
		return err
	}
	if len(objs.Applications) == 0 || len(objs.Runs)+len(objs.Workflows)+len(objs.Definitions)+len(objs.ApplicationRevisions)+len(objs.ResourceTrackers) > 0 {
		return errorf(http.StatusBadRequest, "the body must hold Applications, and the X-Definitions they use (ComponentDefinition, TraitDefinition, PolicyDefinition) only")
	}
	defs := catalog.XDefinitions(objs)
	m := s.lifecycle()
	out := []AppUp{}
	for _, app := range objs.Applications {
		if app.Namespace == "" {
			app.Namespace = manifest.DefaultNamespace
		}
		up, err := m.Up(r.Context(), app, defs)
		if errors.Is(err, lifecycle.ErrUndeliverable) {
			return errorf(http.StatusBadRequest, "%v", err)
		}
		if err != nil {
			return err
		}
		out = append(out, AppUp{Namespace: app.Namespace, Name: app.Name, Revision: up.Revision.Object.Name, Run: up.Revision.Run, Unchanged: up.Unchanged})
	}
	writeJSON(w, http.StatusOK, listOf[AppUp]{Items: out})
	return nil
}

func (s *Server) listApplications(w http.ResponseWriter, r *http.Request) error {
	apps, err := s.store.Applications(r.Context(), r.URL.Query().Get("namespace"))
	if err != nil {
		return err
	}
	id := identityOf(r.Context())
	items := []*v1beta1.Application{}
	for _, a := range apps {
		if id.sees(a.Namespace) {
			items = append(items, withAppKind(a))
		}
	}
	writeJSON(w, http.StatusOK, listOf[*v1beta1.Application]{Items: items})
	return nil
}

func withAppKind(a *v1beta1.Application) *v1beta1.Application {
	a.APIVersion, a.Kind = v1beta1.GroupVersion.String(), v1beta1.KindApplication
	return a
}

func (s *Server) getApplication(w http.ResponseWriter, r *http.Request) error {
	ns, name := r.PathValue("namespace"), r.PathValue("name")
	if err := seesOrNotFound(r.Context(), "application", ns, name); err != nil {
		return err
	}
	app, err := s.lifecycle().Sync(r.Context(), ns, name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, withAppKind(app))
	return nil
}

func (s *Server) appRevisions(w http.ResponseWriter, r *http.Request) error {
	ns, name := r.PathValue("namespace"), r.PathValue("name")
	if err := seesOrNotFound(r.Context(), "application", ns, name); err != nil {
		return err
	}
	if _, _, err := s.store.Application(r.Context(), ns, name); err != nil {
		return err
	}
	revs, err := s.store.AppRevisions(r.Context(), ns, name)
	if err != nil {
		return err
	}
	items := []AppRevision{}
	for _, rev := range revs {
		resources := rev.Resources
		if resources == nil { // a revision whose run has not finished has applied nothing yet
			resources = []v1beta1.ManagedResource{}
		}
		items = append(items, AppRevision{Number: rev.Number, Hash: rev.Hash, Run: rev.Run, Resources: resources, Object: rev.Object})
	}
	writeJSON(w, http.StatusOK, listOf[AppRevision]{Items: items})
	return nil
}

// rollbackRequest names the revision to deliver again.
type rollbackRequest struct {
	// Revision is the revision's number, N of <app>-vN.
	Revision int64 `json:"revision"`
}

func (s *Server) rollbackApplication(w http.ResponseWriter, r *http.Request) error {
	ns, name := r.PathValue("namespace"), r.PathValue("name")
	if err := seesOrNotFound(r.Context(), "application", ns, name); err != nil {
		return err
	}
	var body rollbackRequest
	if err := decodeJSON(r, &body); err != nil {
		return err
	}
	if body.Revision <= 0 {
		return errorf(http.StatusBadRequest, "give the revision's number: {\"revision\": N}")
	}
	up, err := s.lifecycle().Rollback(r.Context(), ns, name, body.Revision)
	if errors.Is(err, lifecycle.ErrUndeliverable) {
		return errorf(http.StatusBadRequest, "%v", err)
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, AppUp{Namespace: ns, Name: name, Revision: up.Revision.Object.Name, Run: up.Revision.Run, Unchanged: up.Unchanged})
	return nil
}

func (s *Server) deleteApplication(w http.ResponseWriter, r *http.Request) error {
	ns, name := r.PathValue("namespace"), r.PathValue("name")
	if err := seesOrNotFound(r.Context(), "application", ns, name); err != nil {
		return err
	}
	if err := s.lifecycle().Delete(r.Context(), ns, name); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
