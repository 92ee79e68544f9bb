package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/api/v1beta1"
	"github.com/stepflow/stepflow/cluster"
	"github.com/stepflow/stepflow/definitions"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/providers"
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
	g.app = &app{store: st, defs: defs, runner: newRunner(defs, &lazyClusters{g: g})}
	return g.app, nil
}

func (a *app) close() {
	if a.store != nil {
		_ = a.store.Close()
	}
}

// newRunner wires the step runtime with every provider; kube and config actions reach the
// clusters through clusters.
func newRunner(defs step.Definitions, clusters *lazyClusters) *step.Runner {
	reg := providers.Registry(providers.Options{Clusters: clusters})
	return step.NewRunner(step.Options{Registry: reg, Definitions: defs})
}

// lazyClusters builds the cluster registry on the first kube or config action, so that a run
// without one needs no kubeconfig and no cluster: the local cluster from --kubeconfig (else
// $KUBECONFIG, ~/.kube/config, in-cluster), the named ones from the contexts of --clusters.
type lazyClusters struct {
	g        *globals
	once     sync.Once
	reg      *cluster.Registry
	localErr error
}

// Client implements kube.Clusters and config.Clusters.
func (l *lazyClusters) Client(ctx context.Context, name string) (client.Client, error) {
	l.once.Do(func() {
		local, err := l.g.restConfig()
		if err != nil {
			l.localErr = engine.Terminal(v1alpha1.ReasonExecute, fmt.Errorf("the local cluster: %w", err))
		}
		var file string
		if l.g.clustersFile != "" {
			file = l.g.paths([]string{l.g.clustersFile})[0]
		}
		l.reg = cluster.New(local, cluster.Options{File: file})
	})
	if (name == "" || name == cluster.LocalName) && l.localErr != nil {
		return nil, l.localErr
	}
	return l.reg.Client(ctx, name)
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
