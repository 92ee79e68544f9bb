package web_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// queuedRun is a run on concurrency key deploy-prod (limit 1) whose steps are given.
func queuedRun(name string, steps ...map[string]any) map[string]any {
	return map[string]any{
		"apiVersion": "core.oam.dev/v1alpha1", "kind": "WorkflowRun",
		"metadata": map[string]any{"name": name, "namespace": "default"},
		"spec": map[string]any{
			"concurrency":  map[string]any{"key": `"deploy-prod"`, "limit": 1},
			"workflowSpec": map[string]any{"steps": steps},
		},
	}
}

// Three runs on one concurrency key of limit 1: the first holds the key at an approval, the
// other two are listed, and shown on their pages, as queued with the key and their place in
// line (1 and 2), at 1400 px and at 390 px. When the first is approved and ends, the second
// and then the third run and succeed, and their pages and the list say so.
func (e *env) testQueuedRuns(t *testing.T) {
	approve := map[string]any{"name": "approve", "type": "suspend", "properties": map[string]any{"message": "waiting for a person"}}
	deploy := map[string]any{"name": "deploy", "type": "print-message-in-status", "properties": map[string]any{"message": "deployed"}}
	e.startRun(t, e.operator, queuedRun("holder", approve, deploy), "suspending")
	e.mustCall(t, http.StatusCreated, e.operator, http.MethodPost, "/runs", queuedRun("second", deploy), nil)
	e.mustCall(t, http.StatusCreated, e.operator, http.MethodPost, "/runs", queuedRun("third", deploy), nil)

	ctx := e.tab(t, e.operator)
	goTo(ctx, t, "#/runs")
	listRow := func(name string) string {
		return fmt.Sprintf(`document.querySelector('tr[data-run="default/%s"]')`, name)
	}
	listed := func(name, phase, message string) string {
		return fmt.Sprintf(`(r => r !== null && r.querySelector('[data-phase=%q]') !== null && r.querySelector('td.message').textContent.includes(%q))(%s)`,
			phase, message, listRow(name))
	}
	waitFor(ctx, t, "the second and third runs listed as queued with their places",
		listed("second", "queued", "queued on concurrency key deploy-prod: place 1")+" && "+
			listed("third", "queued", "queued on concurrency key deploy-prod: place 2"))
	e.screenshot(ctx, t, "queued-list")

	goTo(ctx, t, "#/runs/default/second")
	waitFor(ctx, t, "the second run's page, queued with its key and place",
		runPhase("queued")+` && document.getElementById('run-message').textContent.includes('queued on concurrency key deploy-prod: place 1')`)
	e.screenshot(ctx, t, "queued-run")

	// At 390 px the list and the queued run's page fit.
	narrow := e.tab(t, e.operator)
	do(narrow, t, "390 px wide", chromedp.EmulateViewport(390, 844))
	for _, p := range []struct{ hash, ready string }{
		{"#/runs", listed("third", "queued", "place 2")},
		{"#/runs/default/third", runPhase("queued") + ` && document.getElementById('run-message') !== null`},
	} {
		goTo(narrow, t, p.hash)
		waitFor(narrow, t, p.hash, p.ready)
		if w := eval[int](narrow, t, `document.documentElement.scrollWidth`); w > 390 {
			e.screenshot(narrow, t, "queued-narrow")
			t.Errorf("at 390 px %s is %d px wide", p.hash, w)
		}
	}

	// The holder is approved and ends: the second run takes the key and succeeds, then the
	// third; the second's page, open all along, follows.
	e.mustCall(t, http.StatusOK, e.operator, http.MethodPost, "/runs/default/holder/resume", map[string]any{"step": "approve"}, nil)
	waitFor(ctx, t, "the second run succeeded on its page", runPhase("succeeded"))
	if msg := eval[string](ctx, t, `(m => m === null ? '' : m.textContent)(document.getElementById('run-message'))`); strings.Contains(msg, "queued") {
		t.Errorf("the succeeded run's page still says %q", msg)
	}
	goTo(ctx, t, "#/runs")
	waitFor(ctx, t, "the three runs succeeded in the list",
		listed("holder", "succeeded", "")+" && "+listed("second", "succeeded", "")+" && "+listed("third", "succeeded", ""))
	var third run
	e.mustCall(t, http.StatusOK, e.viewer, http.MethodGet, "/runs/default/third", nil, &third)
	if third.Status.Phase != "succeeded" || third.step("deploy").Phase != "succeeded" {
		t.Errorf("the third run is %s, its deploy step %q", third.Status.Phase, third.step("deploy").Phase)
	}
}
