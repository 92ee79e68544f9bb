// job.go: Render and Health made to travel: the definitions they need looked up by the caller,
// the live objects read by the caller, everything as JSON, so that the CUE runs elsewhere (a
// child evaluator of the step runtime, under its time and memory bounds).

package application

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/stepflow/stepflow/api/v1beta1"
)

// Evaluator evaluates the CUE of an Application's delivery: renders and health policies. Its
// methods do what Render and Health do; the step runtime's Runner does it under the bounds
// of an evaluation, InProcess in the caller's process without any.
type Evaluator interface {
	Render(ctx context.Context, req Request) ([]*Component, error)
	Health(ctx context.Context, defs Definitions, namespace string, c *Component, live Live) (v1beta1.ApplicationComponentStatus, error)
}

// InProcess is the Evaluator that calls Render and Health in this process, unbounded: for
// tests and for a Runner that evaluates in process.
type InProcess struct{}

// Render calls Render.
func (InProcess) Render(ctx context.Context, req Request) ([]*Component, error) {
	return Render(ctx, req)
}

// Health calls Health.
func (InProcess) Health(ctx context.Context, defs Definitions, namespace string, c *Component, live Live) (v1beta1.ApplicationComponentStatus, error) {
	return Health(ctx, defs, namespace, c, live)
}

// RenderJob is a Request with the definitions it needs, all of it JSON.
type RenderJob struct {
	App          *v1beta1.Application `json:"app"`
	Definitions  DeliveryDefinitions  `json:"definitions"`
	Target       Target               `json:"target"`
	Revision     string               `json:"revision,omitempty"`
	RevisionNum  int64                `json:"revisionNum,omitempty"`
	WorkflowName string               `json:"workflowName,omitempty"`
	StepName     string               `json:"stepName,omitempty"`
	Components   []string             `json:"components,omitempty"`
}

// NewRenderJob looks up the definitions req's components and traits name (those of
// req.Components only, when set). A definition that cannot be had is an error worded as
// Render words it.
func NewRenderJob(ctx context.Context, req Request) (*RenderJob, error) {
	if req.App == nil {
		return nil, errors.New("render: no Application")
	}
	if req.Definitions == nil {
		return nil, errors.New("render: no definitions")
	}
	j := &RenderJob{
		App: req.App, Target: req.Target, Revision: req.Revision, RevisionNum: req.RevisionNum,
		WorkflowName: req.WorkflowName, StepName: req.StepName, Components: req.Components,
		Definitions: DeliveryDefinitions{
			ComponentDefinitions: map[string]*v1beta1.ComponentDefinition{},
			TraitDefinitions:     map[string]*v1beta1.TraitDefinition{},
		},
	}
	for _, c := range req.App.Spec.Components {
		if len(req.Components) > 0 && !slices.Contains(req.Components, c.Name) {
			continue
		}
		if err := j.Definitions.need(ctx, req.Definitions, req.App.Namespace, &c, c.Type, nil); err != nil {
			return nil, err
		}
	}
	return j, nil
}

// need adds the definitions of component c (or only its traits' when typ is "") to d, and
// the status parts alone when statusOnly.
func (d *DeliveryDefinitions) need(ctx context.Context, defs Definitions, namespace string, c *v1beta1.ApplicationComponent,
	typ string, traits []Trait) error {
	if typ != "" && d.ComponentDefinitions[typ] == nil {
		def, err := defs.ComponentDefinition(ctx, namespace, typ)
		if err != nil {
			return fmt.Errorf("component %s: type %s: %w", c.Name, typ, err)
		}
		d.ComponentDefinitions[typ] = def
	}
	types := make([]string, 0, len(c.Traits)+len(traits))
	for _, t := range c.Traits {
		types = append(types, t.Type)
	}
	for _, t := range traits {
		types = append(types, t.Type)
	}
	for i, t := range types {
		if d.TraitDefinitions[t] != nil {
			continue
		}
		def, err := defs.TraitDefinition(ctx, namespace, t)
		if err != nil {
			return fmt.Errorf("component %s: traits[%d] (%s): %w", c.Name, i, t, err)
		}
		d.TraitDefinitions[t] = def
	}
	return nil
}

