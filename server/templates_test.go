package server_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/server/servertest"
)

const deployTemplate = `
apiVersion: core.oam.dev/v1alpha1
kind: Workflow
metadata: {name: deploy, namespace: default}
parameters:
- {name: image, type: string, required: true, description: the image}
- {name: replicas, type: integer, default: 2}
- {name: env, type: string, enum: [staging, prod], default: staging}
steps:
- name: show
  type: print-message-in-status
  inputs: []
  properties: {message: deploying}
`

func TestTemplatesWithParameters(t *testing.T) {
	_, op, admin := start(t, servertest.Options{})
	// Writing templates is the admin's.
	op.postYAML("/api/v1/templates", deployTemplate).want(t, http.StatusForbidden)
	created := admin.postYAML("/api/v1/templates", deployTemplate).want(t, http.StatusCreated).json(t)
	if at(created, "metadata.generation") != 1.0 {
		t.Errorf("generation %v, want 1", at(created, "metadata.generation"))
	}
	admin.postYAML("/api/v1/templates", deployTemplate).want(t, http.StatusConflict)

	bad := op.postJSON("/api/v1/runs", map[string]any{"template": "deploy", "context": map[string]any{"replicas": 1.5, "env": "dev", "imgae": "x"}}).
		want(t, http.StatusBadRequest).problems(t)
	for _, f := range []string{"context.image", "context.replicas", "context.env", "context.imgae"} {
		if bad[f] == "" {
			t.Errorf("no problem at %s: %v", f, bad)
		}
	}
	op.postJSON("/api/v1/runs", map[string]any{"template": "nope"}).want(t, http.StatusNotFound)

	r := op.postJSON("/api/v1/runs?wait=30s", map[string]any{"template": "deploy", "context": map[string]any{"image": "nginx:1.27"}}).
		want(t, http.StatusOK).json(t)
	if at(r, "status.status") != "succeeded" || at(r, "stepflow.template") != "deploy" || at(r, "stepflow.templateVersion") != 1.0 {
		t.Errorf("run of the template: %v %v", at(r, "status"), at(r, "stepflow"))
	}
	if at(r, "spec.context.replicas") != 2.0 || at(r, "spec.context.env") != "staging" || at(r, "spec.context.image") != "nginx:1.27" {
		t.Errorf("context: %v", at(r, "spec.context"))
	}
	if name, _ := at(r, "metadata.name").(string); !strings.HasPrefix(name, "deploy-") {
		t.Errorf("generated name %q", name)
	}

	// An update bumps the version; the same document again does not.
	changed := strings.Replace(deployTemplate, "deploying", "deploying now", 1)
	admin.do("PUT", "/api/v1/templates/default/deploy", "application/yaml", []byte(changed)).want(t, http.StatusOK)
	got := admin.do("PUT", "/api/v1/templates/default/deploy", "application/yaml", []byte(changed)).want(t, http.StatusOK).json(t)
	if at(got, "metadata.generation") != 2.0 {
		t.Errorf("generation after an update and a re-apply: %v", at(got, "metadata.generation"))
	}
	r = op.postJSON("/api/v1/runs?wait=30s", map[string]any{"template": "deploy", "name": "second", "context": map[string]any{"image": "x"}}).want(t, http.StatusOK).json(t)
	if at(r, "stepflow.templateVersion") != 2.0 || at(r, "status.steps.0.message") != "deploying now" {
		t.Errorf("second run: %v", at(r, "stepflow"))
	}
	list := op.get("/api/v1/runs?template=deploy").json(t)
	if at(list, "total") != 2.0 || at(list, "items.0.name") != "second" {
		t.Errorf("runs of the template, newest first: %v", list)
	}
	tl := op.get("/api/v1/templates").want(t, http.StatusOK).json(t)
	if at(tl, "items.0.metadata.name") != "deploy" || at(tl, "items.0.parameters.0.name") != "image" {
		t.Errorf("templates: %v", tl)
	}

	// validate stores nothing and answers the problems.
	op.postYAML("/api/v1/validate", strings.Replace(deployTemplate, "print-message-in-status", "missing-type", 1)).want(t, http.StatusBadRequest)
	op.postYAML("/api/v1/validate", deployTemplate).want(t, http.StatusOK)

	admin.do("DELETE", "/api/v1/templates/default/deploy", "", nil).want(t, http.StatusNoContent)
	op.get("/api/v1/templates/default/deploy").want(t, http.StatusNotFound)
}

