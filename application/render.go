package application

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"cuelang.org/go/cue"
	"cuelang.org/go/cue/cuecontext"
	cueerrors "cuelang.org/go/cue/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/version"

	"github.com/stepflow/stepflow/api/v1beta1"
)

// Definitions finds the X-Definitions an Application's components and traits name, as seen from
// the Application's namespace.
type Definitions interface {
	ComponentDefinition(ctx context.Context, namespace, name string) (*v1beta1.ComponentDefinition, error)
	TraitDefinition(ctx context.Context, namespace, name string) (*v1beta1.TraitDefinition, error)
}

// ErrUnknownType is returned, wrapped, for a component or trait type no definition declares.
var ErrUnknownType = errors.New("no definition of that type")

// Target is where the components are rendered for.
type Target struct {
	// Cluster is the cluster's name ("" or "local" for the control plane's).
	Cluster string
	// ClusterVersion is the cluster's Kubernetes version, as context.clusterVersion shows it.
	ClusterVersion ClusterVersion
	// Namespace is the namespace objects without one are put in; "" is the Application's.
	Namespace string
}

// ClusterVersion is a cluster's version, as its /version reports it.
type ClusterVersion struct {
	Major      string `json:"major"`
	Minor      string `json:"minor"`
	GitVersion string `json:"gitVersion"`
	Platform   string `json:"platform"`
}

// ClusterVersions read clusters' Kubernetes versions, as their discovery reports them
// (*cluster.Registry is one): "" or "local" is the control plane's cluster.
type ClusterVersions interface {
	ServerVersion(ctx context.Context, cluster string) (*version.Info, error)
}

// VersionOf is the version of cluster as context.clusterVersion gives it: empty when versions
// is nil or the cluster's version cannot be read (it is unreachable), which the apply that
// follows a render reports.
func VersionOf(ctx context.Context, versions ClusterVersions, cluster string) ClusterVersion {
	if versions == nil {
		return ClusterVersion{}
	}
	if cluster == LocalCluster {
		cluster = ""
	}
	info, err := versions.ServerVersion(ctx, cluster)
	if err != nil || info == nil {
		return ClusterVersion{}
	}
	return ClusterVersion{Major: info.Major, Minor: info.Minor, GitVersion: info.GitVersion, Platform: info.Platform}
}

// Request is what Render renders.
type Request struct {
	App         *v1beta1.Application
	Definitions Definitions
	Target      Target
	// Revision names the ApplicationRevision being rendered (context.appRevision) and its
	// number (context.appRevisionNum); empty, the Application's status.latestRevision, else
	// <name>-v1.
	Revision    string
	RevisionNum int64
	// WorkflowName and StepName are context.workflowName and context.stepName.
	WorkflowName string
	StepName     string
	// Components limits the rendering to these components; empty renders them all.
	Components []string
}

// Component is one rendered component.
type Component struct {
	Name string
	Type string
	// Workload is the object from the definition's `output`, traits' patches applied; nil when
	// the definition has none.
	Workload *unstructured.Unstructured
	// WorkloadDefinition is the workload's kind as its definition declares it.
	WorkloadDefinition v1beta1.WorkloadGVK
	// Outputs are the objects beside the workload: the definition's `outputs`, then each trait's.
	Outputs []Output
	// Traits are the component's traits, in order.
	Traits []Trait
	// Properties are the component's properties as the definition's parameter received them.
	Properties json.RawMessage
	// Context is the context the component's template was filled with (without output and
	// outputs), which Health fills again.
	Context map[string]any
}

// Trait is one rendered trait of a component.
type Trait struct {
	Type       string
	Properties json.RawMessage
}

// Output is one object beside the workload.
type Output struct {
	// Name is its key under the template's `outputs`.
	Name string
	// Trait is the type of the trait that rendered it; "" for the component's own.
	Trait  string
	Object *unstructured.Unstructured
}

// Objects returns the component's objects: its workload first, then its outputs.
func (c *Component) Objects() []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	if c.Workload != nil {
		out = append(out, c.Workload)
	}
	for _, o := range c.Outputs {
		out = append(out, o.Object)
	}
	return out
}

