package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/stepflow/stepflow/cluster"
	"github.com/stepflow/stepflow/controller"
	"github.com/stepflow/stepflow/engine"
	crdstore "github.com/stepflow/stepflow/store/crd"
)

// controllerFlags are the settings of `stepflow controller`.
type controllerFlags struct {
	workers         int
	maxEvaluations  int
	qps             float32
	burst           int
	leaderElect     bool
	leaderNamespace string
	leaderID        string
	shardID         string
	metricsAddr     string
	healthAddr      string
	allowLinkLocal  bool
	applications    bool
	schedules       bool
	eventsListen    string
}

func newControllerCommand(g *globals) *cobra.Command {
	var f controllerFlags
	cmd := &cobra.Command{
		Use:   "controller",
		Short: "Drive the WorkflowRun custom resources of a Kubernetes cluster",
		Long: `controller runs the engine over core.oam.dev WorkflowRuns, as KubeVela Workflow's
controller does: install the CRDs (kubectl apply -f config/crd), then run it in the cluster
(config/manager) or anywhere with a kubeconfig. It stops cleanly on SIGTERM: evaluations under
way are cancelled and nothing half-written is left; another replica (--leader-elect) or the
next start goes on from the stored status.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.runController(cmd.Context(), f)
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&f.workers, "concurrent-reconciles", 0, "runs advanced at once (default 256, or 4 × CPUs when more)")
	fl.IntVar(&f.maxEvaluations, "max-evaluations", engine.DefaultMaxEvaluations, "step evaluations under way (CUE or actions) before runs to start wait in line; runs under way always go on (-1: no limit)")
	fl.Float32Var(&f.qps, "kube-api-qps", 200, "queries per second to the API server")
	fl.IntVar(&f.burst, "kube-api-burst", 400, "burst of queries to the API server")
	fl.BoolVar(&f.leaderElect, "leader-elect", false, "elect a leader among replicas; only the leader drives runs")
	fl.StringVar(&f.leaderNamespace, "leader-election-namespace", "", "namespace of the election Lease (default: the pod's, or default)")
	fl.StringVar(&f.leaderID, "leader-election-id", "stepflow-workflowrun-controller", "name of the election Lease")
	fl.StringVar(&f.shardID, "shard-id", "", "drive only WorkflowRuns labelled "+controller.ShardLabel+"=ID")
	fl.StringVar(&f.metricsAddr, "metrics-bind-address", ":8080", `address of /metrics ("0" turns it off)`)
	fl.BoolVar(&f.allowLinkLocal, "egress-allow-link-local", false, linkLocalUsage)
	fl.BoolVar(&f.applications, "applications", true, "reconcile KubeVela Applications too (needs the Application, ApplicationRevision and ResourceTracker CRDs of config/crd)")
	fl.BoolVar(&f.schedules, "schedules", true, "reconcile WorkflowSchedules too: a WorkflowRun at each firing of their cron schedules (needs the WorkflowSchedule CRD of config/crd)")
	fl.StringVar(&f.eventsListen, "events-listen", "", "address of the events listener: a CloudEvent POSTed to /events/{namespace}/{name} starts a run of that WorkflowEventTrigger (off when empty)")
	fl.StringVar(&f.healthAddr, "health-probe-bind-address", ":8081", `address of /healthz and /readyz ("0" turns it off)`)
	return cmd
}

// restConfig loads the kubeconfig: --kubeconfig, else $KUBECONFIG or ~/.kube/config, else the
// in-cluster service account.
func (g *globals) restConfig() (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if g.kubeconfig != "" {
		rules.ExplicitPath = g.kubeconfig
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err == nil {
		return cfg, nil
	}
	if g.kubeconfig == "" && clientcmd.IsEmptyConfig(err) {
		if in, inErr := rest.InClusterConfig(); inErr == nil {
			return in, nil
		}
	}
	return nil, invalidf("kubeconfig: %v", err)
}

func (g *globals) runController(ctx context.Context, f controllerFlags) error {
	cfg, err := g.restConfig()
	if err != nil {
		return err
	}
	cfg.QPS, cfg.Burst = f.qps, f.burst
	log := slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctrl.SetLogger(logr.FromSlogHandler(log.Handler()))
	scheme, err := controller.NewScheme()
	if err != nil {
		return err
	}
	mgr, err := ctrl.NewManager(cfg, manager.Options{
		Scheme:                        scheme,
		Cache:                         controller.CacheOptions(f.shardID),
		Metrics:                       metricsserver.Options{BindAddress: f.metricsAddr},
		HealthProbeBindAddress:        f.healthAddr,
		LeaderElection:                f.leaderElect,
		LeaderElectionID:              f.leaderID,
		LeaderElectionNamespace:       f.leaderNamespace,
		LeaderElectionReleaseOnCancel: true,
		GracefulShutdownTimeout:       new(30 * time.Second),
	})
	if err != nil {
		return fmt.Errorf("controller manager: %w", err)
	}
	if f.healthAddr != "0" {
		if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
			return err
		}
		if err := mgr.AddReadyzCheck("ping", healthz.Ping); err != nil {
			return err
		}
	}
	clusters := cluster.New(cfg, cluster.Options{Secrets: mgr.GetClient(), QPS: f.qps, Burst: f.burst, Scheme: scheme})
	watches := controller.NewWatches(cfg, clusters, log)
	settings, err := g.assemblyConfig(!f.allowLinkLocal)
	if err != nil {
		return err
	}
	settings.Workers, settings.MaxEvaluations, settings.Logger = f.workers, f.maxEvaluations, log
	settings.Providers.Clusters = clusters
	// The controller's metrics beside controller-runtime's, on --metrics-bind-address.
	settings.Metrics = ctrlmetrics.Registry
	if _, err := controller.Setup(mgr, controller.Options{Assembly: settings, Watches: watches, Applications: f.applications, Schedules: f.schedules, EventsListen: f.eventsListen}); err != nil { //nolint:contextcheck // the events sinks' goroutines live until Assembly.Close, whatever this context does
		return err
	}
	log.Info("stepflow controller starting", "shard", f.shardID, "leaderElection", f.leaderElect)
	if err := mgr.Start(ctx); err != nil {
		return fmt.Errorf("controller: %w", err)
	}
	return nil
}

// kubeClient is a client of the cluster for this command.
func (g *globals) kubeClient() (client.Client, error) {
	cfg, err := g.restConfig()
	if err != nil {
		return nil, err
	}
	scheme, err := controller.NewScheme()
	if err != nil {
		return nil, err
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, fmt.Errorf("connect to the cluster: %w", err)
	}
	return c, nil
}

// kubeStore is a store over the cluster's WorkflowRuns for this command's operations.
func (g *globals) kubeStore() (*crdstore.Store, error) {
	c, err := g.kubeClient()
	if err != nil {
		return nil, err
	}
	return crdstore.New(crdstore.Options{Client: c}), nil
}

// kubeOperate applies an operation to a WorkflowRun in the cluster, as the controller's engine
// would: a compare-and-swap on its status, passed on to the child runs of its workflow steps.
// The controller notices and goes on.
func (g *globals) kubeOperate(ctx context.Context, name string, op engine.Operation) error {
	st, err := g.kubeStore()
	if err != nil {
		return err
	}
	key := engine.Key{Namespace: g.namespace, Name: name}
	// An engine with no workers: Operate loads, applies, saves and passes on; the controller
	// drives what follows.
	eng := engine.New(engine.Options{Store: st})
	if _, err := eng.Operate(ctx, key, op); err != nil {
		if errors.Is(err, engine.ErrNotFound) {
			return invalidf("WorkflowRun %s not found", key)
		}
		return operationErr(key, err)
	}
	fmt.Fprintf(g.stdout, "%s: done\n", name)
	return nil
}
