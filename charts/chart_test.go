package charts

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/stepflow/stepflow/apiservertest"
	"github.com/stepflow/stepflow/store/postgres/pgtest"
)

// helmVersion is the helm scripts/helm.sh builds.
const helmVersion = "v3.22.1"

var cluster *apiservertest.Cluster

func TestMain(m *testing.M) {
	apiservertest.Main(m, &cluster)
}

// helmPath is the helm that scripts/helm.sh built: $STEPFLOW_HELM, or in the user's cache.
func helmPath(t *testing.T) string {
	t.Helper()
	path := os.Getenv("STEPFLOW_HELM")
	if path == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			t.Fatal(err)
		}
		path = filepath.Join(cache, "stepflow", "helm-"+helmVersion, "helm")
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("helm is not built: run ./scripts/helm.sh (%v)", err)
	}
	return path
}

// helm runs helm and returns its standard output.
func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), helmPath(t), args...)
	// helm's own cache and config, away from the user's.
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+home, "HELM_CONFIG_HOME="+home, "HELM_DATA_HOME="+home)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("helm %s: %w\n%s%s", strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out), nil
}

func mustHelm(t *testing.T, args ...string) string {
	t.Helper()
	out, err := helm(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// objects decodes helm template's output into objects, skipping empty documents.
func objects(t *testing.T, manifest string) []*unstructured.Unstructured {
	t.Helper()
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(manifest), 4096)
	var objs []*unstructured.Unstructured
	for {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			t.Fatalf("the rendered chart: %v", err)
		}
		if len(m) == 0 {
			continue
		}
		objs = append(objs, &unstructured.Unstructured{Object: m})
	}
	return objs
}

// find returns the objects of a kind.
func find(objs []*unstructured.Unstructured, kind string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind {
			out = append(out, o)
		}
	}
	return out
}

// deployment converts a rendered Deployment.
func deployment(t *testing.T, u *unstructured.Unstructured) *appsv1.Deployment {
	t.Helper()
	var d appsv1.Deployment
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &d); err != nil {
		t.Fatal(err)
	}
	return &d
}

// TestChartCRDsAreConfigCRDs keeps the chart's CRDs those of config/crd, which `make generate`
// writes: the chart must install the CRDs the controller is built for.
func TestChartCRDsAreConfigCRDs(t *testing.T) {
	want, err := filepath.Glob("../config/crd/*.yaml")
	if err != nil || len(want) == 0 {
		t.Fatalf("config/crd: %v", err)
	}
	got, _ := filepath.Glob("stepflow/crds/*.yaml")
	if len(got) != len(want) {
		t.Errorf("the chart has %d CRDs, config/crd %d: copy them (make generate)", len(got), len(want))
	}
	for _, w := range want {
		a, _ := os.ReadFile(w)
		b, err := os.ReadFile(filepath.Join("stepflow", "crds", filepath.Base(w)))
		if err != nil || !bytes.Equal(a, b) {
			t.Errorf("charts/stepflow/crds/%s differs from config/crd: copy it (make generate)", filepath.Base(w))
		}
	}
}

