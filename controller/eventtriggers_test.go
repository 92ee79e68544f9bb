package controller_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/controller"
)

// createEventTrigger applies a WorkflowEventTrigger written in YAML to the test's namespace
// and shard.
func (e *env) createEventTrigger(doc string) {
	e.t.Helper()
	var et v1alpha1.WorkflowEventTrigger
	if err := yaml.UnmarshalStrict([]byte(doc), &et); err != nil {
		e.t.Fatal(err)
	}
	et.Namespace = e.ns
	et.Labels = map[string]string{controller.ShardLabel: e.shard}
	if err := e.c.Create(context.Background(), &et); err != nil {
		e.t.Fatal(err)
	}
}

// triggerRuns lists the runs labelled as the trigger's.
func (e *env) triggerRuns(name string) []v1alpha1.WorkflowRun {
	e.t.Helper()
	var list v1alpha1.WorkflowRunList
	if err := e.c.List(context.Background(), &list, client.InNamespace(e.ns), client.MatchingLabels{v1alpha1.LabelEventTrigger: name}); err != nil {
		e.t.Fatal(err)
	}
	return list.Items
}

// post sends a request to the events listener and returns its status and body.
func post(t *testing.T, url, token string, header map[string]string, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// A CloudEvent POSTed to a WorkflowEventTrigger, in structured or binary mode, with the token
// of its Secret, creates a run owned by the trigger whose context.event holds the event, and
// the run succeeds; the same event again creates nothing and is answered alike; an event the
// filter rejects creates nothing; a wrong token, a trigger without secretRef, an unknown
// trigger and a body that is no CloudEvent are refused.
func TestEventTriggerStartsRuns(t *testing.T) {
	e := newEnv(t)
	e.start(controllerOptions{})
	ctx := context.Background()
	if err := e.c.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: "hook"},
		Data:       map[string][]byte{"token": []byte("s3cret")},
	}); err != nil {
		t.Fatal(err)
	}
	e.createEventTrigger(`
metadata: {name: pushes}
spec:
  filter: context.event.type == "com.example.push"
  secretRef: {name: hook, key: token}
  runTemplate:
    metadata: {labels: {team: data}}
    spec:
      context: {env: prod}
      workflowSpec:
        steps:
        - {name: msg, type: print-message-in-status, properties: {message: pushed}}
`)
	e.createEventTrigger(`
metadata: {name: open}
spec:
  runTemplate:
    spec:
      workflowSpec:
        steps:
        - {name: msg, type: print-message-in-status, properties: {message: hi}}
`)
	srv := httptest.NewServer(e.ctrl.EventsHandler())
	defer srv.Close()
	url := srv.URL + "/events/" + e.ns + "/pushes"

	structured := map[string]string{"Content-Type": "application/cloudevents+json"}
	structuredBody := `{"specversion":"1.0","id":"1","source":"/repo","type":"com.example.push","data":{"ref":"main"}}`
	binary := map[string]string{"Content-Type": "application/json", "ce-specversion": "1.0", "ce-id": "2", "ce-source": "/repo", "ce-type": "com.example.push"}
	binaryBody := `{"ref":"dev"}`

	var names []string
	for _, c := range []struct {
		mode   string
		header map[string]string
		body   string
		ref    string
	}{{"structured", structured, structuredBody, "main"}, {"binary", binary, binaryBody, "dev"}} {
		status, body := post(t, url, "s3cret", c.header, c.body)
		if status != http.StatusAccepted {
			t.Fatalf("%s event: %d %s, want 202", c.mode, status, body)
		}
		var ref struct{ Namespace, Name string }
		if err := json.Unmarshal([]byte(body), &ref); err != nil || ref.Namespace != e.ns || ref.Name == "" {
			t.Fatalf("%s event: answer %s, want the run's namespace and name", c.mode, body)
		}
		wr := e.waitPhase(ref.Name, v1alpha1.RunSucceeded)
		if len(wr.OwnerReferences) != 1 || wr.OwnerReferences[0].Name != "pushes" || wr.Labels["team"] != "data" {
			t.Fatalf("%s event: run %s owners %v labels %v, want owned by the trigger with the template's labels", c.mode, wr.Name, wr.OwnerReferences, wr.Labels)
		}
		var rc struct {
			Env   string `json:"env"`
			Event struct {
				ID   string         `json:"id"`
				Type string         `json:"type"`
				Data map[string]any `json:"data"`
			} `json:"event"`
		}
		if err := json.Unmarshal(wr.Spec.Context.Raw, &rc); err != nil {
			t.Fatal(err)
		}
		if rc.Env != "prod" || rc.Event.Type != "com.example.push" || rc.Event.Data["ref"] != c.ref {
			t.Fatalf("%s event: run context %s, want env prod and the event with data.ref %s", c.mode, wr.Spec.Context.Raw, c.ref)
		}
		names = append(names, ref.Name)

		again, againBody := post(t, url, "s3cret", c.header, c.body)
		if again != status || againBody != body {
			t.Fatalf("%s event again: %d %s, want as the first: %d %s", c.mode, again, againBody, status, body)
		}
	}
	if runs := e.triggerRuns("pushes"); len(runs) != 2 || names[0] == names[1] {
		t.Fatalf("%d runs of the trigger after two events each sent twice (named %v), want 2 named apart", len(runs), names)
	}

	status, body := post(t, url, "s3cret", structured, `{"specversion":"1.0","id":"3","source":"/repo","type":"com.example.tag"}`)
	if status != http.StatusOK || !strings.Contains(body, `"matched":false`) {
		t.Fatalf("filtered-out event: %d %s, want 200 matched false", status, body)
	}
	if runs := e.triggerRuns("pushes"); len(runs) != 2 {
		t.Fatalf("%d runs of the trigger after a filtered-out event, want still 2", len(runs))
	}

	for _, c := range []struct {
		what, url, token, body string
		status                 int
	}{
		{"wrong token", url, "guess", structuredBody, http.StatusUnauthorized},
		{"no token", url, "", structuredBody, http.StatusUnauthorized},
		{"no secretRef", srv.URL + "/events/" + e.ns + "/open", "s3cret", structuredBody, http.StatusUnauthorized},
		{"unknown trigger", srv.URL + "/events/" + e.ns + "/nope", "s3cret", structuredBody, http.StatusNotFound},
		{"not a CloudEvent", url, "s3cret", `{"id":"4"}`, http.StatusBadRequest},
	} {
		status, body := post(t, c.url, c.token, structured, strings.Replace(c.body, `"id":"1"`, `"id":"9"`, 1))
		if status != c.status {
			t.Errorf("%s: %d %s, want %d", c.what, status, body, c.status)
		}
	}
	if runs := e.triggerRuns("pushes"); len(runs) != 2 {
		t.Fatalf("%d runs of the trigger after refused requests, want still 2", len(runs))
	}
	if runs := e.triggerRuns("open"); len(runs) != 0 {
		t.Fatalf("%d runs of the trigger without secretRef, want none", len(runs))
	}
}
