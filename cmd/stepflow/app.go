package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/catalog"
	"github.com/stepflow/stepflow/cluster"
	"github.com/stepflow/stepflow/egress"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/providers"
	"github.com/stepflow/stepflow/step"
	"github.com/stepflow/stepflow/store/sqlite"
)

// app is what a command works with: the store, the step runtime, and the definitions it sees.
type app struct {
	store  *sqlite.Store
	runner *step.Runner
	// catalog finds step types and templates: in the store, then among the built-ins.
	catalog *catalog.Catalog
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
	policy, err := egress.New(g.egressAllow, g.egressDeny)
	if err != nil {
		_ = st.Close()
		return nil, invalidErr(err)
	}
	cat := catalog.New(st)
	g.app = &app{store: st, catalog: cat, runner: newRunner(cat, &lazyClusters{g: g}, policy, g.evalTimeout)}
	return g.app, nil
}

func (a *app) close() {
	if a.store != nil {
		_ = a.store.Close()
	}
}

// newRunner wires the step runtime with every provider; kube and config actions reach the
// clusters through clusters.
func newRunner(defs step.Definitions, clusters *lazyClusters, policy *egress.Policy, evalTimeout time.Duration) *step.Runner {
	reg := providers.Registry(providers.Options{Clusters: clusters, Egress: policy})
	return step.NewRunner(step.Options{Registry: reg, Definitions: defs, EvalTimeout: evalTimeout})
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
