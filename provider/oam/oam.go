// Package oam supplies the CUE package vela/oam, the actions a step delivering an Application
// calls: #ApplyComponent (render a component, apply its objects into a cluster, wait until it
// is healthy), #RenderComponent, #LoadComponents (and KubeVela's spelling #LoadComponets),
// #LoadComponentsInOrder, #LoadPolicies, #LoadPoliciesInOrder, and vela/op's #ApplyRemaining.
//
// The Application is the one the run carries in its context (application.RunSpec puts it
// there, under context.application, with the definitions it uses under
// context.applicationDefinitions); a step of a run that carries none fails saying so.
// Objects are applied through the kube provider's apply (provider/kube.Objects), so the
// cluster scoping, the labels, the field manager and the marking of Secrets' values are
// those of kube.#Apply. Every object an evaluation applied is listed in the run variable
// application.AppliedVar+<step> (a JSON list of application.Applied), which the Application's
// lifecycle reads to track and collect them.
package oam

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/api/v1beta1"
	"github.com/stepflow/stepflow/application"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/provider/kube"
	"github.com/stepflow/stepflow/step"
)

//go:embed oam.cue
var source string

// DefaultHealthTimeout is how long an apply or a deploy waits for its components to be healthy
// before it fails with their health message, when the step gives no timeout.
const DefaultHealthTimeout = 5 * time.Minute

// AnnotationApplyOnce is the annotation of an object applied under an apply-once policy: the
// hash of what was rendered for it. The object is applied again only when that changes.
const AnnotationApplyOnce = "app.oam.dev/apply-once-hash"

// healthSinceVar is the prefix of the run variable holding when a step began waiting for its
// components to be healthy.
const healthSinceVar = "stepflow.health-since/"

// appliesVar is the prefix of the run variable holding what a step's evaluations applied (an
// applyMemo), so that its next evaluation, woken while it waits for health, reads an object
// instead of applying it again when it would apply the same value to an object nobody changed
// since.
const appliesVar = "stepflow.applies/"

// Options configure the provider.
type Options struct {
	// Objects applies and reads objects through the kube provider.
	Objects *kube.Objects
	// Definitions are the X-Definitions found when the run's context does not carry one of
	// that name (the built-ins).
	Definitions Definitions
	// Clusters lists the registered clusters for topology policies; nil knows none.
	Clusters application.Clusters
	// Versions reads the clusters' Kubernetes versions for context.clusterVersion; nil gives
	// it empty.
	Versions application.ClusterVersions
}

// Definitions finds component, trait and policy types.
type Definitions interface {
	application.Definitions
	PolicyDefinition(ctx context.Context, namespace, name string) (*v1beta1.PolicyDefinition, error)
}

// Register adds the package vela/oam and its actions (provider "oam") to r.
func Register(r *step.Registry, opts Options) *Deliverer {
	d := &Deliverer{opts: opts}
	r.AddPackage(step.Package{Path: "vela/oam", Source: source})
	apply := step.Action{Provider: "oam", Do: "component-apply", Run: Guard(d.applyComponent), SideEffect: step.Always, Idempotent: true,
		LegacyOutputs: []string{"output", "outputs"}}
	r.Register(apply)
	r.Register(step.Action{Provider: "oam", Do: "component-render", Run: Guard(d.renderComponent), LegacyOutputs: []string{"output", "outputs"}})
	r.Register(step.Action{Provider: "oam", Do: "load", Run: Guard(d.load), LegacyOutputs: []string{"value"}})
	r.Register(step.Action{Provider: "oam", Do: "load-comps-in-order", Run: Guard(d.loadInOrder), LegacyOutputs: []string{"value"}})
	r.Register(step.Action{Provider: "oam", Do: "load-policies", Run: Guard(d.loadPolicies), LegacyOutputs: []string{"value"}})
	r.Register(step.Action{Provider: "oam", Do: "load-policies-in-order", Run: Guard(d.loadPoliciesInOrder), LegacyOutputs: []string{"output"}})
	r.Register(step.Action{Provider: "oam", Do: "apply-remaining", Run: Guard(d.applyRemaining), SideEffect: step.Always, Idempotent: true})
	return d
}

