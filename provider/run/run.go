// Package run supplies the CUE package vela/run: #Run runs a command or a script and returns its
// exit code and the files it wrote as outputs, its output lines going to the step's log. Where it
// runs is chosen per call: a call that gives an image (or a cluster) runs as a Kubernetes Job in
// the step's cluster (Jobs), followed over the step's evaluations; one without runs in the local
// sandbox (Sandbox, Debian's bubblewrap) when the operator allows it.
package run

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/step"
)

//go:embed run.cue
var source string

// Bounds of one run.
const (
	// DefaultTimeout is a job's timeout when it gives none.
	DefaultTimeout = 2 * time.Minute
	// DefaultMemory is a job's memory limit when it gives none.
	DefaultMemory = 1 << 30
	// MaxOutputBytes bounds one output file; a larger one fails the step.
	MaxOutputBytes = 64 << 10
	// MaxLogLines bounds the lines of output that go to the step's log; later ones are counted.
	MaxLogLines = 1000
	// MaxLineBytes bounds one line of output; the rest of the line is cut.
	MaxLineBytes = 4096
	// TailLines is how many of the last lines a failure's message carries.
	TailLines = 10
)

// Flag is the operator's switch that lets #Run execute on this host.
const Flag = "--allow-local-run"

// Job is what one #Run call asks for, checked.
type Job struct {
	// Image and Cluster are where a cluster backend would run it: a container of Image, in
	// Cluster ("" is the local one). The local sandbox does not use them.
	Image, Cluster string
	// Argv is the program and its arguments; for a script, the interpreter, ScriptPath and args.
	Argv []string
	// Script is the script's text, written to ScriptPath; "" for a command.
	Script string
	// Env are the variables set besides PATH, HOME and STEPFLOW_OUTPUTS.
	Env []string
	// SecretEnv are the variables a Job's container takes from Secrets of the run's namespace
	// (the kubelet reads them); the local sandbox has them in Env, read by stepflow.
	SecretEnv []SecretEnv
	// WorkingDir is the directory the program starts in; "" is WorkDir.
	WorkingDir string
	// CPU is the CPU the job may use, in cores (0: no limit); Memory its memory in bytes.
	CPU    float64
	Memory int64
	// Timeout bounds the job's wall time.
	Timeout time.Duration
	// Outputs are the names of the files under OutputsDir to return.
	Outputs []string
	// Network asks for the host's network.
	Network bool
	// Cleanup says when the job's files are deleted: "always", "onSuccess", "never".
	Cleanup string
}

// SecretEnv is a variable set from key of the Secret called Name.
type SecretEnv struct{ Env, Name, Key string }

// The paths a job sees.
const (
	// OutputsDir is where a job writes its outputs ($STEPFLOW_OUTPUTS).
	OutputsDir = "/stepflow/outputs"
	// WorkDir is a job's private, writable working directory ($HOME).
	WorkDir = "/stepflow/work"
	// ScriptPath is where a job's script is, read-only.
	ScriptPath = "/stepflow/script"
)

// Result is how a job ended.
type Result struct {
	// ExitCode is the program's exit code; -1 when it was killed.
	ExitCode int
	// TimedOut says the job was killed at its timeout.
	TimedOut bool
	// Outputs are the files the job wrote, by name, one trailing newline removed; filled only
	// when it exited 0.
	Outputs map[string]string
	// Tail are the last lines of its output.
	Tail []string
	// Kept is the directory of the job's files when the cleanup policy kept them.
	Kept string
}

// Backend runs jobs. line receives each line of the job's output (stdout and stderr merged) as
// it comes, from the goroutine that called Run. An error is the backend's failure, not the
// job's: a job that ran and failed is a Result.
type Backend interface {
	Run(ctx context.Context, job *Job, line func(string)) (*Result, error)
}

// Clusters gives the client of a named cluster ("" is the local one), for the Secrets env
// values come from. *cluster.Registry implements it.
type Clusters interface {
	Client(ctx context.Context, name string) (client.Client, error)
}

