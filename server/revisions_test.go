package server_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/stepflow/stepflow/server/servertest"
)

func TestTemplateRevisions(t *testing.T) { testTemplateRevisions(t, servertest.Options{}) }

func TestTemplateRevisionsOnPostgres(t *testing.T) { testTemplateRevisions(t, onPostgres(t)) }

// A template's changes are numbered revisions: listed, shown, compared, run and rolled back
// to, and each run says the revision it started from.
func testTemplateRevisions(t *testing.T, opts servertest.Options) {
	_, op, admin := start(t, opts)
	admin.postYAML("/api/v1/templates", deployTemplate).want(t, http.StatusCreated)
	changed := strings.Replace(deployTemplate, "deploying", "deploying now", 1)
	admin.do("PUT", "/api/v1/templates/default/deploy", "application/yaml", []byte(changed)).want(t, http.StatusOK)
	admin.do("PUT", "/api/v1/templates/default/deploy", "application/yaml", []byte(changed)).want(t, http.StatusOK) // no change

	revs := op.get("/api/v1/templates/default/deploy/revisions").want(t, http.StatusOK).json(t)
	if at(revs, "items.0.revision") != 2.0 || at(revs, "items.0.current") != true || at(revs, "items.1.revision") != 1.0 ||
		at(revs, "items.1.current") != false || at(revs, "items.2") != nil {
		t.Errorf("revisions: %v", revs)
	}
	if h0, h1 := at(revs, "items.0.hash"), at(revs, "items.1.hash"); h0 == h1 || h0 == "" || at(revs, "items.0.created") == nil {
		t.Errorf("revisions' hashes %v and %v, created %v: want two hashes and a time", h0, h1, at(revs, "items.0.created"))
	}
	one := op.get("/api/v1/templates/default/deploy/revisions/1").want(t, http.StatusOK).json(t)
	if at(one, "workflow.steps.0.properties.message") != "deploying" || at(one, "workflow.metadata.generation") != 1.0 {
		t.Errorf("revision 1: %v", one)
	}
	op.get("/api/v1/templates/default/deploy/revisions/9").want(t, http.StatusNotFound)
	op.get("/api/v1/templates/default/deploy/revisions/x").want(t, http.StatusBadRequest)
	op.get("/api/v1/templates/default/nope/revisions").want(t, http.StatusNotFound)

	d := op.get("/api/v1/templates/default/deploy/diff?from=1").want(t, http.StatusOK).json(t)
	diff, _ := at(d, "diff").(string)
	if at(d, "to") != 2.0 || !strings.Contains(diff, "\n-    message: deploying\n") || !strings.Contains(diff, "\n+    message: deploying now\n") ||
		!strings.Contains(diff, "deploy@1") {
		t.Errorf("diff from 1 to the current: %v\n%s", d, diff)
	}
	if d := op.get("/api/v1/templates/default/deploy/diff?from=2&to=2").want(t, http.StatusOK).json(t); at(d, "diff") != "" {
		t.Errorf("diff of a revision with itself: %q", at(d, "diff"))
	}
	op.get("/api/v1/templates/default/deploy/diff").want(t, http.StatusBadRequest)

	// Runs of a revision, by the request's field and by the annotation; and of the current one.
	r := op.postJSON("/api/v1/runs?wait=30s", map[string]any{"template": "deploy", "name": "old", "revision": 1, "context": map[string]any{"image": "x"}}).
		want(t, http.StatusOK).json(t)
	if at(r, "status.steps.0.message") != "deploying" || at(r, "status.templateRevision") != 1.0 || at(r, "stepflow.templateVersion") != 1.0 {
		t.Errorf("run of revision 1: %v %v", at(r, "status"), at(r, "stepflow"))
	}
	r = op.postYAML("/api/v1/runs?wait=30s", `
apiVersion: core.oam.dev/v1alpha1
kind: WorkflowRun
metadata: {name: annotated, annotations: {stepflow.dev/template-revision: "1"}}
spec: {workflowRef: deploy, context: {image: x}}
`).want(t, http.StatusOK).json(t)
	if at(r, "status.steps.0.message") != "deploying" || at(r, "status.templateRevision") != 1.0 {
		t.Errorf("run annotated with revision 1: %v", at(r, "status"))
	}
	r = op.postJSON("/api/v1/runs?wait=30s", map[string]any{"template": "deploy", "name": "current", "context": map[string]any{"image": "x"}}).
		want(t, http.StatusOK).json(t)
	if at(r, "status.steps.0.message") != "deploying now" || at(r, "status.templateRevision") != 2.0 {
		t.Errorf("run of the current revision: %v", at(r, "status"))
	}
	op.postJSON("/api/v1/runs", map[string]any{"template": "deploy", "revision": 7, "context": map[string]any{"image": "x"}}).want(t, http.StatusNotFound)

	// A run of a revision is checked against that revision: revision 1 of "greet" needs no
	// parameter that its revision 2 requires.
	greet := `
apiVersion: core.oam.dev/v1alpha1
kind: Workflow
metadata: {name: greet, namespace: default}
steps:
- {name: show, type: print-message-in-status, properties: {message: hello}}
`
	admin.postYAML("/api/v1/templates", greet).want(t, http.StatusCreated)
	admin.do("PUT", "/api/v1/templates/default/greet", "application/yaml",
		[]byte(strings.Replace(greet, "steps:", "parameters: [{name: who, required: true}]\nsteps:", 1))).want(t, http.StatusOK)
	op.postJSON("/api/v1/runs", map[string]any{"template": "greet"}).want(t, http.StatusBadRequest)
	r = op.postJSON("/api/v1/runs?wait=30s", map[string]any{"template": "greet", "revision": 1}).want(t, http.StatusOK).json(t)
	if at(r, "status.status") != "succeeded" || at(r, "status.templateRevision") != 1.0 {
		t.Errorf("run of greet's revision 1: %v", at(r, "status"))
	}

	// Rollback is an admin's, and makes a new revision with the old content.
	op.postJSON("/api/v1/templates/default/deploy/rollback", map[string]any{"revision": 1}).want(t, http.StatusForbidden)
	admin.postJSON("/api/v1/templates/default/deploy/rollback", map[string]any{"revision": 9}).want(t, http.StatusNotFound)
	rolled := admin.postJSON("/api/v1/templates/default/deploy/rollback", map[string]any{"revision": 1}).want(t, http.StatusOK).json(t)
	if at(rolled, "metadata.generation") != 3.0 || at(rolled, "steps.0.properties.message") != "deploying" {
		t.Errorf("rolled back: %v", rolled)
	}
	cur := op.get("/api/v1/templates/default/deploy").want(t, http.StatusOK).json(t)
	if at(cur, "metadata.generation") != 3.0 || at(cur, "steps.0.properties.message") != "deploying" {
		t.Errorf("template after the rollback: %v", cur)
	}
	revs = op.get("/api/v1/templates/default/deploy/revisions").want(t, http.StatusOK).json(t)
	if at(revs, "items.0.revision") != 3.0 || at(revs, "items.0.hash") != at(revs, "items.2.hash") {
		t.Errorf("revisions after the rollback to 1: %v", revs)
	}
}