// Guard runs h, turning a panic into a terminal error of the step, so that nothing an
// Application holds can end the process.
func Guard(h step.Handler) step.Handler {
	return func(ctx context.Context, call *step.Call) (out any, err error) {
		defer func() {
			if r := recover(); r != nil {
				out, err = nil, engine.Terminal(v1alpha1.ReasonExecute, fmt.Errorf("%s: internal error: %v", call.Path, r))
			}
		}()
		return h(ctx, call)
	}
}

// evaluator evaluates the CUE of a delivery for call: its Runner, under the bounds of an
// evaluation; in this process for a call made without one (a test's).
func evaluator(call *step.Call) application.Evaluator {
	if call.Runner != nil {
		return call.Runner
	}
	return application.InProcess{}
}

// evaluationError is the step's error for a render or a health that failed: terminal with
// reason (the definitions or a bound), unless the CUE evaluators failed on their own
// (step.ErrUnavailable), which the step's next try may not meet.
func evaluationError(reason string, err error) error {
	if errors.Is(err, step.ErrUnavailable) {
		return err
	}
	return engine.Terminal(reason, err)
}

// Deliverer renders, applies and judges the components of the Application a run carries. The
// vela/multicluster provider deploys through it.
type Deliverer struct {
	opts Options
}

// Delivery is what a run delivers: the Application, its revision, and the definitions to
// render it with.
type Delivery struct {
	App         *v1beta1.Application
	Revision    string
	Definitions Definitions
}

// Load reads the Application the step's run carries.
func (d *Deliverer) Load(call *step.Call) (*Delivery, error) {
	raw, ok := call.Context[application.ContextApplication]
	if !ok || raw == nil {
		return nil, engine.Terminal(v1alpha1.ReasonExecute, errors.New("this run delivers no Application (its context has no application): run the Application (stepflow app up), or give a WorkflowRun made by application.RunSpec"))
	}
	b, err := json.Marshal(raw)
	if err != nil {
		return nil, engine.Terminal(v1alpha1.ReasonExecute, fmt.Errorf("context.application: %w", err))
	}
	app := &v1beta1.Application{}
	if err := json.Unmarshal(b, app); err != nil {
		return nil, engine.Terminal(v1alpha1.ReasonExecute, fmt.Errorf("context.application is not an Application: %w", err))
	}
	if app.Namespace == "" {
		app.Namespace = call.Run.Namespace
	}
	out := &Delivery{App: app, Definitions: d.opts.Definitions}
	if s, ok := call.Context[application.ContextAppRevision].(string); ok {
		out.Revision = s
	}
	if raw, ok := call.Context[application.ContextDefinitions]; ok && raw != nil {
		b, err := json.Marshal(raw)
		if err != nil {
			return nil, engine.Terminal(v1alpha1.ReasonExecute, fmt.Errorf("context.%s: %w", application.ContextDefinitions, err))
		}
		var carried application.DeliveryDefinitions
		if err := json.Unmarshal(b, &carried); err != nil {
			return nil, engine.Terminal(v1alpha1.ReasonExecute, fmt.Errorf("context.%s: %w", application.ContextDefinitions, err))
		}
		out.Definitions = &layered{carried: &carried, fallback: d.opts.Definitions}
	}
	if out.Definitions == nil {
		return nil, engine.Terminal(v1alpha1.ReasonExecute, errors.New("vela/oam: no X-Definitions are configured"))
	}
	return out, nil
}

// layered finds a definition among those the run carries, then in the fallback.
type layered struct {
	carried  *application.DeliveryDefinitions
	fallback Definitions
}

func (l *layered) ComponentDefinition(ctx context.Context, ns, name string) (*v1beta1.ComponentDefinition, error) {
	if d := l.carried.ComponentDefinitions[name]; d != nil {
		return d, nil
	}
	if l.fallback == nil {
		return nil, fmt.Errorf("component type %q: %w", name, application.ErrUnknownType)
	}
	return l.fallback.ComponentDefinition(ctx, ns, name)
}

func (l *layered) TraitDefinition(ctx context.Context, ns, name string) (*v1beta1.TraitDefinition, error) {
	if d := l.carried.TraitDefinitions[name]; d != nil {
		return d, nil
	}
	if l.fallback == nil {
		return nil, fmt.Errorf("trait type %q: %w", name, application.ErrUnknownType)
	}
	return l.fallback.TraitDefinition(ctx, ns, name)
}

