package main

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/stepflow/stepflow/engine"
)

func newSuspendCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "suspend NAME",
		Short: "Hold a run: no step starts until it is resumed",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.operate(cmd, args[0], false, func(r *engine.Run, _ time.Time) error { return engine.SuspendRun(r) })
		},
	}
}

func newResumeCommand(g *globals) *cobra.Command {
	var step string
	cmd := &cobra.Command{
		Use:   "resume NAME",
		Short: "Release a suspended run (or one suspend step) and drive it on to its end",
		Long: `Resume releases a run held by a suspend operation or by suspend steps (only the
step named by --step, if given) and drives it on in this process. It also continues a run
whose process died (kill -9, a reboot) from where the store says it was.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.operate(cmd, args[0], true, func(r *engine.Run, _ time.Time) error { return engine.ResumeRun(r, step) })
		},
	}
	cmd.Flags().StringVar(&step, "step", "", "resume only this suspended step")
	return cmd
}

func newTerminateCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "terminate NAME",
		Short: "End a run: running steps fail, only `if: always` steps still run",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.operate(cmd, args[0], true, engine.TerminateRun)
		},
	}
}

func newRestartCommand(g *globals) *cobra.Command {
	var step string
	cmd := &cobra.Command{
		Use:   "restart NAME",
		Short: "Run a run again from the start, or from its failed step with --step",
		Long: `Restart clears a run and drives it again from the start. With --step, the step
must have failed: it, the steps after it or depending on it, and their outputs are cleared,
and what succeeded is kept.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.operate(cmd, args[0], true, func(r *engine.Run, _ time.Time) error { return engine.RestartRun(r, step) })
		},
	}
	cmd.Flags().StringVar(&step, "step", "", "restart from this failed step, keeping what succeeded")
	return cmd
}
