// Package lifecycle carries an Application through its life, the same way in every mode: `up`
// (a new revision, named <app>-v<N> as KubeVela names it, for every change of the spec or of
// the definitions it uses, and a delivery run for it), the Application's status as KubeVela
// shows it (the workflow's phase, services with health, applied resources, latest revision),
// garbage collection once a revision's run succeeded (what earlier revisions applied and this
// one no longer does is deleted in every cluster it was applied to, unless a garbage-collect
// policy keeps legacy resources), rollback (an earlier revision's spec delivered again as a
// new revision) and delete (everything the Application applied, then the Application).
//
// It works over three small interfaces: the store of Applications and revisions
// (store.Applications), the delivery runs (Runs) and the clusters (Clusters). The CLI and the
// server give it their SQL store and engine; a Kubernetes front end can give it the
// Application objects themselves.
package lifecycle

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/api/v1beta1"
	"github.com/stepflow/stepflow/application"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/store"
)

// Runs starts and reads the delivery runs.
type Runs interface {
	// Start stores a new delivery run and has it driven.
	Start(ctx context.Context, run *v1alpha1.WorkflowRun) error
	// Run returns a stored run with its variables (what it applied is read from them), or an
	// error wrapping engine.ErrNotFound.
	Run(ctx context.Context, namespace, name string) (*engine.Run, error)
	// Delete deletes a run; one not stored is no error.
	Delete(ctx context.Context, namespace, name string) error
	// Terminate ends an unfinished run as the terminate operation does (its running steps
	// fail, its `if: always` steps still run), recording reason, and reports whether it asked
	// one to end: a finished or missing run is no error.
	Terminate(ctx context.Context, namespace, name, reason string) (bool, error)
}

// Operator applies operations to runs; *engine.Engine is one.
type Operator interface {
	Operate(ctx context.Context, key engine.Key, op engine.Operation) (*engine.Run, error)
}

// Terminate is Runs.Terminate through an Operator: it asks the run key to end and reports
// whether it did; a run that has finished or is not stored is left as it is.
func Terminate(ctx context.Context, o Operator, key engine.Key, reason string) (bool, error) {
	_, err := o.Operate(ctx, key, engine.Operation{Kind: engine.OpTerminate, By: "stepflow", Reason: reason})
	switch {
	case errors.Is(err, engine.ErrNotFound), errors.Is(err, engine.ErrInvalidOperation):
		return false, nil
	case err != nil:
		return false, err
	}
	return true, nil
}

// Clusters gives a client of a cluster by name ("" is the local one).
type Clusters interface {
	Client(ctx context.Context, name string) (client.Client, error)
}

// Definitions finds the X-Definitions an Application uses (application.Set is one).
type Definitions interface {
	application.Definitions
	PolicyDefinition(ctx context.Context, namespace, name string) (*v1beta1.PolicyDefinition, error)
}

// Manager carries Applications through their lifecycle.
type Manager struct {
	Store    store.Applications
	Runs     Runs
	Clusters Clusters
	// Rendered, when set, keeps the components health renders, by revision and place, across
	// the Manager's calls: a revision renders the same each time.
	Rendered *Rendered
	// Evaluator renders the components and judges their health (the CUE of their definitions),
	// under the bounds of an evaluation with the step runtime's Runner; nil evaluates in this
	// process, unbounded.
	Evaluator application.Evaluator
}

// evaluator is the Manager's Evaluator.
func (m *Manager) evaluator() application.Evaluator {
	if m.Evaluator == nil {
		return application.InProcess{}
	}
	return m.Evaluator
}

// Rendered keeps the components rendered for health checks, by revision (its name and hash),
// cluster, namespace and component; at most maxRendered, the oldest dropped first.
type Rendered struct {
	mu    sync.Mutex
	comps map[string][]*application.Component
	order []string
}

const maxRendered = 4096

func (r *Rendered) get(key string) ([]*application.Component, bool) {
	if r == nil {
		return nil, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.comps[key]
	return c, ok
}

func (r *Rendered) put(key string, comps []*application.Component) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.comps == nil {
		r.comps = map[string][]*application.Component{}
	}
	if _, ok := r.comps[key]; ok {
		return
	}
	r.comps[key] = comps
	r.order = append(r.order, key)
	if len(r.order) > maxRendered {
		delete(r.comps, r.order[0])
		r.order = r.order[1:]
	}
}

// Outcome is what Up did.
type Outcome struct {
	// Unchanged is set when the spec and definitions were those of the latest revision: Up
	// wrote nothing.
	Unchanged bool
	// Revision is the new revision, or the latest when Unchanged.
	Revision *store.AppRevision
	// Run is the new delivery run; nil when Unchanged.
	Run *v1alpha1.WorkflowRun
	// Replaced names the delivery run of the previous revision, asked to terminate because the
	// new revision replaces it; "" when there was none. It may not have finished yet: its
	// `if: always` steps still run.
	Replaced string
}

