// Command table runs issue 7's benchmarks one after another and prints their figures in one
// table beside the targets: warm CUE evaluation per step (package step), the embedded engine's
// throughput and its wake-up latency, and the Kubernetes controller (package bench).
//
//	go run ./bench/table                     # full size (make bench)
//	go run ./bench/table -quick              # 1,000 runs instead of 10,000; 200 controller runs
//	go run ./bench/table -only cue,embedded  # some sections: cue, embedded, wake, controller
//	go run ./bench/table -isolation none     # CUE in the benchmark's process, not in child evaluators
//
// Each section is one `go test -run '^$' -bench ...` whose output it parses; -v shows that output
// as it comes. A section whose benchmarks were skipped (the controller without the binaries of
// make kube-assets) or failed says so in the table, and the others still run; the exit status
// is 1 when a section failed. A target not met is a figure, not a failure.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

func main() {
	quick := flag.Bool("quick", false, "smaller sizes: 1,000 engine runs instead of 10,000, and only the 200-run controller benchmark")
	only := flag.String("only", "", "comma-separated sections to run: cue, embedded, wake, controller (default all)")
	verbose := flag.Bool("v", false, "show go test's output as it comes")
	isolation := flag.String("isolation", "process", "where the embedded and wake sections evaluate CUE: process (child evaluators, the default of stepflow) or none (in the benchmark's process, as --eval-isolation=none)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Stdout, os.Stderr, options{quick: *quick, only: *only, verbose: *verbose, isolation: *isolation})
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/table:", err)
		os.Exit(1)
	}
}

// row is one line of the printed table.
type row struct{ section, measure, value, target, met string }

// outcome is what one section's go test gave.
type outcome struct {
	res    results
	output string
	err    error
	took   time.Duration
}

// options are the command's flags.
type options struct {
	quick, verbose bool
	only           string
	isolation      string // "process" or "none"
}

// isolationEnv tells package bench's benchmarks where to evaluate CUE: "none" in their own
// process (step.Options.InProcess), anything else in child evaluators.
const isolationEnv = "STEPFLOW_BENCH_EVAL_ISOLATION"

func run(ctx context.Context, stdout, progress io.Writer, o options) error {
	quick := o.quick
	sz := fullSizes()
	if quick {
		sz = quickSizes()
	}
	if o.isolation != "process" && o.isolation != "none" {
		return fmt.Errorf("-isolation: %q is neither process nor none", o.isolation)
	}
	chosen, err := choose(sections(sz), o.only)
	if err != nil {
		return err
	}
	loadBefore := loadAverage()
	start := time.Now()
	var rows []row
	var failed []string
	hwmNotReset := false
	for _, s := range chosen {
		res := runSection(ctx, s, progress, o.verbose, isolationEnv+"="+o.isolation)
		if ctx.Err() != nil {
			return fmt.Errorf("interrupted: %w", ctx.Err())
		}
		rows = append(rows, sectionRows(s, res)...)
		if res.err != nil && !skipped(res.output) {
			failed = append(failed, s.name)
		}
		hwmNotReset = hwmNotReset || strings.Contains(res.output, "clear_refs not permitted")
	}
	printTable(stdout, rows)
	mode := "full size"
	if quick {
		mode = "quick (-quick: smaller than the issue's sizes, which the targets are for)"
	}
	fmt.Fprintf(stdout, "\n%s; CUE isolation %s; %s, %d CPUs, GOMAXPROCS %d; load average %s before, %s after; %s in all\n",
		mode, o.isolation, runtime.Version(), runtime.NumCPU(), runtime.GOMAXPROCS(0), loadBefore, loadAverage(), time.Since(start).Round(time.Second))
	printNotes(stdout, chosen, hwmNotReset)
	if len(failed) > 0 {
		return fmt.Errorf("sections failed: %s", strings.Join(failed, ", "))
	}
	return nil
}

// choose returns the sections named in only (comma-separated), or all of them when it is empty.
func choose(all []section, only string) ([]section, error) {
	if only == "" {
		return all, nil
	}
	var out []section
	for name := range strings.SplitSeq(only, ",") {
		i := slices.IndexFunc(all, func(s section) bool { return s.name == strings.TrimSpace(name) })
		if i < 0 {
			return nil, fmt.Errorf("-only: no section %q (there are cue, embedded, wake, controller)", name)
		}
		out = append(out, all[i])
	}
	return out, nil
}

// runSection runs the section's go test, with env added to its environment, and parses its
// output.
func runSection(ctx context.Context, s section, progress io.Writer, verbose bool, env ...string) outcome {
	// -v: without it go test leaves out why a benchmark was skipped.
	args := append([]string{"test", "-v", "-run", "^$"}, s.flags...)
	args = append(args, s.pkg)
	fmt.Fprintf(progress, "== %s: go %s\n", s.name, shellWords(args))
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if verbose {
		w := io.MultiWriter(&out, progress)
		cmd.Stdout, cmd.Stderr = w, w
	}
	start := time.Now()
	err := cmd.Run()
	o := outcome{res: parse(out.String()), output: out.String(), took: time.Since(start)}
	if err != nil {
		o.err = fmt.Errorf("go test: %w", err)
		if !verbose && !skipped(o.output) {
			fmt.Fprint(progress, o.output)
		}
	}
	fmt.Fprintf(progress, "   %s took %s\n", s.name, o.took.Round(time.Second))
	return o
}

