package main

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	cuev1alpha1 "github.com/stepflow/stepflow/api/cue/v1alpha1"
	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/api/v1beta1"
	"github.com/stepflow/stepflow/catalog"
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
		Use:   "show [TYPE | PACKAGE]",
		Short: "Describe a step type's, or a built-in component, trait or policy type's, parameters (from its // +usage= comments), or a Package's actions; without an argument, list the Packages",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			a, err := g.open(ctx)
			if err != nil {
				return err
			}
			if len(args) == 0 {
				return showPackages(ctx, g, a)
			}
			typ := args[0]
			title := typ
			src, err := a.Catalog.Template(ctx, g.namespace, typ)
			if errors.Is(err, step.ErrUnknownType) {
				if p, perr := findPackage(ctx, g, a, typ); perr != nil || p != nil {
					if perr != nil {
						return perr
					}
					return showPackage(g, p, template)
				}
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
			src, _ = step.Unbundle(src) // the Packages it imports are shown by their own name
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

// showPackages lists the Packages a run in the namespace can import: name, path, provider
// endpoint and actions.
func showPackages(ctx context.Context, g *globals, a *app) error {
	pkgs, err := a.Catalog.Packages(ctx, g.namespace)
	if err != nil {
		return err
	}
	if len(pkgs) == 0 {
		_, err := fmt.Fprintf(g.stdout, "No Packages in namespace %s nor %s.\n", g.namespace, v1alpha1.SystemNamespace)
		return err
	}
	w := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "PACKAGE\tPATH\tENDPOINT\tACTIONS")
	for _, p := range pkgs {
		var names []string
		for _, act := range step.PackageActions(p.Spec.Templates) {
			names = append(names, act.Name)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", p.Name, p.Spec.Path, orDash(endpoint(p)), orDash(strings.Join(names, ", ")))
	}
	return w.Flush()
}

// findPackage returns the Package named name, or of import path name, seen from the namespace;
// nil when there is none.
func findPackage(ctx context.Context, g *globals, a *app, name string) (*cuev1alpha1.Package, error) {
	pkgs, err := a.Catalog.Packages(ctx, g.namespace)
	if err != nil {
		return nil, err
	}
	for _, p := range pkgs {
		if p.Name == name || p.Spec.Path == name {
			return p, nil
		}
	}
	return nil, nil
}

// showPackage describes a Package: its path, its provider and its actions, or its CUE.
func showPackage(g *globals, p *cuev1alpha1.Package, template bool) error {
	if template {
		for _, f := range p.Files() {
			fmt.Fprintf(g.stdout, "// %s\n%s\n", f, p.Spec.Templates[f])
		}
		return nil
	}
	fmt.Fprintf(g.stdout, "Package %s/%s\nimport %q\nendpoint: %s\n\n", p.Namespace, p.Name, p.Spec.Path, orDash(endpoint(p)))
	acts := step.PackageActions(p.Spec.Templates)
	if len(acts) == 0 {
		_, err := fmt.Fprintln(g.stdout, "No actions.")
		return err
	}
	reads := map[string]bool{}
	for _, r := range catalog.ExternalPackage(p).Reads {
		reads[r] = true
	}
	w := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ACTION\tPROVIDER\tDO\tRUNS")
	for _, act := range acts {
		runs := "once per try"
		if reads[act.Do] {
			runs = "every evaluation"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", act.Name, act.Provider, act.Do, runs)
	}
	return w.Flush()
}

func endpoint(p *cuev1alpha1.Package) string {
	if p.Spec.Provider == nil {
		return ""
	}
	return p.Spec.Provider.Endpoint
}