// Render renders the components of an Application for one target. The error names the
// component, the trait and the template's field path.
func Render(ctx context.Context, req Request) (_ []*Component, err error) {
	defer guard(&err)
	app := req.App
	if app == nil {
		return nil, errors.New("render: no Application")
	}
	if req.Definitions == nil {
		return nil, errors.New("render: no definitions")
	}
	for _, name := range req.Components {
		if !slices.ContainsFunc(app.Spec.Components, func(c v1beta1.ApplicationComponent) bool { return c.Name == name }) {
			return nil, fmt.Errorf("render: Application %s has no component %s", app.Name, name)
		}
	}
	var out []*Component
	for i := range app.Spec.Components {
		c := &app.Spec.Components[i]
		if len(req.Components) > 0 && !slices.Contains(req.Components, c.Name) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		rc, err := renderComponent(ctx, req, c)
		if err != nil {
			return nil, fmt.Errorf("component %s: %w", c.Name, err)
		}
		out = append(out, rc)
	}
	return out, nil
}

// renderComponent renders one component and its traits.
func renderComponent(ctx context.Context, req Request, c *v1beta1.ApplicationComponent) (*Component, error) {
	app := req.App
	def, err := req.Definitions.ComponentDefinition(ctx, app.Namespace, c.Type)
	if err != nil {
		return nil, fmt.Errorf("type %s: %w", c.Type, err)
	}
	tmpl := componentTemplate(def)
	if tmpl == "" {
		return nil, fmt.Errorf("type %s: the ComponentDefinition has no CUE template", c.Type)
	}
	props, err := properties(c.Properties)
	if err != nil {
		return nil, fmt.Errorf("properties: %w", err)
	}
	base := baseContext(req, c)
	v, err := evaluate(tmpl, base, props)
	if err != nil {
		return nil, fmt.Errorf("type %s: %w", c.Type, err)
	}
	rc := &Component{
		Name: c.Name, Type: c.Type, Properties: props, Context: base,
		WorkloadDefinition: def.Spec.Workload.Definition,
	}
	var defaults map[string]bool
	var workload map[string]any
	if o := v.LookupPath(cue.ParsePath("output")); o.Exists() {
		workload, err = object(o, "output")
		if err != nil {
			return nil, fmt.Errorf("type %s: %w", c.Type, err)
		}
		defaults = map[string]bool{}
		defaultPaths(o, "", defaults)
	}
	outputs, err := objects(v, "outputs")
	if err != nil {
		return nil, fmt.Errorf("type %s: %w", c.Type, err)
	}
	for _, o := range outputs {
		rc.Outputs = append(rc.Outputs, Output{Name: o.name, Object: &unstructured.Unstructured{Object: o.obj}})
	}
	for i, t := range c.Traits {
		tdef, err := req.Definitions.TraitDefinition(ctx, app.Namespace, t.Type)
		if err != nil {
			return nil, fmt.Errorf("traits[%d] (%s): %w", i, t.Type, err)
		}
		if !appliesTo(tdef, c.Type, def, workload) {
			return nil, fmt.Errorf("traits[%d] (%s): the trait applies to %s, not to component type %s", i, t.Type,
				strings.Join(tdef.Spec.AppliesToWorkloads, ", "), c.Type)
		}
		tprops, err := properties(t.Properties)
		if err != nil {
			return nil, fmt.Errorf("traits[%d] (%s): properties: %w", i, t.Type, err)
		}
		workload, err = renderTrait(rc, tdef, base, tprops, workload, defaults)
		if err != nil {
			return nil, fmt.Errorf("traits[%d] (%s): %w", i, t.Type, err)
		}
		rc.Traits = append(rc.Traits, Trait{Type: t.Type, Properties: tprops})
	}
	ns := req.Target.Namespace
	if ns == "" {
		ns = app.Namespace
	}
	if workload != nil {
		rc.Workload = &unstructured.Unstructured{Object: workload}
		finish(rc.Workload, c.Name, ns)
		setLabels(rc.Workload, commonLabels(req, c.Name), map[string]string{
			LabelWorkloadType: c.Type, LabelResourceType: ResourceTypeWorkload,
		})
	}
	for _, o := range rc.Outputs {
		finish(o.Object, c.Name, ns)
		typ := o.Trait
		if typ == "" {
			typ = AuxiliaryWorkload
		}
		setLabels(o.Object, commonLabels(req, c.Name), map[string]string{
			LabelTraitType: typ, LabelTraitResource: o.Name, LabelResourceType: ResourceTypeTrait,
		})
	}
	return rc, nil
}