// shellWords is args as a shell command line, for copying: single-quoted where needed.
func shellWords(args []string) string {
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = a
		if strings.ContainsAny(a, "^$()|*?[] '\"\\") {
			quoted[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
	}
	return strings.Join(quoted, " ")
}

// skipped reports whether go test's output says the benchmarks were skipped for want of the
// kube-apiserver and etcd binaries (apiservertest.ErrNoAssets).
func skipped(output string) bool {
	return strings.Contains(output, "kube-apiserver or etcd not found")
}

// sectionRows are the table's lines for a section: one per measure, or one saying why there
// are none.
func sectionRows(s section, o outcome) []row {
	switch {
	case skipped(o.output):
		return []row{{section: s.name, measure: "(all)", value: "skipped: run make kube-assets"}}
	case len(o.res) == 0 && o.err != nil:
		return []row{{section: s.name, measure: "(all)", value: "failed: " + lastLine(o.output)}}
	}
	var rows []row
	for _, m := range s.measures {
		r := row{section: s.name, measure: m.label, value: "missing", target: m.target.text}
		if v, ok := o.res[m.bench][m.unit]; ok {
			r.value = m.show(v)
			if m.target.met != nil {
				r.met = "no"
				if m.target.met(v) {
					r.met = "yes"
				}
			}
		} else if o.err != nil {
			r.value = "failed"
		}
		rows = append(rows, r)
	}
	return rows
}

// lastLine is the last line of out that is not empty and not go test's FAIL summary.
func lastLine(out string) string {
	for _, l := range slices.Backward(strings.Split(strings.TrimSpace(out), "\n")) {
		l = strings.TrimSpace(l)
		if l != "" && l != "FAIL" && !strings.HasPrefix(l, "FAIL\t") && !strings.HasPrefix(l, "exit status") {
			return l
		}
	}
	return "no output"
}

func printTable(w io.Writer, rows []row) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SECTION\tMEASURE\tVALUE\tTARGET\tMET")
	last := ""
	for _, r := range rows {
		name := r.section
		if name == last {
			name = ""
		}
		last = r.section
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", name, r.measure, r.value, r.target, r.met)
	}
	if err := tw.Flush(); err != nil {
		fmt.Fprintln(os.Stderr, "bench/table:", err)
	}
}

// printNotes says what the figures of the sections shown are.
func printNotes(w io.Writer, shown []section, hwmNotReset bool) {
	has := func(name string) bool {
		return slices.ContainsFunc(shown, func(s section) bool { return s.name == name })
	}
	var notes []string
	if has("cue") {
		notes = append(notes,
			"cue: one step of a compiled definition per op (step/bench_test.go, -benchmem); request calls a local HTTP server; "+
				"apply-object has the real vela/kube package but a kube.apply that answers at once with the object it was given "+
				"(the CUE cost, no API server); the 20-way disjunction is a parameter that is one of twenty closed structs, "+
				"beside a twenty-way enum with a default.")
	}
	if has("embedded") || has("wake") {
		notes = append(notes,
			"embedded, wake: the SQLite store with every transition durable (synchronous=FULL), the real CUE runtime; "+
				"runs all started (or resumed) at once, so the gaps are mostly time queued behind the other runs.")
	}
	if has("embedded") || has("controller") {
		peak := "peak RSS: VmHWM of /proc/self/status, reset through /proc/self/clear_refs when the runs start; " +
			"RSS per in-flight run = (peak − RSS when the runs start) / runs."
		if hwmNotReset {
			peak = "peak RSS: the process's VmHWM since it began (/proc/self/clear_refs could not be written, so it was not reset); " +
				"RSS per in-flight run = (peak − RSS when the runs start) / runs."
		}
		notes = append(notes, peak)
	}
	if has("controller") {
		notes = append(notes,
			"controller: wr-bench.sh's three-step runs against a real kube-apiserver and etcd on this machine, the controller in "+
				"the benchmark's process; API requests counted at the controller's transport; CPU and RSS are that process's.")
	}
	notes = append(notes, "KB and MB are 1,024 and 1,048,576 bytes. Figures on a shared machine vary; docs/performance.md has the recorded ones.")
	for _, n := range notes {
		fmt.Fprintln(w, wrap("- "+n, 100, "  "))
	}
}

// wrap breaks text into lines of at most width characters where it can, between words, the
// lines after the first starting with indent.
func wrap(text string, width int, indent string) string {
	var b strings.Builder
	line := 0
	for i, word := range strings.Fields(text) {
		switch {
		case i == 0:
		case line+1+len([]rune(word)) > width:
			b.WriteString("\n" + indent)
			line = len(indent)
		default:
			b.WriteString(" ")
			line++
		}
		b.WriteString(word)
		line += len([]rune(word))
	}
	return b.String()
}

// loadAverage is the one-minute load average, or "?" where /proc/loadavg cannot be read.
func loadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	if f := strings.Fields(string(data)); len(f) > 0 {
		return f[0]
	}
	return "?"
}