func (l *layered) PolicyDefinition(ctx context.Context, ns, name string) (*v1beta1.PolicyDefinition, error) {
	if d := l.carried.PolicyDefinitions[name]; d != nil {
		return d, nil
	}
	if l.fallback == nil {
		return nil, fmt.Errorf("policy type %q: %w", name, application.ErrUnknownType)
	}
	return l.fallback.PolicyDefinition(ctx, ns, name)
}

// Placements is application.Placements with the provider's clusters.
func (d *Deliverer) Placements(ctx context.Context, del *Delivery, topologies []string) ([]application.Placement, error) {
	return application.Placements(ctx, del.App, topologies, d.opts.Clusters)
}

// ClusterNames lists the registered clusters (the local one not among them).
func (d *Deliverer) ClusterNames(ctx context.Context) ([]string, error) {
	if d.opts.Clusters == nil {
		return nil, nil
	}
	return d.opts.Clusters.Names(ctx)
}

// Applied is what applying one component in one place gave.
type Applied struct {
	Component *application.Component
	Placement application.Placement
	// Live are the objects as stored, the workload first, in the order rendered.
	Live []*unstructured.Unstructured
	// Health is the component's health; Healthy says it and its traits are healthy.
	Health  v1beta1.ApplicationComponentStatus
	Healthy bool
	// Waiting, when set, says the component was not applied: a component it dependsOn is not
	// healthy yet.
	Waiting string
}

// Message words why the component is not healthy.
func (a *Applied) Message() string {
	where := fmt.Sprintf("component %s in cluster %s, namespace %s", a.Component.Name, clusterName(a.Placement.Cluster), a.Placement.Namespace)
	if a.Waiting != "" {
		return where + ": " + a.Waiting
	}
	parts := []string{}
	if !a.Health.Healthy {
		m := a.Health.Message
		if m == "" {
			m = "not healthy"
		}
		parts = append(parts, m)
	}
	for _, t := range a.Health.Traits {
		if !t.Healthy {
			m := t.Message
			if m == "" {
				m = "not healthy"
			}
			parts = append(parts, "trait "+t.Type+": "+m)
		}
	}
	return where + ": " + strings.Join(parts, "; ")
}

func clusterName(c string) string {
	if c == "" {
		return application.LocalCluster
	}
	return c
}

// kubeCluster is the kube provider's name of a cluster: "" for the local one.
func kubeCluster(c string) string {
	if c == application.LocalCluster {
		return ""
	}
	return c
}

