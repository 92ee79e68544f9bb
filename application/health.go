package application

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"strings"

	"cuelang.org/go/cue"
	"cuelang.org/go/cue/cuecontext"
	cueerrors "cuelang.org/go/cue/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/stepflow/stepflow/api/v1beta1"
)

// Live finds the live copy of a rendered object in the cluster it was applied to; nil when it
// is not there (yet).
type Live func(rendered *unstructured.Unstructured) *unstructured.Unstructured

// Health judges a rendered component and its traits against the live objects: each
// definition's `status.healthPolicy` (`isHealth`) and `status.customStatus` (`message`),
// evaluated with `context.output` the live workload, `context.outputs` the live objects the
// definition rendered, by name, the rest of the context as rendered, and `parameter` the
// properties. A definition without a health policy is healthy; a policy that cannot be decided
// yet (a field of the live object not there yet, or the object itself missing) is unhealthy.
// The error names the component, the trait and the field path of a policy that is wrong.
func Health(ctx context.Context, defs Definitions, namespace string, c *Component, live Live) (_ v1beta1.ApplicationComponentStatus, err error) {
	defer guard(&err)
	st := v1beta1.ApplicationComponentStatus{
		Name: c.Name, WorkloadDefinition: c.WorkloadDefinition,
		Namespace: stringOf(c.Context["namespace"]), Cluster: stringOf(c.Context["cluster"]),
	}
	def, err := defs.ComponentDefinition(ctx, namespace, c.Type)
	if err != nil {
		return st, fmt.Errorf("component %s: type %s: %w", c.Name, c.Type, err)
	}
	var workload map[string]any
	if c.Workload != nil {
		if l := live(c.Workload); l != nil {
			workload = l.Object
		}
	}
	st.Healthy, st.Message, err = evalStatus(def.Spec.Status, c.Context, workload, liveOutputs(c, "", live), c.Properties, c.Workload == nil || workload != nil)
	if err != nil {
		return st, fmt.Errorf("component %s: type %s: %w", c.Name, c.Type, err)
	}
	for i, t := range c.Traits {
		tdef, err := defs.TraitDefinition(ctx, namespace, t.Type)
		if err != nil {
			return st, fmt.Errorf("component %s: traits[%d] (%s): %w", c.Name, i, t.Type, err)
		}
		ts := v1beta1.ApplicationTraitStatus{Type: t.Type}
		outs := liveOutputs(c, t.Type, live)
		ts.Healthy, ts.Message, err = evalStatus(tdef.Spec.Status, c.Context, workload, outs, t.Properties, true)
		if err != nil {
			return st, fmt.Errorf("component %s: traits[%d] (%s): %w", c.Name, i, t.Type, err)
		}
		st.Traits = append(st.Traits, ts)
	}
	return st, nil
}

// liveOutputs are the live copies, by name, of the outputs the component (trait "") or the
// trait of type trait rendered; nil when one of them is missing.
func liveOutputs(c *Component, trait string, live Live) map[string]any {
	out := map[string]any{}
	for _, o := range c.Outputs {
		if o.Trait != trait {
			continue
		}
		l := live(o.Object)
		if l == nil {
			return nil
		}
		out[o.Name] = l.Object
	}
	return out
}

// evalStatus evaluates a definition's health policy and custom status. present is false when
// an object to judge is missing: the result is then unhealthy, with the custom status if it
// can be had.
func evalStatus(status *v1beta1.Status, base map[string]any, workload map[string]any, outputs map[string]any,
	props json.RawMessage, present bool) (healthy bool, message string, err error) {
	if status == nil {
		return present && outputs != nil, "", nil
	}
	ctx := make(map[string]any, len(base)+2)
	maps.Copy(ctx, base)
	if workload != nil {
		ctx["output"] = workload
	}
	if outputs != nil {
		ctx["outputs"] = outputs
	}
	if len(props) == 0 {
		props = json.RawMessage("{}")
	}
	healthy = present && outputs != nil
	if status.HealthPolicy != "" && healthy {
		v, err := compileStatus(status.HealthPolicy, ctx, props)
		if err != nil {
			return false, "", fmt.Errorf("status.healthPolicy: %w", err)
		}
		h := v.LookupPath(cue.ParsePath("isHealth"))
		if !h.Exists() {
			return false, "", fmt.Errorf("status.healthPolicy: it sets no isHealth")
		}
		healthy, err = h.Bool()
		if err != nil {
			if !incomplete(h) {
				return false, "", fmt.Errorf("status.healthPolicy: isHealth: %w", describe(err))
			}
			healthy = false
		}
	}
	if status.CustomStatus != "" {
		v, err := compileStatus(status.CustomStatus, ctx, props)
		if err != nil {
			return healthy, "", fmt.Errorf("status.customStatus: %w", err)
		}
		m := v.LookupPath(cue.ParsePath("message"))
		if m.Exists() {
			if s, err := m.String(); err == nil {
				message = s
			} else if !incomplete(m) {
				return healthy, "", fmt.Errorf("status.customStatus: message: %w", describe(err))
			}
		}
	}
	return healthy, message, nil
}

// compileStatus compiles a health policy or custom status with its context and parameter.
func compileStatus(src string, context map[string]any, props json.RawMessage) (cue.Value, error) {
	text, err := source(src, context, props)
	if err != nil {
		return cue.Value{}, err
	}
	v := cuecontext.New().CompileString(text, cue.Filename("status.cue"))
	if err := v.Err(); err != nil {
		return cue.Value{}, describe(err)
	}
	return v, nil
}

// incomplete reports whether v cannot be decided yet (it refers to a field not there) rather
// than being wrong.
func incomplete(v cue.Value) bool {
	err := v.Validate(cue.Concrete(true))
	if err == nil {
		return false
	}
	return v.Validate() == nil || isIncomplete(err)
}

// isIncomplete reports whether every error of err is an incomplete value or an undefined field.
func isIncomplete(err error) bool {
	for _, e := range cueErrors(err) {
		format, _ := e.Msg()
		if !containsAny(format, "undefined field", "incomplete value", "non-concrete value", "not found") {
			return false
		}
	}
	return true
}

func stringOf(x any) string {
	s, _ := x.(string)
	return s
}

// cueErrors lists the errors of a CUE error.
func cueErrors(err error) []cueerrors.Error { return cueerrors.Errors(err) }

// containsAny reports whether s contains one of subs.
func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
