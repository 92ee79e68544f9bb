package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"
)

// center answers the middle of the first element a selector finds, in the page's coordinates.
func center(ctx context.Context, t *testing.T, sel string) (float64, float64) {
	t.Helper()
	waitFor(ctx, t, sel, fmt.Sprintf(`document.querySelector(%q) !== null`, sel))
	xy := eval[[]float64](ctx, t, fmt.Sprintf(`(() => { const el = document.querySelector(%q); el.scrollIntoView({block: 'nearest'}); const r = el.getBoundingClientRect(); return [r.left + r.width / 2, r.top + r.height / 2]; })()`, sel))
	return xy[0], xy[1]
}

// mouseDrag presses the left button at (x0, y0), moves in steps to (x1, y1) and releases it
// there: real mouse events, as a user's drag.
func mouseDrag(ctx context.Context, t *testing.T, what string, x0, y0, x1, y1 float64) {
	t.Helper()
	held := func(p *input.DispatchMouseEventParams) { p.Buttons = 1 }
	actions := []chromedp.Action[chromedp.Void]{chromedp.MouseEvent(input.DispatchMouseEventTypeMousePressed, x0, y0, chromedp.ButtonLeft, held)}
	for i := 1; i <= 5; i++ {
		f := float64(i) / 5
		actions = append(actions, chromedp.MouseEvent(input.DispatchMouseEventTypeMouseMoved, x0+(x1-x0)*f, y0+(y1-y0)*f, chromedp.ButtonLeft, held))
	}
	actions = append(actions, chromedp.MouseEvent(input.DispatchMouseEventTypeMouseReleased, x1, y1, chromedp.ButtonLeft))
	do(ctx, t, what, actions...)
}