// Options configure the provider. The zero value registers #Run refusing every call.
type Options struct {
	// Local runs the jobs that give no image and ask for no cluster; nil refuses them, naming
	// Flag.
	Local Backend
	// Jobs runs the jobs that give an image, as Kubernetes Jobs; nil refuses them.
	Jobs *Jobs
	// Clusters reads the Secrets of env's valueFrom; nil refuses them.
	Clusters Clusters
	// MaxTimeout, when positive, is the longest timeout a local job may ask for: the bound of
	// a step's evaluation (step.Options.EvalTimeout), which a local job's wait is part of. A
	// Kubernetes Job is not waited for within an evaluation and may run longer.
	MaxTimeout time.Duration
}

// Register adds the package (import path "vela/run") and its action run.run to r.
func Register(r *step.Registry, opts Options) {
	p := &provider{opts: opts}
	r.AddPackage(step.Package{Path: "vela/run", Source: source})
	// A local run is a side effect, once per try, its result replayed. A Job is followed over
	// evaluations: the call runs on each, and finds the Job of the execution by its name
	// (jobName) rather than through the memo, so that it is created once per execution.
	r.Register(step.Action{Provider: "run", Do: "run", Run: p.run, SideEffect: local})
}

// local says a call runs in the local sandbox: it gives no image and no cluster.
func local(params map[string]any) bool {
	image, _ := params["image"].(string)
	cluster, _ := params["cluster"].(string)
	return image == "" && cluster == ""
}

// Refuse is the catalog's check of a step of type run where it could run nowhere: one
// without an image when local runs are off (allowLocal false), naming Flag; one with an image
// when no cluster is configured (withCluster false). A property given through an input is not
// known before the run and is not checked here; #Run refuses it then.
func Refuse(allowLocal, withCluster bool) func(*v1alpha1.WorkflowStepBase) error {
	return func(s *v1alpha1.WorkflowStepBase) error {
		if s.Type != "run" {
			return nil
		}
		var props struct {
			Image string `json:"image"`
		}
		if s.Properties != nil {
			_ = json.Unmarshal(s.Properties.Raw, &props)
		}
		switch {
		case props.Image == "" && !allowLocal:
			return errLocalOff
		case props.Image != "" && !withCluster:
			return errNoCluster
		}
		return nil
	}
}

var (
	errLocalOff  = fmt.Errorf("the step type run without an image executes its command on this host, in a sandbox, which this stepflow does not allow: start it with %s, or give the step an image to run it as a Kubernetes Job", Flag)
	errNoCluster = errors.New("the step type run with an image runs a Kubernetes Job, and this stepflow has no cluster to run it in (give it one with --kubeconfig)")
)

type provider struct{ opts Options }

// params are #Run's $params.
type params struct {
	Image       string   `json:"image"`
	Cluster     string   `json:"cluster"`
	Command     []string `json:"command"`
	Args        []string `json:"args"`
	Script      string   `json:"script"`
	Interpreter string   `json:"interpreter"`
	Env         []struct {
		Name      string  `json:"name"`
		Value     *string `json:"value"`
		ValueFrom *struct {
			SecretKeyRef *struct {
				Name string `json:"name"`
				Key  string `json:"key"`
			} `json:"secretKeyRef"`
		} `json:"valueFrom"`
	} `json:"env"`
	WorkingDir string `json:"workingDir"`
	Resources  struct {
		CPU    string `json:"cpu"`
		Memory string `json:"memory"`
	} `json:"resources"`
	Timeout string   `json:"timeout"`
	Outputs []string `json:"outputs"`
	Network bool     `json:"network"`
	Cleanup string   `json:"cleanup"`
}

var (
	outputName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)
	envName    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// run runs #Run.
