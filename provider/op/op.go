// Package op supplies the legacy CUE package vela/op, which older published definitions and
// KubeVela's seed examples import: every action with flat fields instead of $params and
// $returns. It adds no Go action: each flat form names the same #provider and #do as its
// new-form namesake, and that action's step.Action says where its result goes in this form
// (LegacyResult, LegacyOutputs). Actions whose provider is not in the build (kube, config,
// email, metrics) are declared so that definitions using them compile; a step reaching one
// fails saying the action is not available.
package op

import (
	_ "embed"

	"github.com/stepflow/stepflow/step"
)

//go:embed op.cue
var source string

// Register adds the package (import path "vela/op") to r.
func Register(r *step.Registry) {
	r.AddPackage(step.Package{Path: "vela/op", Source: source})
}