// Apply renders comps (the Application's components, as policies changed them) for each
// placement and applies them, parallelism places at once, each place's components in
// dependsOn order, a component only once those it dependsOn there are healthy. patch, when
// given, is merged into each workload before it is applied.
func (d *Deliverer) Apply(ctx context.Context, call *step.Call, del *Delivery, comps []v1beta1.ApplicationComponent, placements []application.Placement, parallelism int, patch map[string]any) ([]*Applied, error) {
	ordered, err := application.InOrder(comps)
	if err != nil {
		return nil, engine.Terminal(v1alpha1.ReasonExecute, err)
	}
	once, err := application.ApplyOncePolicy(del.App)
	if err != nil {
		return nil, engine.Terminal(v1alpha1.ReasonExecute, err)
	}
	if parallelism <= 0 {
		parallelism = 5
	}
	parallelism = min(parallelism, max(len(placements), 1))
	memo := loadMemo(call)
	defer memo.save(call)
	results := make([][]*Applied, len(placements))
	errs := make([]error, len(placements))
	sem := make(chan struct{}, parallelism)
	var wg sync.WaitGroup
	for i, pl := range placements {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() {
				if r := recover(); r != nil {
					errs[i] = engine.Terminal(v1alpha1.ReasonExecute, fmt.Errorf("cluster %s, namespace %s: internal error: %v", clusterName(pl.Cluster), pl.Namespace, r))
				}
				<-sem
				wg.Done()
			}()
			results[i], errs[i] = d.applyAt(ctx, call, del, ordered, pl, once, memo, patch)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	var out []*Applied
	for _, r := range results {
		out = append(out, r...)
	}
	return out, nil
}

func (d *Deliverer) applyAt(ctx context.Context, call *step.Call, del *Delivery, comps []v1beta1.ApplicationComponent, pl application.Placement, once *application.ApplyOnce, memo *applyMemo, patch map[string]any) ([]*Applied, error) {
	app := del.App.DeepCopy()
	app.Spec.Components = comps
	rendered, err := evaluator(call).Render(ctx, application.Request{
		App: app, Definitions: del.Definitions,
		Target: application.Target{Cluster: pl.Cluster, Namespace: pl.Namespace,
			ClusterVersion: application.VersionOf(ctx, d.opts.Versions, pl.Cluster)},
		Revision: del.Revision, WorkflowName: call.Run.Name, StepName: call.Step,
	})
	if err != nil {
		return nil, evaluationError(v1alpha1.ReasonRendering, fmt.Errorf("rendering for cluster %s, namespace %s: %w", clusterName(pl.Cluster), pl.Namespace, err))
	}
	healthy := map[string]bool{}
	var out []*Applied
	deps := map[string][]string{}
	for _, c := range comps {
		deps[c.Name] = c.DependsOn
	}
	for _, c := range rendered {
		a := &Applied{Component: c, Placement: pl}
		out = append(out, a)
		var notYet []string
		for _, dep := range deps[c.Name] {
			if !healthy[dep] {
				notYet = append(notYet, dep)
			}
		}
		if len(notYet) > 0 {
			a.Waiting = "waiting for " + strings.Join(notYet, ", ") + " to be healthy"
			continue
		}
		if patch != nil && c.Workload != nil {
			c.Workload.Object = kube.MergePatch(c.Workload.Object, patch)
		}
		if err := d.applyComponent1(ctx, call, del, a, once, memo); err != nil {
			return nil, err
		}
		healthy[c.Name] = a.Healthy
	}
	return out, nil
}

// applyComponent1 applies one rendered component's objects and judges its health.
func (d *Deliverer) applyComponent1(ctx context.Context, call *step.Call, del *Delivery, a *Applied, once *application.ApplyOnce, memo *applyMemo) error {
	if d.opts.Objects == nil {
		return engine.Terminal(v1alpha1.ReasonExecute, errors.New("vela/oam: no cluster is configured"))
	}
	c := a.Component
	cluster := kubeCluster(a.Placement.Cluster)
	live := map[string]*unstructured.Unstructured{}
	objs := c.Objects()
	traits := make([]string, len(objs))
	for i := range c.Outputs {
		traits[len(objs)-len(c.Outputs)+i] = c.Outputs[i].Trait
	}
	// An object rendered twice (a trait's output that is the component's own Service) is
	// applied once, as rendered last: under one field manager, applying both in turn leaves
	// what the last one says.
	last := map[string]int{}
	for i, obj := range objs {
		last[key(obj)] = i
	}
	for i, obj := range objs {
		if last[key(obj)] != i {
			continue
		}
		rec := application.Applied{ComponentType: c.Type}
		rec.Component, rec.Trait = c.Name, traits[i]
		rec.APIVersion, rec.Kind, rec.Name = obj.GetAPIVersion(), obj.GetKind(), obj.GetName()
		var got *unstructured.Unstructured
		var err error
		if once.Once(&rec) {
			got, err = d.applyOnce(ctx, call, cluster, obj)
		} else {
			got, err = d.applyUnlessKept(ctx, call, cluster, a.Placement.Namespace, obj, memo)
		}
		if err != nil {
			return fmt.Errorf("component %s: %w", c.Name, err)
		}
		live[key(obj)] = got
	}
	for _, obj := range objs {
		a.Live = append(a.Live, live[key(obj)])
	}
	st, err := evaluator(call).Health(ctx, del.Definitions, del.App.Namespace, c, func(r *unstructured.Unstructured) *unstructured.Unstructured {
		return live[key(r)]
	})
	if err != nil {
		return evaluationError(v1alpha1.ReasonExecute, err)
	}
	st.Cluster, st.Namespace = clusterName(a.Placement.Cluster), a.Placement.Namespace
	a.Health = st
	a.Healthy = st.Healthy && !slices.ContainsFunc(st.Traits, func(t v1beta1.ApplicationTraitStatus) bool { return !t.Healthy })
	return nil
}

// applyOnce applies obj unless the cluster holds it as applied from the same rendering, so
// that what others changed in it since is kept.
func (d *Deliverer) applyOnce(ctx context.Context, call *step.Call, cluster string, obj *unstructured.Unstructured) (*unstructured.Unstructured, error) {
	b, err := json.Marshal(obj.Object)
	if err != nil {
		return nil, engine.Terminal(v1alpha1.ReasonExecute, err)
	}
	sum := sha256.Sum256(b)
	hash := hex.EncodeToString(sum[:16])
	cur, err := d.opts.Objects.Get(ctx, call, cluster, obj)
	if err != nil {
		return nil, err
	}
	if cur != nil && cur.GetAnnotations()[AnnotationApplyOnce] == hash {
		return cur, nil
	}
	value := obj.DeepCopy()
	ann := value.GetAnnotations()
	if ann == nil {
		ann = map[string]string{}
	}
	ann[AnnotationApplyOnce] = hash
	value.SetAnnotations(ann)
	return d.opts.Objects.Apply(ctx, call, cluster, value.Object)
}

// applyUnlessKept applies obj, or reads it instead when memo says this step applied the same
// value to it before and the object is as that apply left it: the same uid and, for a kind
// whose spec changes bump metadata.generation, the same generation (its status may have moved:
// that is what the step waits for), else the same resourceVersion. A server-side apply that
// changes nothing still costs the API server a full apply; a read costs a fraction. What
// others change in an object's labels or annotations alone is put right at the next revision
// or the next step that applies it, not while this step waits.
func (d *Deliverer) applyUnlessKept(ctx context.Context, call *step.Call, cluster, namespace string, obj *unstructured.Unstructured, memo *applyMemo) (*unstructured.Unstructured, error) {
	b, err := json.Marshal(obj.Object)
	if err != nil {
		return nil, engine.Terminal(v1alpha1.ReasonExecute, err)
	}
	sum := sha256.Sum256(b)
	hash := hex.EncodeToString(sum[:16])
	id := cluster + "/" + namespace + "/" + key(obj)
	if m, ok := memo.get(id); ok && m.Hash == hash {
		cur, err := d.opts.Objects.Get(ctx, call, cluster, obj)
		if err != nil {
			return nil, err
		}
		if cur != nil && m.keeps(cur) {
			return cur, nil
		}
	}
	got, err := d.opts.Objects.Apply(ctx, call, cluster, obj.DeepCopy().Object)
	if err != nil {
		return nil, err
	}
	memo.put(id, appliedObject{Hash: hash, UID: string(got.GetUID()), Generation: got.GetGeneration(), ResourceVersion: got.GetResourceVersion()})
	return got, nil
}

// applyMemo is what a step's evaluations applied, by cluster, namespace and object, kept in
// the run variable appliesVar+<step>. Its methods may be called concurrently.
type applyMemo struct {
	name    string
	mu      sync.Mutex
	objects map[string]appliedObject
	changed bool
}

// appliedObject is an object as an apply left it.
type appliedObject struct {
	// Hash is the SHA-256 (first 16 bytes, hex) of the value applied.
	Hash            string `json:"hash"`
	UID             string `json:"uid"`
	Generation      int64  `json:"generation,omitempty"`
	ResourceVersion string `json:"resourceVersion,omitempty"`
}

// keeps says cur is the object as the apply recorded in m left it, but for its status.
func (m appliedObject) keeps(cur *unstructured.Unstructured) bool {
	if string(cur.GetUID()) != m.UID {
		return false
	}
	if m.Generation > 0 {
		return cur.GetGeneration() == m.Generation
	}
	return cur.GetResourceVersion() == m.ResourceVersion
}

func loadMemo(call *step.Call) *applyMemo {
	m := &applyMemo{name: appliesVar + stepKey(call), objects: map[string]appliedObject{}}
	if call.Session == nil {
		return m
	}
	if raw, ok := call.Session.Var(m.name); ok {
		_ = json.Unmarshal(raw, &m.objects) // a memo that does not read is no memo: apply
		if m.objects == nil {
			m.objects = map[string]appliedObject{}
		}
	}
	return m
}

func (m *applyMemo) get(id string) (appliedObject, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	o, ok := m.objects[id]
	return o, ok
}

func (m *applyMemo) put(id string, o appliedObject) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.objects[id] != o {
		m.objects[id] = o
		m.changed = true
	}
}

