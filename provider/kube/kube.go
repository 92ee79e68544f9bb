// Package kube supplies the CUE package vela/kube: #Apply, #ApplyInParallel, #Patch, #Read,
// #List and #Delete on the objects of any cluster of the registry, and the Go actions behind the
// same names in the legacy package vela/op (op.#Apply, op.#Read, ...).
//
// #Apply is a server-side apply: one request, no read first, and the API server merges the
// fields stepflow sets with those others own. Errors carry the API server's reason. An error that
// trying again cannot mend (Forbidden, Invalid, BadRequest, Unauthorized, an unknown kind, an
// unknown cluster) fails the step at once; any other (the cluster is unreachable, a timeout, a
// 5xx, 429, a conflict) is a plain error, which the engine retries with backoff.
package kube

import (
	"context"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/step"
)

//go:embed kube.cue
var source string

// The labels #Apply and #Patch put on the objects they write, naming the run, as KubeVela does.
const (
	LabelRunName      = "workflowrun.oam.dev/name"
	LabelRunNamespace = "workflowrun.oam.dev/namespace"
)

// DefaultFieldManager is the field manager of server-side applies when Options.FieldManager is "".
const DefaultFieldManager = "stepflow"

// DefaultParallelism bounds the concurrent requests of one #ApplyInParallel when
// Options.Parallelism is zero.
const DefaultParallelism = 8

// Clusters gives the client of a cluster by name ("" is the local cluster). *cluster.Registry
// implements it. An unknown name should be an engine.Terminal error.
type Clusters interface {
	Client(ctx context.Context, name string) (client.Client, error)
}

// NamespacedClusters is Clusters that lets the runs of a namespace use only some of its
// clusters (the server's clusters stored through its API, each for a list of namespaces): the
// kube and config actions ask it with the run's namespace (ClientFor).
type NamespacedClusters interface {
	Clusters
	// ClientIn is Client for a run in namespace; a cluster that namespace may not use should
	// be an engine.Terminal error.
	ClientIn(ctx context.Context, namespace, name string) (client.Client, error)
}

// ClientFor is the client of cluster name for a run in namespace: through ClientIn when
// clusters is NamespacedClusters, else through Client.
func ClientFor(ctx context.Context, clusters Clusters, namespace, name string) (client.Client, error) {
	if nc, ok := clusters.(NamespacedClusters); ok {
		return nc.ClientIn(ctx, namespace, name)
	}
	return clusters.Client(ctx, name)
}

// ObjectRef names what a #Read or #List looked at: one object (Name set) or the objects of a
// kind matching Selector in Namespace ("" for every namespace, or a cluster-scoped kind).
type ObjectRef struct {
	Cluster   string
	GVK       schema.GroupVersionKind
	Namespace string
	Name      string
	// Selector is the label selector of a #List; nil for a #Read.
	Selector labels.Selector
}

// ReadObserver is told of every #Read and #List, whether or not the object was found, and of
// every object an #Apply, #ApplyInParallel or #Patch wrote, so that a waiting step can be woken
// when what it read or applied changes.
type ReadObserver interface {
	ObjectRead(ctx context.Context, run engine.Key, step string, ref ObjectRef)
}

// Options configure the provider; the zero value registers actions that fail saying no
// cluster is configured.
type Options struct {
	// Clusters resolves the cluster parameter of every action.
	Clusters Clusters
	// Reads is told of every read; nil means nobody listens.
	Reads ReadObserver
	// FieldManager names stepflow in server-side applies and patches; "" means DefaultFieldManager.
	FieldManager string
	// Parallelism bounds the concurrent applies of one #ApplyInParallel; 0 means DefaultParallelism.
	Parallelism int
}

// Register adds the package (import path "vela/kube") and its actions kube.apply,
// kube.apply-in-parallel, kube.patch, kube.read, kube.list and kube.delete to r.
func Register(r *step.Registry, opts Options) {
	p := newProvider(opts)
	r.AddPackage(step.Package{Path: "vela/kube", Source: source})
	// Applies and patches are idempotent: they run on every evaluation, so that a step waiting
	// on what they returned sees the object as it is now; a repeat that changes nothing writes
	// nothing (the resourceVersion stays). Deletes run once per try: a second one could delete
	// an object someone made again since.
	r.Register(step.Action{Provider: "kube", Do: "apply", Run: p.apply, SideEffect: step.Always, Idempotent: true})
	r.Register(step.Action{Provider: "kube", Do: "apply-in-parallel", Run: p.applyInParallel, SideEffect: step.Always, Idempotent: true})
	r.Register(step.Action{Provider: "kube", Do: "patch", Run: p.patch, SideEffect: step.Always, Idempotent: true, LegacyOutputs: []string{"result"}})
	r.Register(step.Action{Provider: "kube", Do: "read", Run: p.read, LegacyOutputs: []string{"err"}})
	r.Register(step.Action{Provider: "kube", Do: "list", Run: p.list, LegacyOutputs: []string{"list", "err"}})
	r.Register(step.Action{Provider: "kube", Do: "delete", Run: p.delete, SideEffect: step.Always, LegacyOutputs: []string{"err"}})
}