// Two servers on one PostgreSQL storing one template at once: every change is one revision,
// numbered without gaps or repeats, each with the content its request stored.
func TestTemplateRevisionsOfTwoReplicas(t *testing.T) {
	if pg == nil {
		t.Skip("-short: no PostgreSQL")
	}
	url := pg.NewDatabase(t)
	a, _ := replicaServer(t, url, "a", 2e9)
	b, _ := replicaServer(t, url, "b", 2e9)
	admins := []caller{{t: t, base: a.URL, token: a.Token(t, "admin")}, {t: t, base: b.URL, token: b.Token(t, "admin")}}
	admins[0].postYAML("/api/v1/templates", deployTemplate).want(t, http.StatusCreated)
	const n = 20
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			doc := strings.Replace(deployTemplate, "deploying", fmt.Sprintf("change %d", i), 1)
			admins[i%2].do("PUT", "/api/v1/templates/default/deploy", "application/yaml", []byte(doc)).want(t, http.StatusOK)
		})
	}
	wg.Wait()
	revs := admins[1].get("/api/v1/templates/default/deploy/revisions").want(t, http.StatusOK).json(t)
	items, _ := revs["items"].([]any)
	if len(items) != n+1 {
		t.Fatalf("%d revisions after %d changes of a new template, want %d: %v", len(items), n, n+1, revs)
	}
	seen := map[string]bool{}
	for i := range items {
		want := float64(n + 1 - i)
		if got := at(revs, fmt.Sprintf("items.%d.revision", i)); got != want {
			t.Errorf("item %d is revision %v, want %v", i, got, want)
		}
		r := admins[i%2].get(fmt.Sprintf("/api/v1/templates/default/deploy/revisions/%d", n+1-i)).want(t, http.StatusOK).json(t)
		msg, _ := at(r, "workflow.steps.0.properties.message").(string)
		if seen[msg] {
			t.Errorf("revision %d repeats the content %q", n+1-i, msg)
		}
		seen[msg] = true
	}
}
