// Package multicluster supplies the CUE package vela/multicluster: #Deploy (the components of
// the Application the run delivers, changed by its override policies, applied into every
// place its topology policies select, waiting until they are healthy), #ListClusters,
// #GetPlacementsFromTopologyPolicies, and #ApplyComponent (vela/oam's, under this package).
// It works through provider/oam's Deliverer.
package multicluster

import (
	"context"
	_ "embed"
	"fmt"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/application"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/provider/oam"
	"github.com/stepflow/stepflow/step"
)

//go:embed multicluster.cue
var source string

// DefaultParallelism is how many places a #Deploy applies to at once when it does not say.
const DefaultParallelism = 5

// Register adds the package vela/multicluster and its actions (provider "multicluster") to r.
func Register(r *step.Registry, d *oam.Deliverer) {
	p := &provider{d: d}
	r.AddPackage(step.Package{Path: "vela/multicluster", Source: source})
	r.Register(step.Action{Provider: "multicluster", Do: "deploy", Run: oam.Guard(p.deploy), SideEffect: step.Always, Idempotent: true})
	r.Register(step.Action{Provider: "multicluster", Do: "list-clusters", Run: oam.Guard(p.listClusters), LegacyOutputs: []string{"outputs"}})
	r.Register(step.Action{Provider: "multicluster", Do: "get-placements-from-topology-policies", Run: oam.Guard(p.placements), LegacyOutputs: []string{"placements"}})
}

type provider struct {
	d *oam.Deliverer
}

func (p *provider) deploy(ctx context.Context, call *step.Call) (any, error) {
	var in struct {
		Policies                 []string         `json:"policies"`
		Parallelism              int              `json:"parallelism"`
		IgnoreTerraformComponent bool             `json:"ignoreTerraformComponent"`
		InlinePolicies           []map[string]any `json:"inlinePolicies"`
		Timeout                  string           `json:"timeout"`
	}
	if err := call.Decode(&in); err != nil {
		return nil, engine.Terminal(v1alpha1.ReasonExecute, fmt.Errorf("vela/multicluster: #Deploy: %w", err))
	}
	if len(in.InlinePolicies) > 0 {
		return nil, engine.Terminal(v1alpha1.ReasonExecute, fmt.Errorf("vela/multicluster: #Deploy: inlinePolicies are not supported; declare the policies in the Application and name them in policies"))
	}
	timeout, err := oam.Timeout(in.Timeout)
	if err != nil {
		return nil, err
	}
	del, err := p.d.Load(call)
	if err != nil {
		return nil, err
	}
	var topologies, overrides []string
	for _, name := range in.Policies {
		pol, err := application.Policy(del.App, name)
		if err != nil {
			return nil, engine.Terminal(v1alpha1.ReasonExecute, fmt.Errorf("vela/multicluster: #Deploy: %w", err))
		}
		switch pol.Type {
		case application.PolicyTopology:
			topologies = append(topologies, name)
		case application.PolicyOverride:
			overrides = append(overrides, name)
		default:
			return nil, engine.Terminal(v1alpha1.ReasonExecute, fmt.Errorf("vela/multicluster: #Deploy: policy %s is of type %s; a deploy takes topology and override policies", name, pol.Type))
		}
	}
	placements, err := p.d.Placements(ctx, del, topologies)
	if err != nil {
		return nil, engine.Terminal(v1alpha1.ReasonExecute, fmt.Errorf("vela/multicluster: #Deploy: %w", err))
	}
	comps, err := application.ApplyOverrides(del.App, overrides)
	if err != nil {
		return nil, engine.Terminal(v1alpha1.ReasonExecute, fmt.Errorf("vela/multicluster: #Deploy: %w", err))
	}
	if in.Parallelism <= 0 {
		in.Parallelism = DefaultParallelism
	}
	applied, err := p.d.Apply(ctx, call, del, comps, placements, in.Parallelism, nil)
	if err != nil {
		return nil, err
	}
	oam.Record(call, applied)
	oam.Settle(call, applied, timeout)
	return map[string]any{}, nil
}

func (p *provider) listClusters(ctx context.Context, _ *step.Call) (any, error) {
	names, err := p.d.ClusterNames(ctx)
	if err != nil {
		return nil, fmt.Errorf("vela/multicluster: #ListClusters: %w", err)
	}
	clusters := []any{}
	for _, n := range names {
		clusters = append(clusters, n)
	}
	return map[string]any{"outputs": map[string]any{"clusters": clusters}}, nil
}

func (p *provider) placements(ctx context.Context, call *step.Call) (any, error) {
	var in struct {
		Policies []string `json:"policies"`
	}
	if err := call.Decode(&in); err != nil {
		return nil, engine.Terminal(v1alpha1.ReasonExecute, fmt.Errorf("vela/multicluster: #GetPlacementsFromTopologyPolicies: %w", err))
	}
	del, err := p.d.Load(call)
	if err != nil {
		return nil, err
	}
	pls, err := p.d.Placements(ctx, del, in.Policies)
	if err != nil {
		return nil, engine.Terminal(v1alpha1.ReasonExecute, fmt.Errorf("vela/multicluster: #GetPlacementsFromTopologyPolicies: %w", err))
	}
	out := []any{}
	for _, pl := range pls {
		out = append(out, map[string]any{"cluster": pl.Cluster, "namespace": pl.Namespace})
	}
	return map[string]any{"placements": out}, nil
}
