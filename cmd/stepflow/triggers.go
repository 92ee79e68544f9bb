package main

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

// newTriggerCommand is `stepflow trigger`: a server's cron, webhook and cloudevents triggers.
// Triggers exist only in stepflow server, so every subcommand needs --server.
func newTriggerCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "trigger",
		Short: "A server's triggers of a template: list, create, pause, unpause, backfill, delete (--server)",
		Long: `The trigger commands work on the cron, webhook and cloudevents triggers of a stepflow server's
templates (triggers exist only in the server: give --server). A trigger is named by its id,
which create prints and list shows.`,
	}
	cmd.AddCommand(newTriggerListCommand(g), newTriggerCreateCommand(g), newTriggerPauseCommand(g, true),
		newTriggerPauseCommand(g, false), newTriggerBackfillCommand(g), newTriggerDeleteCommand(g))
	return cmd
}

// triggerRemote is the server the trigger commands talk to.
func (g *globals) triggerRemote() (*remote, error) {
	r := g.remote()
	if r == nil {
		return nil, invalidf("triggers exist only in stepflow server: give --server (or STEPFLOW_SERVER)")
	}
	return r, nil
}

// remoteTrigger is a trigger as the API lists it.
type remoteTrigger struct {
	ID                      string    `json:"id"`
	Type                    string    `json:"type"`
	Schedule                string    `json:"schedule"`
	Schedules               []string  `json:"schedules"`
	TimeZone                string    `json:"timeZone"`
	ConcurrencyPolicy       string    `json:"concurrencyPolicy"`
	StartingDeadlineSeconds *int64    `json:"startingDeadlineSeconds"`
	Paused                  bool      `json:"paused"`
	LastFire                time.Time `json:"lastFire"`
	LastRun                 string    `json:"lastRun"`
	LastError               string    `json:"lastError"`
	NextFire                time.Time `json:"nextFire"`
	Filter                  string    `json:"filter"`
}

func triggerPath(id string) string { return "/api/v1/triggers/" + url.PathEscape(id) }

func newTriggerListCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list TEMPLATE",
		Short: "List a template's triggers: id, type, schedules, state, last and next firing",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := g.triggerRemote()
			if err != nil {
				return err
			}
			var answer struct {
				Items []remoteTrigger `json:"items"`
			}
			path := "/api/v1/templates/" + url.PathEscape(g.namespace) + "/" + url.PathEscape(args[0]) + "/triggers"
			if err := r.call(cmd.Context(), "GET", path, "", nil, &answer); err != nil {
				return err
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tTYPE\tSCHEDULES\tSTATE\tLAST\tNEXT\tLAST RUN")
			for _, t := range answer.Items {
				specs := t.Schedules
				if len(specs) == 0 && t.Schedule != "" {
					specs = []string{t.Schedule}
				}
				sched, state := "-", "active"
				switch {
				case t.Type == "cron":
					sched = strings.Join(specs, "; ")
					if t.TimeZone != "" {
						sched += " (" + t.TimeZone + ")"
					}
				case t.Filter != "":
					sched = "filter: " + t.Filter
				}
				if t.Paused {
					state = "paused"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Type, sched, state, timeOrDash(t.LastFire), timeOrDash(t.NextFire), orDash(t.LastRun))
			}
			return tw.Flush()
		},
	}
}

