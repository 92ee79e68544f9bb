package server_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stepflow/stepflow/server/servertest"
)

// pythonProvider starts the example Python provider (examples/providers/python) on a free
// loopback port, as a real process, and returns its base URL.
func pythonProvider(t *testing.T) string {
	t.Helper()
	script, err := filepath.Abs(filepath.Join("..", "examples", "providers", "python", "provider.py"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, "python3", script, "127.0.0.1:0")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("python3 (scripts/test.sh installs it): %v", err)
	}
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n') // "serving on http://127.0.0.1:PORT"
	base, ok := strings.CutPrefix(strings.TrimSpace(line), "serving on ")
	if err != nil || !ok {
		t.Fatalf("the provider said %q, %v", line, err)
	}
	return base
}

// A Package stored through the API is imported by a stored definition, whose step calls the
// Python provider for real; the API lists the Package with its actions.
func TestPackageWithAnExternalProvider(t *testing.T) {
	endpoint := pythonProvider(t)
	_, op, admin := start(t, servertest.Options{})
	pkg := fmt.Sprintf(`
apiVersion: cue.oam.dev/v1alpha1
kind: Package
metadata: {name: text-py, namespace: vela-system}
spec:
  path: ext/textpy
  provider: {protocol: http, endpoint: %q}
  templates:
    text.cue: |
      package textpy

      #Reverse: {
      	#do:       "reverse"
      	#provider: "text-py"
      	$params: text: string
      	$returns?: text: string
      }
`, endpoint)
	op.do("PUT", "/api/v1/packages/vela-system/text-py", "application/yaml", []byte(pkg)).want(t, http.StatusForbidden)
	admin.do("PUT", "/api/v1/packages/vela-system/text-py", "application/yaml", []byte(pkg)).want(t, http.StatusOK)
	bad := strings.Replace(pkg, endpoint, "ftp://nowhere", 1)
	problems := admin.do("PUT", "/api/v1/packages/vela-system/text-py", "application/yaml", []byte(bad)).want(t, http.StatusBadRequest).problems(t)
	if !strings.Contains(problems["spec.provider.endpoint"], "want http or https") {
		t.Errorf("problems of a bad endpoint: %v", problems)
	}
	admin.do("PUT", "/api/v1/definitions/default/reverse", "application/yaml", []byte(`
apiVersion: core.oam.dev/v1beta1
kind: WorkflowStepDefinition
metadata: {name: reverse}
spec:
  schematic:
    cue:
      template: |
        import "ext/textpy"

        parameter: text: string
        reversed: textpy.#Reverse & {$params: text: parameter.text}
`)).want(t, http.StatusOK)

	list := op.get("/api/v1/packages").want(t, http.StatusOK).json(t)
	if at(list, "items.0.name") != "text-py" || at(list, "items.0.path") != "ext/textpy" || at(list, "items.0.endpoint") != endpoint || at(list, "items.0.actions.0") != "#Reverse" {
		t.Errorf("packages %v", list)
	}

	r := op.postYAML("/api/v1/runs?wait=30s", `
apiVersion: core.oam.dev/v1alpha1
kind: WorkflowRun
metadata: {name: rev}
spec:
  workflowSpec:
    steps:
    - name: a
      type: reverse
      properties: {text: stepflow}
      outputs: [{name: out, valueFrom: reversed.$returns.text}]
    - {name: b, type: print-message-in-status, inputs: [{from: out, parameterKey: message}]}
`).want(t, http.StatusOK).json(t)
	if at(r, "status.status") != "succeeded" || at(r, "status.steps.1.message") != "wolfpets" {
		t.Fatalf("run %v", r["status"])
	}
	logs := op.get("/api/v1/runs/default/rev/logs").want(t, http.StatusOK).json(t)
	if msg, _ := at(logs, "items.0.message").(string); !strings.Contains(msg, "/reverse → 200 OK") || at(logs, "items.0.action") != "text-py.reverse" {
		t.Errorf("first log line %v", at(logs, "items.0"))
	}

	admin.do("DELETE", "/api/v1/packages/vela-system/text-py", "", nil).want(t, http.StatusNoContent)
	r = op.postYAML("/api/v1/runs?wait=30s", `
apiVersion: core.oam.dev/v1alpha1
kind: WorkflowRun
metadata: {name: gone}
spec:
  workflowSpec:
    steps:
    - {name: a, type: reverse, properties: {text: x}}
`).json(t)
	if at(r, "status.status") == "succeeded" {
		t.Errorf("a run importing a deleted Package succeeded: %v", r)
	}
}