// save writes the memo back when an apply changed it.
func (m *applyMemo) save(call *step.Call) {
	if !m.changed || call.Session == nil {
		return
	}
	b, err := json.Marshal(m.objects)
	if err != nil {
		return
	}
	call.Session.SetVar(m.name, b)
}

func key(u *unstructured.Unstructured) string {
	return u.GetAPIVersion() + "/" + u.GetKind() + "/" + u.GetName()
}

// Record lists what the applies made in the run variable application.AppliedVar+<step>, and
// the health of the components.
func Record(call *step.Call, applied []*Applied) {
	recs := []application.Applied{}
	for _, a := range applied {
		objs := a.Component.Objects()
		for i, u := range a.Live {
			rec := application.Applied{ComponentType: a.Component.Type}
			rec.Component = a.Component.Name
			if j := i - (len(objs) - len(a.Component.Outputs)); j >= 0 && j < len(a.Component.Outputs) {
				rec.Trait = a.Component.Outputs[j].Trait
			}
			rec.Cluster = kubeCluster(a.Placement.Cluster)
			rec.Creator = "workflow"
			rec.APIVersion, rec.Kind = u.GetAPIVersion(), u.GetKind()
			rec.Namespace, rec.Name = u.GetNamespace(), u.GetName()
			recs = append(recs, rec)
		}
	}
	b, _ := json.Marshal(recs)
	call.Session.SetVar(application.AppliedVar+stepKey(call), b)
	recordJudged(call, applied)
}

