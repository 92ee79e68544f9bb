// Command stepflow runs KubeVela-compatible workflows: `stepflow run FILE` executes WorkflowRuns
// on an embedded store with live progress in the terminal, and the other commands inspect,
// operate and validate runs and step types.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/step"
)

// Exit codes, the same for every command.
const (
	exitOK        = 0
	exitFailed    = 1 // the run failed or was terminated
	exitInvalid   = 2 // invalid input or usage
	exitSuspended = 3 // the run waits for a resume
	exitInternal  = 4 // the store or the machine failed
)

// exitError carries an exit code with the error that caused it.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func invalidf(format string, args ...any) error {
	return &exitError{code: exitInvalid, err: fmt.Errorf(format, args...)}
}

func invalidErr(err error) error { return &exitError{code: exitInvalid, err: err} }

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes the command line args and returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	return runIn("", args, stdout, stderr)
}

// runIn is run with relative file names taken from dir ("" for the working directory).
func runIn(dir string, args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	g := &globals{dir: dir, stdout: stdout, stderr: stderr}
	root := newRootCommand(g)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if g.app != nil {
		g.app.close()
	}
	if err == nil {
		return g.code
	}
	fmt.Fprintln(stderr, "Error:", err)
	if ee, ok := errors.AsType[*exitError](err); ok {
		return ee.code
	}
	if isUsageError(err) {
		return exitInvalid
	}
	return exitInternal
}

// linkLocalUsage describes --egress-allow-link-local, a flag of the server and the controller,
// which refuse link-local destinations by default; `stepflow run` does not.
const linkLocalUsage = "let steps connect to link-local addresses (169.254.0.0/16, fe80::/10: cloud instance metadata and credentials), refused by default; the egress lists still apply"

// globals are the flags every command shares and what they open.
type globals struct {
	// dir is where relative file names are found; "" is the working directory.
	dir       string
	dataDir   string
	namespace string
	// retryLimit, retryBackoff and waitBackoff tune the engine for the runs this process drives.
	retryLimit   int
	retryBackoff time.Duration
	waitBackoff  time.Duration
	// kube sends operations and log reads to the WorkflowRuns of a Kubernetes cluster, which a
	// `stepflow controller` drives, instead of the embedded store; kubeconfig names the cluster.
	kube       bool
	kubeconfig string
	// limits bound a run; evalTimeout bounds one evaluation of a step, evalMemory (MiB) the
	// memory of one child evaluator; evaluators bounds the child evaluators, evalIsolation
	// says where CUE runs ("process": in them; "none": in this process).
	limits        engine.Limits
	evalTimeout   time.Duration
	evalMemory    int
	evaluators    int
	evalIsolation string
	// retention says which finished runs are deleted.
	retention engine.Retention
	// egressAllow and egressDeny are the destinations steps may and may not connect to.
	egressAllow, egressDeny []string
	// eventSinks receive the runs' lifecycle as CloudEvents (assembly.Config.EventSinks).
	eventSinks []string
	// allowLocalRun lets steps of type run execute commands on this host, in a sandbox.
	allowLocalRun bool
	// server, when set, is the URL of a stepflow server the commands work through, with token.
	server string
	token  string
	// clustersFile is a kubeconfig whose contexts are the clusters kube actions may name.
	clustersFile string
	stdout       io.Writer
	stderr       io.Writer
	app          *app
	// code is the exit code of a command that ran without error (a run that failed is not an
	// error of the command).
	code int
}

