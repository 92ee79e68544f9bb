// The visual workflow designer (admins): a palette of the step types from the definitions API,
// dragged onto a canvas as step nodes; a node's port dragged onto another makes that one depend
// on it; a node dropped into a step group becomes one of its sub-steps. The selected node's
// panel edits its name, `if`, timeout, inputs, outputs and its properties, in fields made from
// its type's parameters. The YAML pane (CodeMirror) follows every canvas change, and the canvas
// follows the YAML a while after typing stops (positions kept by step name). The server's
// validation marks the lines and the nodes. Save as a template, or run now. The decisions
// without the DOM are in js/designer/model.js.

import * as api from '../api.js';
import {h, s, replace, link} from '../dom.js';
import {toYAML, cleanObject} from '../yaml.js';
import {errorPage, problemList, roleNote} from './common.js';
import {diagnostics} from './editor.js';
import * as m from '../designer/model.js';
import * as a from '../designer/application.js';
import * as cm from '../../vendor/codemirror-6.0.2/codemirror.js';

const PARSE_DELAY = 500; // ms after the last keystroke in the YAML
const NODE_W = 170;
const NODE_H = 44;
const SUB_H = 40;
const TRAIT_H = 20; // a trait's line inside its component's node

const THEME = cm.EditorView.theme({
  '&': {height: '32rem', fontSize: '13px', color: 'var(--text)', backgroundColor: 'var(--panel)'},
  '.cm-scroller': {fontFamily: 'var(--mono)', lineHeight: '1.5'},
  '.cm-gutters': {backgroundColor: 'var(--code-bg)', color: 'var(--muted)'},
});

