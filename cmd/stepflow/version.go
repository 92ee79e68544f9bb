package main

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/stepflow/stepflow/telemetry"
)

// version and commit are stamped into a release binary by the linker:
//
//	go build -ldflags "-X main.version=v0.3.0 -X main.commit=$(git rev-parse HEAD)" ./cmd/stepflow
//
// (`make build` and `make image` do). They are set once, at link time, and only read.
var (
	version = "dev"
	commit  = "unknown"
)

// build is this binary's version and commit, for `stepflow version` and stepflow_build_info.
func build() telemetry.Build {
	return telemetry.Build{Version: version, Commit: commit}
}

func newVersionCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit and Go version this binary was built with",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			b := build()
			fmt.Fprintf(g.stdout, "stepflow %s\ncommit %s\ngo %s %s/%s\n", b.Version, b.Commit, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return nil
		},
	}
}
