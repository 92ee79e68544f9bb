package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/store"
)

func newRecoverCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "recover",
		Short: "Drive every unfinished run on from where the store says it is (after a crash or a reboot)",
		Long: `Recover continues the runs of the embedded store that have not finished, as
resume NAME does for one, after the process that drove them died (kill -9, a reboot, an
out-of-memory kill): steps recorded as finished are not run again, a step that was
running is evaluated again as a new recorded try, and timers are set again from the
store. Unlike resume, it releases nothing: a run held by a suspend stays held. A run
another live process on the data directory drives (a run, resume or recover still going)
is left to it, and named.

It covers every namespace unless -n is given, and exits as run does with the worst
outcome of the runs it drove (0 when there was nothing to recover).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if g.kube {
				return invalidf("recover is for the embedded store: on Kubernetes, the controller picks up its runs when it starts")
			}
			ctx := cmd.Context()
			a, err := g.open(ctx)
			if err != nil {
				return err
			}
			g.sweep(ctx, a)
			var opts store.ListOptions
			if cmd.Flags().Changed("namespace") {
				opts.Namespace = g.namespace
			}
			runs, err := a.store.List(ctx, opts)
			if err != nil {
				return err
			}
			var unfinished []*engine.Run
			skipped := 0
			for _, s := range runs {
				key := engine.Key{Namespace: s.Namespace, Name: s.Name}
				run, err := a.store.Load(ctx, key)
				if err != nil {
					return fmt.Errorf("recover run %s: %w", key, err)
				}
				if run.Object.Status.Finished {
					continue
				}
				// A run another live process drives is left to it.
				holder, ok, err := a.leases.Claim(ctx, key)
				if err != nil {
					return fmt.Errorf("recover run %s: %w", key, err)
				}
				if !ok {
					fmt.Fprintf(g.stdout, "run %s is driven by %s; leaving it to that process\n", key, holder)
					skipped++
					continue
				}
				unfinished = append(unfinished, run)
			}
			if len(unfinished) == 0 {
				if skipped > 0 {
					fmt.Fprintln(g.stdout, "no unfinished runs left to recover")
				} else {
					fmt.Fprintln(g.stdout, "no unfinished runs")
				}
				return nil
			}
			fmt.Fprintf(g.stdout, "recovering %d unfinished runs\n", len(unfinished))
			d := a.newDriver()
			keys := make([]engine.Key, len(unfinished))
			for i, run := range unfinished {
				keys[i] = run.Key()
				// The state the run is recovered from: a run held by a suspend may not change
				// at all, and is settled as it is.
				d.watch.RunChanged(run)
			}
			d.start()
			defer d.stop()
			g.code = d.drive(ctx, g, keys)
			return nil
		},
	}
}
