package web_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// An admin sees a template's revisions on its page, the diff of an old one to the current
// one, runs an old revision (the run shows that revision's step message) and rolls back to it
// through the confirm dialog: the list grows a current revision 3.
func (e *env) testTemplateRevisions(t *testing.T) {
	doc := `apiVersion: core.oam.dev/v1alpha1
kind: Workflow
metadata: {name: revised, namespace: default}
steps:
- {name: say, type: print-message-in-status, properties: {message: MESSAGE}}
`
	e.mustCall(t, http.StatusCreated, e.admin, http.MethodPost, "/templates", strings.Replace(doc, "MESSAGE", "first", 1), nil)
	e.mustCall(t, http.StatusOK, e.admin, http.MethodPut, "/templates/default/revised", strings.Replace(doc, "MESSAGE", "second", 1), nil)

	ctx := e.tab(t, e.admin)
	goTo(ctx, t, "#/templates/default/revised")
	rows := `[...document.querySelectorAll('#template-revisions tr[data-revision]')].map(r => r.dataset.revision).join(',')`
	waitFor(ctx, t, "revisions 2 and 1", rows+` === '2,1'`)
	do(ctx, t, "diff revision 1", chromedp.Click(chromedp.ID("revision-diff-1")))
	waitFor(ctx, t, "the diff", `!document.getElementById('revision-diff').hidden`)
	if d := eval[string](ctx, t, `document.getElementById('revision-diff').textContent`); !strings.Contains(d, "-    message: first") || !strings.Contains(d, "+    message: second") {
		t.Errorf("the diff shows %q", d)
	}

	do(ctx, t, "run revision 1", chromedp.Click(chromedp.ID("revision-run-1")))
	waitFor(ctx, t, "the run's page", `location.hash.startsWith('#/runs/default/revised-')`)
	waitFor(ctx, t, "the run's step message", `document.body.textContent.includes('first')`)

	goTo(ctx, t, "#/templates/default/revised")
	waitFor(ctx, t, "revisions 2 and 1", rows+` === '2,1'`)
	do(ctx, t, "roll back to 1", chromedp.Click(chromedp.ID("revision-rollback-1")))
	waitFor(ctx, t, "the confirm dialog", `document.getElementById('confirm').open && document.getElementById('confirm-title').textContent.includes('revision 1')`)
	do(ctx, t, "confirm", chromedp.Click(chromedp.ID("confirm-ok")))
	waitFor(ctx, t, "revision 3 current", rows+` === '3,2,1' && document.querySelector('#template-revisions tr[data-revision="3"]').textContent.includes('(current)')`)
	var wf struct {
		Metadata struct {
			Generation int64 `json:"generation"`
		} `json:"metadata"`
		Steps []struct {
			Properties map[string]any `json:"properties"`
		} `json:"steps"`
	}
	e.mustCall(t, http.StatusOK, e.viewer, http.MethodGet, "/templates/default/revised", nil, &wf)
	if wf.Metadata.Generation != 3 || len(wf.Steps) != 1 || wf.Steps[0].Properties["message"] != "first" {
		t.Errorf("after the rollback the server has %+v", wf)
	}

	// A viewer sees the revisions without their controls.
	vctx := e.tab(t, e.viewer)
	goTo(vctx, t, "#/templates/default/revised")
	waitFor(vctx, t, "the revisions", rows+` === '3,2,1'`)
	if n := eval[int](vctx, t, `document.querySelectorAll('[id^=revision-run-], [id^=revision-rollback-]').length`); n != 0 {
		t.Errorf("a viewer sees %d run or rollback buttons", n)
	}
}