// TestLintAndTemplate lints the chart and renders it with the default values, the server's,
// and shards, checking what an operator relies on.
func TestLintAndTemplate(t *testing.T) {
	if testing.Short() {
		t.Skip("runs helm")
	}
	server := []string{"--set", "server.enabled=true", "--set", "server.postgres.existingSecret=stepflow-postgres"}
	mustHelm(t, "lint", "--strict", "stepflow")
	mustHelm(t, append([]string{"lint", "--strict", "stepflow"}, server...)...)

	objs := objects(t, mustHelm(t, "template", "sf", "stepflow", "--namespace", "stepflow-system"))
	deps := find(objs, "Deployment")
	if len(deps) != 1 {
		t.Fatalf("default values: %d Deployments, want the controller's", len(deps))
	}
	d := deployment(t, deps[0])
	c := d.Spec.Template.Spec.Containers[0]
	for _, want := range []string{"controller", "--leader-elect", "--leader-election-namespace=stepflow-system", "--metrics-bind-address=:8080", "--health-probe-bind-address=:8081"} {
		if !slices.Contains(c.Args, want) {
			t.Errorf("controller args %q lack %q", c.Args, want)
		}
	}
	if sc := c.SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		t.Errorf("controller securityContext %+v: want a read-only root filesystem, non-root", sc)
	}
	if c.LivenessProbe == nil || c.ReadinessProbe == nil || c.Resources.Requests.Cpu().IsZero() {
		t.Error("controller without probes or resource requests")
	}
	if *d.Spec.Replicas != 2 {
		t.Errorf("controller replicas %d, want 2", *d.Spec.Replicas)
	}
	if n := len(find(objs, "CustomResourceDefinition")); n != 0 {
		t.Errorf("template without --include-crds rendered %d CRDs (they belong in crds/)", n)
	}
	if len(find(objs, "Service")) != 1 || len(find(objs, "ServiceMonitor")) != 0 {
		t.Error("default values: want the metrics Service and no ServiceMonitor")
	}

	// The server, on PostgreSQL: its URL from the Secret, never in the manifest.
	objs = objects(t, mustHelm(t, append([]string{"template", "sf", "stepflow", "--namespace", "stepflow-system", "--set", "serviceMonitor.enabled=true"}, server...)...))
	var srv *appsv1.Deployment
	for _, u := range find(objs, "Deployment") {
		if u.GetName() == "sf-stepflow-server" {
			srv = deployment(t, u)
		}
	}
	if srv == nil {
		t.Fatal("server values: no sf-stepflow-server Deployment")
	}
	sc := srv.Spec.Template.Spec.Containers[0]
	if !slices.Contains(sc.Args, "--store=$(STEPFLOW_STORE)") {
		t.Errorf("server args %q: want --store from the environment", sc.Args)
	}
	var fromSecret bool
	for _, e := range sc.Env {
		if e.Name == "STEPFLOW_STORE" && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && e.ValueFrom.SecretKeyRef.Name == "stepflow-postgres" {
			fromSecret = true
		}
	}
	if !fromSecret {
		t.Errorf("server env %+v: want STEPFLOW_STORE from the Secret stepflow-postgres", sc.Env)
	}
	if len(find(objs, "ServiceMonitor")) != 1 {
		t.Error("serviceMonitor.enabled: no ServiceMonitor")
	}
	if _, err := helm(t, "template", "sf", "stepflow", "--set", "server.enabled=true"); err == nil || !strings.Contains(err.Error(), "server.postgres.existingSecret") {
		t.Errorf("server without a Secret: %v, want an error naming server.postgres.existingSecret", err)
	}

	// Shards: a Deployment each, each with its own shard and election.
	objs = objects(t, mustHelm(t, "template", "sf", "stepflow", "--set", "controller.shards={a,b}"))
	deps = find(objs, "Deployment")
	if len(deps) != 2 {
		t.Fatalf("two shards: %d Deployments", len(deps))
	}
	for i, shard := range []string{"a", "b"} {
		args := deployment(t, deps[i]).Spec.Template.Spec.Containers[0].Args
		if !slices.Contains(args, "--shard-id="+shard) || !slices.Contains(args, "--leader-election-id=sf-stepflow-controller-"+shard) {
			t.Errorf("shard %s: args %q", shard, args)
		}
	}
}

