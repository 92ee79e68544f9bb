package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/api/v1beta1"
	"github.com/stepflow/stepflow/catalog"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/lifecycle"
	"github.com/stepflow/stepflow/redact"
	"github.com/stepflow/stepflow/store"
)

// newAppCommand is `stepflow app`: KubeVela Applications delivered by stepflow, without a
// control plane in a cluster.
func newAppCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "app",
		Short: "Deliver KubeVela Applications: up, status, revisions, rollback, delete, list",
		Long: `The app commands deliver KubeVela Applications to the clusters of --kubeconfig and
--clusters, keeping their state in the embedded store (or, with --server, in a stepflow
server's). Every change of an Application's spec makes a new revision (<app>-v<N>) and a
delivery run; once the run succeeds, what the previous revisions applied and this one no
longer renders is deleted, in every cluster it was applied to.`,
	}
	cmd.AddCommand(newAppUpCommand(g), newAppStatusCommand(g), newAppRevisionsCommand(g),
		newAppRollbackCommand(g), newAppDeleteCommand(g), newAppListCommand(g))
	return cmd
}

func newAppUpCommand(g *globals) *cobra.Command {
	var files []string
	cmd := &cobra.Command{
		Use:   "up -f FILE...",
		Short: "Store the Applications in the files and deliver each changed one as a new revision",
		Long: `Up reads Applications (and the ComponentDefinitions, TraitDefinitions and
PolicyDefinitions beside them) from the files, checks them as stepflow vet does, and
delivers each Application whose spec or definitions changed since its latest revision: a new
revision and its delivery run, followed to its end. An unchanged Application is left as it
is: no revision, no run, nothing written. The exit code is the runs', as stepflow run's.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if len(files) == 0 {
				return invalidf("app up: give the Application files with -f")
			}
			if r := g.remote(); r != nil {
				return g.remoteAppUp(ctx, r, files)
			}
			a, objs, err := g.load(ctx, files, nil)
			if err != nil {
				return err
			}
			if len(objs.Applications) == 0 {
				return invalidf("%s: no Application to deliver", strings.Join(files, ", "))
			}
			if len(objs.Runs) > 0 {
				return invalidf("app up: %s holds WorkflowRuns: run them with stepflow run", strings.Join(files, ", "))
			}
			if err := a.store.PutObjects(ctx, objs.Definitions, objs.Workflows); err != nil {
				return fmt.Errorf("store definitions and workflows: %w", err)
			}
			if err := store.PutPackages(ctx, a.store, objs.Packages); err != nil {
				return fmt.Errorf("store packages: %w", err)
			}
			m := a.lifecycle()
			defs := catalog.XDefinitions(objs)
			var keys, replaced []engine.Key
			for _, app := range objs.Applications {
				if app.Namespace == "" {
					app.Namespace = g.namespace
				}
				out, err := m.Up(ctx, app, defs)
				if err != nil {
					return appErr(err)
				}
				if out.Unchanged {
					fmt.Fprintf(g.stdout, "application %s unchanged at revision %s\n", app.Name, out.Revision.Object.Name)
				} else {
					fmt.Fprintf(g.stdout, "application %s: revision %s, delivered by run %s\n", app.Name, out.Revision.Object.Name, out.Revision.Run)
				}
				keys = append(keys, engine.Key{Namespace: app.Namespace, Name: out.Revision.Run})
				if out.Replaced != "" {
					replaced = append(replaced, engine.Key{Namespace: app.Namespace, Name: out.Replaced})
				}
			}
			if err := a.endReplaced(ctx, g, replaced); err != nil {
				return err
			}
			code, err := a.deliver(ctx, g, keys)
			if err != nil {
				return err
			}
			for _, app := range objs.Applications {
				synced, err := m.Sync(ctx, app.Namespace, app.Name)
				if err != nil {
					return err
				}
				printAppLine(g.stdout, synced)
			}
			g.code = code
			return nil
		},
	}
	cmd.Flags().StringArrayVarP(&files, "file", "f", nil, "file of Applications and X-Definitions (repeatable)")
	return cmd
}

func newAppStatusCommand(g *globals) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "status NAME",
		Short: "Show an Application: its phase, revision, workflow, and each component's health per cluster",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !slices.Contains([]string{"tree", "yaml", "json"}, output) {
				return invalidf("-o %q: want tree, yaml or json", output)
			}
			ctx := cmd.Context()
			var app *v1beta1.Application
			if r := g.remote(); r != nil {
				var err error
				if app, err = g.remoteApp(ctx, r, args[0]); err != nil {
					return err
				}
			} else {
				a, err := g.open(ctx)
				if err != nil {
					return err
				}
				if app, err = a.lifecycle().Sync(ctx, g.namespace, args[0]); err != nil {
					return appErr(err)
				}
			}
			if output != "tree" {
				app.APIVersion, app.Kind = v1beta1.GroupVersion.String(), v1beta1.KindApplication
				return printRedacted(g, redact.New(), app, output)
			}
			printAppTree(g.stdout, app)
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "tree", "tree, yaml or json")
	return cmd
}

func newAppRevisionsCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "revisions NAME",
		Short: "List an Application's revisions, oldest first, with their runs and what they applied",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			var revs []*store.AppRevision
			if r := g.remote(); r != nil {
				var err error
				if revs, err = g.remoteAppRevisions(ctx, r, args[0]); err != nil {
					return err
				}
			} else {
				a, err := g.open(ctx)
				if err != nil {
					return err
				}
				if _, _, err := a.store.Application(ctx, g.namespace, args[0]); err != nil {
					return appErr(err)
				}
				if revs, err = a.store.AppRevisions(ctx, g.namespace, args[0]); err != nil {
					return err
				}
			}
			printRevisions(g.stdout, revs)
			return nil
		},
	}
}

func newAppRollbackCommand(g *globals) *cobra.Command {
	var number int64
	cmd := &cobra.Command{
		Use:   "rollback NAME --revision N",
		Short: "Deliver an earlier revision's spec again, as a new revision",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if number <= 0 {
				return invalidf("app rollback: give the revision's number with --revision N")
			}
			if r := g.remote(); r != nil {
				return g.remoteAppRollback(ctx, r, args[0], number)
			}
			a, err := g.open(ctx)
			if err != nil {
				return err
			}
			m := a.lifecycle()
			out, err := m.Rollback(ctx, g.namespace, args[0], number)
			if err != nil {
				return appErr(err)
			}
			if out.Unchanged {
				fmt.Fprintf(g.stdout, "application %s is at revision %s already, the spec of revision %d\n", args[0], out.Revision.Object.Name, number)
			} else {
				fmt.Fprintf(g.stdout, "application %s: revision %s (the spec of revision %d), delivered by run %s\n", args[0], out.Revision.Object.Name, number, out.Revision.Run)
			}
			var replaced []engine.Key
			if out.Replaced != "" {
				replaced = append(replaced, engine.Key{Namespace: g.namespace, Name: out.Replaced})
			}
			if err := a.endReplaced(ctx, g, replaced); err != nil {
				return err
			}
			code, err := a.deliver(ctx, g, []engine.Key{{Namespace: g.namespace, Name: out.Revision.Run}})
			if err != nil {
				return err
			}
			synced, err := m.Sync(ctx, g.namespace, args[0])
			if err != nil {
				return err
			}
			printAppLine(g.stdout, synced)
			g.code = code
			return nil
		},
	}
	cmd.Flags().Int64Var(&number, "revision", 0, "the number N of the revision <app>-vN to roll back to")
	return cmd
}

func newAppDeleteCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete everything an Application applied, in every cluster, then the Application",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if r := g.remote(); r != nil {
				if err := g.remoteAppDelete(ctx, r, args[0]); err != nil {
					return err
				}
			} else {
				a, err := g.open(ctx)
				if err != nil {
					return err
				}
				if err := a.lifecycle().Delete(ctx, g.namespace, args[0]); err != nil {
					return appErr(err)
				}
			}
			fmt.Fprintf(g.stdout, "application %s deleted\n", args[0])
			return nil
		},
	}
}

func newAppListCommand(g *globals) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the Applications of the namespace with their phase and latest revision",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			ns := g.namespace
			if all {
				ns = ""
			}
			var apps []*v1beta1.Application
			if r := g.remote(); r != nil {
				var err error
				if apps, err = g.remoteAppList(ctx, r, ns); err != nil {
					return err
				}
			} else {
				a, err := g.open(ctx)
				if err != nil {
					return err
				}
				if apps, err = a.store.Applications(ctx, ns); err != nil {
					return err
				}
			}
			w := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "NAMESPACE\tNAME\tPHASE\tREVISION\tCOMPONENTS")
			for _, app := range apps {
				var comps []string
				for _, c := range app.Spec.Components {
					comps = append(comps, c.Name+"("+c.Type+")")
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", app.Namespace, app.Name, app.Status.Phase, revisionName(app), strings.Join(comps, ","))
			}
			return w.Flush()
		},
	}
	cmd.Flags().BoolVarP(&all, "all-namespaces", "A", false, "list the Applications of every namespace")
	return cmd
}

// lifecycle is the Applications' lifecycle over the embedded store, this process's engine
// and the clusters of --kubeconfig and --clusters.
func (a *app) lifecycle() *lifecycle.Manager {
	return &lifecycle.Manager{Store: a.store, Runs: embeddedRuns{a}, Clusters: a.clusters, Evaluator: a.Runner}
}

// endReplaced drives the runs a new revision terminated to their end (their `if: always`
// steps), before the new revision's run starts applying; how they end is not the command's
// outcome.
func (a *app) endReplaced(ctx context.Context, g *globals, keys []engine.Key) error {
	for _, k := range keys {
		fmt.Fprintf(g.stdout, "run %s of the previous revision: terminated, the new revision replaces it\n", k.Name)
	}
	_, err := a.deliver(ctx, g, keys)
	return err
}

// deliver drives the delivery runs that have not settled to their end, showing their steps,
// and returns the exit code they call for.
func (a *app) deliver(ctx context.Context, g *globals, keys []engine.Key) (int, error) {
	var live []engine.Key
	for _, k := range keys {
		run, err := a.store.Load(ctx, k)
		if err == nil && !engine.Settled(run) {
			live = append(live, k)
		} else if err != nil && !errors.Is(err, engine.ErrNotFound) {
			return 0, err
		}
	}
	if len(live) == 0 {
		return exitOK, nil
	}
	d := a.newDriver()
	d.start()      //nolint:contextcheck // the engine runs until stop, whatever the command's context does
	defer d.stop() //nolint:contextcheck // as start
	return d.drive(ctx, g, live), nil
}

// embeddedRuns are the delivery runs in the embedded store, driven by this process.
type embeddedRuns struct{ a *app }

// Start implements lifecycle.Runs.
func (r embeddedRuns) Start(ctx context.Context, run *v1alpha1.WorkflowRun) error {
	return r.a.createRun(ctx, &engine.Run{Object: run}, false)
}

// Run implements lifecycle.Runs.
func (r embeddedRuns) Run(ctx context.Context, namespace, name string) (*engine.Run, error) {
	return r.a.store.Load(ctx, engine.Key{Namespace: namespace, Name: name})
}

// Delete implements lifecycle.Runs.
func (r embeddedRuns) Delete(ctx context.Context, namespace, name string) error {
	err := r.a.store.Delete(ctx, engine.Key{Namespace: namespace, Name: name})
	if errors.Is(err, engine.ErrNotFound) {
		return nil
	}
	return err
}

// Terminate implements lifecycle.Runs with an engine of this process that is not started:
// the operation is stored, and the run ends where it is driven (the CLI drives it with the
// new revision's run).
func (r embeddedRuns) Terminate(ctx context.Context, namespace, name, reason string) (bool, error) {
	return lifecycle.Terminate(ctx, r.a.Engine, engine.Key{Namespace: namespace, Name: name}, reason)
}

// appErr is a lifecycle error as the CLI reports it: a missing Application or revision is the
// user's mistake.
func appErr(err error) error {
	if errors.Is(err, engine.ErrNotFound) || errors.Is(err, store.ErrExists) || errors.Is(err, lifecycle.ErrUndeliverable) {
		return invalidErr(err)
	}
	return err
}

func revisionName(app *v1beta1.Application) string {
	if app.Status.LatestRevision == nil {
		return ""
	}
	return app.Status.LatestRevision.Name
}

// printAppLine prints an Application's phase and revision on one line.
func printAppLine(w io.Writer, app *v1beta1.Application) {
	msg := ""
	if wf := app.Status.Workflow; wf != nil && wf.Message != "" && app.Status.Phase != v1beta1.ApplicationRunning {
		msg = ": " + wf.Message
	}
	fmt.Fprintf(w, "application %s is %s at revision %s%s\n", app.Name, app.Status.Phase, revisionName(app), msg)
}

// printAppTree prints an Application as a tree: its phase and revision, its workflow, each
// component's health per cluster with its traits', and the objects applied.
func printAppTree(w io.Writer, app *v1beta1.Application) {
	st := app.Status
	fmt.Fprintf(w, "Application %s/%s\n", app.Namespace, app.Name)
	fmt.Fprintf(w, "  phase:    %s\n", st.Phase)
	fmt.Fprintf(w, "  revision: %s\n", revisionName(app))
	if wf := st.Workflow; wf != nil {
		line := fmt.Sprintf("  workflow: %s", wf.Phase)
		if wf.Message != "" {
			line += " (" + wf.Message + ")"
		}
		fmt.Fprintln(w, line)
		for _, s := range wf.Steps {
			fmt.Fprintf(w, "    step %s %s\n", s.Name, s.Phase)
		}
	}
	fmt.Fprintln(w, "  components:")
	for _, c := range app.Spec.Components {
		fmt.Fprintf(w, "    %s (%s)\n", c.Name, c.Type)
		for _, s := range st.Services {
			if s.Name != c.Name {
				continue
			}
			fmt.Fprintf(w, "      cluster %s, namespace %s: %s%s\n", clusterLabel(s.Cluster), s.Namespace, health(s.Healthy), message(s.Message))
			for _, t := range s.Traits {
				fmt.Fprintf(w, "        trait %s: %s%s\n", t.Type, health(t.Healthy), message(t.Message))
			}
		}
	}
	if len(st.AppliedResources) > 0 {
		fmt.Fprintln(w, "  applied:")
		for _, r := range st.AppliedResources {
			fmt.Fprintf(w, "    cluster %s: %s %s %s/%s\n", clusterLabel(r.Cluster), r.APIVersion, r.Kind, r.Namespace, r.Name)
		}
	}
}

// printRevisions prints revisions as a table.
func printRevisions(out io.Writer, revs []*store.AppRevision) {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "REVISION\tHASH\tRUN\tPHASE\tSUCCEEDED\tRESOURCES\tCREATED")
	for _, r := range revs {
		phase := ""
		if r.Object.Status.Workflow != nil {
			phase = string(r.Object.Status.Workflow.Phase)
		}
		live := 0
		for _, res := range r.Resources {
			if !res.Deleted {
				live++
			}
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%t\t%d live, %d deleted\t%s\n", r.Object.Name, r.Hash, r.Run, phase,
			r.Object.Status.Succeeded, live, len(r.Resources)-live, r.Object.CreationTimestamp.UTC().Format("2006-01-02T15:04:05Z"))
	}
	_ = w.Flush()
}

func clusterLabel(c string) string {
	if c == "" {
		return "local"
	}
	return c
}

func health(ok bool) string {
	if ok {
		return "healthy"
	}
	return "unhealthy"
}

func message(m string) string {
	if m == "" {
		return ""
	}
	return " (" + m + ")"
}
