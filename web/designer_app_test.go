package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"testing"

	"github.com/chromedp/chromedp"
)

// designerApp is the Application in the designer's YAML pane (components and policies), read
// by the designer's own parser.
func designerApp(ctx context.Context, t *testing.T) map[string]any {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(async () => {
		const cm = await import('./vendor/codemirror-6.0.2/codemirror.js');
		const a = await import('./js/designer/application.js');
		const view = cm.EditorView.findFromDOM(document.getElementById('designer-yaml').shadowRoot.querySelector('.cm-editor'));
		const p = a.parse(view.state.doc.toString());
		return JSON.stringify({components: p.steps, policies: p.policies});
	})()`, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("read the designer's YAML: %v", err)
	}
	var app map[string]any
	if err := json.Unmarshal([]byte(s), &app); err != nil {
		t.Fatalf("the designer's YAML: %v", err)
	}
	return app
}

// testDesignerApp builds an Application in the designer by drag and drop (two components, a
// trait on one, a dependsOn between them, a policy), sees the YAML follow, fills a property in
// the form made from the component type's parameters, edits the YAML and sees the canvas follow,
// with the server's validation of an unknown component type marked on its node. It stops
// before Deploy: this dashboard's server has no cluster to deliver to (TestDashboard/
// Applications starts one for delivery itself).
func (e *env) testDesignerApp(t *testing.T) {
	ctx := e.tab(t, e.operator)
	goTo(ctx, t, "#/designer/app")
	const web = `.palette-item[data-kind="component"][data-type="webservice"]`
	const scaler = `.palette-item[data-kind="trait"][data-type="scaler"]`
	const topology = `.palette-item[data-kind="policy"][data-type="topology"]`
	waitFor(ctx, t, "the palette", fmt.Sprintf(`document.querySelector(%q) !== null && document.querySelector(%q) !== null`, web, topology))

	cx, cy := center(ctx, t, "#designer-canvas")
	wx, wy := center(ctx, t, web)
	mouseDrag(ctx, t, "drag a webservice onto the canvas", wx, wy, cx-150, cy-100)
	waitFor(ctx, t, "the first component", `document.querySelector('.designer-node[data-step="webservice"]') !== null`)
	wx, wy = center(ctx, t, web)
	mouseDrag(ctx, t, "drag a second webservice onto the canvas", wx, wy, cx+150, cy-100)
	waitFor(ctx, t, "the second component", `document.querySelector('.designer-node[data-step="webservice-2"]') !== null`)
	sx, sy := center(ctx, t, scaler)
	nx, ny := center(ctx, t, `.designer-node[data-step="webservice-2"]`)
	mouseDrag(ctx, t, "drop the scaler trait on the second", sx, sy, nx, ny)
	waitFor(ctx, t, "the trait inside the node", `document.querySelector('.designer-node[data-step="webservice-2"] .node-trait[data-trait="scaler"]') !== null`)
	ox, oy := center(ctx, t, `.designer-node[data-step="webservice"] > .designer-port`)
	tx, ty := center(ctx, t, `.designer-node[data-step="webservice-2"] .node-name`)
	mouseDrag(ctx, t, "connect the first to the second", ox, oy, tx, ty)
	waitFor(ctx, t, "the edge", `document.querySelector('.designer-edge[data-from="webservice"][data-to="webservice-2"]') !== null`)
	px, py := center(ctx, t, topology)
	lx, ly := center(ctx, t, "#designer-policies")
	mouseDrag(ctx, t, "drop a topology policy", px, py, lx, ly)
	waitFor(ctx, t, "the policy listed", `document.querySelector('#designer-policies [data-policy="topology"]') !== null`)

	want := map[string]any{
		"components": []any{
			map[string]any{"name": "webservice", "type": "webservice"},
			map[string]any{"name": "webservice-2", "type": "webservice", "traits": []any{map[string]any{"type": "scaler"}}, "dependsOn": []any{"webservice"}},
		},
		"policies": []any{map[string]any{"name": "topology", "type": "topology"}},
	}
	e.screenshot(ctx, t, "built")
	if got := designerApp(ctx, t); !reflect.DeepEqual(got, want) {
		t.Fatalf("the YAML's Application after the drags:\n got %v\nwant %v", got, want)
	}

	// The component's panel: image from the webservice's parameters; the trait's own form.
	do(ctx, t, "select the second component", chromedp.Click(chromedp.CSS(`.designer-node[data-step="webservice-2"] .node-name`)))
	waitFor(ctx, t, "the image field", `document.getElementById('prop-image') !== null && document.getElementById('trait-scaler-replicas') !== null`)
	do(ctx, t, "set the image", chromedp.SendKeys(chromedp.ID("prop-image"), "nginx:1.27\t"))
	waitFor(ctx, t, "the YAML to hold the image", `document.getElementById('designer-yaml').shadowRoot.querySelector('.cm-content').textContent.includes('image: nginx:1.27')`)
	do(ctx, t, "set the replicas", chromedp.SendKeys(chromedp.ID("trait-scaler-replicas"), "3\t"))
	waitFor(ctx, t, "the YAML to hold the replicas", `document.getElementById('designer-yaml').shadowRoot.querySelector('.cm-content').textContent.includes('replicas: 3')`)

	// The YAML edited: the canvas follows, and a component of an unknown type is marked.
	typeInDesigner(ctx, t, `apiVersion: core.oam.dev/v1beta1
kind: Application
metadata: {name: typed, namespace: default}
spec:
  components:
  - name: api
    type: webservice
    properties: {image: "nginx:1.27"}
    traits:
    - type: scaler
      properties: {replicas: 2}
  - name: odd
    type: no-such-component
    dependsOn: [api]
`)
	waitFor(ctx, t, "the canvas to follow the YAML", `document.querySelector('.designer-edge[data-from="api"][data-to="odd"]') !== null && document.querySelector('.designer-node[data-step="api"] .node-trait[data-trait="scaler"]') !== null && document.querySelector('.designer-node[data-step="webservice"]') === null && document.querySelector('#designer-policies [data-policy]') === null`)
	waitFor(ctx, t, "the problem on the node", `document.querySelector('.designer-node.invalid[data-step="odd"]') !== null && document.querySelector('.designer-node.invalid[data-step="api"]') === null`)
}
