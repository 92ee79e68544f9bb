package main

import (
	"github.com/spf13/cobra"

	"github.com/stepflow/stepflow/engine"
)

// operationCommand describes the command of one engine.Operation kind.
type operationCommand struct {
	kind  engine.OperationKind
	short string
	long  string
	// step is the --step flag's help; "" when the operation takes no step.
	step string
	// drive: the run can go on afterwards, so the command drives (or follows) it to its end.
	drive bool
}

// operationCommands are the CLI's operations on a run. Each sends an engine.Operation, which the
// engine applies the same way whether it came from here, the API or a WorkflowRun's status.
var operationCommands = []operationCommand{
	{kind: engine.OpSuspend, short: "Hold a run: no step starts until it is resumed"},
	{kind: engine.OpResume, drive: true,
		short: "Release a suspended run (or one suspend step) and drive it on to its end",
		long: `Resume releases a run held by a suspend operation or by suspend steps (only the
step named by --step, if given) and drives it on in this process. It also continues a run
whose process died (kill -9, a reboot) from where the store says it was.`,
		step: "resume only this suspended step"},
	{kind: engine.OpTerminate, drive: true, short: "End a run: running steps fail, only `if: always` steps still run",
		long: `Terminate ends a run: its running steps fail, and only its if: always steps still run,
driven to their end in this process. It exits 0 once the run has ended terminated.`},
	{kind: engine.OpRestart, drive: true,
		short: "Run a run again from the start, or from its failed step with --step",
		long: `Restart clears a run and drives it again from the start. With --step, the step
must have failed: it, the steps after it or depending on it, and their outputs are cleared,
and what succeeded is kept.`,
		step: "restart from this failed step, keeping what succeeded"},
}

func newOperationCommand(g *globals, oc operationCommand) *cobra.Command {
	var op engine.Operation
	cmd := &cobra.Command{
		Use:   string(oc.kind) + " NAME",
		Short: oc.short,
		Long:  oc.long,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			op.Kind = oc.kind
			return g.operate(cmd.Context(), args[0], op, oc.drive)
		},
	}
	if oc.step != "" {
		cmd.Flags().StringVar(&op.Step, "step", "", oc.step)
	}
	cmd.Flags().StringVar(&op.Reason, "reason", "", "why, recorded with the operation (shown in the run's message where it says why)")
	return cmd
}