// renderTrait evaluates a trait with context.output the workload as patched so far and
// context.outputs the objects so far; it returns the workload with the trait's patch applied
// and adds the trait's outputs to rc.
func renderTrait(rc *Component, def *v1beta1.TraitDefinition, base map[string]any, props json.RawMessage,
	workload map[string]any, defaults map[string]bool) (map[string]any, error) {
	tmpl := ""
	if def.Spec.Schematic != nil && def.Spec.Schematic.CUE != nil {
		tmpl = def.Spec.Schematic.CUE.Template
	}
	if tmpl == "" {
		return nil, errors.New("the TraitDefinition has no CUE template")
	}
	tctx := withObjects(base, workload, rc.Outputs)
	v, err := evaluate(tmpl, tctx, props)
	if err != nil {
		return nil, err
	}
	if p := v.LookupPath(cue.ParsePath("patch")); p.Exists() {
		if workload == nil {
			return nil, errors.New("patch: the component has no workload to patch")
		}
		if workload, err = applyPatch(workload, p, topStrategy(tmpl), defaults); err != nil {
			return nil, err
		}
	}
	if p := v.LookupPath(cue.ParsePath("patchOutputs")); p.Exists() {
		if err := patchOutputs(rc, p); err != nil {
			return nil, err
		}
	}
	outs, err := objects(v, "outputs")
	if err != nil {
		return nil, err
	}
	for _, o := range outs {
		rc.Outputs = append(rc.Outputs, Output{Name: o.name, Trait: def.Name, Object: &unstructured.Unstructured{Object: o.obj}})
	}
	return workload, nil
}

// patchOutputs applies a trait's `patchOutputs`, by name, to the objects already rendered.
func patchOutputs(rc *Component, p cue.Value) error {
	it, err := p.Fields()
	if err != nil {
		return fmt.Errorf("patchOutputs: %w", describe(err))
	}
	for it.Next() {
		name := it.Selector().Unquoted()
		i := slices.IndexFunc(rc.Outputs, func(o Output) bool { return o.Name == name })
		if i < 0 {
			return fmt.Errorf("patchOutputs.%s: no output of that name", name)
		}
		patched, err := applyPatch(rc.Outputs[i].Object.Object, it.Value(), "", nil)
		if err != nil {
			return fmt.Errorf("patchOutputs.%s: %w", name, err)
		}
		rc.Outputs[i].Object.Object = patched
	}
	return nil
}

// componentTemplate is a ComponentDefinition's CUE template, or "".
func componentTemplate(def *v1beta1.ComponentDefinition) string {
	if def.Spec.Schematic == nil || def.Spec.Schematic.CUE == nil {
		return ""
	}
	return def.Spec.Schematic.CUE.Template
}

// appliesTo reports whether a trait may be put on a component of type typ, whose definition is
// def: appliesToWorkloads empty or holding "*", the component type, the workload's type, its
// kind, or its resource as kind-plural.group ("deployments.apps"). A definition that does not
// name its workload's kind (autodetects.core.oam.dev) is judged by the workload it rendered.
func appliesTo(t *v1beta1.TraitDefinition, typ string, def *v1beta1.ComponentDefinition, workload map[string]any) bool {
	if len(t.Spec.AppliesToWorkloads) == 0 {
		return true
	}
	gvk := def.Spec.Workload.Definition
	if gvk.Kind == "" && workload != nil {
		gvk.APIVersion, _ = workload["apiVersion"].(string)
		gvk.Kind, _ = workload["kind"].(string)
	}
	group, _, _ := strings.Cut(gvk.APIVersion, "/")
	if !strings.Contains(gvk.APIVersion, "/") {
		group = ""
	}
	resource := strings.ToLower(gvk.Kind) + "s"
	if group != "" {
		resource += "." + group
	}
	for _, w := range t.Spec.AppliesToWorkloads {
		switch w {
		case "*", typ, resource:
			return true
		}
		if w != "" && (w == def.Spec.Workload.Type || w == gvk.Kind) {
			return true
		}
	}
	return false
}

// baseContext is the context KubeVela gives a component's and its traits' templates, without
// output and outputs.
func baseContext(req Request, c *v1beta1.ApplicationComponent) map[string]any {
	app := req.App
	ns := req.Target.Namespace
	if ns == "" {
		ns = app.Namespace
	}
	rev, num := revision(req)
	comps := make([]any, len(app.Spec.Components))
	for i, ac := range app.Spec.Components {
		comps[i] = map[string]any{"name": ac.Name, "type": ac.Type}
	}
	labels := map[string]any{}
	for k, v := range app.Labels {
		labels[k] = v
	}
	annotations := map[string]any{}
	for k, v := range app.Annotations {
		annotations[k] = v
	}
	cv := req.Target.ClusterVersion
	return map[string]any{
		"name":           c.Name,
		"appName":        app.Name,
		"namespace":      ns,
		"appRevision":    rev,
		"appRevisionNum": num,
		"revision":       rev,
		"cluster":        req.Target.Cluster,
		"clusterVersion": map[string]any{"major": cv.Major, "minor": cv.Minor, "gitVersion": cv.GitVersion, "platform": cv.Platform},
		"components":     comps,
		"appLabels":      labels,
		"appAnnotations": annotations,
		"workflowName":   req.WorkflowName,
		"stepName":       req.StepName,
		"publishVersion": app.Annotations[AnnotationPublishVersion],
		"replicaKey":     c.ReplicaKey,
	}
}