func (p *provider) run(ctx context.Context, call *step.Call) (any, error) {
	var in params
	if err := call.Decode(&in); err != nil {
		return nil, terminal(err)
	}
	if call.Session == nil {
		return nil, errors.New("vela/run: #Run: the call has no session to log to")
	}
	inCluster := !local(call.Params)
	if err := p.check(&in, inCluster); err != nil {
		return nil, err
	}
	job, err := p.job(ctx, call, &in, inCluster)
	if err != nil {
		return nil, err
	}
	var res *Result
	if inCluster {
		if res, err = p.opts.Jobs.follow(ctx, call, job); err == nil && res == nil {
			return nil, nil // the Job runs: the step waits
		}
	} else {
		lines := 0
		res, err = p.opts.Local.Run(ctx, job, func(line string) {
			lines++
			switch {
			case lines <= MaxLogLines:
				call.Session.Log(3, call.Redact(line), nil)
			case lines == MaxLogLines+1:
				call.Session.Log(3, fmt.Sprintf("vela/run: later lines are left out of the log: it holds at most %d lines of a run's output", MaxLogLines), nil)
			}
		})
	}
	if err != nil {
		if _, ok := errors.AsType[*engine.TerminalError](err); ok {
			return nil, err
		}
		return nil, fmt.Errorf("vela/run: %w", err)
	}
	if res.Kept != "" {
		call.Session.Log(3, "vela/run: the run's files are kept in "+res.Kept, nil)
	}
	if res.TimedOut || res.ExitCode != 0 {
		what := fmt.Sprintf("exited with code %d", res.ExitCode)
		if res.TimedOut {
			what = fmt.Sprintf("was killed at its timeout of %s", job.Timeout)
		}
		msg := "the command " + what
		if len(res.Tail) > 0 {
			msg += "; last lines:\n" + strings.Join(res.Tail, "\n")
		}
		call.Session.Fail(call.Redact(msg))
		return map[string]any{"exitCode": res.ExitCode, "outputs": map[string]string{}}, nil
	}
	return map[string]any{"exitCode": res.ExitCode, "outputs": res.Outputs}, nil
}

// check refuses a call that can run nowhere: in a cluster without an image or without Jobs,
// locally without the local sandbox.
func (p *provider) check(in *params, inCluster bool) error {
	switch {
	case inCluster && in.Image == "":
		return terminal(fmt.Errorf("cluster %q: a Kubernetes Job needs an image: give image too", in.Cluster))
	case inCluster && p.opts.Jobs == nil:
		return terminal(errNoCluster)
	case !inCluster && p.opts.Local == nil:
		return terminal(errLocalOff)
	}
	return nil
}

