package run_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/apiservertest"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/provider/run"
	"github.com/stepflow/stepflow/step"
)

var api *apiservertest.Cluster

func TestMain(m *testing.M) {
	if marker := os.Getenv(helperMarker); marker != "" {
		// The helper process of TestSandboxDiesWithStepflow: a job that sleeps until killed.
		s := &run.Sandbox{}
		_, err := s.Run(context.Background(), &run.Job{Argv: []string{"sleep", marker}, Timeout: time.Minute, Memory: run.DefaultMemory},
			func(string) {})
		fmt.Fprintln(os.Stderr, "the helper's job ended:", err)
		os.Exit(3)
	}
	apiservertest.Main(m, &api)
}

// helperMarker names the environment variable that makes the test binary a helper process
// running one sandboxed `sleep <value>`.
const helperMarker = "STEPFLOW_RUN_TEST_HELPER"

// A stepflow process killed while a command runs takes the command with it: the next try of
// the step may run it again, and nothing of the dead try's goes on.
func TestSandboxDiesWithStepflow(t *testing.T) {
	sandbox(t, false)
	marker := "1000.314159"
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), helperMarker+"="+marker)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for len(sleepers(t, marker)) == 0 {
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatal("the helper's job did not start")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	deadline = time.Now().Add(5 * time.Second)
	for {
		left := sleepers(t, marker)
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the job outlived the process that ran it: %v", left)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// runStep evaluates template as a step of a run in namespace with vela/run configured by opts;
// sensitive are the values the run knows are secrets.
func runStep(t *testing.T, opts run.Options, namespace, template string, sensitive ...string) (*engine.StepResult, error) {
	t.Helper()
	reg := step.NewRegistry()
	run.Register(reg, opts)
	r := step.NewRunner(step.Options{Registry: reg, Definitions: sameTemplate{}})
	return r.RunStep(context.Background(), &engine.StepRequest{
		Run:        engine.Key{Namespace: namespace, Name: "wr"},
		Step:       v1alpha1.WorkflowStepBase{Name: "job", Type: template, Outputs: v1alpha1.StepOutputs{{Name: "v", ValueFrom: "job.$returns.outputs.v"}}},
		Properties: json.RawMessage(`{}`),
		Context:    map[string]any{"name": "wr", "namespace": namespace, "stepName": "job"},
		Sensitive:  sensitive,
	})
}

// sameTemplate serves a step's type as its template.
type sameTemplate struct{}

func (sameTemplate) Template(_ context.Context, _, typ string) (string, error) { return typ, nil }

// runTemplate is a step calling #Run with params (CUE fields).
func runTemplate(params string) string {
	return fmt.Sprintf("import \"vela/run\"\njob: run.#Run & {$params: {%s}}\n", params)
}

func TestRunFailsWithTheExitCodeAndLastLinesAndLogsRedacted(t *testing.T) {
	s := sandbox(t, false)
	res, err := runStep(t, run.Options{Local: s}, "default",
		runTemplate(`script: "echo the secret is s3cret-value-42; for i in 1 2 3; do echo line $i; done; exit 3"`), "s3cret-value-42")
	if err != nil {
		t.Fatal(err)
	}
	if res.Outcome != engine.Failed || !strings.Contains(res.Message, "the command exited with code 3; last lines:") || !strings.HasSuffix(res.Message, "line 2\nline 3") {
		t.Errorf("outcome %v, message %q", res.Outcome, res.Message)
	}
	if strings.Contains(res.Message, "s3cret-value-42") || !strings.Contains(res.Message, "the secret is <redacted>") {
		t.Errorf("message not redacted: %q", res.Message)
	}
	var logged []string
	for _, l := range res.Logs {
		logged = append(logged, l.Message)
	}
	if got := strings.Join(logged, "|"); !strings.Contains(got, "the secret is <redacted>|line 1|line 2|line 3") || strings.Contains(got, "s3cret") {
		t.Errorf("log = %q", got)
	}
}

func TestRunReturnsOutputs(t *testing.T) {
	res, err := runStep(t, run.Options{Local: sandbox(t, false)}, "default",
		runTemplate(`script: "echo -n 42 > $STEPFLOW_OUTPUTS/v", outputs: ["v"]`))
	if err != nil {
		t.Fatal(err)
	}
	if res.Outcome != engine.Succeeded || string(res.Outputs["v"]) != `"42"` {
		t.Errorf("outcome %v (%s), outputs %s", res.Outcome, res.Message, res.Outputs)
	}
}

func TestRunRefusals(t *testing.T) {
	for _, c := range []struct {
		name, params, want string
		opts               run.Options
	}{
		{"off", `command: ["true"]`, "start it with --allow-local-run", run.Options{}},
		{"cluster", `command: ["true"], cluster: "eu"`, "a Kubernetes Job needs an image", run.Options{Local: &run.Sandbox{}}},
		{"no jobs", `image: "busybox", command: ["true"]`, "no cluster to run it in", run.Options{Local: &run.Sandbox{}}},
		{"both", `command: ["true"], script: "true"`, "give command or script, not both", run.Options{Local: &run.Sandbox{}}},
		{"timeout", `command: ["true"], timeout: "10m"`, "longer than 5m0s, the bound of one evaluation", run.Options{Local: &run.Sandbox{}, MaxTimeout: run.DefaultTimeout + 3*60e9}},
		{"output", `command: ["true"], outputs: ["../x"]`, `outputs[0]: "../x" is not a file name`, run.Options{Local: &run.Sandbox{}}},
		{"memory", `command: ["true"], resources: memory: "lots"`, `resources.memory "lots"`, run.Options{Local: &run.Sandbox{}}},
		{"secret", `command: ["true"], env: [{name: "T", valueFrom: secretKeyRef: {name: "s", key: "k"}}]`, "no cluster is configured", run.Options{Local: &run.Sandbox{}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := runStep(t, c.opts, "default", runTemplate(c.params))
			var te *engine.TerminalError
			if !errors.As(err, &te) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v, want a terminal error with %q", err, c.want)
			}
		})
	}
}

// Env values come from a Secret of the run's namespace on a real API server; the value reaches
// the command, is marked sensitive and redacted in the log.
func TestRunEnvFromSecret(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a kube-apiserver")
	}
	s := sandbox(t, false)
	c, err := client.New(api.Config, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ns := apiservertest.Namespace(t)
	for _, obj := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "build", Namespace: ns}, Data: map[string][]byte{"token": []byte("tok-7f3a9c")}},
	} {
		if err := c.Create(context.Background(), obj); err != nil {
			t.Fatal(err)
		}
	}
	res, err := runStep(t, run.Options{Local: s, Clusters: oneCluster{c}}, ns, runTemplate(
		`script: "test \"$TOKEN\" = tok-7f3a9c && echo token $TOKEN && echo -n $PLAIN > $STEPFLOW_OUTPUTS/v", outputs: ["v"],
		env: [{name: "TOKEN", valueFrom: secretKeyRef: {name: "build", key: "token"}}, {name: "PLAIN", value: "p"}]`))
	if err != nil {
		t.Fatal(err)
	}
	if res.Outcome != engine.Succeeded || string(res.Outputs["v"]) != `"p"` {
		t.Fatalf("outcome %v (%s), outputs %s", res.Outcome, res.Message, res.Outputs)
	}
	if !strings.Contains(strings.Join(res.Sensitive, ","), "tok-7f3a9c") {
		t.Errorf("the Secret's value is not marked sensitive: %q", res.Sensitive)
	}
	for _, l := range res.Logs {
		if strings.Contains(l.Message, "tok-7f3a9c") {
			t.Errorf("the log shows the Secret's value: %q", l.Message)
		}
	}
	_, err = runStep(t, run.Options{Local: s, Clusters: oneCluster{c}}, ns, runTemplate(
		`command: ["true"], env: [{name: "T", valueFrom: secretKeyRef: {name: "absent", key: "k"}}]`))
	if _, ok := errors.AsType[*engine.TerminalError](err); !ok || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("a missing Secret: %v", err)
	}
}

// oneCluster serves c as the local cluster.
type oneCluster struct{ c client.Client }

func (o oneCluster) Client(_ context.Context, name string) (client.Client, error) {
	if name != "" {
		return nil, fmt.Errorf("no cluster %q", name)
	}
	return o.c, nil
}