// renderDesigner draws the designer of a Workflow (mode "workflow", admins) or of an
// Application (mode "app", operators: its components, their traits and its policies).
export async function renderDesigner(ctx, ns, name, mode = 'workflow') {
  const app = mode === 'app';
  const title = name ? `Design ${name}` : app ? 'Application designer' : 'Designer';
  const least = app ? 'operator' : 'admin';
  if (!ctx.can(least)) {
    ctx.ready(title);
    replace(ctx.main, h('h1', null, title), h('p', {class: 'error', role: 'alert'}, roleNote(least)));
    return;
  }
  const parse = app ? a.parse : m.parse;
  const ofProblem = app ? a.componentOfProblem : m.stepOfProblem;
  let text = app ? a.STARTER : m.STARTER;
  let defs = [];
  let xdefs = [];
  try {
    const [list, obj] = await Promise.all([
      api.get(app ? '/xdefinitions' : '/definitions', {signal: ctx.signal}),
      name ? api.get(api.objPath(app ? 'applications' : 'templates', ns, name), {signal: ctx.signal}) : null,
    ]);
    if (app) xdefs = (list && list.items) || [];
    else defs = (list && list.items) || [];
    if (obj && app) text = toYAML(cleanObject({apiVersion: obj.apiVersion, kind: obj.kind, metadata: {name: obj.metadata.name, namespace: obj.metadata.namespace}, spec: obj.spec}));
    else if (obj) text = toYAML(cleanObject(obj));
  } catch (e) {
    if (api.isAbort(e) || !ctx.alive()) return;
    errorPage(ctx, title, e);
    return;
  }
  if (!ctx.alive()) return;

  // The state: the text is the truth; parsed is its last good reading.
  let parsed = parse(text);
  let positions = new Map();
  let selected = '';
  let selectedPolicy = ''; // app: the policy whose panel is open
  let marks = new Map(); // step name → problem messages
  const params = new Map(); // type → parameters (a promise)

  const canvas = h('div', {class: 'designer-canvas', id: 'designer-canvas', dataset: {drop: ''}});
  const panel = h('div', {class: 'designer-panel', id: 'designer-panel'});
  const status = h('p', {id: 'designer-status', class: 'muted', role: 'status'});
  const problems = h('div', {id: 'designer-problems', 'aria-live': 'polite'});

  // The YAML pane.
  let applying = false; // a canvas change being written into the editor
  let parseTimer = 0;
  const lint = async (v) => {
    const doc = v.state.doc.toString();
    try {
      await api.request('POST', '/validate', {yaml: doc, signal: ctx.signal});
      setMarks([]);
      return [];
    } catch (e) {
      if (api.isAbort(e) || e.status !== 400) return [];
      const ps = e.problems.length ? e.problems : [{message: e.message}];
      if (doc === text) setMarks(ps);
      return diagnostics(v.state.doc, ps);
    }
  };
  const host = h('div', {class: 'editor', id: 'designer-yaml'});
  const root = host.attachShadow({mode: 'open'});
  const view = new cm.EditorView({
    root,
    parent: root,
    state: cm.EditorState.create({
      doc: text,
      extensions: [cm.basicSetup, cm.yaml(), cm.linter(lint, {delay: 700}), cm.lintGutter(), THEME,
        cm.EditorView.contentAttributes.of({'aria-label': 'YAML'}),
        cm.EditorView.updateListener.of((u) => {
          if (!u.docChanged || applying) return;
          clearTimeout(parseTimer);
          parseTimer = setTimeout(fromYAML, PARSE_DELAY);
        })],
    }),
  });
  ctx.onCleanup(() => {
    clearTimeout(parseTimer);
    view.destroy();
  });

  function fromYAML() {
    const t = view.state.doc.toString();
    try {
      parsed = parse(t);
      text = t;
      status.textContent = '';
    } catch (e) {
      status.textContent = `The YAML cannot be read (line ${e.line}): ${e.message}. The canvas shows it as it last could.`;
      return;
    }
    draw();
  }

  // change applies a canvas edit: new steps written into the text and the editor.
  function change(steps, policies = parsed.policies) {
    text = app ? a.write(text, steps, policies) : m.write(text, steps);
    parsed = parse(text);
    applying = true;
    view.dispatch({changes: {from: 0, to: view.state.doc.length, insert: text}});
    applying = false;
    draw();
  }

  // tryEdit runs an edit and tells its refusal instead of throwing.
  function tryEdit(fn) {
    try {
      change(fn(parsed.steps));
      return true;
    } catch (e) {
      status.textContent = e.message;
      return false;
    }
  }

  function setMarks(ps) {
    marks = new Map();
    for (const p of ps) {
      const n = ofProblem(parsed, p);
      if (!n) continue;
      marks.set(n, [...(marks.get(n) || []), p.message]);
    }
    drawNodes();
    // The open panel's problems follow, without redrawing its fields (one may have the focus).
    const box = panel.querySelector('#step-problems');
    if (box) replace(box, (marks.get(selected) || []).map((msg) => h('p', {class: 'error step-problem'}, msg)));
  }

  // The palette.
  const typeNames = ['step-group', ...defs.map((d) => d.name).filter((n) => n !== 'step-group')];
  const described = new Map(defs.map((d) => [d.name, d]));
  const xdescribed = new Map(xdefs.map((d) => [`${d.kind}/${d.name}`, d]));
  const KINDS = [['component', 'Component types'], ['trait', 'Traits (drop on a component)'], ['policy', 'Policies']];
  const palette = app
    ? h('div', {class: 'designer-palette', id: 'designer-palette'}, KINDS.map(([kind, label]) => [
      h('h3', null, label),
      h('ul', {class: 'designer-palette-kind', 'aria-label': label}, xdefs.filter((d) => d.kind === kind).map((d) =>
        h('li', {class: 'palette-item', dataset: {type: d.name, kind}, title: d.description || ''}, d.name)))]))
    : h('ul', {class: 'designer-palette', id: 'designer-palette', 'aria-label': 'Step types'},
      [...new Set(typeNames)].map((t) => h('li', {class: 'palette-item', dataset: {type: t}, title: (described.get(t) && described.get(t).description) || (t === 'step-group' ? 'A group of sub-steps' : '')},
        t, described.get(t) && !described.get(t).builtin ? h('span', {class: 'muted'}, ` (${described.get(t).namespace})`) : null)));
  // The Packages (external providers' actions), listed for the step types of one's own that
  // import them: their actions are not step types, so they are not dragged.
  const packageList = h('ul', {class: 'designer-packages', id: 'designer-packages', 'aria-label': 'Packages'}, h('li', {class: 'muted'}, 'Loading…'));
  const loadPackages = async () => {
    try {
      const data = await api.get('/packages', {signal: ctx.signal});
      const items = (data && Array.isArray(data.items) ? data.items : []).filter((p) => p && p.name);
      replace(packageList, items.length
        ? items.map((p) => h('li', {dataset: {package: `${p.namespace}/${p.name}`}, title: p.endpoint ? `served by ${p.endpoint}` : ''},
          h('code', null, `import "${p.path || ''}"`), ' ',
          h('span', {class: 'muted'}, (Array.isArray(p.actions) ? p.actions : []).join(', '))))
        : h('li', {class: 'muted'}, 'No Packages.'));
    } catch (e) {
      if (!api.isAbort(e)) replace(packageList, h('li', {class: 'error'}, `Loading Packages failed: ${e.message}`));
    }
  };
  const policyList = h('ul', {class: 'designer-policies', id: 'designer-policies', dataset: {drop: ''}, 'aria-label': 'Policies'});
  policyList.addEventListener('click', (ev) => {
    const item = ev.target.closest('[data-policy]');
    if (item) selectPolicy(item.dataset.policy);
  });

  // Dragging: one pointer gesture at a time, from the palette, a node's body or its port.
  let drag = null;
  const ghost = h('div', {class: 'designer-ghost', hidden: true});
  const edgeLayer = s('svg', {class: 'designer-edges', 'aria-hidden': 'true'});
  const nodeLayer = h('div', {class: 'designer-nodes'});
  canvas.append(edgeLayer, nodeLayer);

  const dropTarget = (x, y) => {
    const el = document.elementFromPoint(x, y);
    return el && el.closest('[data-drop]');
  };
  const canvasPoint = (x, y) => {
    const r = canvas.getBoundingClientRect();
    return {x: Math.max(0, Math.round(x - r.left + canvas.scrollLeft - NODE_W / 2)), y: Math.max(0, Math.round(y - r.top + canvas.scrollTop - NODE_H / 2))};
  };

  palette.addEventListener('pointerdown', (ev) => {
    const item = ev.target.closest('.palette-item');
    if (!item) return;
    ev.preventDefault();
    drag = {kind: 'new', type: item.dataset.type, xkind: item.dataset.kind || ''};
    ghost.textContent = item.dataset.type;
  });
  nodeLayer.addEventListener('pointerdown', (ev) => {
    const node = ev.target.closest('.designer-node');
    if (!node) return;
    ev.preventDefault();
    ev.stopPropagation();
    const stepName = node.dataset.step;
    if (ev.target.closest('.designer-port')) {
      drag = {kind: 'connect', from: stepName};
      ghost.textContent = `${stepName} →`;
    } else {
      drag = {kind: 'move', name: stepName, x0: ev.clientX, y0: ev.clientY};
      ghost.textContent = stepName;
    }
  });
  const onMove = (ev) => {
    if (!drag) return;
    ghost.hidden = false;
    ghost.style.left = `${ev.clientX + 8}px`;
    ghost.style.top = `${ev.clientY + 8}px`;
  };
  const onUp = (ev) => {
    if (!drag) return;
    const d = drag;
    drag = null;
    ghost.hidden = true;
    const target = dropTarget(ev.clientX, ev.clientY);
    const onNode = target && target.dataset.step ? target.dataset.step : '';
    // Dropped on a group, or on one of its sub-steps: into that group.
    const group = target ? target.dataset.group || target.dataset.parent || '' : '';
    if (d.kind === 'new' && d.xkind === 'trait') {
      if (!onNode) {
        status.textContent = `Drop the trait ${d.type} on a component.`;
        return;
      }
      if (tryEdit((steps) => a.addTrait(steps, onNode, d.type))) select(onNode);
    } else if (d.kind === 'new' && d.xkind === 'policy') {
      if (!target) return;
      const r = a.addPolicy(parsed.policies, d.type);
      change(parsed.steps, r.policies);
      selectPolicy(r.name);
    } else if (d.kind === 'new') {
      if (!target) return;
      let added = '';
      if (tryEdit((steps) => {
        const r = m.addStep(steps, d.type, group);
        added = r.name;
        return r.steps;
      })) {
        if (!group) positions.set(added, canvasPoint(ev.clientX, ev.clientY));
        select(added);
      }
    } else if (d.kind === 'connect') {
      if (onNode && onNode !== d.from) tryEdit((steps) => m.connect(steps, d.from, onNode));
    } else if (d.kind === 'move') {
      const moved = Math.abs(ev.clientX - d.x0) + Math.abs(ev.clientY - d.y0) > 4;
      if (!moved) {
        select(d.name);
        return;
      }
      if (!target) return;
      const where = m.find(parsed.steps, d.name);
      if (group && group !== d.name && (!where.group || where.group.name !== group)) {
        tryEdit((steps) => m.moveInto(steps, d.name, group));
      } else if (!group && !onNode && where.group) {
        positions.set(d.name, canvasPoint(ev.clientX, ev.clientY));
        tryEdit((steps) => m.moveInto(steps, d.name, ''));
      } else if (!where.group) {
        positions.set(d.name, canvasPoint(ev.clientX, ev.clientY));
        draw();
      }
    }
  };
  document.addEventListener('pointermove', onMove);
  document.addEventListener('pointerup', onUp);
  ctx.onCleanup(() => {
    document.removeEventListener('pointermove', onMove);
    document.removeEventListener('pointerup', onUp);
    ghost.remove();
  });

  function select(n) {
    selected = n;
    selectedPolicy = '';
    drawNodes();
    drawPanel();
  }

  function selectPolicy(n) {
    selected = '';
    selectedPolicy = n;
    drawNodes();
    drawPanel();
  }

  // drawPolicies lists the Application's policies beside the canvas.
  function drawPolicies() {
    if (!app) return;
    replace(policyList, (parsed.policies || []).length
      ? parsed.policies.map((p) => h('li', {class: `designer-policy${p.name === selectedPolicy ? ' selected' : ''}`, dataset: {policy: p.name}, tabindex: 0, role: 'button'}, h('span', {class: 'node-name'}, p.name), ' ', h('span', {class: 'muted'}, p.type)))
      : h('li', {class: 'muted'}, 'No policies: drop a policy type here or on the canvas.'));
  }

  // boxes answers each step's box on the canvas: top-level steps where they were put, sub-steps
  // stacked inside their group.
  function boxes() {
    positions = m.place(parsed.steps, positions);
    const out = new Map();
    const inner = (group, x, y) => {
      let yy = y + NODE_H;
      for (const sub of group.subSteps || []) {
        const hh = sub.type === 'step-group' ? height(sub) : SUB_H;
        out.set(sub.name, {x: x + 10, y: yy, w: NODE_W - 20, h: hh - 6, step: sub, parent: group.name});
        if (sub.type === 'step-group') inner(sub, x + 10, yy);
        yy += hh;
      }
    };
    for (const st of parsed.steps) {
      const p = positions.get(st.name);
      const traits = Array.isArray(st.traits) ? st.traits.length : 0;
      out.set(st.name, {x: p.x, y: p.y, w: NODE_W, h: st.type === 'step-group' ? height(st) : NODE_H + traits * TRAIT_H, step: st, parent: ''});
      if (st.type === 'step-group') inner(st, p.x, p.y);
    }
    return out;
  }
  const height = (g) => NODE_H + (g.subSteps || []).reduce((a, sub) => a + (sub.type === 'step-group' ? height(sub) : SUB_H), 0) + 24;

  function drawNodes() {
    const bs = boxes();
    const els = [];
    for (const [n, b] of bs) {
      const isGroup = b.step.type === 'step-group';
      const problem = marks.get(n);
      const el = h('div', {
        class: `designer-node${isGroup ? ' group' : ''}${n === selected ? ' selected' : ''}${problem ? ' invalid' : ''}`,
        dataset: {step: n, drop: '', ...(isGroup ? {group: n} : {}), ...(b.parent ? {parent: b.parent} : {})},
        title: problem ? problem.join('\n') : '',
        tabindex: 0,
        role: 'button',
        'aria-label': `${app ? 'component' : 'step'} ${n}, type ${b.step.type}${problem ? ', invalid' : ''}`,
      },
      h('span', {class: 'node-name'}, n), ' ', h('span', {class: 'node-type muted'}, b.step.type),
      b.step.if ? h('span', {class: 'node-if', title: `if: ${b.step.if}`}, ' if') : null,
      problem ? h('span', {class: 'node-problem', role: 'img', 'aria-label': 'problem'}, ' ⚠') : null,
      app && Array.isArray(b.step.traits) ? h('span', {class: 'node-traits'}, b.step.traits.map((t) => h('span', {class: 'node-trait', dataset: {trait: t.type}}, `+ ${t.type}`))) : null,
      h('span', {class: 'designer-port', title: `Drag onto a ${app ? 'component' : 'step'} to make it depend on this one`}));
      el.style.left = `${b.x}px`;
      el.style.top = `${b.y}px`;
      el.style.width = `${b.w}px`;
      el.style.height = `${b.h}px`;
      el.addEventListener('keydown', (ev) => {
        if (ev.key === 'Enter' || ev.key === ' ') {
          ev.preventDefault();
          select(n);
        }
      });
      els.push(el);
    }
    replace(nodeLayer, ...els);
    let maxX = 600;
    let maxY = 300;
    for (const b of bs.values()) {
      maxX = Math.max(maxX, b.x + b.w + 40);
      maxY = Math.max(maxY, b.y + b.h + 40);
    }
    edgeLayer.setAttribute('width', maxX);
    edgeLayer.setAttribute('height', maxY);
    nodeLayer.style.width = `${maxX}px`;
    nodeLayer.style.height = `${maxY}px`;
    const lines = [];
    for (const [n, b] of bs) {
      for (const dep of b.step.dependsOn || []) {
        const a = bs.get(dep);
        if (!a) continue;
        lines.push(s('line', {class: 'designer-edge', dataset: {from: dep, to: n}, x1: a.x + a.w, y1: a.y + Math.min(a.h, NODE_H) / 2, x2: b.x, y2: b.y + Math.min(b.h, NODE_H) / 2}));
      }
    }
    replace(edgeLayer, ...lines);
  }

  function field(label, id, input) {
    return h('label', {class: 'field', for: id}, h('span', null, label), input);
  }

  async function paramsOf(type, kind = 'component') {
    if (app) return (xdescribed.get(`${kind}/${type}`) || {}).parameters || [];
    if (type === 'step-group') return [];
    if (!params.has(type)) {
      const d = described.get(type);
      params.set(type, d ? api.get(api.objPath('definitions', d.namespace || 'builtin', d.name), {signal: ctx.signal}).then((x) => x.parameters || []).catch(() => []) : Promise.resolve([]));
    }
    return params.get(type);
  }

  async function drawPanel() {
    drawPolicies();
    if (app && selectedPolicy && drawPolicyPanel()) return;
    const f = selected && m.find(parsed.steps, selected);
    if (!f) {
      replace(panel, h('p', {class: 'muted'}, app
        ? 'Drag a component type onto the canvas; click a component to edit it. Drop a trait on a component to add it; drag from a component\'s port (●) onto another to make that one depend on it; drop a policy type to add a policy.'
        : 'Drag a step type onto the canvas; click a step to edit it. Drag from a step\'s port (●) onto another to make that one depend on it; drop steps into a step-group to group them.'));
      return;
    }
    const st = f.step;
    const n = st.name;
    const text_ = (key, id, label, value, read = (v) => v) => {
      const input = h('input', {id, type: 'text', value: value ?? ''});
      input.addEventListener('change', () => {
        try {
          tryEdit((steps) => m.setField(steps, n, key, read(input.value)));
        } catch (e) {
          status.textContent = `${label}: ${e.message}`;
        }
      });
      return field(label, id, input);
    };
    const nameInput = h('input', {id: 'step-name', type: 'text', value: n});
    nameInput.addEventListener('change', () => {
      if (tryEdit((steps) => m.rename(steps, n, nameInput.value.trim()))) {
        if (positions.has(n)) positions.set(nameInput.value.trim(), positions.get(n));
        select(nameInput.value.trim());
      }
    });
    const json = (v) => m.readField('json', v);
    const del = h('button', {type: 'button', class: 'secondary small', id: 'step-delete'}, 'Delete step');
    del.addEventListener('click', () => {
      tryEdit((steps) => m.remove(steps, n));
      select('');
    });
    const form = h('div', {class: 'designer-props', id: 'step-properties'}, h('p', {class: 'muted'}, 'Loading the parameters…'));
    if (app) del.textContent = 'Delete component';
    replace(panel,
      h('h2', null, `${app ? 'Component' : 'Step'} ${n}`), h('p', {class: 'muted'}, `type ${st.type}${f.group ? `, in group ${f.group.name}` : ''}`),
      h('div', {class: 'step-problems', id: 'step-problems', role: 'alert'}, (marks.get(n) || []).map((msg) => h('p', {class: 'error step-problem'}, msg))),
      field('Name', 'step-name', nameInput),
      app ? null : text_(['if'], 'step-if', 'if', st.if),
      app ? null : text_(['timeout'], 'step-timeout', 'Timeout', st.timeout),
      text_(['dependsOn'], 'step-depends', 'Depends on (JSON list)', st.dependsOn ? JSON.stringify(st.dependsOn) : '', json),
      app ? null : text_(['inputs'], 'step-inputs', 'Inputs (JSON: [{"from", "parameterKey"}])', st.inputs ? JSON.stringify(st.inputs) : '', json),
      app ? null : text_(['outputs'], 'step-outputs', 'Outputs (JSON: [{"name", "valueFrom"}])', st.outputs ? JSON.stringify(st.outputs) : '', json),
      form, del);
    const ps = await paramsOf(st.type);
    if (selected !== n || !form.isConnected) return;
    const traitForms = app ? (st.traits || []).map((t) => {
      const remove = h('button', {type: 'button', class: 'secondary small', id: `trait-remove-${t.type}`}, `Remove ${t.type}`);
      remove.addEventListener('click', () => tryEdit((steps) => a.removeTrait(steps, n, t.type)) && select(n));
      return h('div', {class: 'designer-trait', dataset: {trait: t.type}}, h('h3', null, `Trait ${t.type}`),
        propFields(`trait-${t.type}-`, paramsOfX('trait', t.type), t.properties || {}, (key, v) => tryEdit((steps) => a.setTraitProperty(steps, n, t.type, key, v))),
        remove);
    }) : [];
    replace(form, ps.length ? h('h3', null, 'Properties') : null,
      propFields('prop-', ps, st.properties || {}, (key, v) => tryEdit((steps) => m.setField(steps, n, ['properties', key], v))),
      traitForms);
  }

  const paramsOfX = (kind, type) => (xdescribed.get(`${kind}/${type}`) || {}).parameters || [];

  // propFields answers the form fields of a type's parameters; set(key, value) applies one.
  function propFields(prefix, ps, props, set) {
    return ps.map((p) => {
      const {kind, options} = m.fieldKind(p);
      const id = `${prefix}${p.name}`;
      let input;
      if (kind === 'enum') {
        input = h('select', {id}, h('option', {value: ''}, ''), options.map((o) => h('option', {value: o, selected: props[p.name] === o}, o)));
      } else if (kind === 'bool') {
        input = h('input', {id, type: 'checkbox', checked: props[p.name] === true});
      } else {
        input = h('input', {id, type: kind === 'number' ? 'number' : 'text', value: m.showField(kind, props[p.name]), placeholder: p.default || ''});
      }
      input.addEventListener('change', () => {
        try {
          set(p.name, m.readField(kind, kind === 'bool' ? input.checked : input.value));
        } catch (e) {
          status.textContent = `${p.name}: ${e.message}`;
        }
      });
      return field(`${p.name}${p.required ? ' *' : ''} (${p.type})`, id, input);
    });
  }

  // drawPolicyPanel edits the selected policy: its name is fixed, its properties from its type.
  function drawPolicyPanel() {
    const pol = (parsed.policies || []).find((p) => p.name === selectedPolicy);
    if (!pol) {
      selectedPolicy = '';
      return false;
    }
    const setPolicies = (policies) => {
      try {
        change(parsed.steps, policies);
      } catch (e) {
        status.textContent = e.message;
      }
    };
    const del = h('button', {type: 'button', class: 'secondary small', id: 'policy-delete'}, 'Delete policy');
    del.addEventListener('click', () => {
      setPolicies(a.removePolicy(parsed.policies, pol.name));
      selectPolicy('');
    });
    replace(panel, h('h2', null, `Policy ${pol.name}`), h('p', {class: 'muted'}, `type ${pol.type}`),
      h('div', {class: 'designer-props', id: 'policy-properties'},
        propFields('policy-prop-', paramsOfX('policy', pol.type), pol.properties || {}, (key, v) => setPolicies(a.setPolicyProperty(parsed.policies, pol.name, key, v)))),
      del);
    return true;
  }

  function draw() {
    if (selected && !m.find(parsed.steps, selected)) selected = '';
    drawNodes();
    drawPanel();
  }

  // Save as a template, or run now; both validate first.
  const validate = async () => {
    try {
      await api.request('POST', '/validate', {yaml: text, signal: ctx.signal});
      replace(problems);
      setMarks([]);
      return true;
    } catch (e) {
      if (api.isAbort(e)) return false;
      setMarks(e.problems || []);
      replace(problems, problemList(e));
      return false;
    }
  };
  const saveBtn = h('button', {type: 'button', id: 'designer-save'}, 'Save as template');
  const runBtn = h('button', {type: 'button', class: 'secondary', id: 'designer-run'}, 'Run now');
  saveBtn.addEventListener('click', async () => {
    fromYAML();
    if (!(await validate())) return;
    const md = parsed.metadata;
    try {
      const exists = name && md.name === name && (md.namespace || 'default') === ns;
      if (exists) await api.request('PUT', api.objPath('templates', ns, name), {yaml: text, signal: ctx.signal});
      else await api.request('POST', '/templates', {yaml: text, signal: ctx.signal});
      ctx.notify(`Template ${md.name} saved.`);
      location.hash = link('templates', md.namespace || 'default', md.name);
    } catch (e) {
      if (!api.isAbort(e)) replace(problems, problemList(e));
    }
  });
  runBtn.addEventListener('click', async () => {
    fromYAML();
    if (!(await validate())) return;
    try {
      const run = await api.post('/runs', m.toRun(parsed), {signal: ctx.signal});
      ctx.notify(`Run ${run.metadata.name} started.`);
      location.hash = link('runs', run.metadata.namespace, run.metadata.name);
    } catch (e) {
      if (!api.isAbort(e)) replace(problems, problemList(e));
    }
  });

  const deployBtn = h('button', {type: 'button', id: 'designer-deploy'}, 'Deploy');
  deployBtn.addEventListener('click', async () => {
    fromYAML();
    if (!(await validate())) return;
    const md = parsed.metadata;
    try {
      await api.request('POST', '/applications', {yaml: text, signal: ctx.signal});
      ctx.notify(`Application ${md.name} deployed.`);
      location.hash = link('applications', md.namespace || 'default', md.name);
    } catch (e) {
      if (!api.isAbort(e)) replace(problems, problemList(e));
    }
  });

  document.body.append(ghost);
  replace(ctx.main,
    h('div', {class: 'page-head'}, h('div', null,
      app
        ? h('p', {class: 'crumbs'}, h('a', {href: '#/applications'}, 'Applications'), name ? [' / ', h('a', {href: link('applications', ns, name)}, name)] : null)
        : h('p', {class: 'crumbs'}, h('a', {href: '#/templates'}, 'Templates'), name ? [' / ', h('a', {href: link('templates', ns, name)}, name)] : null),
      h('h1', null, title))),
    h('div', {class: 'designer'},
      h('div', {class: 'designer-side'}, h('h2', null, app ? 'Types' : 'Step types'), palette,
        app ? null : [h('h2', null, 'Packages'), h('p', {class: 'hint'}, 'Actions of external providers, for step types of your own (Definitions).'), packageList]),
      h('div', {class: 'designer-main'}, canvas,
        app ? [h('h2', null, 'Policies'), policyList] : null,
        h('div', {class: 'actions'}, app ? deployBtn : [saveBtn, runBtn]), status, problems, panel),
      h('div', {class: 'designer-yaml'}, h('div', {class: 'editor-label'}, 'YAML'), host)));
  draw();
  if (!app) loadPackages();
  ctx.ready(title);
}