// job checks the parameters and, for a local run, reads the Secrets of env; a Job's container
// takes them from the Secrets itself.
func (p *provider) job(ctx context.Context, call *step.Call, in *params, inCluster bool) (*Job, error) {
	job := &Job{Image: in.Image, Cluster: in.Cluster, WorkingDir: in.WorkingDir, Network: in.Network, Cleanup: in.Cleanup, Timeout: DefaultTimeout, Memory: DefaultMemory}
	switch {
	case in.Script != "" && len(in.Command) > 0:
		return nil, terminal(errors.New("give command or script, not both"))
	case in.Script != "":
		interp := in.Interpreter
		if interp == "" {
			interp = "/bin/sh"
		}
		job.Script = in.Script
		job.Argv = append(append(strings.Fields(interp), ScriptPath), in.Args...)
	case len(in.Command) > 0:
		job.Argv = append(append([]string{}, in.Command...), in.Args...)
	default:
		return nil, terminal(errors.New("command or script is required"))
	}
	if job.Cleanup == "" {
		job.Cleanup = "always"
	}
	if in.Timeout != "" {
		d, err := time.ParseDuration(in.Timeout)
		if err != nil || d <= 0 {
			return nil, terminal(fmt.Errorf("timeout %q is not a positive Go duration such as 30s", in.Timeout))
		}
		job.Timeout = d
	}
	if limit := p.opts.MaxTimeout; limit > 0 && job.Timeout > limit && !inCluster {
		return nil, terminal(fmt.Errorf("timeout %s is longer than %s, the bound of one evaluation of a step (--eval-timeout), which a run is waited for in", job.Timeout, limit))
	}
	if s := in.Resources.CPU; s != "" {
		q, err := resource.ParseQuantity(s)
		if err != nil || q.Sign() <= 0 {
			return nil, terminal(fmt.Errorf("resources.cpu %q is not a positive quantity such as 500m or 2", s))
		}
		job.CPU = float64(q.MilliValue()) / 1000
	}
	if s := in.Resources.Memory; s != "" {
		q, err := resource.ParseQuantity(s)
		if err != nil || q.Sign() <= 0 {
			return nil, terminal(fmt.Errorf("resources.memory %q is not a positive quantity such as 256Mi", s))
		}
		job.Memory = q.Value()
	}
	for i, name := range in.Outputs {
		if !outputName.MatchString(name) {
			return nil, terminal(fmt.Errorf("outputs[%d]: %q is not a file name (letters, digits, _ . -)", i, name))
		}
	}
	job.Outputs = in.Outputs
	for i, e := range in.Env {
		if !envName.MatchString(e.Name) {
			return nil, terminal(fmt.Errorf("env[%d].name: %q is not a variable name", i, e.Name))
		}
		switch {
		case e.Value != nil && e.ValueFrom != nil:
			return nil, terminal(fmt.Errorf("env[%d] (%s): give value or valueFrom, not both", i, e.Name))
		case e.Value != nil:
			job.Env = append(job.Env, e.Name+"="+*e.Value)
		case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			if inCluster {
				// The kubelet gives the container the value; it is read here all the same, so
				// that the run knows it as a secret and the pod's log lines that print it are
				// redacted, and a Secret that is missing fails the step before its Job is made.
				if _, err := p.secret(ctx, call, in.Cluster, ref.Name, ref.Key); err != nil {
					return nil, fmt.Errorf("env[%d] (%s): %w", i, e.Name, err)
				}
				job.SecretEnv = append(job.SecretEnv, SecretEnv{Env: e.Name, Name: ref.Name, Key: ref.Key})
				continue
			}
			v, err := p.secret(ctx, call, "", ref.Name, ref.Key)
			if err != nil {
				return nil, fmt.Errorf("env[%d] (%s): %w", i, e.Name, err)
			}
			job.Env = append(job.Env, e.Name+"="+v)
		default:
			return nil, terminal(fmt.Errorf("env[%d] (%s): value or valueFrom.secretKeyRef is required", i, e.Name))
		}
	}
	return job, nil
}

// secret reads key of the Secret name in the run's namespace, in cluster ("" the local one),
// and marks its value sensitive.
func (p *provider) secret(ctx context.Context, call *step.Call, cluster, name, key string) (string, error) {
	if p.opts.Clusters == nil {
		return "", terminal(fmt.Errorf("the Secret %s: no cluster is configured to read it from", name))
	}
	c, err := p.opts.Clusters.Client(ctx, cluster)
	if err != nil {
		return "", fmt.Errorf("the Secret %s: %w", name, err)
	}
	var s corev1.Secret
	if err := c.Get(ctx, client.ObjectKey{Namespace: call.Run.Namespace, Name: name}, &s); apierrors.IsNotFound(err) {
		return "", terminal(fmt.Errorf("the Secret %s/%s does not exist", call.Run.Namespace, name))
	} else if err != nil {
		return "", fmt.Errorf("reading Secret %s/%s: %w", call.Run.Namespace, name, err)
	}
	v, ok := s.Data[key]
	if !ok {
		return "", terminal(fmt.Errorf("the Secret %s/%s has no key %q", call.Run.Namespace, name, key))
	}
	call.Sensitive(string(v))
	return string(v), nil
}

func terminal(err error) error {
	return engine.Terminal(v1alpha1.ReasonExecute, fmt.Errorf("vela/run: #Run: %w", err))
}