type provider struct {
	opts Options
}

func newProvider(opts Options) *provider {
	if opts.FieldManager == "" {
		opts.FieldManager = DefaultFieldManager
	}
	if opts.Parallelism <= 0 {
		opts.Parallelism = DefaultParallelism
	}
	return &provider{opts: opts}
}

// Objects applies and reads objects as #Apply and #Read do (the same cluster scoping, labels,
// field manager, marking of Secrets' values and ReadObserver), for the actions of other
// providers that write what they render (vela/oam, vela/multicluster). Its methods may be
// called concurrently for one call: what they tell the call's session is told one at a time.
type Objects struct {
	p  *provider
	mu sync.Mutex // guards the sessions' use
}

// NewObjects returns Objects working with the options a Register is given.
func NewObjects(opts Options) *Objects {
	return &Objects{p: newProvider(opts)}
}

// Apply applies value, as #Apply does, in cluster ("" the local one) for the run of call, and
// returns the object as stored.
func (o *Objects) Apply(ctx context.Context, call *step.Call, cluster string, value map[string]any) (*unstructured.Unstructured, error) {
	cl, err := o.p.client(ctx, call, cluster)
	if err != nil {
		return nil, err
	}
	o.mu.Lock()
	markSecrets(call, value)
	o.mu.Unlock()
	u, err := o.p.applyOne(ctx, cl, call, cluster, value, "value")
	if err != nil {
		return nil, err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.p.observe(ctx, call, refOf(cluster, u))
	markSecrets(call, u.Object)
	return u, nil
}

// Get reads the object want names (apiVersion, kind, metadata.name and namespace, the run's
// namespace when it has none) in cluster, as #Read does; nil when it does not exist.
func (o *Objects) Get(ctx context.Context, call *step.Call, cluster string, want *unstructured.Unstructured) (*unstructured.Unstructured, error) {
	cl, err := o.p.client(ctx, call, cluster)
	if err != nil {
		return nil, err
	}
	want = want.DeepCopy()
	if err := place(cl, want, call.Run.Namespace); err != nil {
		return nil, failure("read", want, cluster, err)
	}
	o.mu.Lock()
	o.p.observe(ctx, call, ObjectRef{Cluster: cluster, GVK: want.GroupVersionKind(), Namespace: want.GetNamespace(), Name: want.GetName()})
	o.mu.Unlock()
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(want.GroupVersionKind())
	err = cl.Get(ctx, client.ObjectKeyFromObject(want), u)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, failure("read", want, cluster, err)
	}
	u.SetManagedFields(nil)
	o.mu.Lock()
	defer o.mu.Unlock()
	markSecrets(call, u.Object)
	return u, nil
}

// objectParams are the parameters of the actions that name one object.
type objectParams struct {
	Cluster string         `json:"cluster"`
	Value   map[string]any `json:"value"`
	Patch   map[string]any `json:"patch"`
	Filter  *filter        `json:"filter"`
}

type filter struct {
	Namespace      *string           `json:"namespace"`
	MatchingLabels map[string]string `json:"matchingLabels"`
}

func (p *provider) decode(call *step.Call, action string, into any) error {
	if err := call.Decode(into); err != nil {
		return engine.Terminal(v1alpha1.ReasonExecute, fmt.Errorf("vela/kube: #%s: %w", action, err))
	}
	return nil
}

func (p *provider) client(ctx context.Context, call *step.Call, cluster string) (client.Client, error) {
	if p.opts.Clusters == nil {
		return nil, engine.Terminal(v1alpha1.ReasonExecute, errors.New("vela/kube: no cluster is configured (give a kubeconfig)"))
	}
	c, err := ClientFor(ctx, p.opts.Clusters, call.Run.Namespace, cluster)
	if err != nil {
		return nil, fmt.Errorf("vela/kube: %w", err)
	}
	return c, nil
}