// TestREADMEOnAPIServer runs every command of the chart's README, in order, against a real API
// server: helm install (the CRDs, RBAC, the controller, its metrics Service), a WorkflowRun
// applied and waited for with kubectl, the server added on PostgreSQL settings, the upgrade,
// the uninstall. The API server validates every object helm sends. No kubelet runs the pods:
// once the release is installed, the controller is started on this host from the manifest the
// release holds, with its Deployment's arguments and environment (its ports moved to free
// ones), as its ServiceAccount (impersonated, so the chart's RBAC is all it may do), and it
// stays up while the rest of the README runs.
func TestREADMEOnAPIServer(t *testing.T) {
	if cluster == nil {
		t.Skip("needs the API server (not under -short)")
	}
	commands := readmeCommands(t, filepath.Join("stepflow", "README.md"))
	if len(commands) < 8 {
		t.Fatalf("the README has %d commands: %q", len(commands), commands)
	}
	helmDir := filepath.Dir(helmPath(t))
	env := append(os.Environ(), "KUBECONFIG="+cluster.Kubeconfig,
		"PATH="+helmDir+":"+apiservertest.AssetsDir()+":"+os.Getenv("PATH"))
	home := t.TempDir()
	env = append(env, "HELM_CACHE_HOME="+home, "HELM_CONFIG_HOME="+home, "HELM_DATA_HOME="+home)
	started := false
	for _, line := range commands {
		cmd := exec.CommandContext(t.Context(), "bash", "-c", line)
		cmd.Dir = ".." // the repository's root
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", line, err, out)
		}
		t.Logf("$ %s\n%s", line, out)
		if strings.HasPrefix(line, "helm install ") && !started {
			manifest := mustHelm(t, "get", "manifest", "stepflow", "--namespace", "stepflow-system", "--kubeconfig", cluster.Kubeconfig)
			startController(t, objects(t, manifest), "stepflow-controller")
			started = true
		}
	}
	if !started {
		t.Fatal("the README installs nothing with helm install")
	}
}

// startController starts the controller of the named Deployment of objs as the pod would run
// it, and waits until it is ready; it is stopped when the test ends, and its metrics checked.
func startController(t *testing.T, objs []*unstructured.Unstructured, name string) {
	t.Helper()
	var ctrl *appsv1.Deployment
	for _, u := range find(objs, "Deployment") {
		if u.GetName() == name {
			ctrl = deployment(t, u)
		}
	}
	if ctrl == nil {
		t.Fatalf("the release has no Deployment %s", name)
	}
	pod := ctrl.Spec.Template.Spec
	kubeconfig := impersonating(t, "system:serviceaccount:"+ctrl.Namespace+":"+pod.ServiceAccountName, ctrl.Namespace)
	metricsPort, healthPort := freePort(t), freePort(t)
	args := slices.Clone(pod.Containers[0].Args)
	for i, a := range args {
		switch a {
		case "--metrics-bind-address=:8080":
			args[i] = fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", metricsPort)
		case "--health-probe-bind-address=:8081":
			args[i] = fmt.Sprintf("--health-probe-bind-address=127.0.0.1:%d", healthPort)
		}
	}
	// Not t.Context(): the cleanup reads its metrics before it stops it.
	cmd := exec.CommandContext(context.WithoutCancel(t.Context()), binary(t), append([]string{"--kubeconfig", kubeconfig}, args...)...)
	// The container's environment, and a HOME it cannot write, as under a read-only root.
	cmd.Env = []string{"HOME=/nonexistent", "PATH=/usr/bin:/bin"}
	for _, e := range pod.Containers[0].Env {
		cmd.Env = append(cmd.Env, e.Name+"="+e.Value)
	}
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		metrics := get(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort))
		for _, want := range []string{"stepflow_build_info{", `stepflow_runs_finished_total{phase="succeeded"`} {
			if !strings.Contains(metrics, want) {
				t.Errorf("the controller's /metrics has no %s", want)
			}
		}
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("controller:\n%s", out.String())
		}
	})
	waitHTTP(t, fmt.Sprintf("http://127.0.0.1:%d/readyz", healthPort), time.Minute)
}

// readmeCommands returns the lines of the ```sh blocks of a Markdown file, in order.
func readmeCommands(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var cmds []string
	in := false
	for line := range strings.Lines(string(b)) {
		line = strings.TrimRight(line, "\n")
		switch {
		case line == "```sh":
			in = true
		case line == "```":
			in = false
		case in && strings.TrimSpace(line) != "":
			cmds = append(cmds, line)
		}
	}
	return cmds
}