// ErrUndeliverable is returned, wrapped, when an Application cannot be rendered into its
// delivery run (a type without a definition, properties its template refuses): the caller's
// input is wrong, nothing was written.
var ErrUndeliverable = errors.New("cannot be delivered")

// RunName is the name of the run delivering revision n of an Application, the revision's.
func RunName(app string, n int64) string { return fmt.Sprintf("%s-v%d", app, n) }

// Up stores an Application and, unless its spec and definitions are those of its latest
// revision, makes a new revision and starts the run that delivers it. defs are the
// definitions the Application's types are found in; the revision keeps those it uses.
func (m *Manager) Up(ctx context.Context, app *v1beta1.Application, defs Definitions) (*Outcome, error) {
	if app.Namespace == "" {
		app = app.DeepCopy()
		app.Namespace = "default"
	}
	key := app.Namespace + "/" + app.Name
	stored, version, err := m.Store.Application(ctx, app.Namespace, app.Name)
	if err != nil && !errors.Is(err, engine.ErrNotFound) {
		return nil, err
	}
	revs, err := m.Store.AppRevisions(ctx, app.Namespace, app.Name)
	if err != nil {
		return nil, err
	}
	snap, err := snapshot(ctx, app, defs)
	if err != nil {
		return nil, fmt.Errorf("application %s %w: %w", key, ErrUndeliverable, err)
	}
	hash, err := specHash(app, snap)
	if err != nil {
		return nil, fmt.Errorf("application %s: %w", key, err)
	}
	var latest *store.AppRevision
	if len(revs) > 0 {
		latest = revs[len(revs)-1]
	}
	if stored != nil && latest != nil && latest.Hash == hash && stored.Status.Phase != v1beta1.ApplicationDeleting {
		return &Outcome{Unchanged: true, Revision: latest}, nil
	}
	n := int64(1)
	if latest != nil {
		n = latest.Number + 1
	}
	name := RunName(app.Name, n)

	next := app.DeepCopy()
	next.ResourceVersion = ""
	next.Status = v1beta1.AppStatus{}
	if stored != nil {
		next.Status = *stored.Status.DeepCopy()
		next.CreationTimestamp = stored.CreationTimestamp
		next.UID = stored.UID
	} else {
		next.CreationTimestamp = metav1.Now()
	}
	if next.Generation == 0 { // a store that keeps no generation of its own (the SQL stores)
		next.Generation = 1
		if stored != nil {
			next.Generation = stored.Generation + 1
		}
	}
	next.Status.LatestRevision = &v1beta1.Revision{Name: name, Revision: n, RevisionHash: hash}
	next.Status.Phase = v1beta1.ApplicationRunningWorkflow
	next.Status.ObservedGeneration = next.Generation
	next.Status.Services = nil

	run, err := deliveryRun(next, name, snap)
	if err != nil {
		return nil, fmt.Errorf("application %s %w: %w", key, ErrUndeliverable, err)
	}
	next.Status.Workflow = &v1beta1.WorkflowStatus{AppRevision: name, Mode: modeString(run.Spec.Mode), Phase: v1alpha1.RunInitializing}

	rev := &store.AppRevision{App: app.Name, Number: n, Hash: hash, Run: name, Object: revisionObject(next, name, n, hash, snap)}
	// As in KubeVela, a new revision's workflow replaces the one delivering the previous
	// revision: two runs applying different specs to the same objects would undo each
	// other. Ended before anything is written, so that a failure leaves all as it was.
	replaced := ""
	if latest != nil && latest.Run != "" {
		reason := fmt.Sprintf("revision %d of Application %s replaces it", n, app.Name)
		ended, err := m.Runs.Terminate(ctx, app.Namespace, latest.Run, reason)
		if err != nil {
			return nil, fmt.Errorf("application %s: terminate %s: %w", key, latest.Run, err)
		}
		if ended {
			replaced = latest.Run
		}
	}
	if stored == nil {
		if _, err := m.Store.PutApplication(ctx, next, 0); err != nil {
			return nil, err
		}
	} else if _, err := m.Store.PutApplication(ctx, next, version); err != nil {
		return nil, err
	}
	if err := m.Store.PutAppRevision(ctx, rev); err != nil {
		return nil, err
	}
	if err := m.Runs.Start(ctx, run); err != nil {
		return nil, fmt.Errorf("application %s: start %s: %w", key, name, err)
	}
	return &Outcome{Revision: rev, Run: run, Replaced: replaced}, nil
}

