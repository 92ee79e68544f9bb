package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/manifest"
)

// problems collects what is wrong with the files of a command, each located in its file.
type problems struct {
	objs *manifest.Objects
	list manifest.Errors
}

func (p *problems) add(obj any, errs field.ErrorList) {
	p.list = append(p.list, p.objs.Explain(obj, errs)...)
}

func (p *problems) err() error {
	if len(p.list) == 0 {
		return nil
	}
	p.list.Sort()
	return invalidErr(p.list)
}

// load opens the store and decodes and checks the files named on the command line.
func (g *globals) load(ctx context.Context, files []string) (*app, *manifest.Objects, error) {
	a, err := g.open(ctx)
	if err != nil {
		return nil, nil, err
	}
	objs, err := a.decode(ctx, g.paths(files))
	return a, objs, err
}

// decode reads the files and checks everything in them that can be checked without running:
// the objects' shape, the runs' steps against the step types they name, and the definitions' CUE.
func (a *app) decode(ctx context.Context, files []string) (*manifest.Objects, error) {
	objs, err := manifest.DecodeFiles(files...)
	if err != nil {
		return nil, invalidErr(err)
	}
	a.defs.add(objs.Definitions)
	p := &problems{objs: objs}
	for _, d := range objs.Definitions {
		tmpl := ""
		if d.Spec.Schematic != nil && d.Spec.Schematic.CUE != nil {
			tmpl = d.Spec.Schematic.CUE.Template
		}
		path := field.NewPath("spec", "schematic", "cue", "template")
		if strings.TrimSpace(tmpl) == "" {
			p.add(d, field.ErrorList{field.Required(path, "a step type needs a CUE template")})
			continue
		}
		if err := a.runner.Check(ctx, d.Name, tmpl); err != nil {
			p.add(d, field.ErrorList{field.Invalid(path, "(CUE)", fmt.Sprintf("definition %s: %v", d.Name, err))})
		}
	}
	for _, wf := range objs.Workflows {
		errs := v1alpha1.ValidateWorkflow(wf)
		if len(errs) == 0 {
			errs = a.checkSubWorkflows(ctx, objs, wf.Namespace, wf.Steps, field.NewPath("steps"))
		}
		p.add(wf, errs)
	}
	for _, run := range objs.Runs {
		errs := v1alpha1.ValidateWorkflowRun(run)
		if len(errs) == 0 {
			errs = a.checkSteps(ctx, objs, run)
		}
		p.add(run, errs)
	}
	return objs, p.err()
}

// checkSteps checks each step against its step type: that the type exists, and that its
// properties fit the type's parameter (parameters filled by inputs are taken as given).
func (a *app) checkSteps(ctx context.Context, objs *manifest.Objects, run *v1alpha1.WorkflowRun) field.ErrorList {
	var errs field.ErrorList
	steps, base, wf, err := a.resolveSteps(ctx, objs, run)
	if err != nil {
		return field.ErrorList{field.Invalid(field.NewPath("spec", "workflowRef"), run.Spec.WorkflowRef, err.Error())}
	}
	if wf != nil {
		// The referenced Workflow's steps run under the run's mode: check them as such.
		if errs := v1alpha1.ValidateSteps(wf.Steps, v1alpha1.EffectiveMode(&run.Spec, wf), base); len(errs) > 0 {
			return errs
		}
	}
	errs = append(errs, a.checkSubWorkflows(ctx, objs, run.Namespace, steps, base)...)
	return append(errs, a.runner.CheckSteps(ctx, run.Namespace, steps, base)...)
}

// resolveSteps returns the steps a run executes, the field path they are reported at, and the
// Workflow they come from when the run refers to one.
func (a *app) resolveSteps(ctx context.Context, objs *manifest.Objects, run *v1alpha1.WorkflowRun) ([]v1alpha1.WorkflowStep, *field.Path, *v1alpha1.Workflow, error) {
	if run.Spec.WorkflowSpec != nil {
		return run.Spec.WorkflowSpec.Steps, field.NewPath("spec", "workflowSpec", "steps"), nil, nil
	}
	wf, err := a.workflow(ctx, objs, run.Namespace, run.Spec.WorkflowRef)
	if err != nil {
		return nil, nil, nil, err
	}
	return wf.Steps, field.NewPath("spec", "workflowRef"), wf, nil
}

// workflow finds a Workflow template among the files, then in the store.
func (a *app) workflow(ctx context.Context, objs *manifest.Objects, namespace, name string) (*v1alpha1.Workflow, error) {
	if objs != nil {
		for _, wf := range objs.Workflows {
			if wf.Namespace == namespace && wf.Name == name {
				return wf, nil
			}
		}
	}
	if a.store != nil {
		wf, err := a.store.Workflow(ctx, namespace, name)
		if err == nil {
			return wf, nil
		}
		if !errors.Is(err, engine.ErrNotFound) {
			return nil, err
		}
	}
	return nil, fmt.Errorf("no Workflow %q in namespace %q", name, namespace)
}

// checkSubWorkflows checks the `workflow` steps of a list of steps: each names a Workflow
// template that exists, and no template includes itself, directly or through another one.
func (a *app) checkSubWorkflows(ctx context.Context, objs *manifest.Objects, namespace string, steps []v1alpha1.WorkflowStep, base *field.Path) field.ErrorList {
	var errs field.ErrorList
	for _, ref := range workflowSteps(steps, base) {
		if ref.name == "" {
			continue // filled by an input: known when it runs
		}
		if _, err := a.workflow(ctx, objs, namespace, ref.name); err != nil {
			errs = append(errs, field.Invalid(ref.path, ref.name, err.Error()))
			continue
		}
		if cycle := a.templateCycle(ctx, objs, namespace, []string{ref.name}); cycle != nil {
			errs = append(errs, field.Invalid(ref.path, ref.name, fmt.Sprintf(
				"Workflow %s includes itself: %s", cycle[0], strings.Join(cycle, " runs "))))
		}
	}
	return errs
}

// templateCycle follows the `workflow` steps of the last template of chain and returns the chain
// of templates that leads back to one already in it, or nil when none does.
func (a *app) templateCycle(ctx context.Context, objs *manifest.Objects, namespace string, chain []string) []string {
	wf, err := a.workflow(ctx, objs, namespace, chain[len(chain)-1])
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
		if cycle := a.templateCycle(ctx, objs, namespace, append(slices.Clone(chain), ref.name)); cycle != nil {
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
	add := func(s *v1alpha1.WorkflowStepBase, p *field.Path) {
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
	}
	for i := range steps {
		p := base.Index(i)
		add(&steps[i].WorkflowStepBase, p)
		for j := range steps[i].SubSteps {
			add(&steps[i].SubSteps[j], p.Child("subSteps").Index(j))
		}
	}
	return out
}
