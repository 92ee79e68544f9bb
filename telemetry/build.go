package telemetry

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/prometheus/client_golang/prometheus"
)

// Build names the binary that exports the metrics: the version and the commit stamped into it
// when it was built (`-ldflags -X`, see the Makefile's image target).
type Build struct {
	// Version is the release, such as v0.3.0; "dev" for a binary built without a stamp.
	Version string
	// Commit is the git commit it was built from; "unknown" without a stamp.
	Commit string
}

// RegisterBuild registers the gauge stepflow_build_info{version,commit,goversion}, always 1,
// with reg, so that a dashboard can show which binaries are running and join them to other
// series. A registry that holds it already (the controller's process-wide one, when a process
// starts the controller twice) keeps the one it has.
func RegisterBuild(reg prometheus.Registerer, b Build) error {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "stepflow_build_info",
		Help: "Always 1; its labels say which stepflow binary this is: version, commit and the Go version it was built with.",
		ConstLabels: prometheus.Labels{
			"version":   b.Version,
			"commit":    b.Commit,
			"goversion": runtime.Version(),
		},
	})
	g.Set(1)
	if err := reg.Register(g); err != nil {
		if _, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); ok {
			return nil
		}
		return fmt.Errorf("register stepflow_build_info: %w", err)
	}
	return nil
}