func (p *provider) apply(ctx context.Context, call *step.Call) (any, error) {
	var in objectParams
	if err := p.decode(call, "Apply", &in); err != nil {
		return nil, err
	}
	cl, err := p.client(ctx, call, in.Cluster)
	if err != nil {
		return nil, err
	}
	if in.Patch != nil {
		in.Value = MergePatch(in.Value, in.Patch)
	}
	markSecrets(call, in.Value)
	u, err := p.applyOne(ctx, cl, call, in.Cluster, in.Value, "value")
	if err != nil {
		return nil, err
	}
	reportObject(call, "applied", u, in.Cluster)
	p.observe(ctx, call, refOf(in.Cluster, u))
	markSecrets(call, u.Object)
	return map[string]any{"value": u.Object}, nil
}

func (p *provider) applyInParallel(ctx context.Context, call *step.Call) (any, error) {
	var in struct {
		Cluster string           `json:"cluster"`
		Value   []map[string]any `json:"value"`
	}
	if err := p.decode(call, "ApplyInParallel", &in); err != nil {
		return nil, err
	}
	markSecrets(call, in.Value...)
	cl, err := p.client(ctx, call, in.Cluster)
	if err != nil {
		return nil, err
	}
	out := make([]any, len(in.Value))
	errs := make([]error, len(in.Value))
	sem := make(chan struct{}, p.opts.Parallelism)
	var wg sync.WaitGroup
	for i, v := range in.Value {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			u, err := p.applyOne(ctx, cl, call, in.Cluster, v, fmt.Sprintf("value[%d]", i))
			if err != nil {
				errs[i] = err
				return
			}
			out[i] = u.Object
		}()
	}
	wg.Wait()
	for _, o := range out {
		if o, ok := o.(map[string]any); ok {
			// here, not in the goroutines: the session is not for concurrent use
			p.observe(ctx, call, refOf(in.Cluster, &unstructured.Unstructured{Object: o}))
			markSecrets(call, o)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	where := "the local cluster"
	if in.Cluster != "" {
		where = fmt.Sprintf("cluster %q", in.Cluster)
	}
	call.Report(step.Report{Summary: fmt.Sprintf("applied %d objects in %s", len(out), where)})
	return map[string]any{"value": out}, nil
}

// applyOne applies one object with a server-side apply and returns it as stored.
func (p *provider) applyOne(ctx context.Context, cl client.Client, call *step.Call, cluster string, value map[string]any, field string) (*unstructured.Unstructured, error) {
	u, err := object(value, field, true)
	if err != nil {
		return nil, err
	}
	addRunLabels(u, call.Run)
	if err := place(cl, u, call.Run.Namespace); err != nil {
		return nil, failure("apply", u, cluster, err)
	}
	err = cl.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(p.opts.FieldManager), client.ForceOwnership)
	if err != nil {
		return nil, failure("apply", u, cluster, err)
	}
	u.SetManagedFields(nil)
	return u, nil
}

func (p *provider) patch(ctx context.Context, call *step.Call) (any, error) {
	var in objectParams
	if err := p.decode(call, "Patch", &in); err != nil {
		return nil, err
	}
	cl, err := p.client(ctx, call, in.Cluster)
	if err != nil {
		return nil, err
	}
	u, err := object(in.Value, "value", true)
	if err != nil {
		return nil, err
	}
	if err := place(cl, u, call.Run.Namespace); err != nil {
		return nil, failure("patch", u, in.Cluster, err)
	}
	if isSecret(u.Object) {
		markSecretData(call, in.Patch)
	}
	change := MergePatch(map[string]any{"metadata": map[string]any{"labels": map[string]any{
		LabelRunName: call.Run.Name, LabelRunNamespace: call.Run.Namespace,
	}}}, in.Patch)
	data, err := json.Marshal(change)
	if err != nil {
		return nil, engine.Terminal(v1alpha1.ReasonExecute, fmt.Errorf("vela/kube: #Patch: patch: %w", err))
	}
	// Kinds compiled into the API server understand strategic merge patches, which merge
	// lists such as containers by name; custom resources take JSON merge patches.
	pt := types.MergePatchType
	if clientgoscheme.Scheme.Recognizes(u.GroupVersionKind()) {
		pt = types.StrategicMergePatchType
	}
	if err := cl.Patch(ctx, u, client.RawPatch(pt, data), client.FieldOwner(p.opts.FieldManager)); err != nil {
		return nil, failure("patch", u, in.Cluster, err)
	}
	u.SetManagedFields(nil)
	reportObject(call, "patched", u, in.Cluster)
	p.observe(ctx, call, refOf(in.Cluster, u))
	markSecrets(call, u.Object)
	return map[string]any{"result": u.Object}, nil
}

