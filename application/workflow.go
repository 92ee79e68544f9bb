package application

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/runtime"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/api/v1beta1"
)

// The step types and policy types the default workflow is made of.
const (
	StepDeploy         = "deploy"
	StepApplyComponent = "apply-component"
	PolicyTopology     = "topology"
	PolicyOverride     = "override"
	PolicyApplyOnce    = "apply-once"
	PolicyGC           = "garbage-collect"
)

// ErrWorkflowRef is returned, wrapped, by Workflow for an Application whose workflow is a
// Workflow template named in spec.workflow.ref: its steps are the template's (RunSpec refers
// to it).
var ErrWorkflowRef = errors.New("the workflow is a Workflow template named by spec.workflow.ref")

// Workflow turns an Application into the steps of the run that delivers it: its own
// spec.workflow when it has one, else KubeVela's default (one deploy per topology policy,
// else one apply-component per component in dependsOn order). The mode is the Application's
// own, or nil for the engine's default; the default workflow of apply-component steps runs as
// a DAG, each component's step after those of the components it dependsOn.
func Workflow(app *v1beta1.Application) ([]v1alpha1.WorkflowStep, *v1alpha1.WorkflowExecuteMode, error) {
	if app == nil {
		return nil, nil, errors.New("workflow: no Application")
	}
	if wf := app.Spec.Workflow; wf != nil {
		if wf.Ref != "" {
			return nil, wf.Mode, fmt.Errorf("application %s: %w (%s)", app.Name, ErrWorkflowRef, wf.Ref)
		}
		if len(wf.Steps) > 0 {
			steps := make([]v1alpha1.WorkflowStep, len(wf.Steps))
			for i := range wf.Steps {
				wf.Steps[i].DeepCopyInto(&steps[i])
			}
			var mode *v1alpha1.WorkflowExecuteMode
			if wf.Mode != nil {
				mode = wf.Mode.DeepCopy()
			}
			return steps, mode, nil
		}
	}
	var topologies, overrides []string
	for _, p := range app.Spec.Policies {
		switch p.Type {
		case PolicyTopology:
			topologies = append(topologies, p.Name)
		case PolicyOverride:
			overrides = append(overrides, p.Name)
		}
	}
	switch {
	case len(topologies) > 0:
		steps := make([]v1alpha1.WorkflowStep, 0, len(topologies))
		for _, t := range topologies {
			steps = append(steps, deployStep("deploy-"+t, append(slices.Clone(overrides), t)))
		}
		return steps, nil, nil
	case len(overrides) > 0:
		return []v1alpha1.WorkflowStep{deployStep("deploy", overrides)}, nil, nil
	}
	order, err := InOrder(app.Spec.Components)
	if err != nil {
		return nil, nil, fmt.Errorf("application %s: %w", app.Name, err)
	}
	steps := make([]v1alpha1.WorkflowStep, 0, len(order))
	for _, c := range order {
		props, _ := json.Marshal(map[string]string{"component": c.Name})
		s := v1alpha1.WorkflowStep{WorkflowStepBase: v1alpha1.WorkflowStepBase{
			Name: c.Name, Type: StepApplyComponent,
			Properties: &runtime.RawExtension{Raw: props},
			DependsOn:  slices.Clone(c.DependsOn),
		}}
		steps = append(steps, s)
	}
	return steps, &v1alpha1.WorkflowExecuteMode{Steps: v1alpha1.ModeDAG}, nil
}

func deployStep(name string, policies []string) v1alpha1.WorkflowStep {
	props, _ := json.Marshal(map[string]any{"policies": policies})
	return v1alpha1.WorkflowStep{WorkflowStepBase: v1alpha1.WorkflowStepBase{
		Name: name, Type: StepDeploy, Properties: &runtime.RawExtension{Raw: props},
	}}
}

