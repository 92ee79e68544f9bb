package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/server/servertest"
)

// The planted secrets: a template parameter declared sensitive, and a value a definition
// reads from a local "vault" and marks @sensitive(). Both contain "PLANTED", which is what
// the surfaces are searched for, so that a part of either showing is found too.
const (
	plantedToken = "tkn-PLANTED-0a1b2c3d"
	plantedVault = "vlt-PLANTED-4e5f6a7b"
	planted      = "PLANTED"
)

// secretDefinitions: read-vault reads the vault's secret and marks it; leak shows both
// secrets in its message and its log, and outputs the token.
const secretDefinitions = `
apiVersion: core.oam.dev/v1beta1
kind: WorkflowStepDefinition
metadata: {name: read-vault, namespace: default}
spec:
  schematic:
    cue:
      template: |
        import ("vela/http", "encoding/json")
        parameter: url: string
        get: http.#HTTPGet & {$params: url: parameter.url}
        secret: json.Unmarshal(get.$returns.body).secret @sensitive()
---
apiVersion: core.oam.dev/v1beta1
kind: WorkflowStepDefinition
metadata: {name: leak, namespace: default}
spec:
  schematic:
    cue:
      template: |
        import ("vela/builtin", "vela/util", "vela/op")
        parameter: secret: string
        data: util.#Log & {$params: data: {token: context.token, vault: parameter.secret}}
        text: op.#Log & {data: "the token is \(context.token)"}
        msg: builtin.#Message & {$params: message: "token \(context.token), vault \(parameter.secret)"}
`

// secretTemplate is the Workflow of the planted runs: %[1]s is the vault's URL, %[2]s the
// service's. The steps read the vault, print, log and loop over the secrets, use them in a
// request the service checks, and fail quoting them.
const secretTemplate = `
apiVersion: core.oam.dev/v1alpha1
kind: Workflow
metadata: {name: deploy-secret, namespace: default}
parameters:
- {name: token, type: string, required: true, sensitive: true}
- {name: hold, type: boolean, default: false}
steps:
- {name: approve, type: suspend, if: context.hold}
- name: read
  type: read-vault
  if: always
  properties: {url: "%[1]s/secret"}
  outputs: [{name: vaultSecret, valueFrom: secret}]
- name: show
  type: print-message-in-status
  inputs: [{from: vaultSecret, parameterKey: message}]
- name: leak
  type: leak
  inputs: [{from: vaultSecret, parameterKey: secret}]
  outputs: [{name: token, valueFrom: context.token}]
- name: loop
  type: leak
  forEach: {items: [one, two]}
  inputs: [{from: vaultSecret, parameterKey: secret}]
  outputs: [{name: looped, valueFrom: parameter.secret}]
- name: use
  type: request
  properties: {url: "%[2]s/use", method: POST}
  inputs: [{from: vaultSecret, parameterKey: header.X-Token}, {from: token, parameterKey: body.token}]
  outputs: [{name: echoed, valueFrom: response.received}]
- name: reject
  type: request
  properties: {url: "%[2]s/reject", method: POST}
  inputs: [{from: token, parameterKey: body.token}]
`

// secretServices starts the vault and the service the planted runs call. The service records
// what it received: the real values, which the runs must still send.
func secretServices(t *testing.T) (vault, service *httptest.Server, received func() []string) {
	vault = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, `{"secret": %q}`, plantedVault)
	}))
	t.Cleanup(vault.Close)
	var mu sync.Mutex
	var got []string
	service = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct{ Token string }
		_ = json.NewDecoder(r.Body).Decode(&body)
		mu.Lock()
		got = append(got, r.URL.Path+" "+r.Header.Get("X-Token")+" "+body.Token)
		mu.Unlock()
		if r.URL.Path == "/reject" {
			http.Error(w, fmt.Sprintf("refused %s", body.Token), http.StatusForbidden)
			return
		}
		fmt.Fprintf(w, `{"received": %q}`, body.Token)
	}))
	t.Cleanup(service.Close)
	return vault, service, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), got...)
	}
}

