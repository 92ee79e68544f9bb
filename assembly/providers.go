package assembly

import (
	"context"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stepflow/stepflow/application"
	"github.com/stepflow/stepflow/definitions"
	"github.com/stepflow/stepflow/egress"
	"github.com/stepflow/stepflow/provider/builtin"
	"github.com/stepflow/stepflow/provider/config"
	"github.com/stepflow/stepflow/provider/email"
	"github.com/stepflow/stepflow/provider/external"
	httpprovider "github.com/stepflow/stepflow/provider/http"
	"github.com/stepflow/stepflow/provider/kube"
	"github.com/stepflow/stepflow/provider/metrics"
	"github.com/stepflow/stepflow/provider/multicluster"
	"github.com/stepflow/stepflow/provider/notification"
	"github.com/stepflow/stepflow/provider/oam"
	"github.com/stepflow/stepflow/provider/op"
	"github.com/stepflow/stepflow/provider/run"
	timeprovider "github.com/stepflow/stepflow/provider/time"
	"github.com/stepflow/stepflow/provider/util"
	"github.com/stepflow/stepflow/step"
)

// Clusters resolves the clusters actions reach by name ("" is the local one): a client for the
// kube and config actions and the Secrets of the http action, a REST config for the pods' logs
// of util's #Log. *cluster.Registry implements it.
type Clusters interface {
	Client(ctx context.Context, name string) (client.Client, error)
	Config(ctx context.Context, name string) (*rest.Config, error)
}

// Providers configure the providers that reach outside the process; the zero value works, with
// the actions that need a cluster failing clearly for want of one.
type Providers struct {
	// Clusters resolves the `cluster` parameter of kube and config actions, the Secrets of
	// http's headersFromSecret and tls_config, and the pods of util's #Log source.resources.
	Clusters Clusters
	// Reads is told of every kube read, so that a waiting step can be woken by a change.
	Reads        kube.ReadObserver
	HTTP         httpprovider.Options
	Email        email.Options
	Metrics      metrics.Options
	Notification notification.Options
	// External configures the calls to the providers of external packages (Package objects).
	External external.Options
	// Egress, when set, is where the HTTP, notification, metrics and email actions, the
	// external providers and #Log's source.url may connect: their clients and dialer go
	// through it unless given one of their own. The local sandbox of vela/run gives a command
	// the network only when it is nil (nothing restricted): it cannot check a command's
	// connections.
	Egress *egress.Policy
	// AllowLocalRun lets vela/run's #Run (the step type run) execute commands on this host, in
	// a bubblewrap sandbox (--allow-local-run). Off, #Run refuses, and the assembly's catalog
	// refuses runs with steps of type run before they start, naming the flag.
	AllowLocalRun bool
	// Run configures vela/run; with AllowLocalRun and no Run.Local, the local backend is a
	// run.Sandbox with the defaults. Run.Clusters defaults to Clusters; with Clusters and no
	// Run.Jobs, the steps that give an image run as Kubernetes Jobs in them.
	Run run.Options
}

// External returns what runs the actions of external packages, behind the egress policy when
// one is set.
func External(opts Providers) *external.Provider {
	if p := opts.Egress; p != nil && opts.External.Client == nil {
		opts.External.Client = p.Client()
	}
	return external.New(opts.External)
}

// Registry returns a registry holding every vela/* package stepflow supplies, so that the CLI,
// the server and the controller offer definitions the same actions.
func Registry(opts Providers) *step.Registry {
	if p := opts.Egress; p != nil {
		if opts.HTTP.Client == nil {
			opts.HTTP.Client = p.Client()
		}
		if opts.Notification.Client == nil {
			opts.Notification.Client = p.Client()
		}
		if opts.Metrics.Client == nil {
			opts.Metrics.Client = p.Client()
		}
		if opts.Email.Dial == nil {
			opts.Email.Dial = p.DialContext
		}
	}
	utilOpts := util.Options{Clusters: opts.Clusters}
	if p := opts.Egress; p != nil {
		utilOpts.Client = p.Client()
	}
	if opts.HTTP.Clusters == nil {
		opts.HTTP.Clusters = opts.Clusters
	}
	r := step.NewRegistry()
	builtin.Register(r)
	util.Register(r, utilOpts)
	httpprovider.Register(r, opts.HTTP)
	timeprovider.Register(r, timeprovider.Options{})
	kubeOpts := kube.Options{Clusters: opts.Clusters, Reads: opts.Reads}
	kube.Register(r, kubeOpts)
	oamOpts := oam.Options{
		Objects:     kube.NewObjects(kubeOpts),
		Definitions: application.NewSet().Add(definitions.Components(), definitions.Traits(), definitions.Policies()),
	}
	if cl, ok := opts.Clusters.(application.Clusters); ok {
		oamOpts.Clusters = cl
	}
	if v, ok := opts.Clusters.(application.ClusterVersions); ok {
		oamOpts.Versions = v
	}
	multicluster.Register(r, oam.Register(r, oamOpts))
	config.Register(r, config.Options{Clusters: opts.Clusters})
	email.Register(r, opts.Email)
	metrics.Register(r, opts.Metrics)
	notification.Register(r, opts.Notification)
	op.Register(r)
	runOpts := opts.Run
	if !opts.AllowLocalRun {
		runOpts.Local = nil
	} else if runOpts.Local == nil {
		runOpts.Local = &run.Sandbox{Network: opts.Egress == nil}
	}
	if runOpts.Clusters == nil && opts.Clusters != nil {
		runOpts.Clusters = opts.Clusters
	}
	if runOpts.Jobs == nil && opts.Clusters != nil {
		runOpts.Jobs = &run.Jobs{Objects: oamOpts.Objects, Clusters: opts.Clusters, Logs: utilOpts}
	}
	run.Register(r, runOpts)
	return r
}