// recordJudged lists the health judged of the components applied in the run variable
// application.JudgedVar+<step>, with their workloads.
func recordJudged(call *step.Call, applied []*Applied) {
	judged := []application.Judged{}
	for _, a := range applied {
		if a.Waiting != "" {
			continue
		}
		j := application.Judged{Status: a.Health}
		if a.Component.Workload != nil && len(a.Live) > 0 {
			w := a.Live[0]
			j.Workload = &v1beta1.ObjectReference{APIVersion: w.GetAPIVersion(), Kind: w.GetKind(), Namespace: w.GetNamespace(), Name: w.GetName()}
		}
		judged = append(judged, j)
	}
	b, _ := json.Marshal(judged)
	call.Session.SetVar(application.JudgedVar+stepKey(call), b)
}

func stepKey(call *step.Call) string {
	if i, ok := call.Context[v1alpha1.VarIndex]; ok {
		return fmt.Sprintf("%s[%v]", call.Step, i)
	}
	return call.Step
}

// Settle ends the step's wait for health: nothing (the step goes on) when every component is
// healthy; else the step waits with the components' health messages, and fails with them once
// timeout has passed since it began waiting.
func Settle(call *step.Call, applied []*Applied, timeout time.Duration) {
	var msgs []string
	for _, a := range applied {
		if a.Waiting != "" || !a.Healthy {
			msgs = append(msgs, a.Message())
		}
	}
	name := healthSinceVar + stepKey(call)
	if len(msgs) == 0 {
		if _, ok := call.Session.Var(name); ok {
			call.Session.SetVar(name, json.RawMessage("null"))
		}
		return
	}
	if timeout <= 0 {
		timeout = DefaultHealthTimeout
	}
	now := call.Session.Now()
	since := now
	if raw, ok := call.Session.Var(name); ok {
		var t time.Time
		if json.Unmarshal(raw, &t) == nil && !t.IsZero() {
			since = t
		}
	}
	msg := strings.Join(msgs, "; ")
	if now.Sub(since) >= timeout {
		call.Session.SetVar(name, json.RawMessage("null"))
		call.Session.Fail(fmt.Sprintf("not healthy after %s: %s", timeout, msg))
		return
	}
	if since.Equal(now) {
		b, _ := json.Marshal(now)
		call.Session.SetVar(name, b)
	}
	call.Session.Wait(msg)
}

// Timeout reads a timeout parameter ("" is the default).
func Timeout(s string) (time.Duration, error) {
	if s == "" {
		return DefaultHealthTimeout, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, engine.Terminal(v1alpha1.ReasonExecute, fmt.Errorf("timeout %q: want a Go duration such as 5m", s))
	}
	return d, nil
}

type componentParams struct {
	Value       v1beta1.ApplicationComponent `json:"value"`
	Patch       map[string]any               `json:"patch"`
	Cluster     string                       `json:"cluster"`
	Namespace   string                       `json:"namespace"`
	Env         string                       `json:"env"`
	WaitHealthy *bool                        `json:"waitHealthy"`
	Timeout     string                       `json:"timeout"`
}

func (d *Deliverer) componentCall(call *step.Call, action string) (*Delivery, *componentParams, error) {
	var in componentParams
	if err := call.Decode(&in); err != nil {
		return nil, nil, engine.Terminal(v1alpha1.ReasonExecute, fmt.Errorf("vela/oam: #%s: %w", action, err))
	}
	if in.Value.Name == "" || in.Value.Type == "" {
		return nil, nil, engine.Terminal(v1alpha1.ReasonExecute, fmt.Errorf("vela/oam: #%s: value needs the component's name and type", action))
	}
	del, err := d.Load(call)
	if err != nil {
		return nil, nil, err
	}
	in.Value.DependsOn = nil
	return del, &in, nil
}

