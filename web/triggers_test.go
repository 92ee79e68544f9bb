package web_test

import (
	"encoding/json"
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

// An admin adds a cron trigger from the template's page, changes its schedules, adds a
// webhook trigger and reads its URL and secret once, and deletes it; an operator sees the
// triggers without those controls.
func (e *env) testTriggersEdited(t *testing.T) {
	e.mustCall(t, http.StatusCreated, e.admin, http.MethodPost, "/templates", `apiVersion: core.oam.dev/v1alpha1
kind: Workflow
metadata: {name: hourly, namespace: default}
steps:
- {name: report, type: print-message-in-status, properties: {message: hourly}}
`, nil)
	type listed struct {
		Items []struct {
			ID        string         `json:"id"`
			Type      string         `json:"type"`
			Schedules []string       `json:"schedules"`
			TimeZone  string         `json:"timeZone"`
			Policy    string         `json:"concurrencyPolicy"`
			Context   map[string]any `json:"context"`
		} `json:"items"`
	}
	triggers := func() listed {
		var l listed
		e.mustCall(t, http.StatusOK, e.viewer, http.MethodGet, "/templates/default/hourly/triggers", nil, &l)
		return l
	}
	ctx := e.tab(t, e.admin)
	goTo(ctx, t, "#/templates/default/hourly")
	waitFor(ctx, t, "the trigger form", `document.getElementById('trigger-form') !== null`)
	do(ctx, t, "a bad context", chromedp.SetValue(chromedp.ID("trigger-schedules"), "0 * * * *"),
		chromedp.SetValue(chromedp.ID("trigger-context"), "{env: prod}"), chromedp.Click(chromedp.ID("trigger-submit")))
	waitFor(ctx, t, "the context refused", `document.getElementById('trigger-result').textContent.includes('Context: not JSON')`)
	do(ctx, t, "add a cron trigger",
		chromedp.SetValue(chromedp.ID("trigger-schedules"), "0 * * * *\n30 * * * *"),
		chromedp.SetValue(chromedp.ID("trigger-timezone"), "Europe/Paris"),
		chromedp.SetValue(chromedp.ID("trigger-policy"), "Forbid"),
		chromedp.SetValue(chromedp.ID("trigger-context"), `{"env": "prod"}`),
		chromedp.Click(chromedp.ID("trigger-submit")))
	waitFor(ctx, t, "the new trigger's row", `document.querySelectorAll('#triggers tbody tr').length === 1`)
	l := triggers()
	if len(l.Items) != 1 || strings.Join(l.Items[0].Schedules, ",") != "0 * * * *,30 * * * *" || l.Items[0].TimeZone != "Europe/Paris" ||
		l.Items[0].Policy != "Forbid" || l.Items[0].Context["env"] != "prod" {
		t.Fatalf("the server holds %+v", l.Items)
	}
	id := l.Items[0].ID

	do(ctx, t, "edit it", chromedp.Click(chromedp.ID("trigger-edit-"+id)))
	waitFor(ctx, t, "the form filled", `document.getElementById('trigger-schedules').value === '0 * * * *\n30 * * * *' && document.getElementById('trigger-type').disabled`)
	do(ctx, t, "change its schedules", chromedp.SetValue(chromedp.ID("trigger-schedules"), "15 * * * *"), chromedp.Click(chromedp.ID("trigger-submit")))
	row := fmt.Sprintf(`document.querySelector('#triggers tr[data-trigger=%q]')`, id)
	waitFor(ctx, t, "the row with the new schedule", row+` !== null && `+row+`.textContent.includes('15 * * * * (Europe/Paris)')`)
	// The form is back to adding a trigger: its Cancel button is gone from the page, not only
	// marked hidden (a button's display once won over the hidden attribute).
	waitFor(ctx, t, "no Cancel button shown", `document.getElementById('trigger-cancel').offsetParent === null`)
	if l := triggers(); len(l.Items) != 1 || l.Items[0].ID != id || strings.Join(l.Items[0].Schedules, ",") != "15 * * * *" {
		t.Errorf("after the change the server holds %+v, want trigger %s with the one new schedule", l.Items, id)
	}

	do(ctx, t, "add a webhook trigger",
		chromedp.Evaluate[chromedp.Void](`(s => { s.value = 'webhook'; s.dispatchEvent(new Event('change')); document.getElementById('trigger-context').value = ''; })(document.getElementById('trigger-type'))`),
		chromedp.Click(chromedp.ID("trigger-submit")))
	waitFor(ctx, t, "the webhook's URL and secret", `document.getElementById('trigger-secret') !== null && document.getElementById('trigger-secret').textContent.length > 10`)
	if url := eval[string](ctx, t, `document.getElementById('trigger-url').textContent`); !strings.Contains(url, "/api/v1/hooks/") {
		t.Errorf("the webhook's URL shown is %q", url)
	}
	waitFor(ctx, t, "two rows", `document.querySelectorAll('#triggers tbody tr').length === 2`)
	var hook string
	for _, it := range triggers().Items {
		if it.Type == "webhook" {
			hook = it.ID
		}
	}
	do(ctx, t, "delete the webhook", chromedp.Click(chromedp.ID("trigger-delete-"+hook)))
	do(ctx, t, "confirm", chromedp.Click(chromedp.ID("confirm-ok")))
	waitFor(ctx, t, "one row again", `document.querySelectorAll('#triggers tbody tr').length === 1`)
	if l := triggers(); len(l.Items) != 1 || l.Items[0].ID != id {
		t.Errorf("after the delete the server holds %+v", l.Items)
	}
	e.screenshot(ctx, t, "triggers-edited")

	op := e.tab(t, e.operator)
	goTo(op, t, "#/templates/default/hourly")
	waitFor(op, t, "the triggers as an operator sees them", row+` !== null && document.getElementById('trigger-form-disabled') !== null`)
	if n := eval[int](op, t, `document.querySelectorAll('[id^="trigger-edit-"], [id^="trigger-delete-"], #trigger-form').length`); n != 0 {
		t.Errorf("an operator sees %d controls that change triggers", n)
	}
}

// An admin adds a cloudevents trigger from the template's page: a filter that is not CUE is
// refused with the server's reason, a good one shows the URL and secret once and the filter in
// the trigger's row. An event the filter selects, POSTed to that URL, starts a run that
// succeeds on its page; one it refuses starts nothing. The filter is changed from the form.
func (e *env) testTriggersCloudEvents(t *testing.T) {
	e.mustCall(t, http.StatusCreated, e.admin, http.MethodPost, "/templates", `apiVersion: core.oam.dev/v1alpha1
kind: Workflow
metadata: {name: pushed, namespace: default}
steps:
- {name: build, type: print-message-in-status, properties: {message: built}}
`, nil)
	ctx := e.tab(t, e.admin)
	goTo(ctx, t, "#/templates/default/pushed")
	waitFor(ctx, t, "the trigger form", `document.getElementById('trigger-form') !== null`)
	do(ctx, t, "choose cloudevents",
		chromedp.Evaluate[chromedp.Void](`(s => { s.value = 'cloudevents'; s.dispatchEvent(new Event('change')); })(document.getElementById('trigger-type'))`))
	waitFor(ctx, t, "the filter field instead of the schedules",
		`!document.getElementById('trigger-event-fields').hidden && document.getElementById('trigger-cron-fields').hidden`)
	do(ctx, t, "a filter that is not CUE",
		chromedp.SetValue(chromedp.ID("trigger-filter"), `context.event.type ==`), chromedp.Click(chromedp.ID("trigger-submit")))
	waitFor(ctx, t, "the filter refused", `document.getElementById('trigger-result').textContent.includes('filter: not a CUE expression over context.event')`)
	var listed struct {
		Items []struct {
			ID     string `json:"id"`
			Filter string `json:"filter"`
		} `json:"items"`
	}
	e.mustCall(t, http.StatusOK, e.viewer, http.MethodGet, "/templates/default/pushed/triggers", nil, &listed)
	if len(listed.Items) != 0 {
		t.Fatalf("the refused trigger was stored: %+v", listed.Items)
	}

	filter := `context.event.type == "com.example.push" && context.event.data.branch == "main"`
	do(ctx, t, "a good filter", chromedp.SetValue(chromedp.ID("trigger-filter"), filter), chromedp.Click(chromedp.ID("trigger-submit")))
	waitFor(ctx, t, "the hook's URL and secret", `document.getElementById('trigger-secret') !== null && document.getElementById('trigger-secret').textContent.length > 10`)
	hook := eval[string](ctx, t, `document.getElementById('trigger-url').textContent`)
	secret := eval[string](ctx, t, `document.getElementById('trigger-secret').textContent`)
	if !strings.Contains(hook, "/api/v1/hooks/") {
		t.Fatalf("the URL shown is %q", hook)
	}
	waitFor(ctx, t, "the trigger's row with its filter", `(r => r !== null && r.textContent.includes('cloudevents') && r.textContent.includes('context.event.data.branch == "main"'))(document.querySelector('#triggers tbody tr'))`)
	e.mustCall(t, http.StatusOK, e.viewer, http.MethodGet, "/templates/default/pushed/triggers", nil, &listed)
	if len(listed.Items) != 1 || listed.Items[0].Filter != filter {
		t.Fatalf("the server holds %+v, want one trigger with the filter", listed.Items)
	}
	id := listed.Items[0].ID

	post := func(event string) (int, map[string]any) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, hook+"?token="+secret, strings.NewReader(event))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/cloudevents+json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, out
	}
	code, ans := post(`{"specversion": "1.0", "id": "p1", "source": "/repos/shop", "type": "com.example.push", "data": {"branch": "main"}}`)
	if code != http.StatusAccepted || ans["name"] == nil {
		t.Fatalf("the selected event answered %d %v, want 202 with its run", code, ans)
	}
	name := ans["name"].(string)
	goTo(ctx, t, "#/runs/default/"+name)
	waitFor(ctx, t, "the event's run succeeded", runPhase("succeeded"))
	if code, ans := post(`{"specversion": "1.0", "id": "p2", "source": "/repos/shop", "type": "com.example.push", "data": {"branch": "dev"}}`); code != http.StatusOK || ans["matched"] != false {
		t.Errorf("the refused event answered %d %v, want 200 matched false", code, ans)
	}
	var runs struct {
		Items []any `json:"items"`
	}
	e.mustCall(t, http.StatusOK, e.operator, http.MethodGet, "/runs?template=pushed", nil, &runs)
	if len(runs.Items) != 1 {
		t.Errorf("the template has %d runs, want the one of the selected event", len(runs.Items))
	}

	goTo(ctx, t, "#/templates/default/pushed")
	row := fmt.Sprintf(`document.querySelector('#triggers tr[data-trigger=%q]')`, id)
	waitFor(ctx, t, "the trigger's row", row+` !== null`)
	do(ctx, t, "edit it", chromedp.Click(chromedp.ID("trigger-edit-"+id)))
	waitFor(ctx, t, "the form filled with the filter", fmt.Sprintf(`document.getElementById('trigger-filter').value === %q && !document.getElementById('trigger-event-fields').hidden`, filter))
	do(ctx, t, "change the filter", chromedp.SetValue(chromedp.ID("trigger-filter"), `context.event.type == "com.example.tag"`), chromedp.Click(chromedp.ID("trigger-submit")))
	waitFor(ctx, t, "the row with the new filter", row+`.textContent.includes('context.event.type == "com.example.tag"')`)
	e.mustCall(t, http.StatusOK, e.viewer, http.MethodGet, "/templates/default/pushed/triggers", nil, &listed)
	if len(listed.Items) != 1 || listed.Items[0].Filter != `context.event.type == "com.example.tag"` {
		t.Errorf("after the change the server holds %+v", listed.Items)
	}
	e.screenshot(ctx, t, "cloudevents-trigger")

	// At 390 px the form with its filter field, and the row with a long filter, fit.
	narrow := e.tab(t, e.admin)
	do(narrow, t, "390 px wide", chromedp.EmulateViewport(390, 844))
	goTo(narrow, t, "#/templates/default/pushed")
	waitFor(narrow, t, "the trigger's row", row+` !== null && document.getElementById('trigger-form') !== null`)
	do(narrow, t, "choose cloudevents",
		chromedp.Evaluate[chromedp.Void](`(s => { s.value = 'cloudevents'; s.dispatchEvent(new Event('change')); })(document.getElementById('trigger-type'))`))
	waitFor(narrow, t, "the filter field", `!document.getElementById('trigger-event-fields').hidden`)
	if w := eval[int](narrow, t, `document.documentElement.scrollWidth`); w > 390 {
		e.screenshot(narrow, t, "narrow")
		t.Errorf("at 390 px the template's page with the cloudevents form is %d px wide", w)
	}
}
