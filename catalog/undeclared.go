package catalog

import (
	"context"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/application"
	"github.com/stepflow/stepflow/manifest"
)

// Undeclared finds the properties of the steps in objs (the runs' own steps and the Workflow
// templates') that their step type's parameter does not declare, each at its file, line and
// field path; nil when there are none. KubeVela fills a step's parameter with whatever
// properties it is given and ignores the rest, and so does the engine, so that its files run
// unchanged; but such a property is nearly always a mistake (a typo, a field of another type,
// a `timeout` the type does not have), so `stepflow vet` and /validate refuse it. A parameter
// that is not written as struct literals (a reference, a pattern, `...`) declares anything.
func (c *Catalog) Undeclared(ctx context.Context, objs *manifest.Objects) error {
	ctx = WithObjects(ctx, objs)
	var problems manifest.Errors
	check := func(obj any, namespace string, steps []v1alpha1.WorkflowStep, base *field.Path) {
		var errs field.ErrorList
		v1alpha1.EachStep(steps, base, func(s *v1alpha1.WorkflowStepBase, p *field.Path) {
			if s.Properties == nil || s.Type == v1alpha1.TypeWorkflow {
				return
			}
			tmpl, err := c.Template(ctx, namespace, s.Type)
			if err != nil {
				return // Check reports an unknown type
			}
			for _, pe := range application.Undeclared(tmpl, s.Properties.Raw) {
				fp := p.Child("properties")
				for _, k := range pe.Path {
					if i, err := strconv.Atoi(k); err == nil {
						fp = fp.Index(i)
					} else {
						fp = fp.Child(k)
					}
				}
				errs = append(errs, field.Invalid(fp, pe.Path[len(pe.Path)-1], strings.Replace(pe.Message, "unknown property", "step type "+s.Type+" has no such parameter", 1)))
			}
		})
		problems = append(problems, objs.Explain(obj, errs)...)
	}
	for _, wf := range objs.Workflows {
		check(wf, wf.Namespace, wf.Steps, field.NewPath("steps"))
	}
	for _, run := range objs.Runs {
		if run.Spec.WorkflowSpec != nil {
			check(run, run.Namespace, run.Spec.WorkflowSpec.Steps, field.NewPath("spec", "workflowSpec", "steps"))
		}
	}
	if len(problems) == 0 {
		return nil
	}
	problems.Sort()
	return problems
}