func (p *provider) read(ctx context.Context, call *step.Call) (any, error) {
	var in objectParams
	if err := p.decode(call, "Read", &in); err != nil {
		return nil, err
	}
	cl, err := p.client(ctx, call, in.Cluster)
	if err != nil {
		return nil, err
	}
	want, err := object(in.Value, "value", true)
	if err != nil {
		return nil, err
	}
	if err := place(cl, want, call.Run.Namespace); err != nil {
		return nil, failure("read", want, in.Cluster, err)
	}
	p.observe(ctx, call, ObjectRef{Cluster: in.Cluster, GVK: want.GroupVersionKind(), Namespace: want.GetNamespace(), Name: want.GetName()})
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(want.GroupVersionKind())
	err = cl.Get(ctx, client.ObjectKeyFromObject(want), u)
	if apierrors.IsNotFound(err) {
		call.Report(step.Report{Summary: "read " + describe(want, in.Cluster) + ": not found"})
		return map[string]any{"err": fmt.Sprintf("%s not found", describe(want, in.Cluster))}, nil
	}
	if err != nil {
		return nil, failure("read", want, in.Cluster, err)
	}
	u.SetManagedFields(nil)
	reportObject(call, "read", u, in.Cluster)
	markSecrets(call, u.Object)
	return map[string]any{"value": u.Object}, nil
}

func (p *provider) list(ctx context.Context, call *step.Call) (any, error) {
	var in struct {
		Cluster  string `json:"cluster"`
		Resource struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		} `json:"resource"`
		Filter *filter `json:"filter"`
	}
	if err := p.decode(call, "List", &in); err != nil {
		return nil, err
	}
	gv, err := schema.ParseGroupVersion(in.Resource.APIVersion)
	if err != nil || in.Resource.APIVersion == "" || in.Resource.Kind == "" {
		return nil, engine.Terminal(v1alpha1.ReasonExecute, fmt.Errorf("vela/kube: #List: resource needs an apiVersion and a kind, got %q and %q", in.Resource.APIVersion, in.Resource.Kind))
	}
	cl, err := p.client(ctx, call, in.Cluster)
	if err != nil {
		return nil, err
	}
	gvk := gv.WithKind(in.Resource.Kind)
	ref := ObjectRef{Cluster: in.Cluster, GVK: gvk, Selector: labels.Everything()}
	opts := []client.ListOption{}
	if f := in.Filter; f != nil {
		if f.Namespace != nil {
			ref.Namespace = *f.Namespace
			opts = append(opts, client.InNamespace(ref.Namespace))
		}
		if len(f.MatchingLabels) > 0 {
			sel, err := labels.ValidatedSelectorFromSet(f.MatchingLabels)
			if err != nil {
				return nil, engine.Terminal(v1alpha1.ReasonExecute, fmt.Errorf("vela/kube: #List: filter.matchingLabels: %w", err))
			}
			ref.Selector = sel
			opts = append(opts, client.MatchingLabelsSelector{Selector: sel})
		}
	}
	what := &unstructured.Unstructured{}
	what.SetGroupVersionKind(gvk)
	what.SetNamespace(ref.Namespace)
	p.observe(ctx, call, ref)
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(gv.WithKind(in.Resource.Kind + "List"))
	if err := cl.List(ctx, list, opts...); err != nil {
		return nil, failure("list", what, in.Cluster, err)
	}
	items := make([]any, len(list.Items))
	for i := range list.Items {
		list.Items[i].SetManagedFields(nil)
		items[i] = list.Items[i].Object
		if isSecretKind(gvk) {
			markSecretData(call, list.Items[i].Object)
		}
	}
	call.Report(step.Report{Summary: fmt.Sprintf("listed %s: %d items", describe(what, in.Cluster), len(items))})
	values := list.UnstructuredContent()
	values["items"] = items
	// The new form reads values; the legacy op.#List reads list.
	return map[string]any{"values": values, "list": values}, nil
}