func newRootCommand(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "stepflow",
		Short: "Run KubeVela-compatible workflows: declared steps in YAML, step types in CUE",
		Long: `stepflow runs WorkflowRuns (core.oam.dev/v1alpha1) whose steps are typed by
WorkflowStepDefinitions written in CUE, on an embedded store: nothing to install.

Exit codes: 0 succeeded, 1 failed or terminated, 2 invalid input or usage,
3 suspended (waiting for a resume), 4 internal error.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.dataDir, "data-dir", defaultDataDir(),
		"directory of the embedded store (env STEPFLOW_DATA_DIR)")
	root.PersistentFlags().StringVarP(&g.namespace, "namespace", "n", "default", "namespace of the runs to operate on")
	root.PersistentFlags().IntVar(&g.retryLimit, "retry-limit", 10,
		"provider errors a step survives before it fails FailedAfterRetries")
	root.PersistentFlags().DurationVar(&g.retryBackoff, "retry-backoff", time.Second,
		"first delay before retrying a provider error; doubles up to 1m")
	root.PersistentFlags().DurationVar(&g.waitBackoff, "wait-backoff", time.Second,
		"first delay before evaluating a waiting step again; doubles up to 30s")
	root.PersistentFlags().BoolVar(&g.kube, "kube", false,
		"operate on the WorkflowRuns of a Kubernetes cluster (driven by stepflow controller) instead of the embedded store")
	root.PersistentFlags().StringVar(&g.kubeconfig, "kubeconfig", "",
		"kubeconfig of the cluster (default: $KUBECONFIG, ~/.kube/config, or the in-cluster service account)")
	root.PersistentFlags().StringVar(&g.clustersFile, "clusters", "",
		"kubeconfig file whose contexts are the clusters steps may name in their cluster parameter")
	root.PersistentFlags().StringVar(&g.server, "server", os.Getenv("STEPFLOW_SERVER"),
		"URL of a stepflow server to work through instead of the embedded store (env STEPFLOW_SERVER)")
	root.PersistentFlags().StringVar(&g.token, "token", os.Getenv("STEPFLOW_TOKEN"),
		"API token for --server (env STEPFLOW_TOKEN)")
	root.PersistentFlags().IntVar(&g.limits.Steps, "max-steps", engine.DefaultMaxSteps, "most steps in one run, sub-steps included (-1: no limit)")
	root.PersistentFlags().IntVar(&g.limits.Iterations, "max-iterations", engine.DefaultMaxIterations, "most items of one forEach or matrix step (-1: no limit)")
	root.PersistentFlags().IntVar(&g.limits.OutputBytes, "max-output-bytes", engine.DefaultMaxOutputBytes, "largest output or variable one step may write, in bytes (-1: no limit)")
	root.PersistentFlags().IntVar(&g.limits.RunDataBytes, "max-run-data", engine.DefaultMaxRunDataBytes, "most bytes of outputs and variables one run may hold, all together (-1: no limit)")
	root.PersistentFlags().IntVar(&g.limits.WorkflowDepth, "max-workflow-depth", engine.DefaultMaxWorkflowDepth, "deepest nesting of child runs started by workflow steps (-1: no limit)")
	root.PersistentFlags().IntVar(&g.limits.ChildRuns, "max-child-runs", engine.DefaultMaxChildRuns, "most child runs started under one run by workflow steps, at every depth (-1: no limit)")
	root.PersistentFlags().DurationVar(&g.evalTimeout, "eval-timeout", step.DefaultEvalTimeout, "longest one evaluation may take: a step's (CUE and actions), an if's, a check's (-1s: no limit)")
	root.PersistentFlags().IntVar(&g.evalMemory, "eval-memory", step.DefaultEvalMemory>>20, "most memory one CUE evaluation may use, in MiB (its child evaluator's heap)")
	root.PersistentFlags().IntVar(&g.evaluators, "evaluators", 0, "most child CUE evaluator processes at once (0: four per core, at least 8)")
	root.PersistentFlags().StringVar(&g.evalIsolation, "eval-isolation", "process", "where CUE is evaluated: process (child evaluators, bounded) or none (in this process, for debugging: no memory bound, a timed-out evaluation keeps computing)")
	root.PersistentFlags().DurationVar(&g.retention.TTL, "retain", engine.DefaultRetain, "how long finished runs are kept, with their logs, unless they or their template say (ttlSecondsAfterFinished); 0: for ever")
	root.PersistentFlags().IntVar(&g.retention.Count, "retain-count", 0, "keep only this many finished runs per template and namespace, the newest (0: no limit)")
	root.PersistentFlags().StringArrayVar(&g.eventSinks, "events-sink", nil,
		"send every run's and step's lifecycle as CloudEvents to http(s)://host/path (binary mode; add #structured for structured mode) or nats://host:port/subject (repeatable)")
	root.PersistentFlags().StringArrayVar(&g.egressAllow, "egress-allow", nil,
		"only let steps connect to this host, *.domain, address or CIDR (repeatable; default: anywhere)")
	root.PersistentFlags().StringArrayVar(&g.egressDeny, "egress-deny", nil,
		"never let steps connect to this host, *.domain, address or CIDR, e.g. 169.254.0.0/16 (repeatable; wins over --egress-allow)")
	root.PersistentFlags().BoolVar(&g.allowLocalRun, "allow-local-run", false,
		"let steps of type run execute their command or script on this host, in a bubblewrap sandbox (no network unless the egress lists restrict nothing; read-only system directories; CPU, memory and time limits); off, runs with such steps are refused")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return invalidErr(err) })
	root.AddCommand(
		newRunCommand(g),
		newAppCommand(g),
		newApplyCommand(g),
		newVetCommand(g),
		newGetCommand(g),
		newListCommand(g),
		newLogsCommand(g),
		newRecoverCommand(g),
		newDefCommand(g),
		newControllerCommand(g),
		newServerCommand(g),
		newTokenCommand(g),
		newTriggerCommand(g),
		newBackupCommand(g),
		newCacheCommand(g),
		newTemplateCommand(g),
		newVersionCommand(g),
	)
	for _, oc := range operationCommands {
		root.AddCommand(newOperationCommand(g, oc))
	}
	return root
}

// paths resolves file names given on the command line.
func (g *globals) paths(files []string) []string {
	out := make([]string, len(files))
	for i, f := range files {
		if g.dir != "" && !filepath.IsAbs(f) {
			f = filepath.Join(g.dir, f)
		}
		out[i] = f
	}
	return out
}

// defaultDataDir is $STEPFLOW_DATA_DIR, else stepflow under the user's data directory.
func defaultDataDir() string {
	if d := os.Getenv("STEPFLOW_DATA_DIR"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "stepflow")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "share", "stepflow")
	}
	return ".stepflow"
}

// isUsageError recognizes cobra's complaints about arguments.
func isUsageError(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "accepts ", "requires at least", "unknown flag", "unknown shorthand", "flag needs"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}
