package server_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stepflow/stepflow/server"
	"github.com/stepflow/stepflow/server/servertest"
)

// onEvent is a template without parameters, so that a run's context is what its trigger gives.
const onEvent = `
apiVersion: core.oam.dev/v1alpha1
kind: Workflow
metadata: {name: on-event, namespace: default}
steps:
- {name: show, type: print-message-in-status, properties: {message: got it}}
`

// post sends body with headers to url and returns the status and the answer.
func post(t *testing.T, url, body string, headers ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// cloudTrigger creates a cloudevents trigger of on-event with filter and returns its URL with
// its token.
func cloudTrigger(t *testing.T, srv *servertest.Server, admin caller, filter string) string {
	t.Helper()
	tr := admin.postJSON("/api/v1/templates/default/on-event/triggers", map[string]any{"type": "cloudevents", "filter": filter}).
		want(t, http.StatusCreated).json(t)
	_, rest, _ := strings.Cut(at(tr, "url").(string), "/api/")
	return srv.URL + "/api/" + rest + "?token=" + at(tr, "secret").(string)
}

func TestCloudEventsTrigger(t *testing.T) {
	srv, op, admin := start(t, servertest.Options{})
	admin.postYAML("/api/v1/templates", onEvent).want(t, http.StatusCreated)
	url := cloudTrigger(t, srv, admin, `context.event.type == "com.example.push" && context.event.data.branch == "main"`)
	runs := func() float64 { return at(op.get("/api/v1/runs").json(t), "total").(float64) }
	runOf := func(answer string) map[string]any {
		t.Helper()
		var name string
		if _, after, ok := strings.Cut(answer, `"name":"`); ok {
			name, _, _ = strings.Cut(after, `"`)
		}
		return op.get("/api/v1/runs/default/"+name).want(t, http.StatusOK).json(t)
	}

	// Structured mode: the whole event is the body.
	structured := `{"specversion":"1.0","id":"e-1","source":"git.example/repo","type":"com.example.push",
		"subject":"refs/heads/main","datacontenttype":"application/json","data":{"branch":"main","sha":"abc"}}`
	status, answer := post(t, url, structured, "Content-Type", "application/cloudevents+json")
	if status != http.StatusAccepted {
		t.Fatalf("structured event: %d %s", status, answer)
	}
	run := runOf(answer)
	for path, want := range map[string]any{"spec.context.event.id": "e-1", "spec.context.event.source": "git.example/repo",
		"spec.context.event.subject": "refs/heads/main", "spec.context.event.data.sha": "abc", "spec.context.event.specversion": "1.0"} {
		if got := at(run, path); got != want {
			t.Errorf("run's %s = %v, want %v", path, got, want)
		}
	}

	// Redelivered (same source and id): answered as the first time, no second run.
	if s, again := post(t, url, structured, "Content-Type", "application/cloudevents+json"); s != status || again != answer {
		t.Errorf("redelivery: %d %s, want %d %s", s, again, status, answer)
	}
	// The same id from another source is another event.
	other := strings.Replace(structured, "git.example/repo", "git.example/fork", 1)
	if s, b := post(t, url, other, "Content-Type", "application/cloudevents+json"); s != http.StatusAccepted {
		t.Errorf("same id, other source: %d %s", s, b)
	}
	if n := runs(); n != 2 {
		t.Errorf("%v runs, want 2", n)
	}

	// Binary mode: attributes in ce-* headers, the data is the body.
	binary := func(id, typ, body string) (int, string) {
		return post(t, url, body, "Content-Type", "application/json", "ce-specversion", "1.0", "ce-id", id,
			"ce-source", "git.example/repo", "ce-type", typ, "ce-traceparent", "00-abc")
	}
	status, answer = binary("e-2", "com.example.push", `{"branch":"main","sha":"def"}`)
	if status != http.StatusAccepted {
		t.Fatalf("binary event: %d %s", status, answer)
	}
	run = runOf(answer)
	if at(run, "spec.context.event.data.sha") != "def" || at(run, "spec.context.event.type") != "com.example.push" ||
		at(run, "spec.context.event.traceparent") != "00-abc" {
		t.Errorf("binary event's context: %v", at(run, "spec.context.event"))
	}

	// The filter: another branch, another type, no data at all start nothing, and say why.
	for what, send := range map[string]func() (int, string){
		"another branch": func() (int, string) { return binary("e-3", "com.example.push", `{"branch":"dev"}`) },
		"another type":   func() (int, string) { return binary("e-4", "com.example.tag", `{"branch":"main"}`) },
		"no data":        func() (int, string) { return binary("e-5", "com.example.push", "") },
	} {
		if s, b := send(); s != http.StatusOK || !strings.Contains(b, `"matched":false`) {
			t.Errorf("%s: %d %s, want 200 matched false", what, s, b)
		}
	}
	if n := runs(); n != 3 {
		t.Errorf("%v runs after the filtered events, want 3", n)
	}

	// Bad events are 400s that say what is wrong; a bad token is a 401.
	for what, c := range map[string]struct {
		body    string
		headers []string
		want    string
	}{
		"plain JSON":       {`{"branch":"main"}`, []string{"Content-Type", "application/json"}, "not a CloudEvent"},
		"no id":            {`{"specversion":"1.0","source":"s","type":"t"}`, []string{"Content-Type", "application/cloudevents+json"}, "id"},
		"no source":        {`{"specversion":"1.0","id":"x","type":"t"}`, []string{"Content-Type", "application/cloudevents+json"}, "source"},
		"no type (binary)": {`{}`, []string{"ce-specversion", "1.0", "ce-id", "x", "ce-source", "s"}, "type"},
		"bad specversion":  {`{"specversion":"9.9","id":"x","source":"s","type":"t"}`, []string{"Content-Type", "application/cloudevents+json"}, "specversion"},
		"not JSON":         {`{"specversion":`, []string{"Content-Type", "application/cloudevents+json"}, "not a valid CloudEvent"},
	} {
		if s, b := post(t, url, c.body, c.headers...); s != http.StatusBadRequest || !strings.Contains(b, c.want) {
			t.Errorf("%s: %d %s, want 400 naming %q", what, s, b, c.want)
		}
	}
	bad := strings.Replace(url, "token=", "token=x", 1)
	if s, _ := post(t, bad, structured, "Content-Type", "application/cloudevents+json"); s != http.StatusUnauthorized {
		t.Errorf("bad token: %d", s)
	}

	// A filter that is not CUE is refused when the trigger is made; a filter on a webhook too.
	admin.postJSON("/api/v1/templates/default/on-event/triggers", map[string]any{"type": "cloudevents", "filter": "context.event.type =="}).
		want(t, http.StatusBadRequest)
	admin.postJSON("/api/v1/templates/default/on-event/triggers", map[string]any{"type": "webhook", "filter": "true"}).
		want(t, http.StatusBadRequest)
}

// TestRunsChainThroughCloudEvents: server A's runs emit CloudEvents to server B's cloudevents
// trigger (A's --events-sink is B's trigger URL), whose filter takes A's succeeded runs of one
// template: A's run of it starts a run in B, as Knative chains services.
func TestRunsChainThroughCloudEvents(t *testing.T) {
	srvB, opB, adminB := start(t, servertest.Options{})
	adminB.postYAML("/api/v1/templates", onEvent).want(t, http.StatusCreated)
	url := cloudTrigger(t, srvB, adminB, `context.event.type == "dev.stepflow.run.succeeded" && context.event.data.template == "deploy"`)

	for _, mode := range []string{"", "#structured"} {
		_, opA, adminA := start(t, servertest.Options{Configure: func(o *server.Options) {
			o.Assembly.EventSinks = []string{url + mode}
		}})
		adminA.postYAML("/api/v1/templates", deployTemplate).want(t, http.StatusCreated)
		ran := opA.postJSON("/api/v1/runs?wait=10s", map[string]any{"template": "deploy", "context": map[string]any{"image": "app:1"}}).json(t)
		name := at(ran, "metadata.name").(string)

		// B starts one run, from A's run's succeeded event (started and step events are filtered out).
		var chained []any
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			items, _ := at(opB.get("/api/v1/runs").json(t), "items").([]any)
			chained = chained[:0]
			for _, it := range items {
				it := opB.get("/api/v1/runs/default/"+at(it, "name").(string)).want(t, http.StatusOK).json(t)
				if at(it, "spec.context.event.subject") == "default/"+name {
					chained = append(chained, it)
				}
			}
			if len(chained) > 0 {
				break
			}
		}
		if len(chained) != 1 {
			t.Fatalf("mode %q: %d runs in B from A's run %s, want 1", mode, len(chained), name)
		}
		if at(chained[0], "spec.context.event.data.phase") != "succeeded" || at(chained[0], "spec.workflowRef") != "on-event" {
			t.Errorf("mode %q: chained run %v", mode, chained[0])
		}
	}
}
