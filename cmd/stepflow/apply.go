package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/stepflow/stepflow/manifest"
)

func newApplyCommand(g *globals) *cobra.Command {
	var files []string
	cmd := &cobra.Command{
		Use:   "apply -f FILE...",
		Short: "Store step definitions and Workflow templates for later runs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(files) == 0 {
				return invalidf("apply: give the files with -f")
			}
			ctx := cmd.Context()
			if r := g.remote(); r != nil {
				objs, err := manifest.DecodeFiles(g.paths(files)...)
				if err != nil {
					return invalidErr(err)
				}
				if len(objs.Runs) > 0 {
					return invalidf("apply stores definitions and Workflows; run WorkflowRuns with stepflow run (found %s)", objs.Runs[0].Name)
				}
				return g.remoteApply(ctx, r, objs)
			}
			a, objs, err := g.load(ctx, files, nil)
			if err != nil {
				return err
			}
			if len(objs.Runs) > 0 {
				return invalidf("apply stores definitions and Workflows; run WorkflowRuns with stepflow run (found %s)", objs.Runs[0].Name)
			}
			if err := a.store.PutObjects(ctx, objs.Definitions, objs.Workflows); err != nil {
				return err
			}
			for _, d := range objs.Definitions {
				fmt.Fprintf(g.stdout, "workflowstepdefinition %s/%s stored\n", d.Namespace, d.Name)
			}
			for _, wf := range objs.Workflows {
				fmt.Fprintf(g.stdout, "workflow %s/%s stored\n", wf.Namespace, wf.Name)
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVarP(&files, "filename", "f", nil, "file to apply (repeatable)")
	return cmd
}

func newVetCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "vet FILE...",
		Short: "Check runs, Workflows and definitions without running anything",
		Long: `Vet checks what run would check before running: the YAML against the API (unknown
fields, types), step names, dependencies and cycles, timeouts, inputs, each step's type and
properties against the type's parameter, and the definitions' CUE. Step types and Workflows
already stored are taken into account; nothing is written.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, files []string) error {
			if r := g.remote(); r != nil {
				return g.remoteVet(cmd.Context(), r, files)
			}
			_, objs, err := g.load(cmd.Context(), files, nil)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "ok: %d run(s), %d workflow(s), %d definition(s)\n",
				len(objs.Runs), len(objs.Workflows), len(objs.Definitions))
			return nil
		},
	}
}