func (in *componentParams) placement(del *Delivery) application.Placement {
	pl := application.Placement{Cluster: in.Cluster, Namespace: in.Namespace}
	if pl.Cluster == "" {
		pl.Cluster = application.LocalCluster
	}
	if pl.Namespace == "" {
		pl.Namespace = del.App.Namespace
	}
	return pl
}

// outputsOf are a component's objects as the #ApplyComponent and #RenderComponent return them:
// output the workload, outputs the others by name.
func outputsOf(c *application.Component, objs []*unstructured.Unstructured) map[string]any {
	out := map[string]any{}
	i := 0
	if c.Workload != nil && len(objs) > 0 {
		out["output"] = objs[0].Object
		i = 1
	}
	outputs := map[string]any{}
	for j, o := range c.Outputs {
		if i+j < len(objs) {
			outputs[o.Name] = objs[i+j].Object
		}
	}
	out["outputs"] = outputs
	return out
}

func (d *Deliverer) applyComponent(ctx context.Context, call *step.Call) (any, error) {
	del, in, err := d.componentCall(call, "ApplyComponent")
	if err != nil {
		return nil, err
	}
	timeout, err := Timeout(in.Timeout)
	if err != nil {
		return nil, err
	}
	applied, err := d.Apply(ctx, call, del, []v1beta1.ApplicationComponent{in.Value}, []application.Placement{in.placement(del)}, 1, in.Patch)
	if err != nil {
		return nil, err
	}
	if len(applied) != 1 {
		return nil, engine.Terminal(v1alpha1.ReasonRendering, fmt.Errorf("vela/oam: #ApplyComponent: component %s rendered %d times", in.Value.Name, len(applied)))
	}
	Record(call, applied)
	if in.WaitHealthy == nil || *in.WaitHealthy {
		Settle(call, applied, timeout)
	}
	return outputsOf(applied[0].Component, applied[0].Live), nil
}

func (d *Deliverer) renderComponent(ctx context.Context, call *step.Call) (any, error) {
	del, in, err := d.componentCall(call, "RenderComponent")
	if err != nil {
		return nil, err
	}
	pl := in.placement(del)
	app := del.App.DeepCopy()
	app.Spec.Components = []v1beta1.ApplicationComponent{in.Value}
	rendered, err := evaluator(call).Render(ctx, application.Request{
		App: app, Definitions: del.Definitions,
		Target: application.Target{Cluster: pl.Cluster, Namespace: pl.Namespace,
			ClusterVersion: application.VersionOf(ctx, d.opts.Versions, pl.Cluster)},
		Revision: del.Revision, WorkflowName: call.Run.Name, StepName: call.Step,
	})
	if err != nil {
		return nil, evaluationError(v1alpha1.ReasonRendering, err)
	}
	if len(rendered) != 1 {
		return nil, engine.Terminal(v1alpha1.ReasonRendering, fmt.Errorf("vela/oam: #RenderComponent: component %s rendered %d times", in.Value.Name, len(rendered)))
	}
	c := rendered[0]
	if in.Patch != nil && c.Workload != nil {
		c.Workload.Object = kube.MergePatch(c.Workload.Object, in.Patch)
	}
	return outputsOf(c, c.Objects()), nil
}

// componentValue is a component as the load actions return it.
func componentValue(c *v1beta1.ApplicationComponent) (map[string]any, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	err = json.Unmarshal(b, &m)
	return m, err
}

func (d *Deliverer) load(_ context.Context, call *step.Call) (any, error) {
	var in struct {
		App       string `json:"app"`
		Component string `json:"component"`
	}
	if err := call.Decode(&in); err != nil {
		return nil, engine.Terminal(v1alpha1.ReasonExecute, fmt.Errorf("vela/oam: #LoadComponents: %w", err))
	}
	del, err := d.Load(call)
	if err != nil {
		return nil, err
	}
	if in.App != "" && in.App != del.App.Name {
		return nil, engine.Terminal(v1alpha1.ReasonExecute, fmt.Errorf("vela/oam: #LoadComponents: app %q: only the Application the run delivers (%s) can be loaded", in.App, del.App.Name))
	}
	value := map[string]any{}
	for i := range del.App.Spec.Components {
		c := &del.App.Spec.Components[i]
		if in.Component != "" && c.Name != in.Component {
			continue
		}
		m, err := componentValue(c)
		if err != nil {
			return nil, engine.Terminal(v1alpha1.ReasonExecute, err)
		}
		value[c.Name] = m
	}
	return map[string]any{"value": value}, nil
}

