package application

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	"k8s.io/apimachinery/pkg/runtime"

	"github.com/stepflow/stepflow/api/v1beta1"
)

// LocalCluster is KubeVela's name of the cluster the control plane runs in; "" means the same.
const LocalCluster = "local"

// Placement is one place a deploy delivers the components to.
type Placement struct {
	Cluster   string `json:"cluster"`
	Namespace string `json:"namespace"`
}

// Clusters lists the registered clusters a topology policy may select from (the local one is
// not listed). Labels are a cluster's labels for clusterLabelSelector; nil when it has none.
type Clusters interface {
	Names(ctx context.Context) ([]string, error)
	Labels(ctx context.Context, name string) (map[string]string, error)
}

// Topology is a topology policy's properties.
type Topology struct {
	Clusters             []string          `json:"clusters,omitempty"`
	ClusterLabelSelector map[string]string `json:"clusterLabelSelector,omitempty"`
	ClusterSelector      map[string]string `json:"clusterSelector,omitempty"`
	AllowEmpty           bool              `json:"allowEmpty,omitempty"`
	Namespace            string            `json:"namespace,omitempty"`
}

// Override is an override policy's properties.
type Override struct {
	Components []OverrideComponent `json:"components"`
	// Selector, when set, limits the deploy to these components.
	Selector []string `json:"selector,omitempty"`
}

// OverrideComponent changes the components of a name or a type (either empty matches all).
type OverrideComponent struct {
	Name       string          `json:"name,omitempty"`
	Type       string          `json:"type,omitempty"`
	Properties json.RawMessage `json:"properties,omitempty"`
	Traits     []OverrideTrait `json:"traits,omitempty"`
}

// OverrideTrait changes, adds or (Disable) removes a trait of a type.
type OverrideTrait struct {
	Type       string          `json:"type"`
	Properties json.RawMessage `json:"properties,omitempty"`
	Disable    bool            `json:"disable,omitempty"`
}

// Policy returns the policy of that name, checking that it is of one of the types wanted.
func Policy(app *v1beta1.Application, name string, types ...string) (*v1beta1.AppPolicy, error) {
	for i := range app.Spec.Policies {
		p := &app.Spec.Policies[i]
		if p.Name != name {
			continue
		}
		if len(types) > 0 && !slices.Contains(types, p.Type) {
			return nil, fmt.Errorf("policy %s is of type %s, not %v", name, p.Type, types)
		}
		return p, nil
	}
	return nil, fmt.Errorf("application %s has no policy %s", app.Name, name)
}

func decodeProperties(p *v1beta1.AppPolicy, into any) error {
	if p.Properties == nil || len(p.Properties.Raw) == 0 {
		return nil
	}
	if err := json.Unmarshal(p.Properties.Raw, into); err != nil {
		return fmt.Errorf("policy %s (%s): properties: %w", p.Name, p.Type, err)
	}
	return nil
}

