package definitions

import (
	"embed"
	"fmt"
	"sort"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stepflow/stepflow/api/v1beta1"
)

// The built-in X-Definitions of KubeVela's application delivery, with KubeVela's names and
// parameters: components/<type>.cue, traits/<type>.cue and policies/<type>.cue are templates
// whose first line is a comment describing the type, followed by comment lines of attributes:
//
//	// +workload=apps/v1 Deployment   a component's workload kind (or a workload type name)
//	// +appliesTo=deployments.apps,*  the workloads a trait applies to
//	// +podDisruptive=true            whether changing a trait restarts the pods
//
// <type>.health.cue, when there is one, is the definition's status.healthPolicy (it sets
// isHealth) and <type>.status.cue its status.customStatus (it sets message).
//
//go:embed components/*.cue traits/*.cue policies/*.cue
var xfiles embed.FS

// Components returns the built-in ComponentDefinitions, sorted by name.
func Components() []*v1beta1.ComponentDefinition {
	var out []*v1beta1.ComponentDefinition
	for _, x := range readX("components") {
		d := &v1beta1.ComponentDefinition{
			TypeMeta:   metav1.TypeMeta{APIVersion: v1beta1.GroupVersion.String(), Kind: v1beta1.KindComponentDefinition},
			ObjectMeta: x.meta(),
			Spec: v1beta1.ComponentDefinitionSpec{
				Schematic: &v1beta1.Schematic{CUE: &v1beta1.CUE{Template: x.template}},
				Status:    x.status,
			},
		}
		if w := x.attrs["workload"]; strings.Contains(w, " ") {
			av, kind, _ := strings.Cut(w, " ")
			d.Spec.Workload.Definition = v1beta1.WorkloadGVK{APIVersion: av, Kind: kind}
		} else {
			d.Spec.Workload.Type = w
		}
		out = append(out, d)
	}
	return out
}

// Traits returns the built-in TraitDefinitions, sorted by name.
func Traits() []*v1beta1.TraitDefinition {
	var out []*v1beta1.TraitDefinition
	for _, x := range readX("traits") {
		d := &v1beta1.TraitDefinition{
			TypeMeta:   metav1.TypeMeta{APIVersion: v1beta1.GroupVersion.String(), Kind: v1beta1.KindTraitDefinition},
			ObjectMeta: x.meta(),
			Spec: v1beta1.TraitDefinitionSpec{
				Schematic:     &v1beta1.Schematic{CUE: &v1beta1.CUE{Template: x.template}},
				Status:        x.status,
				PodDisruptive: x.attrs["podDisruptive"] == "true",
			},
		}
		if a := x.attrs["appliesTo"]; a != "" {
			d.Spec.AppliesToWorkloads = strings.Split(a, ",")
		}
		out = append(out, d)
	}
	return out
}

// Policies returns the built-in PolicyDefinitions, sorted by name.
func Policies() []*v1beta1.PolicyDefinition {
	var out []*v1beta1.PolicyDefinition
	for _, x := range readX("policies") {
		out = append(out, &v1beta1.PolicyDefinition{
			TypeMeta:   metav1.TypeMeta{APIVersion: v1beta1.GroupVersion.String(), Kind: v1beta1.KindPolicyDefinition},
			ObjectMeta: x.meta(),
			Spec:       v1beta1.PolicyDefinitionSpec{Schematic: &v1beta1.Schematic{CUE: &v1beta1.CUE{Template: x.template}}},
		})
	}
	return out
}

// XDefinition is a built-in X-Definition as `stepflow def show` and the reference show it.
type XDefinition struct {
	// Kind is component, trait or policy.
	Kind     string
	Name     string
	Template string
	// Description is the template's first comment line.
	Description string
	// Workload, AppliesTo, PodDisruptive, HealthPolicy and CustomStatus are what the
	// definition declares beside its template.
	Workload      string
	AppliesTo     []string
	PodDisruptive bool
	HealthPolicy  string
	CustomStatus  string
}

// Attributes describes what the definition declares beside its template, one line each.
func (x XDefinition) Attributes() []string {
	var out []string
	if x.Workload != "" {
		out = append(out, "workload: "+x.Workload)
	}
	if len(x.AppliesTo) > 0 {
		out = append(out, "applies to: "+strings.Join(x.AppliesTo, ", "))
	}
	if x.Kind == "trait" {
		out = append(out, fmt.Sprintf("pod disruptive: %t", x.PodDisruptive))
	}
	if x.HealthPolicy != "" {
		out = append(out, "health policy: yes")
	}
	return out
}

// XDefinitions returns the built-in X-Definitions of a kind (component, trait or policy),
// sorted by name.
func XDefinitions(kind string) []XDefinition {
	dirs := map[string]string{"component": "components", "trait": "traits", "policy": "policies"}
	var out []XDefinition
	for _, x := range readX(dirs[kind]) {
		d := XDefinition{Kind: kind, Name: x.name, Template: x.template, Description: description(x.template), PodDisruptive: x.attrs["podDisruptive"] == "true"}
		if kind == "component" {
			d.Workload = x.attrs["workload"]
		}
		if a := x.attrs["appliesTo"]; a != "" && kind == "trait" {
			d.AppliesTo = strings.Split(a, ",")
		}
		if x.status != nil {
			d.HealthPolicy, d.CustomStatus = x.status.HealthPolicy, x.status.CustomStatus
		}
		out = append(out, d)
	}
	return out
}

// LookupX finds a built-in X-Definition by name, components first, then traits, then policies.
func LookupX(name string) (XDefinition, bool) {
	for _, kind := range []string{"component", "trait", "policy"} {
		for _, x := range XDefinitions(kind) {
			if x.Name == name {
				return x, true
			}
		}
	}
	return XDefinition{}, false
}

// xdef is one X-Definition as its files hold it.
type xdef struct {
	name, template string
	attrs          map[string]string
	status         *v1beta1.Status
}

func (x xdef) meta() metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name:        x.name,
		Annotations: map[string]string{v1beta1.AnnotationDescription: description(x.template)},
	}
}

// readX reads the definitions of a directory, sorted by name.
func readX(dir string) []xdef {
	entries, _ := xfiles.ReadDir(dir)
	var out []xdef
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".cue")
		if !ok || strings.Contains(name, ".") {
			continue // <type>.health.cue and <type>.status.cue go with <type>.cue
		}
		b, _ := xfiles.ReadFile(dir + "/" + e.Name())
		x := xdef{name: name, template: string(b), attrs: attributes(string(b))}
		health, _ := xfiles.ReadFile(dir + "/" + name + ".health.cue")
		custom, _ := xfiles.ReadFile(dir + "/" + name + ".status.cue")
		if len(health) > 0 || len(custom) > 0 {
			x.status = &v1beta1.Status{HealthPolicy: string(health), CustomStatus: string(custom)}
		}
		out = append(out, x)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// attributes reads the `// +key=value` lines at the head of a template.
func attributes(tmpl string) map[string]string {
	out := map[string]string{}
	for line := range strings.SplitSeq(tmpl, "\n") {
		rest, ok := strings.CutPrefix(line, "//")
		if !ok {
			break
		}
		if kv, ok := strings.CutPrefix(strings.TrimSpace(rest), "+"); ok {
			if k, v, ok := strings.Cut(kv, "="); ok && k != "usage" {
				out[k] = v
			}
		}
	}
	return out
}
