package v1alpha1

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"reflect"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

// validateParameters checks a template's parameter declarations: names present and unique,
// known types, and defaults and enum values of the declared type.
func validateParameters(params []Parameter, base *field.Path) field.ErrorList {
	var errs field.ErrorList
	seen := map[string]bool{}
	for i, p := range params {
		path := base.Index(i)
		switch {
		case p.Name == "":
			errs = append(errs, field.Required(path.Child("name"), ""))
		case seen[p.Name]:
			errs = append(errs, field.Duplicate(path.Child("name"), p.Name))
		}
		seen[p.Name] = true
		switch p.Type {
		case "", ParamString, ParamNumber, ParamInteger, ParamBoolean, ParamObject, ParamArray:
		default:
			errs = append(errs, field.NotSupported(path.Child("type"), p.Type,
				[]string{"string", "number", "integer", "boolean", "object", "array"}))
			continue
		}
		for j, e := range p.Enum {
			v, err := decodeValue(e.Raw)
			if err != nil {
				errs = append(errs, field.Invalid(path.Child("enum").Index(j), string(e.Raw), err.Error()))
			} else if msg := p.typeProblem(v); msg != "" {
				errs = append(errs, field.Invalid(path.Child("enum").Index(j), v, msg))
			}
		}
		if p.Default != nil && len(bytes.TrimSpace(p.Default.Raw)) > 0 {
			v, err := decodeValue(p.Default.Raw)
			if err != nil {
				errs = append(errs, field.Invalid(path.Child("default"), string(p.Default.Raw), err.Error()))
			} else if msg := p.problem(v); msg != "" {
				errs = append(errs, field.Invalid(path.Child("default"), v, msg))
			}
		}
	}
	return errs
}

// ContextScheduledTime is the context key under which a scheduled run (a cron trigger's
// firing, or a backfill) gets the time it was scheduled for, in RFC 3339. Every template
// takes it without declaring it.
const ContextScheduledTime = "scheduledTime"

// ApplyParameters checks the context a run of a template is given against the template's
// parameters and returns it with the defaults filled in. When the template declares
// parameters, a key it does not declare is a problem, so that a misspelt name is not
// silently ignored (ContextScheduledTime, a string, excepted); a template that declares none
// takes any context. Problems are reported
// at base.<name> (base is the context's path, context or spec.context).
func ApplyParameters(params []Parameter, ctx map[string]any, base *field.Path) (map[string]any, field.ErrorList) {
	out := make(map[string]any, len(ctx)+len(params))
	maps.Copy(out, ctx)
	if len(params) == 0 {
		return out, nil
	}
	var errs field.ErrorList
	declared := map[string]bool{}
	for _, p := range params {
		declared[p.Name] = true
		path := base.Child(p.Name)
		v, given := ctx[p.Name]
		if !given || v == nil {
			switch {
			case p.Default != nil && len(bytes.TrimSpace(p.Default.Raw)) > 0:
				d, err := decodeValue(p.Default.Raw)
				if err != nil {
					errs = append(errs, field.InternalError(path, fmt.Errorf("the template's default: %w", err)))
					continue
				}
				out[p.Name] = d
			case p.Required:
				errs = append(errs, field.Required(path, requiredMessage(p)))
			default:
				delete(out, p.Name)
			}
			continue
		}
		if msg := p.problem(v); msg != "" {
			errs = append(errs, field.Invalid(path, v, msg))
		}
	}
	for k, v := range ctx {
		if _, isString := v.(string); k == ContextScheduledTime && isString && !declared[k] {
			continue
		}
		if !declared[k] {
			errs = append(errs, field.NotSupported(base.Child(k), k, parameterNames(params)))
		}
	}
	return out, errs
}

func requiredMessage(p Parameter) string {
	msg := "the template requires this parameter (" + string(p.typ()) + ")"
	if p.Description != "" {
		msg += ": " + p.Description
	}
	return msg
}

func parameterNames(params []Parameter) []string {
	out := make([]string, len(params))
	for i, p := range params {
		out[i] = p.Name
	}
	return out
}

func (p Parameter) typ() ParameterType {
	if p.Type == "" {
		return ParamString
	}
	return p.Type
}

// problem says why v is not a value of the parameter, or "" when it is.
func (p Parameter) problem(v any) string {
	if msg := p.typeProblem(v); msg != "" {
		return msg
	}
	if len(p.Enum) == 0 {
		return ""
	}
	allowed := make([]string, 0, len(p.Enum))
	for _, e := range p.Enum {
		ev, err := decodeValue(e.Raw)
		if err == nil && reflect.DeepEqual(ev, v) {
			return ""
		}
		allowed = append(allowed, string(bytes.TrimSpace(e.Raw)))
	}
	return fmt.Sprintf("must be one of %v", allowed)
}

// typeProblem says why v is not of the parameter's type, or "" when it is.
func (p Parameter) typeProblem(v any) string {
	ok := false
	switch p.typ() {
	case ParamString:
		_, ok = v.(string)
	case ParamNumber:
		_, ok = v.(float64)
	case ParamInteger:
		f, isNum := v.(float64)
		ok = isNum && f == math.Trunc(f) && !math.IsInf(f, 0)
	case ParamBoolean:
		_, ok = v.(bool)
	case ParamObject:
		_, ok = v.(map[string]any)
	case ParamArray:
		_, ok = v.([]any)
	}
	if ok {
		return ""
	}
	return fmt.Sprintf("must be of type %s, not %s", p.typ(), jsonType(v))
}

// jsonType names the JSON type of a decoded value.
func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "string"
	case float64:
		return "number"
	case bool:
		return "boolean"
	case map[string]any:
		return "object"
	case []any:
		return "array"
	}
	return fmt.Sprintf("%T", v)
}

func decodeValue(raw []byte) (any, error) {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, fmt.Errorf("not a JSON value: %w", err)
	}
	return v, nil
}

// RunContext checks the spec.context of a run of wf against wf's parameters and returns it
// with their defaults filled in; problems are reported at spec.context.<name>.
func RunContext(run *WorkflowRun, wf *Workflow) (map[string]any, field.ErrorList) {
	path := field.NewPath("spec", "context")
	given := map[string]any{}
	if c := run.Spec.Context; c != nil && len(bytes.TrimSpace(c.Raw)) > 0 {
		if err := json.Unmarshal(c.Raw, &given); err != nil {
			return nil, field.ErrorList{field.Invalid(path, string(c.Raw), "an object is expected")}
		}
	}
	return ApplyParameters(wf.Parameters, given, path)
}

// SensitiveValues returns the values ctx gives the parameters declared sensitive, in the
// order of params; parameters ctx does not give are left out.
func SensitiveValues(params []Parameter, ctx map[string]any) []any {
	var out []any
	for _, p := range params {
		if v, ok := ctx[p.Name]; ok && p.Sensitive && v != nil {
			out = append(out, v)
		}
	}
	return out
}