func (p *provider) delete(ctx context.Context, call *step.Call) (any, error) {
	var in objectParams
	if err := p.decode(call, "Delete", &in); err != nil {
		return nil, err
	}
	cl, err := p.client(ctx, call, in.Cluster)
	if err != nil {
		return nil, err
	}
	u, err := object(in.Value, "value", in.Filter == nil)
	if err != nil {
		return nil, err
	}
	if f := in.Filter; f != nil && f.Namespace != nil && *f.Namespace != "" {
		u.SetNamespace(*f.Namespace)
	}
	if err := place(cl, u, call.Run.Namespace); err != nil {
		return nil, failure("delete", u, in.Cluster, err)
	}
	background := client.PropagationPolicy(metav1.DeletePropagationBackground)
	if f := in.Filter; f != nil {
		sel, err := labels.ValidatedSelectorFromSet(f.MatchingLabels)
		if err != nil {
			return nil, engine.Terminal(v1alpha1.ReasonExecute, fmt.Errorf("vela/kube: #Delete: filter.matchingLabels: %w", err))
		}
		u.SetName("")
		err = cl.DeleteAllOf(ctx, u, client.InNamespace(u.GetNamespace()), client.MatchingLabelsSelector{Selector: sel}, background)
		if err != nil {
			return nil, failure("delete", u, in.Cluster, err)
		}
		call.Report(step.Report{Summary: fmt.Sprintf("deleted %s labelled %s", describe(u, in.Cluster), sel)})
		return nil, nil
	}
	err = cl.Delete(ctx, u, background)
	if apierrors.IsNotFound(err) {
		call.Report(step.Report{Summary: "delete " + describe(u, in.Cluster) + ": not found"})
		return map[string]any{"err": fmt.Sprintf("%s not found", describe(u, in.Cluster))}, nil
	}
	if err != nil {
		return nil, failure("delete", u, in.Cluster, err)
	}
	call.Report(step.Report{Summary: "deleted " + describe(u, in.Cluster)})
	return nil, nil
}

// markSecrets marks the data of the Secrets among objs sensitive, so that a step that reads or
// writes a Secret never shows its values.
func markSecrets(call *step.Call, objs ...map[string]any) {
	for _, o := range objs {
		if isSecret(o) {
			markSecretData(call, o)
		}
	}
}

// isSecret reports whether obj is a core/v1 Secret.
func isSecret(obj map[string]any) bool {
	apiVersion, _ := obj["apiVersion"].(string)
	kind, _ := obj["kind"].(string)
	return apiVersion == "v1" && kind == "Secret"
}

func isSecretKind(gvk schema.GroupVersionKind) bool {
	return gvk.Group == "" && gvk.Version == "v1" && gvk.Kind == "Secret"
}

// markSecretData marks the values of a Secret (or of a patch of one): each value of data, as
// the base64 text the API carries and as the text it decodes to, and each value of stringData.
func markSecretData(call *step.Call, secret map[string]any) {
	var values []string
	if data, ok := secret["data"].(map[string]any); ok {
		for _, v := range data {
			s, ok := v.(string)
			if !ok {
				continue
			}
			values = append(values, s)
			if b, err := base64.StdEncoding.DecodeString(s); err == nil {
				values = append(values, string(b))
			}
		}
	}
	if data, ok := secret["stringData"].(map[string]any); ok {
		for _, v := range data {
			if s, ok := v.(string); ok {
				values = append(values, s)
			}
		}
	}
	call.Sensitive(values...)
}

// refOf names an object the API server returned.
func refOf(cluster string, u *unstructured.Unstructured) ObjectRef {
	return ObjectRef{Cluster: cluster, GVK: u.GroupVersionKind(), Namespace: u.GetNamespace(), Name: u.GetName()}
}

func (p *provider) observe(ctx context.Context, call *step.Call, ref ObjectRef) {
	if p.opts.Reads != nil {
		p.opts.Reads.ObjectRead(ctx, call.Run, call.Step, ref)
	}
}

// object turns a parameter into an object, checking that it names its kind (and its name when
// needed).
func object(value map[string]any, field string, needName bool) (*unstructured.Unstructured, error) {
	if value == nil {
		return nil, engine.Terminal(v1alpha1.ReasonExecute, fmt.Errorf("vela/kube: %s: no object given", field))
	}
	u := &unstructured.Unstructured{Object: value}
	if _, err := schema.ParseGroupVersion(u.GetAPIVersion()); err != nil || u.GetAPIVersion() == "" || u.GetKind() == "" {
		return nil, engine.Terminal(v1alpha1.ReasonExecute, fmt.Errorf("vela/kube: %s needs apiVersion and kind, got %q and %q", field, u.GetAPIVersion(), u.GetKind()))
	}
	if needName && u.GetName() == "" {
		return nil, engine.Terminal(v1alpha1.ReasonExecute, fmt.Errorf("vela/kube: %s: %s needs metadata.name", field, u.GetKind()))
	}
	return u, nil
}