// impersonating writes a kubeconfig of the test's administrator that acts as user (a
// ServiceAccount) with its groups, as the pod's token would authenticate it.
func impersonating(t *testing.T, user, ns string) string {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(cluster.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range cfg.AuthInfos {
		a.Impersonate = user
		a.ImpersonateGroups = []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"}
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// binary builds the stepflow command for a test, static as `make image` builds it (and as the
// other tests that build it do, sharing the build cache: after the first, only the link).
func binary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "stepflow")
	cmd := exec.CommandContext(t.Context(), "go", "build", "-trimpath", "-ldflags", "-X main.version=v0.0.0-test", "-o", bin, "../cmd/stepflow")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func freePort(t *testing.T) int {
	t.Helper()
	var lc net.ListenConfig
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().(*net.TCPAddr).Port
}

// get reads url; it is called from cleanups too, after the test's context ended.
func get(t *testing.T, url string) string {
	t.Helper()
	req, _ := http.NewRequestWithContext(context.WithoutCancel(t.Context()), http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func waitHTTP(t *testing.T, url string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not answer 200 within %s: %v", url, within, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// syncBuffer is a bytes.Buffer safe for the process's two output streams.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// kubeVar is a reference to an environment variable in a container's arguments, $(NAME).
var kubeVar = regexp.MustCompile(`\$\([A-Za-z_][A-Za-z0-9_]*\)`)

// TestServerAsTheChartRunsIt starts `stepflow server` with the arguments and environment the
// chart's server Deployment gives it, on a real PostgreSQL (store/postgres/pgtest) whose URL
// is the Secret's value, as the kubelet would resolve it ($(VAR) in the arguments, the Secret's
// key, the pod's name), and runs a workflow through its API with the bootstrap token it logs.
func TestServerAsTheChartRunsIt(t *testing.T) {
	if testing.Short() {
		t.Skip("runs helm, PostgreSQL and stepflow server")
	}
	pg, err := pgtest.Start(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pg.Stop() })
	dsn := pg.NewDatabase(t)
	objs := objects(t, mustHelm(t, "template", "sf", "stepflow", "--namespace", "stepflow-system",
		"--set", "server.enabled=true", "--set", "server.postgres.existingSecret=stepflow-postgres"))
	var srv *appsv1.Deployment
	for _, u := range find(objs, "Deployment") {
		if u.GetName() == "sf-stepflow-server" {
			srv = deployment(t, u)
		}
	}
	if srv == nil {
		t.Fatal("no server Deployment")
	}
	c := srv.Spec.Template.Spec.Containers[0]
	vars := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			vars[e.Name] = e.Value
		case e.ValueFrom.SecretKeyRef != nil && e.ValueFrom.SecretKeyRef.Name == "stepflow-postgres" && e.ValueFrom.SecretKeyRef.Key == "dsn":
			vars[e.Name] = dsn // the Secret of the README holds the URL under dsn
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name":
			vars[e.Name] = "sf-stepflow-server-0"
		default:
			t.Fatalf("env %s: a source the test does not resolve", e.Name)
		}
	}
	port := freePort(t)
	args := make([]string, len(c.Args))
	for i, a := range c.Args {
		a = kubeVar.ReplaceAllStringFunc(a, func(m string) string { return vars[m[2:len(m)-1]] })
		if strings.HasPrefix(a, "--listen=") {
			a = fmt.Sprintf("--listen=127.0.0.1:%d", port) // the container's port, moved
		}
		args[i] = a
	}
	if !slices.Contains(args, "--store="+dsn) {
		t.Fatalf("the server's arguments %q do not take the store from the Secret", args)
	}
	data := t.TempDir()
	bin := binary(t)
	cmd := exec.CommandContext(t.Context(), bin, args...)
	cmd.Env = []string{"HOME=/nonexistent", "PATH=/usr/bin:/bin", "STEPFLOW_DATA_DIR=" + data, "TMPDIR=" + os.TempDir()}
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("server:\n%s", out.String())
		}
	}()
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	waitHTTP(t, url+"/healthz", time.Minute)
	token := ""
	for line := range strings.Lines(out.String()) {
		if f := strings.Fields(line); len(f) == 1 && strings.HasPrefix(f[0], "sfp_") {
			token = f[0]
		}
	}
	if token == "" {
		t.Fatalf("no bootstrap token in the server's log:\n%s", out.String())
	}
	run := exec.CommandContext(t.Context(), bin, "--server", url, "--token", token, "run", "../examples/hello.yaml")
	got, err := run.CombinedOutput()
	if err != nil || !strings.Contains(string(got), "hello succeeded") {
		t.Fatalf("stepflow run through the server: %v\n%s", err, got)
	}
}
