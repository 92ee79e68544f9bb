package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"

	cuev1alpha1 "github.com/stepflow/stepflow/api/cue/v1alpha1"
	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/application"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/manifest"
	"github.com/stepflow/stepflow/step"
)

// CUE is the CUE side of the checks, which step.Runner provides, each under the bounds of an
// evaluation: a definition's template compiles, steps fit the parameters of their types, an
// X-Definition's template compiles and properties fit its parameter.
type CUE interface {
	Check(ctx context.Context, typ, template string) error
	CheckSteps(ctx context.Context, namespace string, steps []v1alpha1.WorkflowStep, base *field.Path) field.ErrorList
	CheckXTemplate(ctx context.Context, template string) error
	CheckXProperties(ctx context.Context, template string, props json.RawMessage, filled []string) ([]application.PropertyError, error)
}

// ErrUnchecked is returned, wrapped, by Check when it could not make a check for a reason of
// its own, not of the objects: the CUE evaluators failed (step.ErrUnavailable), a store did
// not answer, the caller went away. The objects are neither valid nor invalid; the caller
// answers it as its own failure (the server's 503, not a 400) and may try again. It wraps
// engine.ErrTryLater, so that the engine's check before a run starts (CheckRun) is made
// again later instead of failing the run.
var ErrUnchecked = fmt.Errorf("the objects could not be checked (%w)", engine.ErrTryLater)

// unchecked is the first problem of errs that is not about the objects (a
// field.ErrorTypeInternal, as step.Runner.CheckSteps reports them), or nil.
func unchecked(errs field.ErrorList) error {
	for _, e := range errs {
		if e != nil && e.Type == field.ErrorTypeInternal {
			return fmt.Errorf("%w: %s: %s", ErrUnchecked, e.Field, e.Detail)
		}
	}
	return nil
}

// Check checks everything in objs that can be checked without running: the definitions' CUE,
// the templates and runs against the API, the runs' steps against the step types they name
// (those of objs included), `workflow` steps against the templates they run, a run's
// context against its template's parameters, and loops against the limit of iterations
// (counted from their lists' lengths, never built), and Applications against their
// X-Definitions (checkApplications). It returns nil, a manifest.Errors, each problem at its
// file, line and field path, or an ErrUnchecked when a check could not be made.
func (c *Catalog) Check(ctx context.Context, cue CUE, objs *manifest.Objects) error {
	ctx = WithObjects(ctx, objs)
	var problems manifest.Errors
	var failed error // the first check that could not be made
	add := func(obj any, errs field.ErrorList) {
		if err := unchecked(errs); err != nil && failed == nil {
			failed = err
		}
		problems = append(problems, objs.Explain(obj, errs)...)
	}
	for _, d := range objs.Definitions {
		tmpl := ""
		if d.Spec.Schematic != nil && d.Spec.Schematic.CUE != nil {
			tmpl = d.Spec.Schematic.CUE.Template
		}
		path := field.NewPath("spec", "schematic", "cue", "template")
		if strings.TrimSpace(tmpl) == "" {
			add(d, field.ErrorList{field.Required(path, "a step type needs a CUE template")})
			continue
		}
		bundled, err := c.bundle(ctx, d.Namespace, tmpl)
		if err != nil {
			add(d, field.ErrorList{field.InternalError(path, fmt.Errorf("definition %s: %w", d.Name, err))})
			continue
		}
		if err := cue.Check(ctx, d.Name, bundled); step.NotTheInput(err) {
			add(d, field.ErrorList{field.InternalError(path, fmt.Errorf("definition %s: %w", d.Name, err))})
		} else if err != nil {
			add(d, field.ErrorList{field.Invalid(path, "(CUE)", fmt.Sprintf("definition %s: %v", d.Name, err))})
		}
	}
	for _, p := range objs.Packages {
		add(p, c.checkPackage(ctx, cue, p))
	}
	for _, wf := range objs.Workflows {
		errs := v1alpha1.ValidateWorkflow(wf)
		if len(errs) == 0 {
			errs = c.limits.CheckLoops(wf.Steps, field.NewPath("steps"))
		}
		if len(errs) == 0 {
			base := field.NewPath("steps")
			errs = append(c.checkSubWorkflows(ctx, wf.Namespace, wf.Steps, base), cue.CheckSteps(ctx, wf.Namespace, wf.Steps, base)...)
			errs = append(errs, c.refused(wf.Steps, base)...)
		}
		add(wf, errs)
	}
	for _, run := range objs.Runs {
		errs := v1alpha1.ValidateWorkflowRun(run)
		if len(errs) == 0 {
			errs = c.checkRun(ctx, cue, run)
		}
		add(run, errs)
	}
	apps, err := c.checkApplications(ctx, cue, objs)
	if failed == nil {
		failed = err
	}
	if failed != nil {
		return failed
	}
	problems = append(problems, apps...)
	if len(problems) == 0 {
		return nil
	}
	problems.Sort()
	return problems
}

