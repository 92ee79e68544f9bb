// Package op is the legacy vela/op CUE package: the actions of vela/builtin, vela/http,
// vela/util, vela/time, vela/kube, vela/config, vela/email and vela/metrics with flat fields,
// as older published definitions use them. It adds no Go action: each flat form calls the same
// action as its new-form namesake, which declares where its result goes in this form.
package op

import (
	_ "embed"

	"github.com/stepflow/stepflow/step"
)

//go:embed op.cue
var source string

// Register adds the package "vela/op" to r.
func Register(r *step.Registry) {
	r.AddPackage(step.Package{Path: "vela/op", Source: source})
}
