package main

import (
	"context"
	"errors"

	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/manifest"
)

// load opens the store and decodes and checks the files named on the command line.
func (g *globals) load(ctx context.Context, files []string, set map[string]any) (*app, *manifest.Objects, error) {
	a, err := g.open(ctx)
	if err != nil {
		return nil, nil, err
	}
	objs, err := a.decode(ctx, g.paths(files), set)
	return a, objs, err
}

// decode reads the files and checks everything in them that can be checked without running
// (catalog.Check): the objects' shape, the runs' steps against the step types they name, and
// the definitions' CUE. set, from run's --set flags, is merged into every run's spec.context
// first, so that it may give the parameters a Workflow template requires.
func (a *app) decode(ctx context.Context, files []string, set map[string]any) (*manifest.Objects, error) {
	objs, err := manifest.DecodeFiles(files...)
	if err != nil {
		return nil, invalidErr(err)
	}
	for _, obj := range objs.Runs {
		if err := mergeContext(obj, set); err != nil {
			return nil, err
		}
	}
	if err := a.Catalog.Check(ctx, a.Runner, objs); errors.Is(err, engine.ErrTryLater) {
		return nil, err // not checked (the CUE evaluators failed): not the files' fault
	} else if err != nil {
		return nil, invalidErr(err)
	}
	return objs, nil
}