func (d *Deliverer) loadInOrder(_ context.Context, call *step.Call) (any, error) {
	del, err := d.Load(call)
	if err != nil {
		return nil, err
	}
	ordered, err := application.InOrder(del.App.Spec.Components)
	if err != nil {
		return nil, engine.Terminal(v1alpha1.ReasonExecute, err)
	}
	value := []any{}
	for i := range ordered {
		m, err := componentValue(&ordered[i])
		if err != nil {
			return nil, engine.Terminal(v1alpha1.ReasonExecute, err)
		}
		value = append(value, m)
	}
	return map[string]any{"value": value}, nil
}

func policyValue(p *v1beta1.AppPolicy) map[string]any {
	b, _ := json.Marshal(p)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return m
}

func (d *Deliverer) loadPolicies(_ context.Context, call *step.Call) (any, error) {
	del, err := d.Load(call)
	if err != nil {
		return nil, err
	}
	value := map[string]any{}
	for i := range del.App.Spec.Policies {
		p := &del.App.Spec.Policies[i]
		value[p.Name] = policyValue(p)
	}
	return map[string]any{"value": value}, nil
}

func (d *Deliverer) loadPoliciesInOrder(_ context.Context, call *step.Call) (any, error) {
	var in struct {
		Input []string `json:"input"`
	}
	if err := call.Decode(&in); err != nil {
		return nil, engine.Terminal(v1alpha1.ReasonExecute, fmt.Errorf("vela/oam: #LoadPoliciesInOrder: %w", err))
	}
	del, err := d.Load(call)
	if err != nil {
		return nil, err
	}
	out := []any{}
	if in.Input == nil {
		for i := range del.App.Spec.Policies {
			out = append(out, policyValue(&del.App.Spec.Policies[i]))
		}
		return map[string]any{"output": out}, nil
	}
	for _, name := range in.Input {
		p, err := application.Policy(del.App, name)
		if err != nil {
			return nil, engine.Terminal(v1alpha1.ReasonExecute, err)
		}
		out = append(out, policyValue(p))
	}
	return map[string]any{"output": out}, nil
}

// applyRemaining applies every component but the exceptions in the local cluster, as vela/op's
// #ApplyRemaining.
func (d *Deliverer) applyRemaining(ctx context.Context, call *step.Call) (any, error) {
	var in struct {
		Exceptions json.RawMessage `json:"exceptions"`
		Timeout    string          `json:"timeout"`
	}
	if err := call.Decode(&in); err != nil {
		return nil, engine.Terminal(v1alpha1.ReasonExecute, fmt.Errorf("vela/op: #ApplyRemaining: %w", err))
	}
	var except []string
	if len(in.Exceptions) > 0 && string(in.Exceptions) != "null" {
		var list []string
		var byName map[string]json.RawMessage
		switch {
		case json.Unmarshal(in.Exceptions, &list) == nil:
			except = list
		case json.Unmarshal(in.Exceptions, &byName) == nil:
			for k := range byName {
				except = append(except, k)
			}
		default:
			return nil, engine.Terminal(v1alpha1.ReasonExecute, errors.New("vela/op: #ApplyRemaining: exceptions: want a list of component names or an object keyed by them"))
		}
	}
	timeout, err := Timeout(in.Timeout)
	if err != nil {
		return nil, err
	}
	del, err := d.Load(call)
	if err != nil {
		return nil, err
	}
	var comps []v1beta1.ApplicationComponent
	for _, c := range del.App.Spec.Components {
		if !slices.Contains(except, c.Name) {
			comps = append(comps, c)
		}
	}
	applied, err := d.Apply(ctx, call, del, comps, []application.Placement{{Cluster: application.LocalCluster, Namespace: del.App.Namespace}}, 5, nil)
	if err != nil {
		return nil, err
	}
	Record(call, applied)
	Settle(call, applied, timeout)
	return map[string]any{}, nil
}
