package controller_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	cuev1alpha1 "github.com/stepflow/stepflow/api/cue/v1alpha1"
	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/api/v1beta1"
)

// A Package object in the run's namespace is found through the controller's cache: the step
// type importing it compiles, and its action is POSTed to the provider, here a Go HTTP server
// on loopback answering as the example providers do (the Python and Java ones are started for
// real by the CLI's and the server's tests).
func TestPackageActionReachesItsProvider(t *testing.T) {
	e := newEnv(t)
	var calls atomic.Int64
	provider := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		var in struct{ Text string }
		if r.Method != http.MethodPost || r.URL.Path != "/reverse" || json.NewDecoder(r.Body).Decode(&in) != nil {
			http.Error(w, `{"message": "bad request"}`, http.StatusBadRequest)
			return
		}
		rs := []rune(in.Text)
		for i, j := 0, len(rs)-1; i < j; i, j = i+1, j-1 {
			rs[i], rs[j] = rs[j], rs[i]
		}
		_ = json.NewEncoder(w).Encode(map[string]string{"text": string(rs)})
	}))
	t.Cleanup(provider.Close)
	ctx := context.Background()
	pkg := &cuev1alpha1.Package{
		ObjectMeta: metav1.ObjectMeta{Name: "text", Namespace: e.ns},
		Spec: cuev1alpha1.PackageSpec{Path: "ext/text", Provider: &cuev1alpha1.Provider{Protocol: "http", Endpoint: provider.URL},
			Templates: map[string]string{"text.cue": `package text

#Reverse: {
	#do:       "reverse"
	#provider: "text"
	$params: text: string
	$returns?: text: string
}
`}},
	}
	if err := e.c.Create(ctx, pkg); err != nil {
		t.Fatal(err)
	}
	def := &v1beta1.WorkflowStepDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: "reverse", Namespace: e.ns},
		Spec: v1beta1.WorkflowStepDefinitionSpec{Schematic: &v1beta1.Schematic{CUE: &v1beta1.CUE{Template: `import "ext/text"

parameter: text: string
reversed: text.#Reverse & {$params: text: parameter.text}
`}}},
	}
	if err := e.c.Create(ctx, def); err != nil {
		t.Fatal(err)
	}
	e.start(controllerOptions{})
	e.create(`
metadata: {name: rev}
spec:
  workflowSpec:
    steps:
    - name: a
      type: reverse
      properties: {text: stepflow}
      outputs: [{name: out, valueFrom: reversed.$returns.text}]
    - {name: b, type: print-message-in-status, inputs: [{from: out, parameterKey: message}]}
`)
	wr := e.waitPhase("rev", v1alpha1.RunSucceeded)
	if msg := wr.Status.Steps[1].Message; msg != "wolfpets" {
		t.Errorf("message %q, want the provider's answer", msg)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("provider called %d times, want 1", n)
	}
	if !strings.HasPrefix(provider.URL, "http://127.0.0.1") {
		t.Fatalf("provider at %s", provider.URL)
	}
}
