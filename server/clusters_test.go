package server_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stepflow/stepflow/server"
	"github.com/stepflow/stepflow/server/servertest"
)

// kubeconfig is a kubeconfig of an API server that is not there, its credentials inline, with
// user's extra fields (YAML flow mappings) added to its user.
func kubeconfig(user string) string {
	if user != "" {
		user = ", " + user
	}
	return `apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}
users:
- name: u
  user: {token: not-a-real-token` + user + `}
contexts:
- name: c
  context: {cluster: c, user: u}
current-context: c
`
}

// execKubeconfig is a kubeconfig whose exec credential plugin creates the file marker on the
// host that uses it.
func execKubeconfig(marker string) string {
	return strings.Replace(kubeconfig(""), "user: {token: not-a-real-token}",
		fmt.Sprintf(`user: {exec: {apiVersion: client.authentication.k8s.io/v1, command: /bin/sh, args: ["-c", "touch %s; echo '{}'"], interactiveMode: Never}}`, marker), 1)
}

// readObjectRun is a run in namespace whose one step reads an object from cluster.
func readObjectRun(name, namespace, cluster string) string {
	return fmt.Sprintf(`
apiVersion: core.oam.dev/v1alpha1
kind: WorkflowRun
metadata: {name: %s, namespace: %s}
spec:
  workflowSpec:
    steps:
    - {name: read, type: read-object, properties: {apiVersion: v1, kind: ConfigMap, name: x, cluster: %s}}
`, name, namespace, cluster)
}

// A cluster stored for some namespaces serves the runs of those only; a kubeconfig that would
// run a command or read a file on the server's host is refused when stored and, stored
// before, when a step would use it, unless the server allows it with --allow-kubeconfig-exec.
func TestStoredClustersAreForTheirNamespacesAndRunNothingOnTheHost(t *testing.T) {
	srv, _, admin := start(t, servertest.Options{})
	admin.postJSON("/api/v1/clusters", map[string]any{"name": "b-only", "kubeconfig": kubeconfig(""), "namespaces": []string{"team-b"}}).want(t, http.StatusOK)

	failed := func(name, namespace, cluster string) string {
		t.Helper()
		r := admin.postYAML("/api/v1/runs?wait=30s", readObjectRun(name, namespace, cluster)).want(t, http.StatusOK).json(t)
		if at(r, "status.status") != "failed" {
			t.Fatalf("run %s: %v %v", name, at(r, "status.status"), at(r, "status.message"))
		}
		msg, _ := at(r, "status.steps.0.message").(string)
		return msg
	}
	if msg := failed("other-team", "team-a", "b-only"); !strings.Contains(msg, `cluster "b-only" is not for the runs of namespace "team-a"`) {
		t.Errorf("team-a used team-b's cluster: %s", msg)
	}
	// team-b's run gets as far as the API server, which is not there.
	if msg := failed("own-team", "team-b", "b-only"); strings.Contains(msg, "is not for the runs of namespace") {
		t.Errorf("team-b may not use its cluster: %s", msg)
	}

	// A #Log of pods' logs looks its cluster up for the run's namespace too.
	admin.postYAML("/api/v1/definitions", `
apiVersion: core.oam.dev/v1beta1
kind: WorkflowStepDefinition
metadata: {name: pod-logs, namespace: vela-system}
spec:
  schematic:
    cue:
      template: |
        import "vela/util"
        parameter: cluster: string
        log: util.#Log & {$params: source: resources: [{name: "web", cluster: parameter.cluster}]}
`).want(t, http.StatusCreated)
	for _, tc := range []struct{ namespace, want string }{
		{"team-a", `cluster "b-only" is not for the runs of namespace "team-a"`},
		{"team-b", "127.0.0.1:1"}, // as far as the API server, which is not there
	} {
		r := admin.postYAML("/api/v1/runs?wait=30s", fmt.Sprintf(`
apiVersion: core.oam.dev/v1alpha1
kind: WorkflowRun
metadata: {name: logs, namespace: %s}
spec:
  workflowSpec:
    steps:
    - {name: logs, type: pod-logs, properties: {cluster: b-only}}
`, tc.namespace)).want(t, http.StatusOK).json(t)
		if msg, _ := at(r, "status.steps.0.message").(string); at(r, "status.status") != "failed" || !strings.Contains(msg, tc.want) {
			t.Errorf("pod logs of cluster b-only in %s: %v: %s; want %q", tc.namespace, at(r, "status.status"), msg, tc.want)
		}
	}

	marker := filepath.Join(t.TempDir(), "ran")
	r := admin.postJSON("/api/v1/clusters", map[string]any{"name": "plugin", "kubeconfig": execKubeconfig(marker)}).want(t, http.StatusBadRequest)
	if _, ok := r.problems(t)["kubeconfig.users[name=u].user.exec"]; !ok || !strings.Contains(string(r.body), "--allow-kubeconfig-exec") {
		t.Errorf("an exec plugin was refused without its field or the flag: %s", r.body)
	}
	for field, user := range map[string]string{
		"client-key": "client-certificate: /etc/ssl/cert.pem, client-key: /etc/ssl/key.pem",
		"tokenFile":  "tokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token",
	} {
		r := admin.postJSON("/api/v1/clusters", map[string]any{"name": "files", "kubeconfig": kubeconfig(user)}).want(t, http.StatusBadRequest)
		if _, ok := r.problems(t)["kubeconfig.users[name=u].user."+field]; !ok {
			t.Errorf("a kubeconfig reading %s from the host: %s", field, r.body)
		}
	}

	// One stored before the API refused them: a step naming it fails, and nothing ran.
	if _, err := srv.Store.PutRecord(context.Background(), "cluster", "legacy", []byte(execKubeconfig(marker)), 0); err != nil {
		t.Fatal(err)
	}
	if msg := failed("legacy", "team-a", "legacy"); !strings.Contains(msg, "--allow-kubeconfig-exec") {
		t.Errorf("the stored exec plugin: %s", msg)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("the exec plugin ran on the server's host")
	}

	open := servertest.Start(t, servertest.Options{Configure: func(o *server.Options) { o.AllowKubeconfigExec = true }})
	openAdmin := caller{t: t, base: open.URL, token: open.Token(t, "admin")}
	openAdmin.postJSON("/api/v1/clusters", map[string]any{"name": "plugin", "kubeconfig": execKubeconfig(marker)}).want(t, http.StatusOK)
}