// TestPlantedSecretsAreRedactedEverywhere runs a template whose steps read two secrets, show
// them in messages, logs, loops, outputs and a failure, and use them in requests; then it
// searches every surface of the server for them: the answers to creating and waiting, getting
// (in every form), listing, the log, the event stream, operations, triggers, and what the
// store holds. The service must have received the real values.
func TestPlantedSecretsAreRedactedEverywhere(t *testing.T) {
	srv, op, admin := start(t, servertest.Options{})
	vault, service, received := secretServices(t)
	admin.postYAML("/api/v1/definitions", strings.Split(secretDefinitions, "---")[0]).want(t, http.StatusCreated)
	admin.postYAML("/api/v1/definitions", strings.Split(secretDefinitions, "---")[1]).want(t, http.StatusCreated)
	admin.postYAML("/api/v1/templates", fmt.Sprintf(secretTemplate, vault.URL, service.URL)).want(t, http.StatusCreated)

	var surfaces []surface
	shown := func(name string, body []byte) { surfaces = append(surfaces, surface{name, string(body)}) }

	// A run held by its first step, followed by its event stream from there on.
	created := op.postJSON("/api/v1/runs", map[string]any{
		"template": "deploy-secret", "name": "planted", "context": map[string]any{"token": plantedToken, "hold": true},
	}).want(t, http.StatusCreated)
	shown("POST /api/v1/runs (201)", created.body)
	waitPhase(t, op, "default/planted", "suspending")
	stream := followEvents(t, op, "/api/v1/runs/default/planted/events")
	shown("POST resume", op.postJSON("/api/v1/runs/default/planted/resume", nil).want(t, http.StatusOK).body)
	shown("GET events", stream.until(t, `"settled":true`))
	final := waitPhase(t, op, "default/planted", "failed")

	// The same template answered once settled.
	shown("POST /api/v1/runs?wait", op.postJSON("/api/v1/runs?wait=60s", map[string]any{
		"template": "deploy-secret", "name": "planted-wait", "context": map[string]any{"token": plantedToken},
	}).want(t, http.StatusOK).body)

	// Every other read of the runs.
	for _, path := range []string{
		"/api/v1/runs/default/planted",
		"/api/v1/runs/default/planted-wait",
		"/api/v1/runs/default/planted?iterations=loop",
		"/api/v1/runs/default/planted/logs",
		"/api/v1/runs/default/planted/logs?step=leak",
		"/api/v1/runs/default/planted/logs?step=loop[1]",
		"/api/v1/runs/default/planted-wait/logs",
		"/api/v1/runs",
		"/api/v1/runs?namespace=default&template=deploy-secret&phase=failed",
	} {
		shown("GET "+path, op.get(path).want(t, http.StatusOK).body)
	}
	shown("GET events (snapshot of a finished run)", followEvents(t, op, "/api/v1/runs/default/planted/events").until(t, "event: log"))

	// A trigger whose context gives the sensitive parameter.
	admin.postJSON("/api/v1/templates/default/deploy-secret/triggers", map[string]any{
		"type": "webhook", "context": map[string]any{"token": plantedToken},
	}).want(t, http.StatusCreated)
	shown("GET triggers", op.get("/api/v1/templates/default/deploy-secret/triggers").want(t, http.StatusOK).body)

	// What the store holds for people to read: the status and the log.
	for _, name := range []string{"planted", "planted-wait"} {
		key := engine.Key{Namespace: "default", Name: name}
		run, err := srv.Store.Load(context.Background(), key)
		if err != nil {
			t.Fatal(err)
		}
		st, _ := json.Marshal(run.Object.Status)
		shown("stored status of "+name, st)
		logs, err := srv.Store.Logs(context.Background(), key, "")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(logs)
		shown("stored log of "+name, b)
		// The run itself keeps the values for its steps.
		if string(run.Vars["vaultSecret"]) != `"`+plantedVault+`"` || string(run.Vars["token"]) != `"`+plantedToken+`"` {
			t.Errorf("%s: the variables lost the real values: %s", name, run.Vars)
		}
	}

	for _, s := range surfaces {
		if strings.Contains(s.text, planted) {
			t.Errorf("%s shows a planted secret:\n%s", s.name, excerpt(s.text, planted))
		}
	}

	// The secrets were there to be hidden, and the steps used the real values.
	if got := at(final, "status.steps.2.message"); got != "<redacted>" {
		t.Errorf("show's message = %v", got)
	}
	if got := at(final, "status.steps.6.phase"); got != "failed" || !strings.Contains(fmt.Sprint(at(final, "status.steps.6.message")), "refused <redacted>") {
		t.Errorf("reject: %v %v", got, at(final, "status.steps.6.message"))
	}
	if got := at(final, "stepflow.outputs.echoed"); got != "<redacted>" {
		t.Errorf("outputs.echoed = %v", got)
	}
	calls := received()
	want := "/use " + plantedVault + " " + plantedToken
	if len(calls) != 4 || calls[0] != want || calls[1] != "/reject  "+plantedToken {
		t.Errorf("the service received %q, want the real values (%q first)", calls, want)
	}
}

// surface is something the server showed: where, and its text.
type surface struct{ name, text string }

// excerpt shows the text around the first occurrence of s.
func excerpt(text, s string) string {
	i := strings.Index(text, s)
	return text[max(0, i-200):min(len(text), i+200)]
}

// eventStream is an event stream being read: a goroutine passes its lines on, and the test
// keeps what it took of them.
type eventStream struct {
	text  strings.Builder
	lines chan string
}

// followEvents opens an event stream and reads it until the test ends.
func followEvents(t *testing.T, c caller, path string) *eventStream {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("%s: %d %s", path, resp.StatusCode, b)
	}
	s := &eventStream{lines: make(chan string, 1024)}
	go func() {
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 4<<20)
		for sc.Scan() {
			s.lines <- sc.Text()
		}
		close(s.lines)
	}()
	return s
}

// until reads the stream until a line contains marker, and returns all it read so far.
func (s *eventStream) until(t *testing.T, marker string) []byte {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		select {
		case line, open := <-s.lines:
			if !open {
				t.Fatalf("the stream ended before %q", marker)
			}
			s.text.WriteString(line + "\n")
			if strings.Contains(line, marker) {
				return []byte(s.text.String())
			}
		case <-deadline:
			t.Fatalf("no %q in the stream", marker)
		}
	}
}
