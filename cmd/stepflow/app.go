package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/stepflow/stepflow/api/v1beta1"
	"github.com/stepflow/stepflow/definitions"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/provider/builtin"
	httpprovider "github.com/stepflow/stepflow/provider/http"
	"github.com/stepflow/stepflow/provider/op"
	timeprovider "github.com/stepflow/stepflow/provider/time"
	"github.com/stepflow/stepflow/provider/util"
	"github.com/stepflow/stepflow/step"
	"github.com/stepflow/stepflow/store/sqlite"
)

// systemNamespace is where step types shared by every namespace live, as in KubeVela.
const systemNamespace = "vela-system"

// app is what a command works with: the store, the step runtime, and the definitions it sees.
type app struct {
	store  *sqlite.Store
	runner *step.Runner
	defs   *definitionChain
}

// open opens the store under the data directory and wires the step runtime.
func (g *globals) open(ctx context.Context) (*app, error) {
	if g.app != nil {
		return g.app, nil
	}
	if err := os.MkdirAll(g.dataDir, 0o755); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	st, err := sqlite.Open(ctx, sqlite.Options{Path: filepath.Join(g.dataDir, "stepflow.db")})
	if err != nil {
		return nil, fmt.Errorf("open the store in %s: %w", g.dataDir, err)
	}
	defs := &definitionChain{store: st, local: map[[2]string]string{}}
	g.app = &app{store: st, defs: defs, runner: newRunner(defs)}
	return g.app, nil
}

func (a *app) close() {
	if a.store != nil {
		_ = a.store.Close()
	}
}

func newRunner(defs step.Definitions) *step.Runner {
	reg := step.NewRegistry()
	builtin.Register(reg)
	util.Register(reg, util.Options{})
	httpprovider.Register(reg, httpprovider.Options{})
	timeprovider.Register(reg, timeprovider.Options{})
	op.Register(reg)
	return step.NewRunner(step.Options{Registry: reg, Definitions: defs})
}

// definitionChain finds a step type as KubeVela does: in the run's namespace, then in
// vela-system, then among the built-ins. Definitions given on the command line come first.
type definitionChain struct {
	store *sqlite.Store
	local map[[2]string]string
}

// add makes definitions from the files of this command visible before they are stored.
func (c *definitionChain) add(defs []*v1beta1.WorkflowStepDefinition) {
	for _, d := range defs {
		if d.Spec.Schematic != nil && d.Spec.Schematic.CUE != nil {
			c.local[[2]string{d.Namespace, d.Name}] = d.Spec.Schematic.CUE.Template
		}
	}
}

// Template implements step.Definitions.
func (c *definitionChain) Template(ctx context.Context, namespace, typ string) (string, error) {
	for _, ns := range []string{namespace, systemNamespace} {
		if t, ok := c.local[[2]string{ns, typ}]; ok {
			return t, nil
		}
		if c.store != nil {
			t, err := c.store.Template(ctx, ns, typ)
			if err == nil {
				return t, nil
			}
			if !errors.Is(err, engine.ErrNotFound) {
				return "", err
			}
		}
	}
	if t, ok := definitions.Template(typ); ok {
		return t, nil
	}
	return "", fmt.Errorf("step type %q: %w (looked in namespace %q, %s and the built-ins)", typ, step.ErrUnknownType, namespace, systemNamespace)
}
