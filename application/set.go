package application

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/stepflow/stepflow/api/v1beta1"
)

// Set is Definitions held in memory: the definitions a file declares, then those of a
// fallback (the built-ins), found by name whatever the namespace asked from.
type Set struct {
	components map[string]*v1beta1.ComponentDefinition
	traits     map[string]*v1beta1.TraitDefinition
	policies   map[string]*v1beta1.PolicyDefinition
}

// NewSet returns an empty Set.
func NewSet() *Set {
	return &Set{
		components: map[string]*v1beta1.ComponentDefinition{},
		traits:     map[string]*v1beta1.TraitDefinition{},
		policies:   map[string]*v1beta1.PolicyDefinition{},
	}
}

// Add adds definitions to the set; a later one of a name replaces an earlier one.
func (s *Set) Add(components []*v1beta1.ComponentDefinition, traits []*v1beta1.TraitDefinition, policies []*v1beta1.PolicyDefinition) *Set {
	for _, d := range components {
		s.components[d.Name] = d
	}
	for _, d := range traits {
		s.traits[d.Name] = d
	}
	for _, d := range policies {
		s.policies[d.Name] = d
	}
	return s
}

// ComponentDefinition implements Definitions.
func (s *Set) ComponentDefinition(_ context.Context, _, name string) (*v1beta1.ComponentDefinition, error) {
	if d, ok := s.components[name]; ok {
		return d, nil
	}
	return nil, fmt.Errorf("component type %q: %w", name, ErrUnknownType)
}

// TraitDefinition implements Definitions.
func (s *Set) TraitDefinition(_ context.Context, _, name string) (*v1beta1.TraitDefinition, error) {
	if d, ok := s.traits[name]; ok {
		return d, nil
	}
	return nil, fmt.Errorf("trait type %q: %w", name, ErrUnknownType)
}

// PolicyDefinition returns the policy type of that name.
func (s *Set) PolicyDefinition(_ context.Context, _, name string) (*v1beta1.PolicyDefinition, error) {
	if d, ok := s.policies[name]; ok {
		return d, nil
	}
	return nil, fmt.Errorf("policy type %q: %w", name, ErrUnknownType)
}

// All returns the set's definitions, each kind by name.
func (s *Set) All() ([]*v1beta1.ComponentDefinition, []*v1beta1.TraitDefinition, []*v1beta1.PolicyDefinition) {
	var comps []*v1beta1.ComponentDefinition
	var traits []*v1beta1.TraitDefinition
	var policies []*v1beta1.PolicyDefinition
	for _, k := range slices.Sorted(maps.Keys(s.components)) {
		comps = append(comps, s.components[k])
	}
	for _, k := range slices.Sorted(maps.Keys(s.traits)) {
		traits = append(traits, s.traits[k])
	}
	for _, k := range slices.Sorted(maps.Keys(s.policies)) {
		policies = append(policies, s.policies[k])
	}
	return comps, traits, policies
}