// revision is the name and number of the revision rendered.
func revision(req Request) (string, int64) {
	if req.Revision != "" {
		return req.Revision, req.RevisionNum
	}
	if r := req.App.Status.LatestRevision; r != nil && r.Name != "" {
		return r.Name, r.Revision
	}
	return req.App.Name + "-v1", 1
}

// withObjects is base with context.output (when there is a workload) and context.outputs.
func withObjects(base map[string]any, workload map[string]any, outputs []Output) map[string]any {
	ctx := make(map[string]any, len(base)+2)
	maps.Copy(ctx, base)
	if workload != nil {
		ctx["output"] = workload
	}
	outs := map[string]any{}
	for _, o := range outputs {
		outs[o.Name] = o.Object.Object
	}
	ctx["outputs"] = outs
	return ctx
}

// commonLabels are the labels of every object a component renders.
func commonLabels(req Request, component string) map[string]string {
	rev, _ := revision(req)
	return map[string]string{
		LabelAppName:      req.App.Name,
		LabelAppNamespace: req.App.Namespace,
		LabelAppComponent: component,
		LabelAppRevision:  rev,
	}
}

// setLabels adds the labels to an object's own.
func setLabels(obj *unstructured.Unstructured, sets ...map[string]string) {
	labels := obj.GetLabels()
	if labels == nil {
		labels = map[string]string{}
	}
	for _, set := range sets {
		maps.Copy(labels, set)
	}
	obj.SetLabels(labels)
}

// clusterScoped are the kinds of the core API groups that live in no namespace; Render puts
// every other object without a namespace in the target's.
var clusterScoped = map[string]bool{
	"Namespace": true, "Node": true, "PersistentVolume": true, "ClusterRole": true,
	"ClusterRoleBinding": true, "CustomResourceDefinition": true, "StorageClass": true,
	"PriorityClass": true, "IngressClass": true, "APIService": true, "RuntimeClass": true,
	"ValidatingWebhookConfiguration": true, "MutatingWebhookConfiguration": true, "CSIDriver": true,
}

// finish names an object without a name after its component and puts it in the namespace.
func finish(obj *unstructured.Unstructured, component, namespace string) {
	if obj.GetName() == "" && obj.GetGenerateName() == "" {
		obj.SetName(component)
	}
	if obj.GetNamespace() == "" && !clusterScoped[obj.GetKind()] {
		obj.SetNamespace(namespace)
	}
}

// properties reads properties given as JSON; none is an empty object.
func properties(raw *runtime.RawExtension) (json.RawMessage, error) {
	var b []byte
	if raw != nil {
		b = raw.Raw
		if b == nil && raw.Object != nil {
			var err error
			if b, err = json.Marshal(raw.Object); err != nil {
				return nil, err
			}
		}
	}
	b = bytes.TrimSpace(b)
	if len(b) == 0 || string(b) == "null" {
		return json.RawMessage("{}"), nil
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("properties must be an object: %w", err)
	}
	// Written again by encoding/json, numbers as written, so that CUE reads it: JSON escapes
	// CUE lacks (\/) go.
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var x any
	if err := d.Decode(&x); err != nil {
		return nil, err
	}
	return json.Marshal(x)
}

// evaluate compiles a template with its context and parameter, as KubeVela does: the three are
// one CUE file.
func evaluate(tmpl string, context map[string]any, params json.RawMessage) (cue.Value, error) {
	src, err := source(tmpl, context, params)
	if err != nil {
		return cue.Value{}, err
	}
	v := cuecontext.New().CompileString(src, cue.Filename("template.cue"))
	if err := v.Err(); err != nil {
		return cue.Value{}, describe(err)
	}
	if p := v.LookupPath(cue.ParsePath("parameter")); p.Exists() {
		if err := p.Validate(cue.Concrete(true)); err != nil {
			return cue.Value{}, describe(err)
		}
	}
	return v, nil
}

