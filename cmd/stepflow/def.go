package main

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/api/v1beta1"
	"github.com/stepflow/stepflow/definitions"
	"github.com/stepflow/stepflow/step"
)

func newDefCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "def",
		Short: "List and describe step types and the built-in component, trait and policy types",
	}
	cmd.AddCommand(newDefListCommand(g), newDefShowCommand(g))
	return cmd
}

func newDefListCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the step types a run in the namespace can use",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			a, err := g.open(ctx)
			if err != nil {
				return err
			}
			type row struct{ name, source, description string }
			seen := map[string]bool{}
			var rows []row
			for _, ns := range []string{g.namespace, v1alpha1.SystemNamespace} {
				defs, err := a.store.Definitions(ctx, ns)
				if err != nil {
					return err
				}
				for _, d := range defs {
					if !seen[d.Name] {
						seen[d.Name] = true
						rows = append(rows, row{d.Name, ns, d.Annotations[v1beta1.AnnotationDescription]})
					}
				}
			}
			for _, d := range definitions.Builtin() {
				if !seen[d.Name] {
					seen[d.Name] = true
					rows = append(rows, row{d.Name, "built-in", d.Annotations[v1beta1.AnnotationDescription]})
				}
			}
			for _, kind := range []string{"component", "trait", "policy"} {
				for _, x := range definitions.XDefinitions(kind) {
					if !seen[x.Name] {
						seen[x.Name] = true
						rows = append(rows, row{x.Name, "built-in " + kind, description(x.Template)})
					}
				}
			}
			sort.Slice(rows, func(i, j int) bool { return rows[i].name < rows[j].name })
			w := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "NAME\tFROM\tDESCRIPTION")
			for _, r := range rows {
				fmt.Fprintf(w, "%s\t%s\t%s\n", r.name, r.source, r.description)
			}
			return w.Flush()
		},
	}
}

func newDefShowCommand(g *globals) *cobra.Command {
	var template bool
	cmd := &cobra.Command{
		Use:   "show TYPE",
		Short: "Describe a step type's, or a built-in component, trait or policy type's, parameters (from its // +usage= comments)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			a, err := g.open(ctx)
			if err != nil {
				return err
			}
			typ := args[0]
			title := typ
			src, err := a.Catalog.Template(ctx, g.namespace, typ)
			if errors.Is(err, step.ErrUnknownType) {
				x, ok := definitions.LookupX(typ)
				if !ok {
					return invalidErr(fmt.Errorf("%w; nor is it a built-in component, trait or policy type", err))
				}
				src, title = x.Template, fmt.Sprintf("%s (%s)", typ, x.Kind)
				for _, attr := range x.Attributes() {
					title += "\n" + attr
				}
				err = nil
			}
			if err != nil {
				return err
			}
			if template {
				_, err := fmt.Fprint(g.stdout, src)
				return err
			}
			// The parameter is described from the template's text, so that a type whose
			// packages this build lacks is documented all the same; in a child evaluator,
			// under the bounds, as the text is whatever was stored.
			params, err := a.Runner.Describe(ctx, src)
			if errors.Is(err, step.ErrUnavailable) {
				return err
			}
			if err != nil {
				return invalidErr(fmt.Errorf("step type %s: %w", typ, err))
			}
			fmt.Fprintf(g.stdout, "%s\n\n", title)
			if len(params) == 0 {
				_, err := fmt.Fprintln(g.stdout, "No parameters.")
				return err
			}
			w := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "PARAMETER\tTYPE\tREQUIRED\tDEFAULT\tUSAGE")
			for _, p := range params {
				fmt.Fprintf(w, "%s\t%s\t%t\t%s\t%s\n", p.Name, p.Type, p.Required, orDash(p.Default), p.Usage)
			}
			return w.Flush()
		},
	}
	cmd.Flags().BoolVar(&template, "template", false, "print the CUE template instead")
	return cmd
}

// description is the text of a template's first line when it is a comment.
func description(tmpl string) string {
	first, _, _ := strings.Cut(tmpl, "\n")
	if d, ok := strings.CutPrefix(first, "//"); ok {
		return strings.TrimSpace(d)
	}
	return ""
}
