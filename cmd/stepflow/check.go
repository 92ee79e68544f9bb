package main

import (
	"context"

	"github.com/stepflow/stepflow/manifest"
)

// load opens the store and decodes and checks the files named on the command line.
func (g *globals) load(ctx context.Context, files []string) (*app, *manifest.Objects, error) {
	a, err := g.open(ctx)
	if err != nil {
		return nil, nil, err
	}
	objs, err := a.decode(ctx, g.paths(files))
	return a, objs, err
}

// decode reads the files and checks everything in them that can be checked without running
// (catalog.Check): the objects' shape, the runs' steps against the step types they name, and
// the definitions' CUE.
func (a *app) decode(ctx context.Context, files []string) (*manifest.Objects, error) {
	objs, err := manifest.DecodeFiles(files...)
	if err != nil {
		return nil, invalidErr(err)
	}
	if err := a.catalog.Check(ctx, a.runner, objs); err != nil {
		return nil, invalidErr(err)
	}
	return objs, nil
}