// Rollback delivers an earlier revision's spec again, as a new revision (as KubeVela does),
// with the definitions that revision used.
func (m *Manager) Rollback(ctx context.Context, namespace, name string, number int64) (*Outcome, error) {
	app, _, err := m.Store.Application(ctx, namespace, name)
	if err != nil {
		return nil, err
	}
	revs, err := m.Store.AppRevisions(ctx, namespace, name)
	if err != nil {
		return nil, err
	}
	for _, r := range revs {
		if r.Number != number {
			continue
		}
		next := app.DeepCopy()
		next.Spec = *r.Object.Spec.Application.Spec.DeepCopy()
		return m.Up(ctx, next, RevisionDefinitions(r))
	}
	return nil, fmt.Errorf("application %s/%s has no revision %d: %w", namespace, name, number, engine.ErrNotFound)
}

// Delete deletes what the Application applied, in every cluster, its delivery runs, and then
// the Application with its revisions.
func (m *Manager) Delete(ctx context.Context, namespace, name string) error {
	app, version, err := m.Store.Application(ctx, namespace, name)
	if err != nil {
		return err
	}
	if app.Status.Phase != v1beta1.ApplicationDeleting {
		app.Status.Phase = v1beta1.ApplicationDeleting
		if _, err := m.Store.PutApplication(ctx, app, version); err != nil {
			return err
		}
	}
	revs, err := m.Store.AppRevisions(ctx, namespace, name)
	if err != nil {
		return err
	}
	gc, err := application.GCPolicy(app)
	if err != nil {
		return err
	}
	for _, r := range revs {
		resources := r.Resources
		if run, err := m.Runs.Run(ctx, namespace, r.Run); err == nil {
			applied, err := application.AppliedBy(run.Vars)
			if err != nil {
				return err
			}
			resources = union(resources, applied)
		}
		for _, res := range resources {
			// A garbage-collect rule with strategy never keeps the object past the Application.
			if res.Deleted || !gc.MayDelete(&application.Applied{ManagedResource: res}, true) {
				continue
			}
			if err := m.deleteObject(ctx, res); err != nil {
				return fmt.Errorf("delete application %s/%s: %w", namespace, name, err)
			}
		}
		if err := m.Runs.Delete(ctx, namespace, r.Run); err != nil {
			return fmt.Errorf("delete application %s/%s: run %s: %w", namespace, name, r.Run, err)
		}
	}
	return m.Store.DeleteApplication(ctx, namespace, name)
}

// snapshot is the definitions the Application's components, traits and policies use.
func snapshot(ctx context.Context, app *v1beta1.Application, defs Definitions) (*application.Set, error) {
	var comps []*v1beta1.ComponentDefinition
	var traits []*v1beta1.TraitDefinition
	var policies []*v1beta1.PolicyDefinition
	seen := map[string]bool{}
	for i, c := range app.Spec.Components {
		if !seen["c/"+c.Type] {
			d, err := defs.ComponentDefinition(ctx, app.Namespace, c.Type)
			if err != nil {
				return nil, fmt.Errorf("spec.components[%d] (%s): %w", i, c.Name, err)
			}
			seen["c/"+c.Type] = true
			comps = append(comps, d)
		}
		for j, t := range c.Traits {
			if seen["t/"+t.Type] {
				continue
			}
			d, err := defs.TraitDefinition(ctx, app.Namespace, t.Type)
			if err != nil {
				return nil, fmt.Errorf("spec.components[%d].traits[%d] (%s): %w", i, j, t.Type, err)
			}
			seen["t/"+t.Type] = true
			traits = append(traits, d)
		}
	}
	for i, p := range app.Spec.Policies {
		if seen["p/"+p.Type] {
			continue
		}
		d, err := defs.PolicyDefinition(ctx, app.Namespace, p.Type)
		if err != nil {
			return nil, fmt.Errorf("spec.policies[%d] (%s): %w", i, p.Name, err)
		}
		seen["p/"+p.Type] = true
		policies = append(policies, d)
	}
	return application.NewSet().Add(comps, traits, policies), nil
}

// specHash is the hash of what a revision delivers: the spec and the definitions it uses.
func specHash(app *v1beta1.Application, defs *application.Set) (string, error) {
	content := struct {
		Spec        v1beta1.ApplicationSpec `json:"spec"`
		Definitions map[string]any          `json:"definitions"`
	}{Spec: app.Spec, Definitions: map[string]any{}}
	comps, traits, policies := defs.All()
	for _, d := range comps {
		content.Definitions["component/"+d.Name] = d.Spec
	}
	for _, d := range traits {
		content.Definitions["trait/"+d.Name] = d.Spec
	}
	for _, d := range policies {
		content.Definitions["policy/"+d.Name] = d.Spec
	}
	b, err := json.Marshal(content)
	if err != nil {
		return "", fmt.Errorf("hash the spec: %w", err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8]), nil
}

