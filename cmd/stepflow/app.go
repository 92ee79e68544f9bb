package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	kubeversion "k8s.io/apimachinery/pkg/version"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/assembly"
	"github.com/stepflow/stepflow/cluster"
	"github.com/stepflow/stepflow/egress"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/events"
	"github.com/stepflow/stepflow/store"
	"github.com/stepflow/stepflow/store/sqlite"
)

// app is what a command works with: the store, and stepflow assembled over it (the catalog of
// step types and templates, the step runtime, the engine whose transitions the watcher follows).
// The engine advances only the runs whose leases this process holds, so that of the processes
// sharing the data directory one at a time drives a run.
type app struct {
	store  *sqlite.Store
	leases *sqlite.Leases
	*assembly.Assembly
	watch *watcher
	// clusters are the clusters the runs reach, which the Applications' lifecycle reaches too.
	clusters *lazyClusters
}

// open opens the store under the data directory and assembles stepflow over it.
func (g *globals) open(ctx context.Context) (*app, error) {
	if g.app != nil {
		return g.app, nil
	}
	cfg, err := g.assemblyConfig(false)
	if err != nil {
		return nil, err
	}
	st, err := g.openSQLite(ctx)
	if err != nil {
		return nil, err
	}
	leases, err := st.Leases(sqlite.LeaseOptions{})
	if err != nil {
		_ = st.Close()
		return nil, err
	}
	clusters := &lazyClusters{g: g}
	cfg.Providers.Clusters = clusters
	w := newWatcher(g)
	asm, err := assembly.New(cfg, assembly.Mode{Store: st, Definitions: st, Observers: []engine.Observer{w}, Owner: leases, Cache: &store.StepCache{Records: st}, Slots: &store.Slots{Records: st}}) //nolint:contextcheck // the events sinks' goroutines live until Assembly.Close, whatever this context does
	if err != nil {
		_ = st.Close()
		return nil, err
	}
	g.app = &app{store: st, leases: leases, Assembly: asm, watch: w, clusters: clusters}
	return g.app, nil
}

// openSQLite opens the embedded store in the data directory, which it creates for its owner
// only (the database holds every run's variables and the server's secrets), and warns on
// stderr when an existing store is open to other users.
func (g *globals) openSQLite(ctx context.Context) (*sqlite.Store, error) {
	if err := os.MkdirAll(g.dataDir, sqlite.DirMode); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	path := filepath.Join(g.dataDir, "stepflow.db")
	st, err := sqlite.Open(ctx, sqlite.Options{Path: path})
	if err != nil {
		return nil, fmt.Errorf("open the store in %s: %w", g.dataDir, err)
	}
	open, err := sqlite.OpenToOthers(path)
	if err != nil {
		_ = st.Close()
		return nil, err
	}
	if len(open) > 0 {
		fmt.Fprintf(g.stderr, "warning: other users may read the store (%s): chmod 700 the directory and 600 its files; docs/operations.md\n", strings.Join(open, ", "))
	}
	return st, nil
}

// sweep deletes the finished runs of the embedded store past their retention (--retain,
// --retain-count, their own ttlSecondsAfterFinished), with their logs: `stepflow run` and
// `stepflow recover` do it as they start, no process of the CLI living long enough to do it
// on a timer. It also gives up the concurrency slots of the runs that finished in a process
// that died before it gave them up, or were deleted. A failure is reported and does not stop
// the command.
func (g *globals) sweep(ctx context.Context, a *app) {
	if _, err := store.Sweep(ctx, a.store, g.retention, time.Now(), nil); err != nil {
		fmt.Fprintf(g.stderr, "stepflow: delete the finished runs past their retention: %v\n", err)
	}
	if _, err := a.Engine.SweepSlots(ctx); err != nil {
		fmt.Fprintf(g.stderr, "stepflow: give up the slots of finished runs: %v\n", err)
	}
}

// close gives up the runs this process held, for others to take at once, and closes the store.
func (a *app) close() {
	if a.Assembly != nil {
		// The events the runs emitted go out, for a few seconds at most.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		a.Close(ctx)
		cancel()
	}
	if a.leases != nil {
		_ = a.leases.Release(context.Background())
	}
	if a.store != nil {
		_ = a.store.Close()
	}
}

// assemblyConfig is the configuration every mode shares, from the global flags; a mode adds
// its own (workers, clusters, telemetry). denyLinkLocal refuses steps link-local destinations
// (the server and the controller, unless --egress-allow-link-local).
func (g *globals) assemblyConfig(denyLinkLocal bool) (assembly.Config, error) {
	policy, err := egress.New(egress.Options{Allow: g.egressAllow, Deny: g.egressDeny, DenyLinkLocal: denyLinkLocal})
	if err != nil {
		return assembly.Config{}, invalidErr(err)
	}
	var inProcess bool
	switch g.evalIsolation {
	case "process":
	case "none":
		inProcess = true
	default:
		return assembly.Config{}, invalidErr(fmt.Errorf("--eval-isolation: %q is neither process nor none", g.evalIsolation))
	}
	for _, sink := range g.eventSinks {
		if err := events.CheckSink(sink); err != nil {
			return assembly.Config{}, invalidErr(fmt.Errorf("--events-sink: %w", err))
		}
	}
	if g.evalMemory < 0 || g.evaluators < 0 {
		return assembly.Config{}, invalidErr(errors.New("--eval-memory and --evaluators cannot be negative"))
	}
	return assembly.Config{
		Retry:         engine.RetryPolicy{Limit: g.retryLimit, Backoff: engine.Backoff{Initial: g.retryBackoff}},
		Wait:          engine.Backoff{Initial: g.waitBackoff},
		Limits:        g.limits,
		EvalTimeout:   g.evalTimeout,
		EvalMemory:    int64(g.evalMemory) << 20,
		Evaluators:    g.evaluators,
		EvalInProcess: inProcess,
		Retention:     g.retention,
		EventSinks:    g.eventSinks,
		Providers:     assembly.Providers{Egress: policy, AllowLocalRun: g.allowLocalRun},
		Build:         build(),
	}, nil
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

// Client implements assembly.Clusters.
func (l *lazyClusters) Client(ctx context.Context, name string) (client.Client, error) {
	reg, err := l.registry(name)
	if err != nil {
		return nil, err
	}
	return reg.Client(ctx, name)
}

// Config implements assembly.Clusters.
func (l *lazyClusters) Config(ctx context.Context, name string) (*rest.Config, error) {
	reg, err := l.registry(name)
	if err != nil {
		return nil, err
	}
	return reg.Config(ctx, name)
}

// ServerVersion is cluster.Registry.ServerVersion.
func (l *lazyClusters) ServerVersion(ctx context.Context, name string) (*kubeversion.Info, error) {
	reg, err := l.registry(name)
	if err != nil {
		return nil, err
	}
	return reg.ServerVersion(ctx, name)
}

// registry builds the registry on first use, and says why the local cluster cannot be named
// when it could not be found.
func (l *lazyClusters) registry(name string) (*cluster.Registry, error) {
	l.once.Do(func() {
		local, err := l.g.restConfig()
		if err != nil {
			l.localErr = engine.Terminal(v1alpha1.ReasonExecute, fmt.Errorf("no local cluster (give stepflow a kubeconfig with --kubeconfig): %w", err))
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
	return l.reg, nil
}
