package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/stepflow/stepflow/manifest"
	"github.com/stepflow/stepflow/store"
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
				if err := refuseDelivery("apply", objs); err != nil {
					return err
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
			if err := refuseDelivery("apply", objs); err != nil {
				return err
			}
			if err := a.store.PutObjects(ctx, objs.Definitions, objs.Workflows); err != nil {
				return err
			}
			if err := store.PutPackages(ctx, a.store, objs.Packages); err != nil {
				return err
			}
			for _, p := range objs.Packages {
				fmt.Fprintf(g.stdout, "package %s/%s stored\n", p.Namespace, p.Name)
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
properties against the type's parameter (and, unlike run, refuses a property the type does not
declare), and the definitions' CUE. Applications are checked
against their X-Definitions (the built-in ones and those in the files): component, trait and
policy types, properties against each parameter, dependsOn, and the workflow's steps. Step types and Workflows
already stored are taken into account; nothing is written.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, files []string) error {
			if r := g.remote(); r != nil {
				return g.remoteVet(cmd.Context(), r, files)
			}
			a, objs, err := g.load(cmd.Context(), files, nil)
			if err != nil {
				return err
			}
			if err := a.Catalog.Undeclared(cmd.Context(), objs); err != nil {
				return invalidErr(err)
			}
			fmt.Fprintf(g.stdout, "ok: %d run(s), %d workflow(s), %d definition(s)", len(objs.Runs), len(objs.Workflows), len(objs.Definitions))
			if n := len(objs.Delivery()); n > 0 {
				fmt.Fprintf(g.stdout, ", %d application object(s)", n)
			}
			fmt.Fprintln(g.stdout)
			return nil
		},
	}
}

// refuseDelivery refuses Applications and X-Definitions in the files of a command that stores or
// runs only workflow objects: stepflow checks them (vet) and renders them, but does not yet
// store or deliver them.
func refuseDelivery(command string, objs *manifest.Objects) error {
	if d := objs.Delivery(); len(d) > 0 {
		return invalidf("%s: %s: Applications and X-Definitions are checked by stepflow vet but not stored or delivered yet", command, d[0])
	}
	return nil
}