// checkRun checks a run's steps against their step types: that each type exists, and that
// its properties fit the type's parameter (parameters filled by inputs are taken as given);
// and a run of a template, its context against the template's parameters.
func (c *Catalog) checkRun(ctx context.Context, cue CUE, run *v1alpha1.WorkflowRun) field.ErrorList {
	if run.Spec.WorkflowSpec != nil {
		steps, base := run.Spec.WorkflowSpec.Steps, field.NewPath("spec", "workflowSpec", "steps")
		if errs := c.limits.CheckLoops(steps, base); len(errs) > 0 {
			return errs
		}
		errs := append(c.checkSubWorkflows(ctx, run.Namespace, steps, base), cue.CheckSteps(ctx, run.Namespace, steps, base)...)
		return append(errs, c.refused(steps, base)...)
	}
	ref := field.NewPath("spec", "workflowRef")
	wf, err := c.Workflow(ctx, run.Namespace, run.Spec.WorkflowRef)
	if want, ok := run.Annotations[v1alpha1.AnnotationTemplateRevision]; ok && err == nil {
		// A run of a kept revision is checked against that revision.
		at := field.NewPath("metadata", "annotations").Key(v1alpha1.AnnotationTemplateRevision)
		rev, perr := strconv.ParseInt(want, 10, 64)
		if perr != nil || rev < 1 {
			return field.ErrorList{field.Invalid(at, want, "not a revision number (1 or more)")}
		}
		if wf, err = c.WorkflowAt(ctx, run.Namespace, run.Spec.WorkflowRef, rev); err != nil {
			return field.ErrorList{field.Invalid(at, want, err.Error())}
		}
	}
	if err != nil {
		return field.ErrorList{field.Invalid(ref, run.Spec.WorkflowRef, err.Error())}
	}
	// The referenced Workflow's steps run under the run's mode: check them as such.
	if errs := v1alpha1.ValidateSteps(wf.Steps, v1alpha1.EffectiveMode(&run.Spec, wf), ref); len(errs) > 0 {
		return errs
	}
	if errs := c.limits.CheckLoops(wf.Steps, ref); len(errs) > 0 {
		return errs
	}
	var errs field.ErrorList
	if len(wf.Parameters) > 0 {
		_, errs = v1alpha1.RunContext(run, wf)
	}
	errs = append(errs, c.checkSubWorkflows(ctx, run.Namespace, wf.Steps, ref)...)
	errs = append(errs, c.refused(wf.Steps, ref)...)
	return append(errs, cue.CheckSteps(ctx, run.Namespace, wf.Steps, ref)...)
}

// refused lists the steps of steps that RefuseSteps refuses, at their type.
func (c *Catalog) refused(steps []v1alpha1.WorkflowStep, base *field.Path) field.ErrorList {
	if c.refuse == nil {
		return nil
	}
	var errs field.ErrorList
	v1alpha1.EachStep(steps, base, func(s *v1alpha1.WorkflowStepBase, p *field.Path) {
		if err := c.refuse(s); err != nil {
			errs = append(errs, field.Invalid(p.Child("type"), s.Type, err.Error()))
		}
	})
	return errs
}

// checkSubWorkflows checks the `workflow` steps of a list of steps: each names a Workflow
// template that exists, and no template includes itself, directly or through another one.
func (c *Catalog) checkSubWorkflows(ctx context.Context, namespace string, steps []v1alpha1.WorkflowStep, base *field.Path) field.ErrorList {
	var errs field.ErrorList
	for _, ref := range workflowSteps(steps, base) {
		if ref.name == "" {
			continue // filled by an input: known when it runs
		}
		if _, err := c.Workflow(ctx, namespace, ref.name); err != nil {
			errs = append(errs, field.Invalid(ref.path, ref.name, err.Error()))
			continue
		}
		if cycle := c.templateCycle(ctx, namespace, []string{ref.name}); cycle != nil {
			errs = append(errs, field.Invalid(ref.path, ref.name, fmt.Sprintf(
				"Workflow %s includes itself: %s", cycle[0], strings.Join(cycle, " runs "))))
		}
	}
	return errs
}

