package web_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// An operator pauses and unpauses a cron trigger from its template's page and backfills a past
// day from the form: one run per firing, with its scheduledTime, and none again when the same
// day is backfilled twice; a refused interval shows the server's reason. A viewer sees the
// triggers without their controls.
func (e *env) testTriggers(t *testing.T) {
	e.mustCall(t, http.StatusCreated, e.admin, http.MethodPost, "/templates", `apiVersion: core.oam.dev/v1alpha1
kind: Workflow
metadata: {name: nightly, namespace: default}
steps:
- {name: report, type: print-message-in-status, properties: {message: nightly}}
`, nil)
	var tr struct {
		ID string `json:"id"`
	}
	e.mustCall(t, http.StatusCreated, e.admin, http.MethodPost, "/templates/default/nightly/triggers",
		map[string]any{"type": "cron", "schedules": []string{"0 2 * * *", "0 14 * * *"}, "timeZone": "UTC", "paused": true}, &tr)

	ctx := e.tab(t, e.operator)
	goTo(ctx, t, "#/templates/default/nightly")
	row := fmt.Sprintf(`document.querySelector('#triggers tr[data-trigger=%q]')`, tr.ID)
	waitFor(ctx, t, "the paused trigger", row+` !== null && `+row+`.dataset.state === 'paused'`)
	if text := eval[string](ctx, t, row+`.textContent`); !strings.Contains(text, "0 2 * * *; 0 14 * * * (UTC)") {
		t.Errorf("the trigger's row shows %q, want its schedules", text)
	}
	do(ctx, t, "unpause", chromedp.Click(chromedp.ID("trigger-unpause-"+tr.ID)))
	waitFor(ctx, t, "the trigger active", row+`.dataset.state === 'active'`)
	var listed struct {
		Items []struct {
			Paused bool `json:"paused"`
		} `json:"items"`
	}
	e.mustCall(t, http.StatusOK, e.viewer, http.MethodGet, "/templates/default/nightly/triggers", nil, &listed)
	if len(listed.Items) != 1 || listed.Items[0].Paused {
		t.Errorf("after unpause the server lists %+v", listed.Items)
	}
	do(ctx, t, "pause", chromedp.Click(chromedp.ID("trigger-pause-"+tr.ID)))
	waitFor(ctx, t, "the trigger paused", row+`.dataset.state === 'paused'`)

	backfill := func(from, to string) {
		t.Helper()
		do(ctx, t, "fill the backfill form",
			chromedp.SetValue(chromedp.ID("backfill-from"), from),
			chromedp.SetValue(chromedp.ID("backfill-to"), to),
			chromedp.Click(chromedp.ID("backfill-submit")))
	}
	backfill("2026-01-01T00:00:00Z", "2026-01-01T23:59:00Z")
	waitFor(ctx, t, "the backfill's runs", `(p => p !== null && p.textContent.startsWith('2 runs started, 0 already there'))(document.getElementById('backfill-summary'))`)
	names := eval[[]string](ctx, t, `[...document.querySelectorAll('#backfill-runs a')].map(a => a.textContent)`)
	if strings.Join(names, " ") != "nightly-29453880 nightly-29454600" {
		t.Errorf("the backfill links %v, want the runs of 02:00 and 14:00 named after their minute", names)
	}
	for name, at := range map[string]string{"nightly-29453880": "2026-01-01T02:00:00Z", "nightly-29454600": "2026-01-01T14:00:00Z"} {
		var r run
		e.mustCall(t, http.StatusOK, e.operator, http.MethodGet, "/runs/default/"+name, nil, &r)
		if r.Spec.Context["scheduledTime"] != at {
			t.Errorf("%s: context %v, want scheduledTime %s", name, r.Spec.Context, at)
		}
	}
	e.screenshot(ctx, t, "backfilled")

	backfill("2026-01-01T00:00:00Z", "2026-01-01T23:59:00Z")
	waitFor(ctx, t, "the repeated backfill", `(p => p !== null && p.textContent.startsWith('0 runs started, 2 already there'))(document.getElementById('backfill-summary'))`)
	backfill("2026-01-02T00:00:00Z", "2026-01-01T00:00:00Z")
	waitFor(ctx, t, "the refusal", `(r => r.querySelector('.problems') !== null && r.textContent.includes('before from'))(document.getElementById('backfill-result'))`)
	var runs struct {
		Items []any `json:"items"`
	}
	e.mustCall(t, http.StatusOK, e.operator, http.MethodGet, "/runs?template=nightly", nil, &runs)
	if len(runs.Items) != 2 {
		t.Errorf("the template has %d runs, want the 2 of the first backfill", len(runs.Items))
	}

	viewer := e.tab(t, e.viewer)
	goTo(viewer, t, "#/templates/default/nightly")
	waitFor(viewer, t, "the triggers as a viewer sees them", row+` !== null && document.getElementById('backfill-disabled') !== null`)
	if n := eval[int](viewer, t, `document.querySelectorAll('#triggers button, #backfill-form').length`); n != 0 {
		t.Errorf("a viewer sees %d trigger controls", n)
	}
}