// preamble goes before every template, on its first line so that line numbers stay right:
// KubeVela's definitions rely on && and || short-circuiting (`x != _|_ && x.y == 1`), which CUE
// v0.17 does only under this experiment (as the step runtime does).
const preamble = "@experiment(shortcircuit), "

// source is the CUE text of a template with its context and parameter.
func source(tmpl string, context map[string]any, params json.RawMessage) (string, error) {
	ctxJSON, err := json.Marshal(context)
	if err != nil {
		return "", fmt.Errorf("context: %w", err)
	}
	var b strings.Builder
	b.WriteString(preamble)
	b.WriteString(tmpl)
	b.WriteString("\ncontext: ")
	b.Write(ctxJSON)
	b.WriteString("\nparameter: ")
	b.Write(params)
	b.WriteString("\n")
	return b.String(), nil
}

// namedObject is one object of a template's `outputs`.
type namedObject struct {
	name string
	obj  map[string]any
}

// objects reads the objects under field (`outputs`), in the template's order.
func objects(v cue.Value, field string) ([]namedObject, error) {
	o := v.LookupPath(cue.ParsePath(field))
	if !o.Exists() {
		return nil, nil
	}
	it, err := o.Fields()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", field, describe(err))
	}
	var out []namedObject
	for it.Next() {
		name := it.Selector().Unquoted()
		obj, err := object(it.Value(), field+"."+name)
		if err != nil {
			return nil, err
		}
		out = append(out, namedObject{name, obj})
	}
	return out, nil
}

// object reads a concrete Kubernetes object at path.
func object(v cue.Value, path string) (map[string]any, error) {
	if err := v.Validate(cue.Concrete(true)); err != nil {
		return nil, describe(err)
	}
	x, err := plainValue(v)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	obj, ok := x.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s: an object must be a struct, got %s", path, v.Kind())
	}
	if obj["apiVersion"] == nil || obj["kind"] == nil {
		return nil, fmt.Errorf("%s: the object needs apiVersion and kind", path)
	}
	return obj, nil
}

// plainValue decodes a concrete CUE value into the Go values of an unstructured object: int64
// for integers, float64 for other numbers.
func plainValue(v cue.Value) (any, error) {
	b, err := v.MarshalJSON()
	if err != nil {
		return nil, describe(err)
	}
	return decodeJSON(b)
}

// decodeJSON decodes JSON with int64 for integers and float64 for other numbers.
func decodeJSON(b []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var x any
	if err := d.Decode(&x); err != nil {
		return nil, err
	}
	return numbers(x), nil
}

func numbers(x any) any {
	switch x := x.(type) {
	case map[string]any:
		for k, v := range x {
			x[k] = numbers(v)
		}
	case []any:
		for i, v := range x {
			x[i] = numbers(v)
		}
	case json.Number:
		if i, err := strconv.ParseInt(string(x), 10, 64); err == nil {
			return i
		}
		f, _ := x.Float64()
		return f
	}
	return x
}

// defaultPaths records the paths of v's fields whose value is a default (`*1 | int`), which a
// trait's patch may change as CUE unification would.
func defaultPaths(v cue.Value, path string, out map[string]bool) {
	switch v.IncompleteKind() {
	case cue.StructKind:
		it, err := v.Fields()
		if err != nil {
			return
		}
		for it.Next() {
			defaultPaths(it.Value(), join(path, it.Selector().Unquoted()), out)
		}
	case cue.ListKind:
		it, err := v.List()
		if err != nil {
			return
		}
		for i := 0; it.Next(); i++ {
			defaultPaths(it.Value(), path+"["+strconv.Itoa(i)+"]", out)
		}
	default:
		if _, ok := v.Default(); ok {
			out[path] = true
		}
	}
}

// join appends a field name to a path.
func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// guard turns a panic of the CUE evaluator into an error: a template or properties a user wrote
// must not crash the process.
func guard(err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("the CUE evaluator failed: %v", r)
	}
}

// describe turns CUE errors into one error naming each problem's field path.
func describe(err error) error {
	errs := cueerrors.Errors(err)
	if len(errs) == 0 {
		return err
	}
	var msgs []string
	for _, e := range errs {
		format, args := e.Msg()
		msg := fmt.Sprintf(format, args...)
		if strings.HasSuffix(msg, "errors in empty disjunction:") {
			continue // the alternatives' own errors follow
		}
		if p := strings.Join(e.Path(), "."); p != "" {
			msg = p + ": " + msg
		}
		if !slices.Contains(msgs, msg) {
			msgs = append(msgs, msg)
		}
	}
	return errors.New(strings.Join(msgs, "; "))
}