// InOrder returns the components so that each comes after those it dependsOn, otherwise in
// the order written. A dependsOn naming no component, or a cycle, is an error.
func InOrder(comps []v1beta1.ApplicationComponent) ([]v1beta1.ApplicationComponent, error) {
	index := map[string]int{}
	for i, c := range comps {
		index[c.Name] = i
	}
	for _, c := range comps {
		for _, d := range c.DependsOn {
			if _, ok := index[d]; !ok {
				return nil, fmt.Errorf("component %s dependsOn %s, which is not a component", c.Name, d)
			}
		}
	}
	const (
		unseen = iota
		visiting
		done
	)
	state := make([]int, len(comps))
	out := make([]v1beta1.ApplicationComponent, 0, len(comps))
	var visit func(i int, path []string) error
	visit = func(i int, path []string) error {
		switch state[i] {
		case done:
			return nil
		case visiting:
			return fmt.Errorf("components depend on each other in a cycle: %v", append(path, comps[i].Name))
		}
		state[i] = visiting
		for _, d := range comps[i].DependsOn {
			if err := visit(index[d], append(path, comps[i].Name)); err != nil {
				return err
			}
		}
		state[i] = done
		out = append(out, comps[i])
		return nil
	}
	for i := range comps {
		if err := visit(i, nil); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// The keys of a delivering run's spec.context (and so of its steps' CUE context).
const (
	// ContextAppName is the Application's name (context.appName; context.name too, as
	// KubeVela's application workflows see it).
	ContextAppName = "appName"
	// ContextAppRevision is the ApplicationRevision the run delivers (context.appRevision).
	ContextAppRevision = "appRevision"
	// ContextApplication is the Application itself (metadata and spec), which the vela/oam and
	// vela/multicluster actions render.
	ContextApplication = "application"
	// ContextDefinitions holds the X-Definitions the Application uses that are not built in:
	// {componentDefinitions, traitDefinitions, policyDefinitions}, each by name, as an
	// ApplicationRevision keeps them.
	ContextDefinitions = "applicationDefinitions"
)

// DeliveryDefinitions are the X-Definitions a delivering run carries (ContextDefinitions), by
// name, as an ApplicationRevision keeps them.
type DeliveryDefinitions struct {
	ComponentDefinitions map[string]*v1beta1.ComponentDefinition `json:"componentDefinitions,omitempty"`
	TraitDefinitions     map[string]*v1beta1.TraitDefinition     `json:"traitDefinitions,omitempty"`
	PolicyDefinitions    map[string]*v1beta1.PolicyDefinition    `json:"policyDefinitions,omitempty"`
}

// RunSpec is the spec of the WorkflowRun that delivers revision of app: Workflow's steps and
// mode (or the Workflow template the Application names), and the context the vela/oam and
// vela/multicluster actions read the Application from. defs are the X-Definitions it uses
// that are not built in (nil for none).
func RunSpec(app *v1beta1.Application, revision string, defs *DeliveryDefinitions) (v1alpha1.WorkflowRunSpec, error) {
	var spec v1alpha1.WorkflowRunSpec
	steps, mode, err := Workflow(app)
	switch {
	case errors.Is(err, ErrWorkflowRef):
		spec.WorkflowRef = app.Spec.Workflow.Ref
	case err != nil:
		return spec, err
	default:
		spec.WorkflowSpec = &v1alpha1.WorkflowSpec{Steps: steps}
	}
	spec.Mode = mode
	raw, err := DeliveryContext(app, revision, defs)
	if err != nil {
		return spec, err
	}
	spec.Context = &runtime.RawExtension{Raw: raw}
	return spec, nil
}

// DeliveryContext is the spec.context of a run delivering revision of app (see RunSpec).
func DeliveryContext(app *v1beta1.Application, revision string, defs *DeliveryDefinitions) (json.RawMessage, error) {
	carried := &v1beta1.Application{TypeMeta: app.TypeMeta, Spec: app.Spec}
	carried.Name, carried.Namespace = app.Name, app.Namespace
	carried.Labels, carried.Annotations = app.Labels, app.Annotations
	carried.Generation, carried.UID = app.Generation, app.UID
	c := map[string]any{
		"name":             app.Name,
		ContextAppName:     app.Name,
		ContextAppRevision: revision,
		ContextApplication: carried,
	}
	if defs != nil {
		c[ContextDefinitions] = defs
	}
	raw, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("application %s: its run's context: %w", app.Name, err)
	}
	return raw, nil
}

// AppliedBy reads what a delivery run applied from its variables (AppliedVar, which the
// vela/oam and vela/multicluster actions write at each evaluation of a delivering step): every
// object, once, in the order of the steps' names. It is the one place the lifecycle reads a
// run's applied objects from.
func AppliedBy(vars map[string]json.RawMessage) ([]v1beta1.ManagedResource, error) {
	names := make([]string, 0, len(vars))
	for name := range vars {
		if strings.HasPrefix(name, AppliedVar) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	var out []v1beta1.ManagedResource
	for _, name := range names {
		var list []Applied
		if err := json.Unmarshal(vars[name], &list); err != nil {
			return nil, fmt.Errorf("run variable %s: %w", name, err)
		}
		for _, a := range list {
			if !slices.ContainsFunc(out, func(m v1beta1.ManagedResource) bool { return SameResource(m, a.ManagedResource) }) {
				out = append(out, a.ManagedResource)
			}
		}
	}
	return out, nil
}

// SameResource says whether two tracked objects are the same object: the same cluster
// ("" and "local" alike), namespace, API group, kind and name (the version may differ).
func SameResource(a, b v1beta1.ManagedResource) bool {
	local := func(c string) string {
		if c == "local" {
			return ""
		}
		return c
	}
	group := func(apiVersion string) string {
		if g, _, ok := strings.Cut(apiVersion, "/"); ok {
			return g
		}
		return ""
	}
	return local(a.Cluster) == local(b.Cluster) && a.Namespace == b.Namespace && a.Kind == b.Kind &&
		a.Name == b.Name && group(a.APIVersion) == group(b.APIVersion)
}