// An admin limited to namespaces sees, stores and deletes only the clusters and tokens of its
// namespaces, and makes no token wider than itself.
func TestNamespacedAdminsKeepToTheirClustersAndTokens(t *testing.T) {
	srv := servertest.Start(t, servertest.Options{})
	root := caller{t: t, base: srv.URL, token: srv.Token(t, "admin")}
	teamA := caller{t: t, base: srv.URL, token: srv.Token(t, "admin", "team-a")}
	root.postJSON("/api/v1/clusters", map[string]any{"name": "shared", "kubeconfig": kubeconfig("")}).want(t, http.StatusOK)
	root.postJSON("/api/v1/clusters", map[string]any{"name": "b-only", "kubeconfig": kubeconfig(""), "namespaces": []string{"team-b"}}).want(t, http.StatusOK)
	root.postJSON("/api/v1/clusters", map[string]any{"name": "a-and-b", "kubeconfig": kubeconfig(""), "namespaces": []string{"team-a", "team-b"}}).want(t, http.StatusOK)

	names := func(c caller, path string) string {
		t.Helper()
		var out []string
		items, _ := at(c.get(path).want(t, http.StatusOK).json(t), "items").([]any)
		for _, it := range items {
			out = append(out, fmt.Sprintf("%v%v", at(it, "name"), at(it, "namespaces")))
		}
		return strings.Join(out, " ")
	}
	if got := names(teamA, "/api/v1/clusters"); got != "a-and-b[team-a] shared<nil>" {
		t.Errorf("team-a's admin lists clusters %q", got)
	}
	teamA.postJSON("/api/v1/clusters", map[string]any{"name": "shared", "kubeconfig": kubeconfig(""), "namespaces": []string{"team-a"}}).want(t, http.StatusForbidden)
	teamA.postJSON("/api/v1/clusters", map[string]any{"name": "b-only", "kubeconfig": kubeconfig(""), "namespaces": []string{"team-a"}}).want(t, http.StatusForbidden)
	teamA.postJSON("/api/v1/clusters", map[string]any{"name": "mine", "kubeconfig": kubeconfig("")}).want(t, http.StatusForbidden)
	teamA.postJSON("/api/v1/clusters", map[string]any{"name": "mine", "kubeconfig": kubeconfig(""), "namespaces": []string{"team-b"}}).want(t, http.StatusForbidden)
	teamA.do("DELETE", "/api/v1/clusters/shared", "", nil).want(t, http.StatusForbidden)
	teamA.do("DELETE", "/api/v1/clusters/a-and-b", "", nil).want(t, http.StatusForbidden)
	teamA.do("DELETE", "/api/v1/clusters/b-only", "", nil).want(t, http.StatusNotFound)
	teamA.postJSON("/api/v1/clusters", map[string]any{"name": "mine", "kubeconfig": kubeconfig(""), "namespaces": []string{"team-a"}}).want(t, http.StatusOK)
	teamA.postJSON("/api/v1/clusters", map[string]any{"name": "mine", "kubeconfig": kubeconfig(""), "namespaces": []string{"team-a"}}).want(t, http.StatusOK)
	teamA.do("DELETE", "/api/v1/clusters/mine", "", nil).want(t, http.StatusNoContent)
	if got := names(root, "/api/v1/clusters"); got != "a-and-b[team-a team-b] b-only[team-b] shared<nil>" {
		t.Errorf("the clusters are now %q", got)
	}

	rootTokens := names(root, "/api/v1/tokens")
	teamB := root.postJSON("/api/v1/tokens", map[string]any{"name": "team-b-admin", "role": "admin", "namespaces": []string{"team-b"}}).want(t, http.StatusCreated).json(t)
	var rootID string
	items, _ := at(root.get("/api/v1/tokens").json(t), "items").([]any)
	for _, it := range items {
		if at(it, "namespaces") == nil {
			rootID, _ = at(it, "id").(string)
		}
	}
	if got := names(teamA, "/api/v1/tokens"); got != "test-admin[team-a]" {
		t.Errorf("team-a's admin lists tokens %q (all: %s)", got, rootTokens)
	}
	teamA.postJSON("/api/v1/tokens", map[string]any{"name": "everywhere", "role": "viewer"}).want(t, http.StatusForbidden)
	teamA.postJSON("/api/v1/tokens", map[string]any{"name": "wider", "role": "admin", "namespaces": []string{"team-a", "team-b"}}).want(t, http.StatusForbidden)
	teamA.do("DELETE", "/api/v1/tokens/"+rootID, "", nil).want(t, http.StatusNotFound)
	teamA.do("DELETE", fmt.Sprintf("/api/v1/tokens/%v", teamB["id"]), "", nil).want(t, http.StatusNotFound)
	made := teamA.postJSON("/api/v1/tokens", map[string]any{"name": "ci", "role": "operator", "namespaces": []string{"team-a"}}).want(t, http.StatusCreated).json(t)
	if got := names(teamA, "/api/v1/tokens"); got != "ci[team-a] test-admin[team-a]" && got != "test-admin[team-a] ci[team-a]" {
		t.Errorf("team-a's admin lists tokens %q", got)
	}
	teamA.do("DELETE", fmt.Sprintf("/api/v1/tokens/%v", made["id"]), "", nil).want(t, http.StatusNoContent)
	root.get("/api/v1/whoami").want(t, http.StatusOK)
	caller{t: t, base: srv.URL, token: teamB["token"].(string)}.get("/api/v1/whoami").want(t, http.StatusOK)
}
