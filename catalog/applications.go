// applications.go: the checks of Applications and their X-Definitions (`stepflow vet`).

package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/api/v1beta1"
	"github.com/stepflow/stepflow/application"
	"github.com/stepflow/stepflow/definitions"
	"github.com/stepflow/stepflow/manifest"
	"github.com/stepflow/stepflow/step"
)

// XDefinitions is the set of X-Definitions an Application of objs is checked and rendered
// against: the built-ins, and those objs declare, which take precedence.
func XDefinitions(objs *manifest.Objects) *application.Set {
	set := application.NewSet().Add(definitions.Components(), definitions.Traits(), definitions.Policies())
	if objs != nil {
		set.Add(objs.ComponentDefinitions, objs.TraitDefinitions, objs.PolicyDefinitions)
	}
	return set
}

// checkApplications checks the X-Definitions' CUE and each Application against the
// X-Definitions (XDefinitions): component, trait and policy types exist, properties fit their
// parameter (with paths), component names are unique and dependsOn names components without a
// cycle, and the workflow's steps are checked as a run's. The error is an ErrUnchecked when a
// check could not be made.
func (c *Catalog) checkApplications(ctx context.Context, cue CUE, objs *manifest.Objects) (manifest.Errors, error) {
	var problems manifest.Errors
	var failed error // the first check that could not be made (ErrUnchecked)
	add := func(obj any, errs field.ErrorList) {
		if err := unchecked(errs); err != nil && failed == nil {
			failed = err
		}
		problems = append(problems, objs.Explain(obj, errs)...)
	}
	tmplPath := field.NewPath("spec", "schematic", "cue", "template")
	checkX := func(obj any, kind, name string, s *v1beta1.Schematic, status *v1beta1.Status) {
		var errs field.ErrorList
		if s == nil || s.CUE == nil || strings.TrimSpace(s.CUE.Template) == "" {
			errs = append(errs, field.Required(tmplPath, fmt.Sprintf("a %s needs a CUE template", kind)))
		} else if err := cue.CheckXTemplate(ctx, s.CUE.Template); step.NotTheInput(err) {
			errs = append(errs, field.InternalError(tmplPath, fmt.Errorf("%s %s: %w", kind, name, err)))
		} else if err != nil {
			errs = append(errs, field.Invalid(tmplPath, "(CUE)", fmt.Sprintf("%s %s: %v", kind, name, err)))
		}
		if status != nil {
			for p, src := range map[string]string{"healthPolicy": status.HealthPolicy, "customStatus": status.CustomStatus} {
				if src == "" {
					continue
				}
				at := field.NewPath("spec", "status", p)
				if err := cue.CheckXTemplate(ctx, src); step.NotTheInput(err) {
					errs = append(errs, field.InternalError(at, fmt.Errorf("%s %s: %w", kind, name, err)))
				} else if err != nil {
					errs = append(errs, field.Invalid(at, "(CUE)", fmt.Sprintf("%s %s: %v", kind, name, err)))
				}
			}
		}
		add(obj, errs)
	}
	for _, d := range objs.ComponentDefinitions {
		checkX(d, v1beta1.KindComponentDefinition, d.Name, d.Spec.Schematic, d.Spec.Status)
	}
	for _, d := range objs.TraitDefinitions {
		checkX(d, v1beta1.KindTraitDefinition, d.Name, d.Spec.Schematic, d.Spec.Status)
	}
	for _, d := range objs.PolicyDefinitions {
		checkX(d, v1beta1.KindPolicyDefinition, d.Name, d.Spec.Schematic, nil)
	}
	if len(objs.Applications) == 0 {
		return problems, failed
	}
	set := XDefinitions(objs)
	for _, app := range objs.Applications {
		add(app, c.checkApplication(ctx, cue, set, app))
	}
	return problems, failed
}