func TestWebhookTrigger(t *testing.T) {
	_, op, admin := start(t, servertest.Options{})
	admin.postYAML("/api/v1/templates", deployTemplate).want(t, http.StatusCreated)
	tr := admin.postJSON("/api/v1/templates/default/deploy/triggers", map[string]any{"type": "webhook", "context": map[string]any{"env": "prod"}}).
		want(t, http.StatusCreated).json(t)
	url, secret := at(tr, "url").(string), at(tr, "secret").(string)
	if url == "" || secret == "" {
		t.Fatalf("trigger: %v", tr)
	}
	_, rest, _ := strings.Cut(url, "/api/")
	path := "/api/" + rest
	anon := caller{t: t, base: op.base}
	body := `{"image": "app:7"}`

	anon.do("POST", path+"?token=wrong", "application/json", []byte(body)).want(t, http.StatusUnauthorized)
	anon.do("POST", path, "application/json", []byte(body)).want(t, http.StatusUnauthorized)
	if n := at(op.get("/api/v1/runs").json(t), "total"); n != 0.0 {
		t.Fatalf("a refused webhook started %v runs", n)
	}
	started := anon.do("POST", path+"?token="+secret, "application/json", []byte(body)).want(t, http.StatusAccepted).json(t)
	run := waitPhase(t, op, "default/"+at(started, "name").(string), "succeeded")
	if at(run, "spec.context.image") != "app:7" || at(run, "spec.context.env") != "prod" {
		t.Errorf("context %v", at(run, "spec.context"))
	}

	// Signed with the secret, as GitHub signs.
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(body))
	signed := func(sig string) int {
		r, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, op.base+path, strings.NewReader(body))
		r.Header.Set("X-Hub-Signature-256", sig)
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if s := signed("sha256=" + hex.EncodeToString(mac.Sum(nil))); s != http.StatusAccepted {
		t.Errorf("signed: %d", s)
	}
	if s := signed("sha256=" + strings.Repeat("0", 64)); s != http.StatusUnauthorized {
		t.Errorf("bad signature: %d", s)
	}
	// Parameters that do not fit answer 400 and start nothing.
	anon.do("POST", path+"?token="+secret, "application/json", []byte(`{"image": 3}`)).want(t, http.StatusBadRequest)
	if n := at(op.get("/api/v1/runs").json(t), "total"); n != 2.0 {
		t.Errorf("%v runs, want 2", n)
	}
	items := admin.get("/api/v1/templates/default/deploy/triggers").json(t)
	if strings.Contains(string(admin.get("/api/v1/templates/default/deploy/triggers").body), secret) || at(items, "items.0.type") != "webhook" {
		t.Errorf("trigger list shows the secret or misses it: %v", items)
	}
}

func TestCronTrigger(t *testing.T) {
	clock := engine.NewFakeClock(time.Date(2026, 3, 1, 10, 0, 30, 0, time.UTC))
	_, op, admin := start(t, servertest.Options{Clock: clock})
	gate := strings.Replace(strings.Replace(approvalRun, "WorkflowRun", "Workflow", 1), "metadata: {name: gated}\nspec:\n  workflowSpec:\n", "metadata: {name: gate}\n", 1)
	gate = strings.ReplaceAll(gate, "\n    ", "\n")
	admin.postYAML("/api/v1/templates", gate).want(t, http.StatusCreated)
	admin.postJSON("/api/v1/templates/default/gate/triggers", map[string]any{"type": "cron", "schedule": "* * * * *", "concurrencyPolicy": "Sometimes"}).want(t, http.StatusBadRequest)
	admin.postJSON("/api/v1/templates/default/gate/triggers", map[string]any{"type": "cron", "schedule": "every minute"}).want(t, http.StatusBadRequest)
	admin.postJSON("/api/v1/templates/default/gate/triggers", map[string]any{"type": "cron", "schedule": "* * * * *", "concurrencyPolicy": "Forbid"}).want(t, http.StatusCreated)

	runs := func() []any {
		items, _ := op.get("/api/v1/runs").json(t)["items"].([]any)
		return items
	}
	waitRuns := func(n int) []any {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			if r := runs(); len(r) == n {
				return r
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d runs, want %d", len(runs()), n)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	clock.Advance(time.Minute) // 10:01:30: the 10:01 firing is due
	first := waitRuns(1)
	name := at(first, "0.name").(string)
	waitPhase(t, op, "default/"+name, "suspending")
	clock.Advance(time.Minute) // 10:02:30: Forbid, and the first run waits for approval
	time.Sleep(300 * time.Millisecond)
	if n := len(runs()); n != 1 {
		t.Fatalf("Forbid started another run while the first waits: %d runs", n)
	}
	op.postJSON("/api/v1/runs/default/"+name+"/resume", nil).want(t, http.StatusOK)
	waitPhase(t, op, "default/"+name, "succeeded")
	clock.Advance(time.Minute) // 10:03:30
	waitRuns(2)
}
