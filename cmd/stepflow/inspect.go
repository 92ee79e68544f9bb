package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/redact"
	"github.com/stepflow/stepflow/store"
)

func newGetCommand(g *globals) *cobra.Command {
	var output, iterationsOf string
	cmd := &cobra.Command{
		Use:   "get NAME",
		Short: "Print a run with its status, shaped as KubeVela writes it",
		Long: `Get prints a run with its status, shaped as KubeVela writes it. A looping step's
status counts its iterations and lists a few; --iterations STEP lists every iteration of
the step, as the store keeps them, with the child run of each when the step is a workflow.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !slices.Contains([]string{"yaml", "json", "table", "wide"}, output) {
				return invalidf("-o %q: want yaml, json, table or wide", output)
			}
			ctx := cmd.Context()
			if r := g.remote(); r != nil && iterationsOf == "" {
				return g.remoteGet(ctx, r, args[0], output)
			}
			a, err := g.open(ctx)
			if err != nil {
				return err
			}
			key := engine.Key{Namespace: g.namespace, Name: args[0]}
			run, err := a.store.Load(ctx, key)
			if errors.Is(err, engine.ErrNotFound) {
				return invalidf("run %s not found", key)
			}
			if err != nil {
				return err
			}
			if iterationsOf != "" {
				return printIterations(g, run, iterationsOf)
			}
			if output == "table" || output == "wide" {
				return printRunTable(g, run, output == "wide")
			}
			obj := run.Object.DeepCopy()
			obj.APIVersion = v1alpha1.GroupVersion.String()
			obj.Kind = v1alpha1.KindWorkflowRun
			// Its spec.context may hold a sensitive parameter's value.
			return printRedacted(g, run.Redactor(), obj, output)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "yaml", "output format: yaml, json, table (the run and its steps) or wide (the table with each step's type, id and times)")
	cmd.Flags().StringVar(&iterationsOf, "iterations", "", "list every iteration of this looping step")
	return cmd
}

// printObject prints v as indented JSON, or as YAML when output is "yaml".
func printObject(g *globals, v any, output string) error {
	return printRedacted(g, nil, v, output)
}

// printRedacted is printObject with the values rd hides redacted.
func printRedacted(g *globals, rd *redact.Redactor, v any, output string) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var indented bytes.Buffer
	if err := json.Indent(&indented, rd.JSON(raw), "", "  "); err != nil {
		return err
	}
	b := indented.Bytes()
	if output == "yaml" {
		if b, err = yaml.JSONToYAML(b); err != nil {
			return err
		}
	} else {
		b = append(b, '\n')
	}
	_, err = g.stdout.Write(b)
	return err
}

// printIterations lists every iteration of a looping step, with its sub-steps for a group.
func printIterations(g *globals, run *engine.Run, step string) error {
	l := run.Loops[step]
	if l == nil {
		return invalidf("run %s: step %q has no iterations (not a looping step, or not started)", run.Key(), step)
	}
	w := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tITEM\tPHASE\tREASON\tDURATION\tCHILD\tMESSAGE")
	rd := run.Redactor()
	row := func(s v1alpha1.StepStatus, item, indent string) {
		took := "-"
		if !s.FirstExecuteTime.IsZero() && s.Phase.Finished() {
			took = roundDuration(s.LastExecuteTime.Sub(s.FirstExecuteTime.Time))
		}
		fmt.Fprintf(w, "%s%s\t%s\t%s\t%s\t%s\t%s\t%s\n", indent, s.Name, orDash(item), s.Phase, orDash(rd.String(s.Reason)), took, orDash(s.ChildRun), oneLine(rd.String(s.Message)))
	}
	for _, it := range l.Iterations {
		row(it.Status, it.Item, "")
		for _, sub := range it.SubSteps {
			row(sub, "", "  ")
		}
	}
	if n := len(l.Items) - len(l.Iterations); n > 0 {
		fmt.Fprintf(w, "(%d not started)\n", n)
	}
	return w.Flush()
}

func newListCommand(g *globals) *cobra.Command {
	var phase string
	var all bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the stored runs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if r := g.remote(); r != nil {
				return g.remoteList(ctx, r, phase, all)
			}
			a, err := g.open(ctx)
			if err != nil {
				return err
			}
			opts := store.ListOptions{Namespace: g.namespace, Phase: phase}
			if all {
				opts.Namespace = ""
			}
			runs, err := a.store.List(ctx, opts)
			if err != nil {
				return err
			}
			return printRuns(g, runs)
		},
	}
	cmd.Flags().StringVar(&phase, "phase", "", "only runs in this phase")
	cmd.Flags().BoolVarP(&all, "all-namespaces", "A", false, "runs of every namespace")
	return cmd
}

// printRuns prints a table of runs.
func printRuns(g *globals, runs []store.RunSummary) error {
	w := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NAMESPACE\tNAME\tPHASE\tSTARTED\tDURATION\tMESSAGE")
	for _, r := range runs {
		started, took := "-", "-"
		if !r.StartTime.IsZero() {
			started = r.StartTime.Local().Format(time.DateTime)
			end := time.Now()
			if !r.EndTime.IsZero() {
				end = r.EndTime
			}
			took = end.Sub(r.StartTime).Round(time.Second).String()
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Namespace, r.Name, orDash(string(r.Phase)), started, took, oneLine(r.Message))
	}
	return w.Flush()
}

// printRunTable prints the run on one line and its steps in a table, sub-steps indented under
// their group, the steps that have not started as pending; wide adds each step's type, id and
// first and last execution times.
func printRunTable(g *globals, run *engine.Run, wide bool) error {
	rd := run.Redactor()
	st := &run.Object.Status
	w := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NAMESPACE\tNAME\tPHASE\tSTARTED\tDURATION\tMESSAGE")
	fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", run.Object.Namespace, run.Object.Name, orDash(string(st.Phase)),
		orDash(formatTime(st.StartTime.Time)), orDash(span(st.StartTime.Time, st.EndTime.Time)), rd.String(oneLine(st.Message)))
	if err := w.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(g.stdout)
	w = tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	if wide {
		fmt.Fprintln(w, "STEP\tTYPE\tPHASE\tREASON\tID\tFIRST EXECUTED\tLAST EXECUTED\tDURATION\tMESSAGE")
	} else {
		fmt.Fprintln(w, "STEP\tPHASE\tREASON\tDURATION\tMESSAGE")
	}
	row := func(indent string, s v1alpha1.StepStatus) {
		phase := orDash(string(s.Phase))
		if s.Iterations != nil {
			phase = fmt.Sprintf("%s (%d/%d)", phase, s.Iterations.Succeeded+s.Iterations.Failed+s.Iterations.Skipped, s.Iterations.Total)
		}
		took := orDash(span(s.FirstExecuteTime.Time, s.LastExecuteTime.Time))
		msg := rd.String(oneLine(s.Message))
		if wide {
			fmt.Fprintf(w, "%s%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", indent, s.Name, orDash(s.Type), phase, orDash(s.Reason), orDash(s.ID),
				orDash(formatTime(s.FirstExecuteTime.Time)), orDash(formatTime(s.LastExecuteTime.Time)), took, msg)
			return
		}
		fmt.Fprintf(w, "%s%s\t%s\t%s\t%s\t%s\n", indent, s.Name, phase, orDash(s.Reason), took, msg)
	}
	byName := map[string]v1alpha1.WorkflowStepStatus{}
	for _, s := range st.Steps {
		byName[s.Name] = s
	}
	spec := run.Spec
	if spec == nil {
		spec = run.Object.Spec.WorkflowSpec
	}
	var steps []v1alpha1.WorkflowStepStatus
	if spec != nil {
		for _, step := range spec.Steps {
			s, ok := byName[step.Name]
			if !ok {
				s.Name, s.Type, s.Phase = step.Name, step.Type, v1alpha1.StepPending
				for _, sub := range step.SubSteps {
					s.SubStepsStatus = append(s.SubStepsStatus, v1alpha1.StepStatus{Name: sub.Name, Type: sub.Type, Phase: v1alpha1.StepPending})
				}
			}
			steps = append(steps, s)
		}
	} else {
		steps = st.Steps
	}
	for _, s := range steps {
		row("", s.StepStatus)
		for _, sub := range s.SubStepsStatus {
			row("  ", sub)
		}
	}
	return w.Flush()
}

// formatTime is t in the local time zone to the second, "" when zero.
func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Local().Format(time.DateTime)
}

// span is the time from start to end (to now when end is zero), "" when start is zero.
func span(start, end time.Time) string {
	if start.IsZero() {
		return ""
	}
	if end.IsZero() {
		end = time.Now()
	}
	return end.Sub(start).Round(time.Second).String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newLogsCommand(g *globals) *cobra.Command {
	var stepName string
	cmd := &cobra.Command{
		Use:   "logs NAME",
		Short: "Print the log of a run's steps: each action run, and what definitions logged",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			key := engine.Key{Namespace: g.namespace, Name: args[0]}
			var store interface {
				engine.Store
				Logs(ctx context.Context, key engine.Key, step string) ([]engine.LogEntry, error)
			}
			if r := g.remote(); r != nil {
				return g.remoteLogs(ctx, r, args[0], stepName)
			}
			if g.kube {
				st, err := g.kubeStore()
				if err != nil {
					return err
				}
				store = st
			} else {
				a, err := g.open(ctx)
				if err != nil {
					return err
				}
				store = a.store
			}
			run, err := store.Load(ctx, key)
			if errors.Is(err, engine.ErrNotFound) {
				return invalidf("run %s not found", key)
			}
			if err != nil {
				return err
			}
			if stepName != "" && !run.HasStep(stepName) {
				return invalidf("run %s has no step %q", key, stepName)
			}
			entries, err := store.Logs(ctx, key, stepName)
			if err != nil {
				return err
			}
			// Lines saved before a value was known to be sensitive are hidden here.
			rd := run.Redactor()
			for _, e := range entries {
				engine.RedactLog(rd, &e)
				fmt.Fprintln(g.stdout, formatLog(e))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&stepName, "step", "", "only this step's log")
	return cmd
}

// formatLog renders one log entry on one line.
func formatLog(e engine.LogEntry) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", e.Time.Local().Format("15:04:05.000"), e.Step)
	if e.Action != "" {
		fmt.Fprintf(&b, " %s", e.Action)
	}
	if e.Duration > 0 {
		fmt.Fprintf(&b, " %s", roundDuration(e.Duration))
	}
	if e.Outcome != "" {
		fmt.Fprintf(&b, " %s", e.Outcome)
	}
	if e.Severity != "" && e.Severity != engine.SeverityInfo {
		fmt.Fprintf(&b, " %s", e.Severity)
	}
	if e.Message != "" {
		fmt.Fprintf(&b, " %s", oneLine(e.Message))
	}
	if len(e.Data) > 0 {
		fmt.Fprintf(&b, " %s", oneLine(string(e.Data)))
	}
	return b.String()
}
