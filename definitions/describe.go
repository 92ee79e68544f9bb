package definitions

import (
	"context"

	"github.com/stepflow/stepflow/step"
)

// Parameter documents one field of a step type's parameter (step.Parameter).
type Parameter = step.Parameter

// Describe documents the parameter of a template in this process, without a bound: for the
// built-in definitions this binary embeds (the generated docs). A definition a user wrote is
// described by step.Runner.Describe, under the bounds of an evaluation.
func Describe(template string) ([]Parameter, error) {
	return step.NewRunner(step.Options{InProcess: true}).Describe(context.Background(), template)
}