func timeOrDash(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func newTriggerCreateCommand(g *globals) *cobra.Command {
	var (
		schedules        []string
		timeZone, policy string
		deadline         int64
		paused, webhook  bool
		cloudEvents      bool
		filter           string
		sets             []string
	)
	cmd := &cobra.Command{
		Use:   "create TEMPLATE (--schedule CRON... | --webhook | --cloudevents [--filter CUE])",
		Short: "Add a cron trigger (one or more --schedule), a webhook or a cloudevents trigger to a template",
		Long: `Create adds a trigger to a template and prints its id. A cron trigger fires whenever
one of its schedules (five cron fields, or @hourly and the like) comes round in --time-zone;
--concurrency-policy (allow, forbid, replace) says what a firing does while the last run has
not finished; --starting-deadline (seconds) is how late a firing missed while no server ran
may still start. A webhook trigger prints its URL and secret, shown this once.

A cloudevents trigger starts a run for each CloudEvent POSTed to its URL (structured or binary
mode, authenticated as a webhook's requests: ?token=SECRET or a signature), with the event as
context.event; --filter is a CUE expression over context.event (for instance
'context.event.type == "com.example.push"') and only the events it is true for start a run.
A redelivered event (same source and id) starts nothing. It prints its URL and secret, shown
this once.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := g.triggerRemote()
			if err != nil {
				return err
			}
			ctx, err := parseSets(sets)
			if err != nil {
				return err
			}
			body := map[string]any{"type": "cron"}
			if len(ctx) > 0 {
				body["context"] = ctx
			}
			kinds := 0
			for _, given := range []bool{webhook, cloudEvents, len(schedules) > 0} {
				if given {
					kinds++
				}
			}
			switch {
			case kinds > 1:
				return invalidf("trigger create: one of --schedule, --webhook or --cloudevents, not several")
			case filter != "" && !cloudEvents:
				return invalidf("trigger create: --filter is a cloudevents trigger's: give --cloudevents")
			case webhook:
				body["type"] = "webhook"
			case cloudEvents:
				body["type"] = "cloudevents"
				if filter != "" {
					body["filter"] = filter
				}
			case len(schedules) == 0:
				return invalidf("trigger create: give --schedule (one or more), --webhook or --cloudevents")
			default:
				body["schedules"] = schedules
			}
			if timeZone != "" {
				body["timeZone"] = timeZone
			}
			if policy != "" {
				body["concurrencyPolicy"] = policy
			}
			if cmd.Flags().Changed("starting-deadline") {
				body["startingDeadlineSeconds"] = deadline
			}
			if paused {
				body["paused"] = true
			}
			data, err := json.Marshal(body)
			if err != nil {
				return err
			}
			var out struct {
				ID     string `json:"id"`
				Type   string `json:"type"`
				URL    string `json:"url"`
				Secret string `json:"secret"`
			}
			path := "/api/v1/templates/" + url.PathEscape(g.namespace) + "/" + url.PathEscape(args[0]) + "/triggers"
			if err := r.call(cmd.Context(), "POST", path, "application/json", data, &out); err != nil {
				return err
			}
			fmt.Fprintln(g.stdout, out.ID)
			if out.URL != "" {
				fmt.Fprintf(g.stderr, "%s URL %s\nsecret %s (shown this once)\n", out.Type, out.URL, out.Secret)
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&schedules, "schedule", nil, "a cron schedule (repeatable: the trigger fires when any comes round)")
	cmd.Flags().StringVar(&timeZone, "time-zone", "", "the schedules' time zone, e.g. Europe/Paris (default UTC)")
	cmd.Flags().StringVar(&policy, "concurrency-policy", "", "allow (default), forbid or replace")
	cmd.Flags().Int64Var(&deadline, "starting-deadline", 0, "seconds late a missed firing may still start its run (default: the latest missed always starts)")
	cmd.Flags().BoolVar(&paused, "paused", false, "create the trigger paused")
	cmd.Flags().BoolVar(&webhook, "webhook", false, "a webhook trigger instead of a cron one")
	cmd.Flags().BoolVar(&cloudEvents, "cloudevents", false, "a cloudevents trigger: a run for each CloudEvent POSTed to its URL, the event as context.event")
	cmd.Flags().StringVar(&filter, "filter", "", "a cloudevents trigger's CUE expression over context.event: only the events it is true for start a run")
	cmd.Flags().StringArrayVar(&sets, "set", nil, "key=value of the context of the runs it starts (value parsed as YAML; dotted keys nest)")
	return cmd
}

func newTriggerPauseCommand(g *globals, pause bool) *cobra.Command {
	verb, short := "unpause", "Unpause a cron trigger: its latest firing missed meanwhile starts, within its starting deadline"
	if pause {
		verb, short = "pause", "Pause a cron trigger: it starts no run until unpaused"
	}
	return &cobra.Command{
		Use:   verb + " ID",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := g.triggerRemote()
			if err != nil {
				return err
			}
			if err := r.call(cmd.Context(), "POST", triggerPath(args[0])+"/"+verb, "", nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "trigger %s %sd\n", args[0], verb)
			return nil
		},
	}
}

func newTriggerBackfillCommand(g *globals) *cobra.Command {
	var from, to string
	cmd := &cobra.Command{
		Use:   "backfill ID --from TIME --to TIME",
		Short: "Start a cron trigger's runs of its firings from --from to --to (RFC 3339, both included)",
		Long: `Backfill starts one run for each time from --from to --to (RFC 3339, e.g.
2026-03-01T00:00:00Z; both included, at most 100 firings) that the trigger's schedules come
round, each with context.scheduledTime. Runs are named after their firing as the schedule names
them, so a firing that has a run already (from the schedule or an earlier backfill) gets no
second one. It prints each firing with its run, "exists" for those it did not start.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := g.triggerRemote()
			if err != nil {
				return err
			}
			var body struct {
				From time.Time `json:"from"`
				To   time.Time `json:"to"`
			}
			if body.From, err = time.Parse(time.RFC3339, from); err != nil {
				return invalidf("--from %q: want an RFC 3339 time, e.g. 2026-03-01T00:00:00Z", from)
			}
			if body.To, err = time.Parse(time.RFC3339, to); err != nil {
				return invalidf("--to %q: want an RFC 3339 time, e.g. 2026-03-01T06:00:00Z", to)
			}
			data, err := json.Marshal(body)
			if err != nil {
				return err
			}
			var out struct {
				Runs []struct {
					ScheduledTime time.Time `json:"scheduledTime"`
					Namespace     string    `json:"namespace"`
					Name          string    `json:"name"`
					Existed       bool      `json:"existed"`
				} `json:"runs"`
			}
			if err := r.call(cmd.Context(), "POST", triggerPath(args[0])+"/backfill", "application/json", data, &out); err != nil {
				return err
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SCHEDULED\tRUN\t")
			for _, run := range out.Runs {
				state := "started"
				if run.Existed {
					state = "exists"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\n", run.ScheduledTime.UTC().Format(time.RFC3339), run.Name, state)
			}
			if len(out.Runs) == 0 {
				fmt.Fprintln(tw, "(no firing in the interval)\t\t")
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "start of the interval, RFC 3339 (required)")
	cmd.Flags().StringVar(&to, "to", "", "end of the interval, RFC 3339 (required)")
	_ = cmd.MarkFlagRequired("from")
	_ = cmd.MarkFlagRequired("to")
	return cmd
}

func newTriggerDeleteCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "delete ID",
		Short: "Delete a trigger",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := g.triggerRemote()
			if err != nil {
				return err
			}
			if err := r.call(cmd.Context(), "DELETE", triggerPath(args[0]), "", nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "trigger %s deleted\n", args[0])
			return nil
		},
	}
}