// place sets a namespaced object's namespace to the run's when it has none, and clears the
// namespace of a cluster-scoped one.
func place(cl client.Client, u *unstructured.Unstructured, runNamespace string) error {
	namespaced, err := cl.IsObjectNamespaced(u)
	if err != nil {
		return err
	}
	switch {
	case !namespaced:
		u.SetNamespace("")
	case u.GetNamespace() == "":
		u.SetNamespace(runNamespace)
	}
	return nil
}

func addRunLabels(u *unstructured.Unstructured, run engine.Key) {
	l := u.GetLabels()
	if l == nil {
		l = map[string]string{}
	}
	l[LabelRunName] = run.Name
	l[LabelRunNamespace] = run.Namespace
	u.SetLabels(l)
}

// MergePatch merges patch into base as a JSON merge patch (RFC 7386) does: maps are merged,
// anything else is replaced, and null removes the field. base is changed and returned.
func MergePatch(base, patch map[string]any) map[string]any {
	if base == nil {
		base = map[string]any{}
	}
	for k, pv := range patch {
		if pv == nil {
			delete(base, k)
			continue
		}
		pm, pIsMap := pv.(map[string]any)
		bm, bIsMap := base[k].(map[string]any)
		switch {
		case pIsMap && bIsMap:
			base[k] = MergePatch(bm, pm)
		case pIsMap:
			base[k] = MergePatch(map[string]any{}, pm)
		default:
			base[k] = pv
		}
	}
	return base
}

// describe names an object in messages: kind namespace/name in cluster "x".
func describe(u *unstructured.Unstructured, cluster string) string {
	s := u.GetKind()
	switch {
	case u.GetName() == "" && u.GetNamespace() != "":
		s += " in namespace " + u.GetNamespace()
	case u.GetNamespace() != "":
		s += " " + u.GetNamespace() + "/" + u.GetName()
	case u.GetName() != "":
		s += " " + u.GetName()
	}
	if cluster == "" {
		return s + " in the local cluster"
	}
	return s + fmt.Sprintf(" in cluster %q", cluster)
}

// reportObject reports what an action did to the object u (as the API server returned it):
// its API version, kind, name and cluster, and the resourceVersion it has now.
func reportObject(call *step.Call, did string, u *unstructured.Unstructured, cluster string) {
	call.Report(step.Report{
		Summary: fmt.Sprintf("%s %s %s", did, u.GetAPIVersion(), describe(u, cluster)),
		Data:    map[string]any{"resourceVersion": u.GetResourceVersion(), "generation": u.GetGeneration()},
	})
}

// failure wraps an error of op on the object u.
func failure(op string, u *unstructured.Unstructured, cluster string, err error) error {
	return Failure(fmt.Sprintf("vela/kube: %s %s", op, describe(u, cluster)), err)
}

// Failure wraps err, an error of a client of the API server, with what was being done and the
// API server's reason, as an engine.Terminal error when trying again cannot help: Forbidden,
// Invalid, BadRequest, Unauthorized, MethodNotAllowed, an unknown kind, or an error already
// terminal (an unknown cluster). Anything else (unreachable, timeouts, 5xx, 429, conflicts)
// stays a plain error, which the engine retries.
func Failure(what string, err error) error {
	if _, ok := errors.AsType[*engine.TerminalError](err); ok {
		return fmt.Errorf("%s: %w", what, err)
	}
	if meta.IsNoMatchError(err) {
		return engine.Terminal(v1alpha1.ReasonExecute, fmt.Errorf("%s: unknown kind: %w", what, err))
	}
	reason := apierrors.ReasonForError(err)
	if reason != metav1.StatusReasonUnknown {
		what += ": " + string(reason)
	}
	err = fmt.Errorf("%s: %w", what, err)
	switch reason {
	case metav1.StatusReasonForbidden, metav1.StatusReasonInvalid, metav1.StatusReasonBadRequest,
		metav1.StatusReasonUnauthorized, metav1.StatusReasonMethodNotAllowed, metav1.StatusReasonNotAcceptable,
		metav1.StatusReasonUnsupportedMediaType, metav1.StatusReasonRequestEntityTooLarge:
		return engine.Terminal(v1alpha1.ReasonExecute, err)
	}
	return err
}