// templateCycle follows the `workflow` steps of the last template of chain and returns the chain
// of templates that leads back to one already in it, or nil when none does.
func (c *Catalog) templateCycle(ctx context.Context, namespace string, chain []string) []string {
	wf, err := c.Workflow(ctx, namespace, chain[len(chain)-1])
	if err != nil {
		return nil
	}
	for _, ref := range workflowSteps(wf.Steps, field.NewPath("steps")) {
		if ref.name == "" {
			continue
		}
		if i := slices.Index(chain, ref.name); i >= 0 {
			return append(slices.Clone(chain[i:]), ref.name)
		}
		if cycle := c.templateCycle(ctx, namespace, append(slices.Clone(chain), ref.name)); cycle != nil {
			return cycle
		}
	}
	return nil
}

// workflowRef is a `workflow` step's template name and where it is written.
type workflowRef struct {
	name string
	path *field.Path
}

// workflowSteps lists the templates the `workflow` steps of steps run.
func workflowSteps(steps []v1alpha1.WorkflowStep, base *field.Path) []workflowRef {
	var out []workflowRef
	v1alpha1.EachStep(steps, base, func(s *v1alpha1.WorkflowStepBase, p *field.Path) {
		if s.Type != v1alpha1.TypeWorkflow {
			return
		}
		var props struct {
			Name string `json:"name"`
		}
		if s.Properties != nil {
			_ = json.Unmarshal(s.Properties.Raw, &props)
		}
		out = append(out, workflowRef{name: props.Name, path: p.Child("properties", "name")})
	})
	return out
}

// CheckRun checks a run whose steps the engine resolved (run.Spec), as Check checks one sent in
// a file or a request: its fields, its `workflow` steps and each step against its step type.
// It is the engine's check before a run starts (engine.Options.Check), in every mode.
func (c *Catalog) CheckRun(ctx context.Context, cue CUE, run *engine.Run) error {
	obj := run.Object
	errs := v1alpha1.ValidateWorkflowRun(obj)
	if len(errs) == 0 && run.Spec != nil {
		base := field.NewPath("spec", "workflowSpec", "steps")
		if obj.Spec.WorkflowSpec == nil {
			base = field.NewPath("spec", "workflowRef")
		}
		errs = append(c.checkSubWorkflows(ctx, obj.Namespace, run.Spec.Steps, base), cue.CheckSteps(ctx, obj.Namespace, run.Spec.Steps, base)...)
		errs = append(errs, c.refused(run.Spec.Steps, base)...)
	}
	if err := unchecked(errs); err != nil {
		return err // not the run's fault: it is not failed for it
	}
	if len(errs) == 0 {
		return nil
	}
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Error()
	}
	return errors.New("invalid WorkflowRun: " + strings.Join(msgs, "; "))
}

// checkPackage checks a Package: its fields (cuev1alpha1.Package.Validate), that its path is
// not one of the registry's or CUE's own, and that its CUE compiles, with the Packages it
// imports, as a definition importing it would.
func (c *Catalog) checkPackage(ctx context.Context, cue CUE, p *cuev1alpha1.Package) field.ErrorList {
	errs := p.Validate()
	if len(errs) > 0 {
		return errs
	}
	path := field.NewPath("spec", "path")
	if !external(p.Spec.Path) {
		return field.ErrorList{field.Invalid(path, p.Spec.Path, "the path is taken by CUE's standard library or by stepflow's vela/ packages")}
	}
	probe := fmt.Sprintf("import pkg %q\n\npackage: pkg\n", p.Spec.Path)
	bundled, err := c.bundle(ctx, p.Namespace, probe)
	if err != nil {
		return field.ErrorList{field.InternalError(field.NewPath("spec", "templates"), err)}
	}
	// The package itself, not another of the same path seen first from its namespace.
	src, pkgs := step.Unbundle(bundled)
	for i := range pkgs {
		if pkgs[i].Path == p.Spec.Path {
			pkgs[i] = ExternalPackage(p)
		}
	}
	if len(pkgs) == 0 {
		pkgs = []step.ExternalPackage{ExternalPackage(p)}
	}
	if err := cue.Check(ctx, "package "+p.Name, step.Bundle(src, pkgs)); step.NotTheInput(err) {
		return field.ErrorList{field.InternalError(field.NewPath("spec", "templates"), fmt.Errorf("package %s: %w", p.Name, err))}
	} else if err != nil {
		return field.ErrorList{field.Invalid(field.NewPath("spec", "templates"), "(CUE)", fmt.Sprintf("Package %s: %v", p.Name, err))}
	}
	return nil
}