// Placements returns where the topology policies of these names deliver to, in order and
// without repeats: the clusters each names, or those whose labels match its selector, in its
// namespace or the Application's. With no topology policy, the local cluster in the
// Application's namespace. A cluster name the registry does not know is an error, as is a
// selector matching none unless the policy allows it.
func Placements(ctx context.Context, app *v1beta1.Application, topologies []string, clusters Clusters) ([]Placement, error) {
	if len(topologies) == 0 {
		return []Placement{{Cluster: LocalCluster, Namespace: app.Namespace}}, nil
	}
	var out []Placement
	add := func(p Placement) {
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	for _, name := range topologies {
		p, err := Policy(app, name, PolicyTopology)
		if err != nil {
			return nil, err
		}
		var t Topology
		if err := decodeProperties(p, &t); err != nil {
			return nil, err
		}
		ns := t.Namespace
		if ns == "" {
			ns = app.Namespace
		}
		selector := t.ClusterLabelSelector
		if selector == nil {
			selector = t.ClusterSelector
		}
		var known []string
		if len(t.Clusters) > 0 || selector != nil {
			if clusters == nil {
				return nil, fmt.Errorf("policy %s: no clusters are registered", name)
			}
			if known, err = clusters.Names(ctx); err != nil {
				return nil, fmt.Errorf("policy %s: listing clusters: %w", name, err)
			}
			slices.Sort(known)
		}
		switch {
		case len(t.Clusters) > 0:
			for _, c := range t.Clusters {
				if c != LocalCluster && c != "" && !slices.Contains(known, c) {
					return nil, fmt.Errorf("policy %s: cluster %q is not registered (known: %v)", name, c, known)
				}
				if c == "" {
					c = LocalCluster
				}
				add(Placement{Cluster: c, Namespace: ns})
			}
		case selector != nil:
			n := 0
			for _, c := range known {
				labels, err := clusters.Labels(ctx, c)
				if err != nil {
					return nil, fmt.Errorf("policy %s: cluster %s's labels: %w", name, c, err)
				}
				if matches(labels, selector) {
					add(Placement{Cluster: c, Namespace: ns})
					n++
				}
			}
			if n == 0 && !t.AllowEmpty {
				return nil, fmt.Errorf("policy %s: no cluster has the labels %v", name, selector)
			}
		default:
			add(Placement{Cluster: LocalCluster, Namespace: ns})
		}
	}
	return out, nil
}

func matches(labels, selector map[string]string) bool {
	for k, v := range selector {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// ApplyOverrides returns the components as the override policies of these names change them,
// in order: each matching component's properties merged with the override's (objects merged
// key by key, anything else replaced), its traits' likewise, a trait of a type it lacks added
// and one with disable removed. A policy's selector keeps only the components it names. The
// Application is not changed.
func ApplyOverrides(app *v1beta1.Application, overrides []string) ([]v1beta1.ApplicationComponent, error) {
	comps := make([]v1beta1.ApplicationComponent, len(app.Spec.Components))
	for i := range app.Spec.Components {
		app.Spec.Components[i].DeepCopyInto(&comps[i])
	}
	for _, name := range overrides {
		p, err := Policy(app, name, PolicyOverride)
		if err != nil {
			return nil, err
		}
		var o Override
		if err := decodeProperties(p, &o); err != nil {
			return nil, err
		}
		if o.Selector != nil {
			comps = slices.DeleteFunc(comps, func(c v1beta1.ApplicationComponent) bool { return !slices.Contains(o.Selector, c.Name) })
		}
		for i := range comps {
			c := &comps[i]
			for _, oc := range o.Components {
				if (oc.Name != "" && oc.Name != "*" && oc.Name != c.Name) || (oc.Type != "" && oc.Type != c.Type) {
					continue
				}
				if c.Properties, err = mergeRaw(c.Properties, oc.Properties); err != nil {
					return nil, fmt.Errorf("policy %s: component %s: properties: %w", name, c.Name, err)
				}
				for _, ot := range oc.Traits {
					at := slices.IndexFunc(c.Traits, func(t v1beta1.ApplicationTrait) bool { return t.Type == ot.Type })
					switch {
					case ot.Disable && at >= 0:
						c.Traits = slices.Delete(c.Traits, at, at+1)
					case ot.Disable:
					case at >= 0:
						if c.Traits[at].Properties, err = mergeRaw(c.Traits[at].Properties, ot.Properties); err != nil {
							return nil, fmt.Errorf("policy %s: component %s: trait %s: %w", name, c.Name, ot.Type, err)
						}
					default:
						t := v1beta1.ApplicationTrait{Type: ot.Type}
						if len(ot.Properties) > 0 {
							t.Properties = &runtime.RawExtension{Raw: slices.Clone(ot.Properties)}
						}
						c.Traits = append(c.Traits, t)
					}
				}
			}
		}
	}
	return comps, nil
}

// mergeRaw merges patch into base: objects key by key, anything else replaced by patch.
func mergeRaw(base *runtime.RawExtension, patch json.RawMessage) (*runtime.RawExtension, error) {
	if len(patch) == 0 {
		return base, nil
	}
	var b, p any
	if base != nil && len(base.Raw) > 0 {
		if err := json.Unmarshal(base.Raw, &b); err != nil {
			return nil, err
		}
	}
	if err := json.Unmarshal(patch, &p); err != nil {
		return nil, err
	}
	raw, err := json.Marshal(mergeValue(b, p))
	if err != nil {
		return nil, err
	}
	return &runtime.RawExtension{Raw: raw}, nil
}

func mergeValue(base, patch any) any {
	bm, ok1 := base.(map[string]any)
	pm, ok2 := patch.(map[string]any)
	if !ok1 || !ok2 {
		return patch
	}
	out := maps.Clone(bm)
	for k, v := range pm {
		out[k] = mergeValue(bm[k], v)
	}
	return out
}

// ResourceSelector selects applied objects, as KubeVela's resource policy rules do; every
// list given must hold the object's value, an empty selector matches all.
type ResourceSelector struct {
	ComponentNames []string `json:"componentNames,omitempty"`
	ComponentTypes []string `json:"componentTypes,omitempty"`
	// OAMTypes are COMPONENT (a component's own objects) or TRAIT (a trait's).
	OAMTypes      []string `json:"oamTypes,omitempty"`
	TraitTypes    []string `json:"traitTypes,omitempty"`
	ResourceTypes []string `json:"resourceTypes,omitempty"`
	ResourceNames []string `json:"resourceNames,omitempty"`
}

// Matches reports whether the selector selects the applied object.
func (s *ResourceSelector) Matches(r *Applied) bool {
	oam := "COMPONENT"
	if r.Trait != "" {
		oam = "TRAIT"
	}
	in := func(list []string, v string) bool { return list == nil || slices.Contains(list, v) }
	return in(s.ComponentNames, r.Component) && in(s.ComponentTypes, r.ComponentType) &&
		in(s.OAMTypes, oam) && (s.TraitTypes == nil || (r.Trait != "" && slices.Contains(s.TraitTypes, r.Trait))) &&
		in(s.ResourceTypes, r.Kind) && in(s.ResourceNames, r.Name)
}

// Applied is one object a delivery applied, as the vela/oam and vela/multicluster actions
// record it (see AppliedVar): what a ResourceTracker keeps of it, and the type of the
// component that rendered it, for the garbage-collect policy's rules.
type Applied struct {
	v1beta1.ManagedResource `json:",inline"`
	ComponentType           string `json:"componentType,omitempty"`
}

// AppliedVar is the prefix of the run variables that list, per step, what it applied:
// AppliedVar+<step name> holds a JSON list of Applied, replaced at each evaluation of the step.
const AppliedVar = "stepflow.applied/"

// The GC strategies of garbage-collect's rules.
const (
	GCOnAppUpdate = "onAppUpdate"
	GCOnAppDelete = "onAppDelete"
	GCNever       = "never"
)

// GarbageCollect is a garbage-collect policy's properties.
type GarbageCollect struct {
	ApplicationRevisionLimit *int     `json:"applicationRevisionLimit,omitempty"`
	KeepLegacyResource       bool     `json:"keepLegacyResource,omitempty"`
	ContinueOnFailure        bool     `json:"continueOnFailure,omitempty"`
	Rules                    []GCRule `json:"rules,omitempty"`
}

// GCRule says when the objects it selects are deleted.
type GCRule struct {
	Selector    ResourceSelector `json:"selector"`
	Strategy    string           `json:"strategy,omitempty"`
	Propagation string           `json:"propagation,omitempty"`
}

// GCPolicy returns the Application's garbage-collect policy (the first), or the default
// (delete what a new revision no longer renders, and everything with the Application).
func GCPolicy(app *v1beta1.Application) (*GarbageCollect, error) {
	gc := &GarbageCollect{}
	for i := range app.Spec.Policies {
		p := &app.Spec.Policies[i]
		if p.Type != PolicyGC {
			continue
		}
		if err := decodeProperties(p, gc); err != nil {
			return nil, err
		}
		for j, r := range gc.Rules {
			switch r.Strategy {
			case "":
				gc.Rules[j].Strategy = GCOnAppUpdate
			case GCOnAppUpdate, GCOnAppDelete, GCNever:
			default:
				return nil, fmt.Errorf("policy %s (%s): rules[%d].strategy: %q is none of %s, %s, %s", p.Name, p.Type, j, r.Strategy, GCOnAppUpdate, GCOnAppDelete, GCNever)
			}
		}
		break
	}
	return gc, nil
}

// MayDelete answers whether a tracked object that the current revision no longer applies
// (appDeleted false) or whose Application is being deleted (appDeleted true) may be deleted
// now. The first rule selecting it decides: never keeps it, onAppDelete keeps it until the
// Application is deleted, onAppUpdate deletes it (whatever keepLegacyResource). Without a rule, keepLegacyResource keeps
// it on an update; otherwise it is deleted.
func (gc *GarbageCollect) MayDelete(r *Applied, appDeleted bool) bool {
	if gc == nil {
		return true
	}
	for i := range gc.Rules {
		rule := &gc.Rules[i]
		if !rule.Selector.Matches(r) {
			continue
		}
		switch rule.Strategy {
		case GCNever:
			return false
		case GCOnAppDelete:
			return appDeleted
		default:
			return true
		}
	}
	return appDeleted || !gc.KeepLegacyResource
}

// ApplyOnce is an apply-once policy's properties. stepflow honours enable and each rule's
// selector (the objects it selects are applied once); a rule's paths are not told apart.
type ApplyOnce struct {
	Enable bool            `json:"enable,omitempty"`
	Rules  []ApplyOnceRule `json:"rules,omitempty"`
}

// ApplyOnceRule selects objects that are applied once.
type ApplyOnceRule struct {
	Selector ResourceSelector `json:"selector"`
	Strategy json.RawMessage  `json:"strategy,omitempty"`
}

// ApplyOncePolicy returns the Application's apply-once policy (the first); nil without one.
func ApplyOncePolicy(app *v1beta1.Application) (*ApplyOnce, error) {
	for i := range app.Spec.Policies {
		p := &app.Spec.Policies[i]
		if p.Type != PolicyApplyOnce {
			continue
		}
		var a ApplyOnce
		if err := decodeProperties(p, &a); err != nil {
			return nil, err
		}
		return &a, nil
	}
	return nil, nil
}

// Once reports whether the object is applied once: created when missing, and then applied
// again only when what the Application renders for it changes, so that changes others made
// in the cluster are kept.
func (a *ApplyOnce) Once(r *Applied) bool {
	if a == nil {
		return false
	}
	if a.Enable {
		return true
	}
	for i := range a.Rules {
		if a.Rules[i].Selector.Matches(r) {
			return true
		}
	}
	return false
}
