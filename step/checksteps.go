// checksteps.go: CheckSteps, the check of every step of a run before it starts.

package step

import (
	"context"
	"errors"
	"fmt"

	fieldpath "k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/stepflow/stepflow/api/v1alpha1"
)

// NotTheInput says that err, from a check, is not about what was checked: the evaluators
// failed (ErrUnavailable) or the caller went away. Such an error is the checker's, never
// answered as a problem of the input (a 400, vet's exit code 2).
func NotTheInput(err error) bool {
	return errors.Is(err, ErrUnavailable) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// CheckSteps checks each step of a run in namespace against its step type: that the type
// exists, that its properties fit the type's parameter (parameters filled by inputs are
// taken as given), and that the template filled with them refuses nothing before its first
// action runs, such as a value an action's $params does not accept, which is reported at the
// property it comes from (steps[0].properties.method), and that a cache key and a
// concurrency key are CUE expressions over parameter, inputs and context
// (steps[0].cache.key, steps[0].concurrency.key). Errors name the step's field path under
// base; one that is not about the steps (NotTheInput, a store that failed) is a
// field.ErrorTypeInternal. Step groups are containers and
// are checked through their sub-steps.
func (r *Runner) CheckSteps(ctx context.Context, namespace string, steps []v1alpha1.WorkflowStep, base *fieldpath.Path) fieldpath.ErrorList {
	var errs fieldpath.ErrorList
	checkKey := func(path *fieldpath.Path, s *v1alpha1.WorkflowStepBase, key string) {
		if err := r.CheckKey(ctx, key); err != nil {
			if NotTheInput(err) {
				errs = append(errs, fieldpath.InternalError(path, fmt.Errorf("step %s: %w", s.Name, err)))
			} else {
				errs = append(errs, fieldpath.Invalid(path, key, fmt.Sprintf("step %s: %v", s.Name, err)))
			}
		}
	}
	check := func(path *fieldpath.Path, s *v1alpha1.WorkflowStepBase) {
		if s.Concurrency != nil && s.Concurrency.Key != "" {
			checkKey(path.Child("concurrency", "key"), s, s.Concurrency.Key)
		}
		if s.Type == v1alpha1.TypeStepGroup || s.Type == v1alpha1.TypeWorkflow {
			return // a container, and a step the engine runs itself (checked by ValidateSteps)
		}
		if s.Cache != nil && s.Cache.Key != "" {
			checkKey(path.Child("cache", "key"), s, s.Cache.Key)
		}
		if r.opts.Definitions == nil {
			errs = append(errs, fieldpath.Invalid(path.Child("type"), s.Type, "no step types are available"))
			return
		}
		if _, err := r.opts.Definitions.Template(ctx, namespace, s.Type); err != nil {
			if !errors.Is(err, ErrUnknownType) {
				errs = append(errs, fieldpath.InternalError(path.Child("type"), err)) // a store that failed
				return
			}
			errs = append(errs, fieldpath.Invalid(path.Child("type"), s.Type, err.Error()))
			return
		}
		var raw []byte
		if s.Properties != nil {
			raw = s.Properties.Raw
		}
		props, err := readProperties(raw)
		if err != nil {
			errs = append(errs, fieldpath.Invalid(path.Child("properties"), "", err.Error()))
			return
		}
		var filled []string
		for _, in := range s.Inputs {
			if in.ParameterKey != "" {
				filled = append(filled, in.ParameterKey)
			}
		}
		err = r.checkProperties(ctx, namespace, s.Type, raw, props, filled)
		if pe, ok := errors.AsType[PropertyErrors](err); ok {
			for _, p := range pe {
				v, _ := propertyAt(props, p.Path)
				errs = append(errs, fieldpath.Invalid(path.Child("properties", p.Path...), v,
					fmt.Sprintf("step %s: %s", s.Name, p.Message)))
			}
			return
		}
		if NotTheInput(err) {
			errs = append(errs, fieldpath.InternalError(path.Child("properties"), fmt.Errorf("step %s: %w", s.Name, err)))
			return
		}
		if err != nil {
			errs = append(errs, fieldpath.Invalid(path.Child("properties"), "", fmt.Sprintf("step %s: %v", s.Name, err)))
		}
	}
	for i := range steps {
		p := base.Index(i)
		check(p, &steps[i].WorkflowStepBase)
		for j := range steps[i].SubSteps {
			check(p.Child("subSteps").Index(j), &steps[i].SubSteps[j])
		}
	}
	return errs
}