// set is the definitions as Definitions.
func (d *DeliveryDefinitions) set() *Set {
	s := NewSet()
	maps.Copy(s.components, d.ComponentDefinitions)
	maps.Copy(s.traits, d.TraitDefinitions)
	return s
}

// Render renders the job, with its definitions.
func (j *RenderJob) Render(ctx context.Context) ([]*Component, error) {
	return Render(ctx, Request{
		App: j.App, Definitions: j.Definitions.set(), Target: j.Target, Revision: j.Revision,
		RevisionNum: j.RevisionNum, WorkflowName: j.WorkflowName, StepName: j.StepName, Components: j.Components,
	})
}

// HealthJob is a Health call with the definitions and the live objects it needs, all of it
// JSON.
type HealthJob struct {
	// Definitions hold the component's and its traits' definitions, their status alone.
	Definitions DeliveryDefinitions `json:"definitions"`
	Namespace   string              `json:"namespace"`
	Component   *Component          `json:"component"`
	// Live is the live copy of each of Component.Objects(), in order; null when missing.
	Live []json.RawMessage `json:"live"`
}

// NewHealthJob looks up the definitions of c and its traits and the live copies of its
// objects. A definition that cannot be had is an error worded as Health words it.
func NewHealthJob(ctx context.Context, defs Definitions, namespace string, c *Component, live Live) (*HealthJob, error) {
	j := &HealthJob{Namespace: namespace, Component: c, Definitions: DeliveryDefinitions{
		ComponentDefinitions: map[string]*v1beta1.ComponentDefinition{},
		TraitDefinitions:     map[string]*v1beta1.TraitDefinition{},
	}}
	ac := &v1beta1.ApplicationComponent{Name: c.Name}
	if err := j.Definitions.need(ctx, defs, namespace, ac, c.Type, c.Traits); err != nil {
		return nil, err
	}
	// Only the status is evaluated: the templates stay here.
	for name, def := range j.Definitions.ComponentDefinitions {
		j.Definitions.ComponentDefinitions[name] = &v1beta1.ComponentDefinition{ObjectMeta: def.ObjectMeta,
			Spec: v1beta1.ComponentDefinitionSpec{Status: def.Spec.Status}}
	}
	for name, def := range j.Definitions.TraitDefinitions {
		j.Definitions.TraitDefinitions[name] = &v1beta1.TraitDefinition{ObjectMeta: def.ObjectMeta,
			Spec: v1beta1.TraitDefinitionSpec{Status: def.Spec.Status}}
	}
	for _, obj := range c.Objects() {
		l := live(obj)
		if l == nil {
			j.Live = append(j.Live, json.RawMessage("null"))
			continue
		}
		b, err := json.Marshal(l.Object)
		if err != nil {
			return nil, fmt.Errorf("component %s: the live %s %s: %w", c.Name, obj.GetKind(), obj.GetName(), err)
		}
		j.Live = append(j.Live, b)
	}
	return j, nil
}

// Evaluates says whether the job has CUE to evaluate: a health policy or a custom status.
func (j *HealthJob) Evaluates() bool {
	for _, d := range j.Definitions.ComponentDefinitions {
		if hasStatus(d.Spec.Status) {
			return true
		}
	}
	for _, d := range j.Definitions.TraitDefinitions {
		if hasStatus(d.Spec.Status) {
			return true
		}
	}
	return false
}

func hasStatus(s *v1beta1.Status) bool {
	return s != nil && (s.HealthPolicy != "" || s.CustomStatus != "")
}

// Health judges the job's component against its live objects.
func (j *HealthJob) Health(ctx context.Context) (v1beta1.ApplicationComponentStatus, error) {
	if j.Component == nil {
		return v1beta1.ApplicationComponentStatus{}, errors.New("health: no component")
	}
	objs := j.Component.Objects()
	if len(j.Live) != len(objs) {
		return v1beta1.ApplicationComponentStatus{}, fmt.Errorf("health: %d live objects for %d rendered", len(j.Live), len(objs))
	}
	live := make([]*unstructured.Unstructured, len(objs))
	for i, b := range j.Live {
		x, err := decodeJSON(b)
		if err != nil {
			return v1beta1.ApplicationComponentStatus{}, fmt.Errorf("health: live object %d: %w", i, err)
		}
		if m, ok := x.(map[string]any); ok {
			live[i] = &unstructured.Unstructured{Object: m}
		}
	}
	return Health(ctx, j.Definitions.set(), j.Namespace, j.Component, func(r *unstructured.Unstructured) *unstructured.Unstructured {
		if i := slices.Index(objs, r); i >= 0 {
			return live[i]
		}
		return nil
	})
}