// RevisionDefinitions is the set of definitions a revision was rendered with.
func RevisionDefinitions(r *store.AppRevision) *application.Set {
	set := application.NewSet()
	for _, d := range r.Object.Spec.ComponentDefinitions {
		set.Add([]*v1beta1.ComponentDefinition{d}, nil, nil)
	}
	for _, d := range r.Object.Spec.TraitDefinitions {
		set.Add(nil, []*v1beta1.TraitDefinition{d}, nil)
	}
	for _, d := range r.Object.Spec.PolicyDefinitions {
		set.Add(nil, nil, []*v1beta1.PolicyDefinition{d})
	}
	return set
}

// revisionObject is the ApplicationRevision of app at revision n.
func revisionObject(app *v1beta1.Application, name string, n int64, hash string, defs *application.Set) *v1beta1.ApplicationRevision {
	a := app.DeepCopy()
	a.Status = v1beta1.AppStatus{}
	a.ResourceVersion = ""
	rev := &v1beta1.ApplicationRevision{
		TypeMeta: metav1.TypeMeta{APIVersion: v1beta1.GroupVersion.String(), Kind: v1beta1.KindApplicationRevision},
		ObjectMeta: metav1.ObjectMeta{
			Namespace: app.Namespace, Name: name, CreationTimestamp: metav1.Now(),
			Labels: map[string]string{
				application.LabelAppName: app.Name, application.LabelAppNamespace: app.Namespace,
				LabelRevisionHash: hash, LabelRevisionNumber: fmt.Sprint(n),
			},
		},
		Spec: v1beta1.ApplicationRevisionSpec{
			Application:          *a,
			ComponentDefinitions: map[string]*v1beta1.ComponentDefinition{},
			TraitDefinitions:     map[string]*v1beta1.TraitDefinition{},
			PolicyDefinitions:    map[string]*v1beta1.PolicyDefinition{},
		},
	}
	comps, traits, policies := defs.All()
	for _, d := range comps {
		rev.Spec.ComponentDefinitions[d.Name] = d
	}
	for _, d := range traits {
		rev.Spec.TraitDefinitions[d.Name] = d
	}
	for _, d := range policies {
		rev.Spec.PolicyDefinitions[d.Name] = d
	}
	return rev
}

// Labels of revisions and delivery runs.
const (
	// LabelRevisionHash is the hash of what a revision delivers, as KubeVela labels it.
	LabelRevisionHash = "app.oam.dev/app-revision-hash"
	// LabelRevisionNumber is a revision's number.
	LabelRevisionNumber = "app.oam.dev/revision"
)

// deliveryRun is the WorkflowRun delivering an Application's revision.
func deliveryRun(app *v1beta1.Application, name string, snap *application.Set) (*v1alpha1.WorkflowRun, error) {
	comps, traits, policies := snap.All()
	defs := &application.DeliveryDefinitions{
		ComponentDefinitions: map[string]*v1beta1.ComponentDefinition{},
		TraitDefinitions:     map[string]*v1beta1.TraitDefinition{},
		PolicyDefinitions:    map[string]*v1beta1.PolicyDefinition{},
	}
	for _, d := range comps {
		defs.ComponentDefinitions[d.Name] = d
	}
	for _, d := range traits {
		defs.TraitDefinitions[d.Name] = d
	}
	for _, d := range policies {
		defs.PolicyDefinitions[d.Name] = d
	}
	spec, err := application.RunSpec(app, name, defs)
	if err != nil {
		return nil, err
	}
	return &v1alpha1.WorkflowRun{
		TypeMeta: metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: "WorkflowRun"},
		ObjectMeta: metav1.ObjectMeta{
			Namespace: app.Namespace, Name: name,
			Labels: map[string]string{
				application.LabelAppName: app.Name, application.LabelAppNamespace: app.Namespace,
				application.LabelAppRevision: name,
			},
		},
		Spec: spec,
	}, nil
}

func modeString(m *v1alpha1.WorkflowExecuteMode) string {
	if m == nil {
		return string(v1alpha1.ModeStepByStep)
	}
	steps, sub := m.Steps, m.SubSteps
	if steps == "" {
		steps = v1alpha1.ModeStepByStep
	}
	if sub == "" {
		sub = v1alpha1.ModeDAG
	}
	return string(steps) + "-" + string(sub)
}