// checkApplication checks one Application against the X-Definitions in set.
func (c *Catalog) checkApplication(ctx context.Context, cue CUE, set *application.Set, app *v1beta1.Application) field.ErrorList {
	var errs field.ErrorList
	comps := field.NewPath("spec", "components")
	names := map[string]int{}
	for i, comp := range app.Spec.Components {
		p := comps.Index(i)
		switch first, dup := names[comp.Name]; {
		case comp.Name == "":
			errs = append(errs, field.Required(p.Child("name"), "a component needs a name"))
		case dup:
			errs = append(errs, field.Duplicate(p.Child("name"), fmt.Sprintf("%s (also components[%d])", comp.Name, first)))
		default:
			names[comp.Name] = i
		}
	}
	for i, comp := range app.Spec.Components {
		p := comps.Index(i)
		for j, dep := range comp.DependsOn {
			if _, ok := names[dep]; !ok {
				errs = append(errs, field.NotFound(p.Child("dependsOn").Index(j), dep))
			}
		}
		var filled []string
		for _, in := range comp.Inputs {
			if in.ParameterKey != "" {
				filled = append(filled, in.ParameterKey)
			}
		}
		if comp.Type == "" {
			errs = append(errs, field.Required(p.Child("type"), "a component needs a type"))
		} else if def, err := set.ComponentDefinition(ctx, app.Namespace, comp.Type); err != nil {
			errs = append(errs, field.Invalid(p.Child("type"), comp.Type, unknownMessage("component", err)))
		} else {
			errs = append(errs, properties(ctx, cue, p, "component "+comp.Name, templateOf(def.Spec.Schematic), comp.Properties, filled)...)
		}
		for j, t := range comp.Traits {
			tp := p.Child("traits").Index(j)
			def, err := set.TraitDefinition(ctx, app.Namespace, t.Type)
			if err != nil {
				errs = append(errs, field.Invalid(tp.Child("type"), t.Type, unknownMessage("trait", err)))
				continue
			}
			errs = append(errs, properties(ctx, cue, tp, fmt.Sprintf("component %s, trait %s", comp.Name, t.Type), templateOf(def.Spec.Schematic), t.Properties, nil)...)
		}
	}
	if cycle := dependsOnCycle(app.Spec.Components); cycle != nil {
		errs = append(errs, field.Invalid(comps, cycle[0], "dependsOn forms a cycle: "+strings.Join(cycle, " -> ")))
	}
	policies := map[string]bool{}
	for i, pol := range app.Spec.Policies {
		p := field.NewPath("spec", "policies").Index(i)
		if pol.Name == "" {
			errs = append(errs, field.Required(p.Child("name"), "a policy needs a name"))
		} else if policies[pol.Name] {
			errs = append(errs, field.Duplicate(p.Child("name"), pol.Name))
		}
		policies[pol.Name] = true
		def, err := set.PolicyDefinition(ctx, app.Namespace, pol.Type)
		if err != nil {
			errs = append(errs, field.Invalid(p.Child("type"), pol.Type, unknownMessage("policy", err)))
			continue
		}
		errs = append(errs, properties(ctx, cue, p, "policy "+pol.Name, templateOf(def.Spec.Schematic), pol.Properties, nil)...)
	}
	if wf := app.Spec.Workflow; wf != nil {
		base := field.NewPath("spec", "workflow")
		switch {
		case wf.Ref != "" && len(wf.Steps) > 0:
			errs = append(errs, field.Invalid(base.Child("ref"), wf.Ref, "a workflow has steps or a ref, not both"))
		case wf.Ref != "":
			if _, err := c.Workflow(ctx, app.Namespace, wf.Ref); err != nil {
				errs = append(errs, field.Invalid(base.Child("ref"), wf.Ref, err.Error()))
			}
		default:
			mode := v1alpha1.WorkflowExecuteMode{}
			if wf.Mode != nil {
				mode = *wf.Mode
			}
			steps := base.Child("steps")
			verrs := v1alpha1.ValidateSteps(wf.Steps, mode, steps)
			if len(verrs) == 0 {
				verrs = cue.CheckSteps(ctx, app.Namespace, wf.Steps, steps)
			}
			errs = append(errs, verrs...)
		}
	}
	return errs
}

// properties checks properties against a definition's parameter, each problem at its path
// under at.properties; a check that could not be made is a field.ErrorTypeInternal.
func properties(ctx context.Context, cue CUE, at *field.Path, what, tmpl string, raw *runtime.RawExtension, filled []string) field.ErrorList {
	var b json.RawMessage
	if raw != nil {
		b = raw.Raw
	}
	if string(b) == "null" {
		b = nil
	}
	var given any
	_ = json.Unmarshal(b, &given) // CheckProperties reports JSON that is not an object
	found, err := cue.CheckXProperties(ctx, tmpl, b, filled)
	if step.NotTheInput(err) {
		return field.ErrorList{field.InternalError(at.Child("properties"), fmt.Errorf("%s: %w", what, err))}
	}
	if err != nil { // a bound passed
		return field.ErrorList{field.Invalid(at.Child("properties"), "", what+": "+err.Error())}
	}
	var errs field.ErrorList
	for _, pe := range found {
		p := propertyPath(at.Child("properties"), given, pe.Path)
		msg := what + ": " + pe.Message
		switch v, ok := application.ValueAt(given, pe.Path); {
		case !ok && strings.HasPrefix(pe.Message, "required"):
			errs = append(errs, field.Required(p, msg))
		case ok && len(pe.Path) > 0:
			errs = append(errs, field.Invalid(p, v, msg))
		default:
			errs = append(errs, field.Invalid(p, "", msg))
		}
	}
	return errs
}

// propertyPath is the field path of path under base, an index where the value is a list.
func propertyPath(base *field.Path, given any, path []string) *field.Path {
	p := base
	for i, seg := range path {
		v, _ := application.ValueAt(given, path[:i])
		if _, isList := v.([]any); isList {
			if n, err := strconv.Atoi(seg); err == nil {
				p = p.Index(n)
				continue
			}
		}
		p = p.Child(seg)
	}
	return p
}

// templateOf is a schematic's CUE template, or "".
func templateOf(s *v1beta1.Schematic) string {
	if s == nil || s.CUE == nil {
		return ""
	}
	return s.CUE.Template
}

// unknownMessage words a type that no definition declares.
func unknownMessage(kind string, err error) string {
	if errors.Is(err, application.ErrUnknownType) {
		return fmt.Sprintf("no %s definition of that type (neither built in nor in the files)", kind)
	}
	return err.Error()
}

// dependsOnCycle returns the components of a dependsOn cycle, the first repeated at the end, or
// nil.
func dependsOnCycle(comps []v1beta1.ApplicationComponent) []string {
	deps := map[string][]string{}
	for _, c := range comps {
		deps[c.Name] = c.DependsOn
	}
	const (
		onPath = 1 + iota
		done
	)
	state := map[string]int{}
	var path []string
	var visit func(string) []string
	visit = func(n string) []string {
		switch state[n] {
		case onPath:
			for i, p := range path {
				if p == n {
					return append(append([]string(nil), path[i:]...), n)
				}
			}
		case done:
			return nil
		}
		state[n] = onPath
		path = append(path, n)
		for _, d := range deps[n] {
			if _, ok := deps[d]; !ok {
				continue
			}
			if cycle := visit(d); cycle != nil {
				return cycle
			}
		}
		path = path[:len(path)-1]
		state[n] = done
		return nil
	}
	for _, c := range comps {
		if cycle := visit(c.Name); cycle != nil {
			return cycle
		}
	}
	return nil
}