// componentJSON is a Component as JSON.
type componentJSON struct {
	Name               string              `json:"name"`
	Type               string              `json:"type"`
	Workload           json.RawMessage     `json:"workload,omitempty"`
	WorkloadDefinition v1beta1.WorkloadGVK `json:"workloadDefinition"`
	Outputs            []outputJSON        `json:"outputs,omitempty"`
	Traits             []traitJSON         `json:"traits,omitempty"`
	Properties         json.RawMessage     `json:"properties,omitempty"`
	Context            json.RawMessage     `json:"context,omitempty"`
}

type outputJSON struct {
	Name   string          `json:"name"`
	Trait  string          `json:"trait,omitempty"`
	Object json.RawMessage `json:"object"`
}

type traitJSON struct {
	Type       string          `json:"type"`
	Properties json.RawMessage `json:"properties,omitempty"`
}

// MarshalJSON writes the component with its objects as JSON objects.
func (c *Component) MarshalJSON() ([]byte, error) {
	out := componentJSON{Name: c.Name, Type: c.Type, WorkloadDefinition: c.WorkloadDefinition, Properties: c.Properties}
	var err error
	if c.Workload != nil {
		if out.Workload, err = json.Marshal(c.Workload.Object); err != nil {
			return nil, fmt.Errorf("component %s: workload: %w", c.Name, err)
		}
	}
	for _, o := range c.Outputs {
		b, err := json.Marshal(o.Object.Object)
		if err != nil {
			return nil, fmt.Errorf("component %s: outputs.%s: %w", c.Name, o.Name, err)
		}
		out.Outputs = append(out.Outputs, outputJSON{Name: o.Name, Trait: o.Trait, Object: b})
	}
	for _, t := range c.Traits {
		out.Traits = append(out.Traits, traitJSON(t))
	}
	if c.Context != nil {
		if out.Context, err = json.Marshal(c.Context); err != nil {
			return nil, fmt.Errorf("component %s: context: %w", c.Name, err)
		}
	}
	return json.Marshal(out)
}

// UnmarshalJSON reads a component MarshalJSON wrote, numbers as Render gives them: int64 for
// integers, float64 for the others.
func (c *Component) UnmarshalJSON(b []byte) error {
	var in componentJSON
	if err := json.Unmarshal(b, &in); err != nil {
		return err
	}
	*c = Component{Name: in.Name, Type: in.Type, WorkloadDefinition: in.WorkloadDefinition, Properties: in.Properties}
	if len(in.Workload) > 0 && string(in.Workload) != "null" {
		obj, err := decodeObject(in.Workload)
		if err != nil {
			return fmt.Errorf("component %s: workload: %w", in.Name, err)
		}
		c.Workload = &unstructured.Unstructured{Object: obj}
	}
	for _, o := range in.Outputs {
		obj, err := decodeObject(o.Object)
		if err != nil {
			return fmt.Errorf("component %s: outputs.%s: %w", in.Name, o.Name, err)
		}
		c.Outputs = append(c.Outputs, Output{Name: o.Name, Trait: o.Trait, Object: &unstructured.Unstructured{Object: obj}})
	}
	for _, t := range in.Traits {
		c.Traits = append(c.Traits, Trait(t))
	}
	if len(in.Context) > 0 && string(in.Context) != "null" {
		obj, err := decodeObject(in.Context)
		if err != nil {
			return fmt.Errorf("component %s: context: %w", in.Name, err)
		}
		c.Context = obj
	}
	return nil
}

// decodeObject decodes a JSON object as decodeJSON does.
func decodeObject(b []byte) (map[string]any, error) {
	x, err := decodeJSON(b)
	if err != nil {
		return nil, err
	}
	m, ok := x.(map[string]any)
	if !ok {
		return nil, errors.New("not an object")
	}
	return m, nil
}
