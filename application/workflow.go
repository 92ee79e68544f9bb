package application

// placeholder until t18-deliver lands: this file turns an Application into the steps of its
// delivery run with one `apply-object` step per rendered object, in each cluster a topology
// policy names by name (else the local one), and
// reads back from the run what it applied. t18-deliver's Workflow (deploy and apply-component
// steps, topology across clusters) replaces it; Applied is the one place the lifecycle reads a
// run's applied objects from, so that only it changes with the run's record.

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/api/v1beta1"
)

// stepApplyObject is the step type the placeholder workflow applies each object with.
const stepApplyObject = "apply-object"

// Workflow turns an Application into the steps of the run that delivers it, and their mode:
// the components in dependsOn order, each rendered (at the revision its status.latestRevision
// names) for every place its topology policies name (clusters by name, and their namespace;
// the Application's namespace in the local cluster without one), each of its objects applied
// by one apply-object step.
//
// placeholder until t18-deliver lands.
func Workflow(ctx context.Context, app *v1beta1.Application, defs Definitions) ([]v1alpha1.WorkflowStep, *v1alpha1.WorkflowExecuteMode, error) {
	order, err := dependencyOrder(app)
	if err != nil {
		return nil, nil, err
	}
	targets, err := placements(app)
	if err != nil {
		return nil, nil, err
	}
	byTarget := make([]map[string]*Component, len(targets))
	for i, target := range targets {
		comps, err := Render(ctx, Request{App: app, Definitions: defs, Target: target})
		if err != nil {
			return nil, nil, err
		}
		byTarget[i] = map[string]*Component{}
		for _, c := range comps {
			byTarget[i][c.Name] = c
		}
	}
	var steps []v1alpha1.WorkflowStep
	used := map[string]bool{}
	for _, name := range order {
		for i, target := range targets {
			for _, obj := range byTarget[i][name].Objects() {
				props, err := json.Marshal(map[string]any{"value": obj.Object, "cluster": target.Cluster})
				if err != nil {
					return nil, nil, fmt.Errorf("component %s: %w", name, err)
				}
				steps = append(steps, v1alpha1.WorkflowStep{WorkflowStepBase: v1alpha1.WorkflowStepBase{
					Name: stepName(used, name, target.Cluster, obj), Type: stepApplyObject,
					Properties: &runtime.RawExtension{Raw: props},
				}})
			}
		}
	}
	return steps, &v1alpha1.WorkflowExecuteMode{Steps: v1alpha1.ModeStepByStep}, nil
}

// placements are the places the topology policies name: each of their clusters, by name, with
// their namespace; the local cluster when there is no topology policy.
func placements(app *v1beta1.Application) ([]Target, error) {
	var out []Target
	for i, p := range app.Spec.Policies {
		if p.Type != "topology" {
			continue
		}
		var props struct {
			Clusters  []string `json:"clusters"`
			Namespace string   `json:"namespace"`
		}
		if p.Properties != nil && len(p.Properties.Raw) > 0 {
			if err := json.Unmarshal(p.Properties.Raw, &props); err != nil {
				return nil, fmt.Errorf("spec.policies[%d] (%s).properties: %w", i, p.Name, err)
			}
		}
		if len(props.Clusters) == 0 {
			return nil, fmt.Errorf("spec.policies[%d] (%s): only clusters by name are delivered yet", i, p.Name)
		}
		for _, c := range props.Clusters {
			t := Target{Cluster: c, Namespace: props.Namespace}
			if c == "local" {
				t.Cluster = ""
			}
			if !slices.Contains(out, t) {
				out = append(out, t)
			}
		}
	}
	if len(out) == 0 {
		out = []Target{{}}
	}
	return out, nil
}

// dependencyOrder is the components' names, each after those it dependsOn, else in the
// Application's order.
func dependencyOrder(app *v1beta1.Application) ([]string, error) {
	deps := map[string][]string{}
	for _, c := range app.Spec.Components {
		deps[c.Name] = c.DependsOn
	}
	var out []string
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(name string, path []string) error
	visit = func(name string, path []string) error {
		switch state[name] {
		case 1:
			return fmt.Errorf("components depend on each other in a cycle: %s", strings.Join(append(path, name), " -> "))
		case 2:
			return nil
		}
		if _, ok := deps[name]; !ok {
			return fmt.Errorf("component %s depends on %s, which the Application does not declare", path[len(path)-1], name)
		}
		state[name] = 1
		for _, d := range deps[name] {
			if err := visit(d, append(path, name)); err != nil {
				return err
			}
		}
		state[name] = 2
		out = append(out, name)
		return nil
	}
	for _, c := range app.Spec.Components {
		if err := visit(c.Name, nil); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// stepName names the step applying obj of a component in a cluster, unique among used.
func stepName(used map[string]bool, component, cluster string, obj *unstructured.Unstructured) string {
	clean := func(s string) string {
		return strings.Trim(strings.Map(func(r rune) rune {
			switch {
			case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
				return r
			case r >= 'A' && r <= 'Z':
				return r + 'a' - 'A'
			}
			return '-'
		}, s), "-")
	}
	base := clean("apply-" + component + "-" + obj.GetKind() + "-" + obj.GetName())
	if cluster != "" {
		base = clean("apply-" + cluster + "-" + component + "-" + obj.GetKind() + "-" + obj.GetName())
	}
	name := base
	for i := 2; used[name]; i++ {
		name = fmt.Sprintf("%s-%d", base, i)
	}
	used[name] = true
	return name
}

// Applied reads what a delivery run applied: for each of its apply-object steps that
// succeeded, the object's cluster, namespace, apiVersion, kind and name, and the component
// whose label it carries. The order is the steps'.
//
// placeholder until t18-deliver lands: its runs record what they applied themselves.
func Applied(run *v1alpha1.WorkflowRun) ([]v1beta1.ManagedResource, error) {
	if run.Spec.WorkflowSpec == nil {
		return nil, nil
	}
	succeeded := map[string]bool{}
	for _, s := range run.Status.Steps {
		succeeded[s.Name] = s.Phase == v1alpha1.StepSucceeded
	}
	var out []v1beta1.ManagedResource
	for _, s := range run.Spec.WorkflowSpec.Steps {
		if s.Type != stepApplyObject || !succeeded[s.Name] || s.Properties == nil {
			continue
		}
		var p struct {
			Value   map[string]any `json:"value"`
			Cluster string         `json:"cluster"`
		}
		if err := json.Unmarshal(s.Properties.Raw, &p); err != nil {
			return nil, fmt.Errorf("run %s: step %s: %w", run.Name, s.Name, err)
		}
		obj := unstructured.Unstructured{Object: p.Value}
		r := v1beta1.ManagedResource{
			ClusterObjectReference: v1beta1.ClusterObjectReference{
				Cluster: p.Cluster, Creator: "workflow",
				ObjectReference: v1beta1.ObjectReference{
					APIVersion: obj.GetAPIVersion(), Kind: obj.GetKind(),
					Namespace: obj.GetNamespace(), Name: obj.GetName(),
				},
			},
			Component: obj.GetLabels()[LabelAppComponent],
			Trait:     obj.GetLabels()[LabelTraitType],
		}
		if !slices.ContainsFunc(out, func(m v1beta1.ManagedResource) bool { return SameResource(m, r) }) {
			out = append(out, r)
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