// designerSteps is the steps of the designer's YAML pane, read by the designer's own parser.
func designerSteps(ctx context.Context, t *testing.T) []map[string]any {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(async () => {
		const cm = await import('./vendor/codemirror-6.0.2/codemirror.js');
		const m = await import('./js/designer/model.js');
		const view = cm.EditorView.findFromDOM(document.getElementById('designer-yaml').shadowRoot.querySelector('.cm-editor'));
		return JSON.stringify(m.parse(view.state.doc.toString()).steps);
	})()`, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("read the designer's YAML: %v", err)
	}
	var steps []map[string]any
	if err := json.Unmarshal([]byte(s), &steps); err != nil {
		t.Fatalf("the designer's YAML: %v", err)
	}
	return steps
}

// typeInDesigner replaces the designer's YAML as a paste would.
func typeInDesigner(ctx context.Context, t *testing.T, text string) {
	t.Helper()
	do(ctx, t, "select the YAML", chromedp.Evaluate[chromedp.Void](`(async () => {
		const cm = await import('./vendor/codemirror-6.0.2/codemirror.js');
		const view = cm.EditorView.findFromDOM(document.getElementById('designer-yaml').shadowRoot.querySelector('.cm-editor'));
		view.focus();
		view.dispatch({selection: {anchor: 0, head: view.state.doc.length}});
	})()`, chromedp.EvalAwaitPromise))
	do(ctx, t, "type the YAML", func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		return chromedp.Void{}, tg.Call(ctx, "Input.insertText", map[string]any{"text": text}, nil)
	})
}

// testDesigner builds a DAG with a group by drag and drop in the designer, sees the YAML follow,
// edits the YAML and sees the canvas follow (and the server's problem marked on the node), then
// runs it and sees the run succeed.
func (e *env) testDesigner(t *testing.T) {
	ctx := e.tab(t, e.admin)
	goTo(ctx, t, "#/designer")
	const printItem = `.palette-item[data-type="print-message-in-status"]`
	const group = `.palette-item[data-type="step-group"]`
	waitFor(ctx, t, "the palette", fmt.Sprintf(`document.querySelector(%q) !== null && document.querySelector('.palette-item[data-type="run"]') !== null`, printItem))

	cx, cy := center(ctx, t, "#designer-canvas")
	gx, gy := center(ctx, t, group)
	mouseDrag(ctx, t, "drag a step-group onto the canvas", gx, gy, cx-200, cy-120)
	waitFor(ctx, t, "the group node", `document.querySelector('.designer-node.group[data-step="step-group"]') !== null`)
	for i := range 2 {
		px, py := center(ctx, t, printItem)
		nx, ny := center(ctx, t, `.designer-node[data-step="step-group"]`)
		mouseDrag(ctx, t, fmt.Sprintf("drag step %d into the group", i+1), px, py, nx, ny)
	}
	waitFor(ctx, t, "two sub-steps", `document.querySelector('.designer-node[data-step="print-message-in-status-2"]') !== null`)
	px, py := center(ctx, t, printItem)
	mouseDrag(ctx, t, "drag a step onto the canvas", px, py, cx+120, cy-120)
	waitFor(ctx, t, "the third step", `document.querySelector('.designer-node[data-step="print-message-in-status-3"]') !== null`)
	ox, oy := center(ctx, t, `.designer-node[data-step="step-group"] > .designer-port`)
	tx, ty := center(ctx, t, `.designer-node[data-step="print-message-in-status-3"]`)
	mouseDrag(ctx, t, "connect the group to the third step", ox, oy, tx, ty)
	waitFor(ctx, t, "the edge", `document.querySelector('.designer-edge[data-from="step-group"][data-to="print-message-in-status-3"]') !== null`)

	want := []map[string]any{
		{"name": "step-group", "type": "step-group", "subSteps": []any{
			map[string]any{"name": "print-message-in-status", "type": "print-message-in-status"},
			map[string]any{"name": "print-message-in-status-2", "type": "print-message-in-status"},
		}},
		{"name": "print-message-in-status-3", "type": "print-message-in-status", "dependsOn": []any{"step-group"}},
	}
	e.screenshot(ctx, t, "built")
	if got := designerSteps(ctx, t); !reflect.DeepEqual(got, want) {
		t.Fatalf("the YAML's steps after the drags:\n got %v\nwant %v", got, want)
	}

	// The node's panel: a property set in the form generated from the type's parameters.
	do(ctx, t, "select the third step", chromedp.Click(chromedp.CSS(`.designer-node[data-step="print-message-in-status-3"] .node-name`)))
	waitFor(ctx, t, "the message field", `document.getElementById('prop-message') !== null`)
	do(ctx, t, "set the message", chromedp.SendKeys(chromedp.ID("prop-message"), "from the form\t"))
	waitFor(ctx, t, "the YAML to hold the message", `document.getElementById('designer-yaml').shadowRoot.querySelector('.cm-content').textContent.includes('message: from the form')`)

	// The YAML edited: a step of an unknown type is marked on its node.
	header := "# designed in the test\napiVersion: core.oam.dev/v1alpha1\nkind: Workflow\nmetadata:\n  name: designed\n  namespace: default\n"
	typeInDesigner(ctx, t, header+"steps:\n- name: odd\n  type: no-such-type\n")
	waitFor(ctx, t, "the canvas to follow the YAML", `document.querySelector('.designer-node[data-step="odd"]') !== null && document.querySelector('.designer-node[data-step="step-group"]') === null`)
	waitFor(ctx, t, "the problem on the node", `document.querySelector('.designer-node.invalid[data-step="odd"]') !== null`)
	do(ctx, t, "select the invalid step", chromedp.Click(chromedp.CSS(`.designer-node[data-step="odd"] .node-name`)))
	waitFor(ctx, t, "the problem in its panel", `document.querySelector('#step-problems .step-problem') !== null && document.querySelector('#step-problems').textContent.includes('no-such-type')`)

	const designed = `steps:
- name: both
  type: step-group
  subSteps:
  - name: one
    type: print-message-in-status
    properties: {message: one}
  - name: two
    type: print-message-in-status
    properties: {message: two}
- name: finish
  type: print-message-in-status
  dependsOn: [both]
  properties: {message: done}
`
	typeInDesigner(ctx, t, header+designed)
	waitFor(ctx, t, "the canvas to follow the YAML", `document.querySelector('.designer-edge[data-from="both"][data-to="finish"]') !== null && document.querySelector('.designer-node[data-step="two"]') !== null`)

	do(ctx, t, "run it", chromedp.Click(chromedp.CSS(`#designer-run`)))
	waitFor(ctx, t, "the run's page", `location.hash.startsWith('#/runs/default/designed-')`)
	waitFor(ctx, t, "the run to succeed", runPhase("succeeded"))
	if text := pageText(ctx); !strings.Contains(text, "finish") {
		t.Errorf("the run's page does not show the step finish:\n%s", text)
	}

	// Saved as a template, and opened again from the template's page.
	goTo(ctx, t, "#/designer")
	waitFor(ctx, t, "a new design", `document.querySelector('#designer-yaml') !== null && document.querySelector('.designer-node') === null`)
	typeInDesigner(ctx, t, header+designed)
	waitFor(ctx, t, "the canvas to follow the YAML", `document.querySelector('.designer-node[data-step="finish"]') !== null`)
	do(ctx, t, "save it", chromedp.Click(chromedp.CSS(`#designer-save`)))
	waitFor(ctx, t, "the template's page", `location.hash === '#/templates/default/designed' && document.getElementById('design-template') !== null`)
	do(ctx, t, "edit it in the designer", chromedp.Click(chromedp.ID("design-template")))
	waitFor(ctx, t, "the template on the canvas", `document.querySelector('.designer-edge[data-from="both"][data-to="finish"]') !== null && document.querySelector('.designer-node[data-step="one"][data-parent="both"]') !== null`)
}
