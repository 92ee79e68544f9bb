package assembly

import (
	"github.com/stepflow/stepflow/egress"
	"github.com/stepflow/stepflow/provider/builtin"
	"github.com/stepflow/stepflow/provider/config"
	"github.com/stepflow/stepflow/provider/email"
	httpprovider "github.com/stepflow/stepflow/provider/http"
	"github.com/stepflow/stepflow/provider/kube"
	"github.com/stepflow/stepflow/provider/metrics"
	"github.com/stepflow/stepflow/provider/notification"
	"github.com/stepflow/stepflow/provider/op"
	timeprovider "github.com/stepflow/stepflow/provider/time"
	"github.com/stepflow/stepflow/provider/util"
	"github.com/stepflow/stepflow/step"
)

// Providers configure the providers that reach outside the process; the zero value works, with
// the kube and config actions failing clearly for want of a cluster.
type Providers struct {
	// Clusters resolves the `cluster` parameter of kube and config actions.
	Clusters kube.Clusters
	// Reads is told of every kube read, so that a waiting step can be woken by a change.
	Reads        kube.ReadObserver
	HTTP         httpprovider.Options
	Email        email.Options
	Metrics      metrics.Options
	Notification notification.Options
	// Egress, when set, is where the HTTP, notification, metrics and email actions may connect:
	// their clients and dialer go through it unless given one of their own.
	Egress *egress.Policy
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
	r := step.NewRegistry()
	builtin.Register(r)
	util.Register(r, util.Options{})
	httpprovider.Register(r, opts.HTTP)
	timeprovider.Register(r, timeprovider.Options{})
	kube.Register(r, kube.Options{Clusters: opts.Clusters, Reads: opts.Reads})
	config.Register(r, config.Options{Clusters: opts.Clusters})
	email.Register(r, opts.Email)
	metrics.Register(r, opts.Metrics)
	notification.Register(r, opts.Notification)
	op.Register(r)
	return r
}
