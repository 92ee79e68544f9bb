package controller_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/api/v1beta1"
	crdstore "github.com/stepflow/stepflow/store/crd"
)

// A run whose steps read a Secret, show its value in a message and a log line, send it to a
// service and fail quoting it: the WorkflowRun the API server holds (its status with
// status.stepflow, whose memo of the failed request holds the value) and the namespace's
// Events never show it, the log in the ConfigMap is redacted, and the service received the
// real value.
func TestSecretsStayOutOfTheWorkflowRun(t *testing.T) {
	const planted = "PLANTED"
	secret := "ctl-PLANTED-1f2e3d4c"
	e := newEnv(t)
	e.start(controllerOptions{})
	ctx := context.Background()
	if err := e.c.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: "creds"},
		Data:       map[string][]byte{"token": []byte(secret)},
	}); err != nil {
		t.Fatal(err)
	}
	for name, template := range map[string]string{
		"read-token": `
import ("vela/kube", "vela/builtin", "vela/util", "encoding/base64")
parameter: {}
read: kube.#Read & {$params: value: {apiVersion: "v1", kind: "Secret", metadata: name: "creds"}}
decoded: "\(base64.Decode(null, read.$returns.value.data.token))"
log: util.#Log & {$params: data: {token: decoded}}
msg: builtin.#Message & {$params: message: "token \(decoded)"}
`,
		"refuse": `
import "vela/builtin"
parameter: token: string
fail: builtin.#Fail & {$params: message: "refused \(parameter.token)"}
`,
	} {
		def := &v1beta1.WorkflowStepDefinition{
			ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: name},
			Spec:       v1beta1.WorkflowStepDefinitionSpec{Schematic: &v1beta1.Schematic{CUE: &v1beta1.CUE{Template: template}}},
		}
		if err := e.c.Create(ctx, def); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	var received []string
	svc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		received = append(received, r.Header.Get("X-Token"))
		mu.Unlock()
		// Refused, quoting the token: the step fails, and its memo of the POST (kept on a
		// failure, in the bookkeeping) holds the token.
		http.Error(w, "refused "+r.Header.Get("X-Token"), http.StatusForbidden)
	}))
	t.Cleanup(svc.Close)

	e.create(fmt.Sprintf(`
metadata: {name: with-secret}
spec:
  workflowSpec:
    steps:
    - {name: read, type: read-token, outputs: [{name: token, valueFrom: decoded}]}
    - {name: show, type: print-message-in-status, inputs: [{from: token, parameterKey: message}]}
    - {name: use, type: request, properties: {url: %q, method: POST}, inputs: [{from: token, parameterKey: header.X-Token}]}
    - {name: refuse, type: refuse, if: always, inputs: [{from: token, parameterKey: token}]}
`, svc.URL))
	wr := e.waitPhase("with-secret", v1alpha1.RunFailed)

	var stored v1alpha1.WorkflowRun
	if err := e.c.Get(ctx, client.ObjectKey{Namespace: e.ns, Name: "with-secret"}, &stored); err != nil {
		t.Fatal(err)
	}
	whole, _ := json.Marshal(stored)
	if strings.Contains(string(whole), planted) {
		t.Errorf("the WorkflowRun shows the secret:\n%s", whole)
	}
	if msg := wr.Status.Steps[1].Message; msg != "<redacted>" {
		t.Errorf("show's message = %q", msg)
	}
	if msg := wr.Status.Steps[2].Message; !strings.HasSuffix(msg, "status 403: refused <redacted>\n") {
		t.Errorf("use's message = %q", msg)
	}
	if msg := wr.Status.Steps[3].Message; msg != "refused <redacted>" {
		t.Errorf("refuse's message = %q", msg)
	}
	var events corev1.EventList
	if err := e.c.List(ctx, &events, client.InNamespace(e.ns)); err != nil {
		t.Fatal(err)
	}
	if b, _ := json.Marshal(events); strings.Contains(string(b), planted) {
		t.Errorf("an Event shows the secret:\n%s", b)
	}
	var cm corev1.ConfigMap
	if err := e.c.Get(ctx, client.ObjectKey{Namespace: e.ns, Name: crdstore.ContextName("with-secret")}, &cm); err != nil {
		t.Fatal(err)
	}
	if logs := cm.Data["logs"]; strings.Contains(logs, planted) || !strings.Contains(logs, `"token":"\u003credacted\u003e"`) {
		t.Errorf("the log in the ConfigMap:\n%s", logs)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(received) != 1 || received[0] != secret {
		t.Errorf("the service received %q, want the real value", received)
	}
}
