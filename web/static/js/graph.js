// The step graph of a run: a model of the steps (spec merged with status), a layered layout
// (longest-path layering, placeholders for long edges, barycentre ordering) and its SVG, zoomed
// to fit the page's width when it is wider.
// Step-groups are boxes holding their sub-steps' own layout; edges come from dependsOn, from
// inputs to the step whose output they read (dashed), and in StepByStep mode from each step to
// the next.

import {h, s} from './dom.js';
import * as dagre from '../vendor/dagre-3.1.4/dagre.js';

export const NODE_W = 188;
const NODE_H = 52;
const NODE_MAX_W = 300;
const NAME_CHAR_W = 7.4;
const GAP_X = 28;
const GAP_Y = 44;
const PAD = 14;
const HEAD = 34;
const DUMMY_W = 14;

// specSteps answers the steps as the run resolved them, else as its spec writes them.
export function specSteps(run) {
  const resolved = run && run.stepflow && run.stepflow.steps;
  if (Array.isArray(resolved) && resolved.length) return resolved;
  const spec = run && run.spec && run.spec.workflowSpec && run.spec.workflowSpec.steps;
  return Array.isArray(spec) ? spec : [];
}

function runMode(run) {
  const st = (run.status && run.status.mode) || {};
  const sp = (run.spec && run.spec.mode) || {};
  return {steps: st.steps || sp.steps || 'StepByStep', subSteps: st.subSteps || sp.subSteps || 'DAG'};
}

function mkNode(name, spec, status) {
  return {
    name,
    type: spec.type || status.type || '',
    phase: status.phase || 'pending',
    spec,
    status,
    children: null,
    mode: '',
    deps: Array.isArray(spec.dependsOn) ? spec.dependsOn : [],
    inputs: (Array.isArray(spec.inputs) ? spec.inputs : []).map((x) => x && x.from).filter(Boolean),
    outputs: (Array.isArray(spec.outputs) ? spec.outputs : []).map((x) => x && x.name).filter(Boolean),
  };
}

function isGroup(spec, status) {
  return spec.type === 'step-group' || (Array.isArray(spec.subSteps) && spec.subSteps.length > 0) || (Array.isArray(status.subSteps) && status.subSteps.length > 0);
}

// buildModel merges a run's steps with their status: {mode, nodes}, each node
// {name, type, phase, spec, status, children (sub-step nodes of a group, else null), mode, deps, inputs, outputs}.
// With {template: true} the steps are a template's, which never run: their phase is '' and
// they are drawn and named without one.
export function buildModel(run, {template = false} = {}) {
  const mode = runMode(run);
  const statusSteps = (run.status && Array.isArray(run.status.steps) && run.status.steps) || [];
  const byName = new Map(statusSteps.map((x) => [x.name, x]));
  const nodes = [];
  const seen = new Set();
  const group = (node, spec, status, i) => {
    const subStatus = Array.isArray(status.subSteps) ? status.subSteps : [];
    const subByName = new Map(subStatus.map((x) => [x.name, x]));
    const subSpec = Array.isArray(spec.subSteps) ? spec.subSteps : [];
    node.children = subSpec.map((ss, j) => {
      const name = ss.name || `step-${i}-${j}`;
      return mkNode(name, ss, subByName.get(name) || {});
    });
    for (const x of subStatus) {
      if (!node.children.some((c) => c.name === x.name)) node.children.push(mkNode(x.name, {}, x));
    }
    node.mode = spec.mode || mode.subSteps;
  };
  specSteps(run).forEach((spec, i) => {
    const name = spec.name || `step-${i}`;
    const status = byName.get(name) || {};
    seen.add(name);
    const node = mkNode(name, spec, status);
    if (isGroup(spec, status)) group(node, spec, status, i);
    nodes.push(node);
  });
  statusSteps.forEach((status, i) => {
    if (!status.name || seen.has(status.name)) return;
    const node = mkNode(status.name, {}, status);
    if (isGroup({}, status)) group(node, {}, status, i);
    nodes.push(node);
  });
  const model = {mode: mode.steps, nodes};
  if (template) walk(model, (n) => { n.phase = ''; });
  return model;
}

// loopEntries answers the iterations a looping step's status keeps (the failed ones and the
// most recent), or null when the step is not a loop.
export function loopEntries(node) {
  const it = node.status && node.status.iterations;
  return !node.children && it && Array.isArray(it.entries) && it.entries.length ? it.entries : null;
}

// withLoops answers a copy of the model in which each loop named in open is a box holding its
// kept iterations, side by side (they run independently), each an iteration node that stands
// for its loop (iteration.of) when selected.
export function withLoops(model, open) {
  if (!open.size) return model;
  const nodes = model.nodes.map((n) => {
    const entries = open.has(n.name) && loopEntries(n);
    if (!entries) return n;
    const children = entries.map((e) => ({
      ...mkNode(e.name || `${n.name}[${e.index}]`, {type: n.type}, {phase: e.phase, message: e.message}),
      iteration: {of: n.name, index: e.index, item: e.item || ''},
    }));
    return {...n, children, mode: 'Switch', loop: true};
  });
  return {...model, nodes};
}

// walk calls fn for every node, sub-steps after their group.
export function walk(model, fn) {
  for (const n of model.nodes) {
    fn(n, null);
    for (const c of n.children || []) fn(c, n);
  }
}

// findNode answers the node of the named step, or null.
export function findNode(model, name) {
  let found = null;
  walk(model, (n) => {
    if (n.name === name) found = n;
  });
  return found;
}

// rootVar is the run variable an input reads: its first path element (`tag` of `tag.version`).
export function rootVar(from) {
  return String(from).split(/[.[]/)[0];
}

// producers maps each run variable to the step that outputs it (the first, when several do).
export function producers(model) {
  const out = new Map();
  walk(model, (n) => {
    for (const o of n.outputs) if (!out.has(o)) out.set(o, n.name);
  });
  return out;
}

// leafWidth is a step's box width: wider for a long name, within bounds.
function leafWidth(node) {
  return Math.round(Math.min(NODE_MAX_W, Math.max(NODE_W, 34 + NAME_CHAR_W * node.name.length)));
}

// reach answers, for each of n nodes, the set of nodes the edges lead to from it.
function reach(n, edges) {
  const next = Array.from({length: n}, () => []);
  for (const e of edges) next[e.from].push(e.to);
  return next.map((_, start) => {
    const seen = new Set();
    const stack = [...next[start]];
    while (stack.length) {
      const x = stack.pop();
      if (seen.has(x)) continue;
      seen.add(x);
      stack.push(...next[x]);
    }
    return seen;
  });
}

// layoutLevel lays out the nodes of one level (the run's steps, or a group's sub-steps) in
// coordinates relative to the level's top left corner, with dagre (vendored; layered layout:
// ranks from top to bottom, crossings reduced, long edges routed between the nodes). A group
// is a box as big as its sub-steps' own layout, unless it is collapsed: then it is one box.
function layoutLevel(nodes, mode, producer, collapsed) {
  const n = nodes.length;
  const index = new Map();
  nodes.forEach((node, i) => {
    index.set(node.name, i);
    for (const c of node.children || []) index.set(c.name, i);
  });
  const edges = [];
  const have = new Set();
  const add = (a, b, kind) => {
    if (a === undefined || b === undefined || a === b) return;
    const k = `${a}>${b}`;
    if (have.has(k)) return;
    have.add(k);
    edges.push({from: a, to: b, kind});
  };
  if (mode !== 'Switch') {
    nodes.forEach((node, i) => {
      if (mode === 'StepByStep' && i > 0) add(i - 1, i, 'seq');
      const members = [node, ...(node.children || [])];
      for (const m of members) for (const d of m.deps) add(index.get(d), i, 'dep');
    });
    // An input adds an edge only when the order does not already put its producer before it.
    const after = reach(n, edges);
    nodes.forEach((node, i) => {
      for (const m of [node, ...(node.children || [])]) {
        for (const f of m.inputs) {
          const p = index.get(producer.get(rootVar(f)));
          if (p !== undefined && !after[p].has(i)) add(p, i, 'data');
        }
      }
    });
  }

  const items = nodes.map((node) => {
    if (!node.children || collapsed.has(node.name)) return {w: leafWidth(node), h: NODE_H, inner: null};
    const inner = layoutLevel(node.children, node.mode || 'DAG', producer, collapsed);
    const w = Math.max(NODE_W + 2 * PAD, inner.width + 2 * PAD);
    const h = HEAD + Math.max(inner.height, node.children.length ? 0 : 18) + PAD;
    return {w, h, inner};
  });
  if (!n) return {width: 0, height: 0, boxes: [], edges};

  // dagre ranks each node at the longest path to it; a dependency cycle (the server refuses
  // one) is broken by reversing an edge, which is drawn all the same.
  const g = new dagre.graphlib.Graph({multigraph: false});
  g.setGraph({rankdir: 'TB', nodesep: GAP_X, ranksep: GAP_Y, edgesep: DUMMY_W, marginx: 0, marginy: 0, ranker: 'longest-path'});
  g.setDefaultEdgeLabel(() => ({}));
  items.forEach((it, i) => g.setNode(String(i), {width: it.w, height: it.h}));
  for (const e of edges) g.setEdge(String(e.from), String(e.to));
  // One ordering sweep, not dagre's rounds of them: those cost seconds at a thousand steps.
  dagre.layout(g, {disableOptimalOrderHeuristic: true});

  let minX = Infinity;
  let minY = Infinity;
  let maxX = -Infinity;
  let maxY = -Infinity;
  const boxes = items.map((it, i) => {
    const d = g.node(String(i));
    const b = {node: nodes[i], x: d.x - it.w / 2, y: d.y - it.h / 2, w: it.w, h: it.h, inner: it.inner};
    minX = Math.min(minX, b.x);
    minY = Math.min(minY, b.y);
    maxX = Math.max(maxX, b.x + b.w);
    maxY = Math.max(maxY, b.y + b.h);
    return b;
  });
  for (const e of edges) {
    const pts = (g.edge(String(e.from), String(e.to)) || {}).points || [];
    e.points = pts.map((p) => [p.x, p.y]);
    for (const [x, y] of e.points) {
      minX = Math.min(minX, x);
      minY = Math.min(minY, y);
      maxX = Math.max(maxX, x);
      maxY = Math.max(maxY, y);
    }
  }
  for (const b of boxes) {
    b.x -= minX;
    b.y -= minY;
  }
  for (const e of edges) e.points = e.points.map(([x, y]) => [x - minX, y - minY]);
  return {width: maxX - minX, height: maxY - minY, boxes, edges};
}

// layout places every node of the model: {width, height, nodes: [{node, x, y, w, h, group}],
// edges: [{from, to, kind, points}]}, in absolute coordinates with a margin. An edge's points
// run from the bottom of its source through its placeholders to the top of its target.
export function layout(model, {collapsed = new Set()} = {}) {
  const producer = producers(model);
  const top = layoutLevel(model.nodes, model.mode, producer, collapsed);
  const M = 16;
  const out = {width: top.width + 2 * M, height: top.height + 2 * M, nodes: [], edges: []};
  const place = (level, ox, oy, depth) => {
    for (const b of level.boxes) {
      out.nodes.push({node: b.node, x: ox + b.x, y: oy + b.y, w: b.w, h: b.h, group: !!b.node.children, collapsed: !!b.node.children && !b.inner, depth});
    }
    for (const e of level.edges) {
      const a = level.boxes[e.from];
      const b = level.boxes[e.to];
      out.edges.push({from: a.node.name, to: b.node.name, kind: e.kind, points: e.points.map(([x, y]) => [ox + x, oy + y])});
    }
    for (const b of level.boxes) {
      if (b.inner) place(b.inner, ox + b.x + (b.w - b.inner.width) / 2, oy + b.y + HEAD, depth + 1);
    }
  };
  place(top, M, M, 0);
  return out;
}

// structureKey identifies what the layout depends on, so that a run update that only changes
// phases repaints the nodes in place (keeping focus and scroll) instead of redrawing.
export function structureKey(model) {
  const level = (nodes) => nodes.map((n) => [n.name, n.deps, n.inputs, n.outputs, n.mode, !!loopEntries(n), n.children ? level(n.children) : null]);
  return JSON.stringify([model.mode, level(model.nodes)]);
}

function truncate(text, px, charW) {
  const max = Math.max(4, Math.floor(px / charW));
  return text.length > max ? text.slice(0, max - 1) + '…' : text;
}

function iterationText(node) {
  const it = node.status && node.status.iterations;
  if (!it || !it.total) return '';
  return `${it.succeeded || 0}/${it.total}${it.failed ? ` · ${it.failed} failed` : ''}`;
}

// metaText is the small line under a node's name: type, mode, phase, loop progress.
function metaText(node) {
  const parts = node.phase ? [node.phase] : [];
  const it = iterationText(node);
  if (it) parts.push(it);
  if (node.loop) parts.push('loop');
  else if (node.children) parts.push(node.mode === 'Switch' ? 'switch' : `group · ${node.mode}`);
  else if (node.type) parts.push(node.type);
  return parts.join(' · ');
}

function label(node) {
  const kind = node.children ? 'Step group' : 'Step';
  let text = node.phase ? `${kind} ${node.name}, ${node.phase}` : `${kind} ${node.name}`;
  if (node.type && !node.children) text += `, type ${node.type}`;
  const it = iterationText(node);
  if (it) text += `, iterations ${it}`;
  return text;
}

function paintNode(g, node, w) {
  g.setAttribute('class', `node ${node.children ? 'group' : 'step'} phase-${node.phase || 'none'}${g.classList.contains('selected') ? ' selected' : ''}`);
  g.dataset.phase = node.phase;
  g.setAttribute('aria-label', label(node));
  const meta = g.querySelector('.meta');
  if (meta) meta.textContent = truncate(metaText(node), w - 24, 6.3);
  const title = g.querySelector('title');
  if (title) title.textContent = `${node.name} (${metaText(node)})${node.status.message ? '\n' + node.status.message : ''}`;
}

function drawNode(p, interactive) {
  const {node, x, y, w, h} = p;
  const g = s('g', {
    transform: `translate(${x},${y})`,
    tabindex: interactive ? 0 : null,
    role: interactive ? 'button' : 'img',
    dataset: {step: node.name},
  });
  g.append(s('title'));
  if (p.group) {
    g.append(
      s('rect', {class: 'box', width: w, height: h, rx: 10}),
      s('rect', {class: 'head', width: w, height: HEAD - 6, rx: 10}),
      s('text', {class: 'name', x: 12, y: 18}, truncate(node.name, w / 2 - 12, NAME_CHAR_W)),
      s('text', {class: 'meta', x: w - 34, y: 18, 'text-anchor': 'end'}),
    );
    if (!node.children.length) g.append(s('text', {class: 'empty', x: w / 2, y: HEAD + 12, 'text-anchor': 'middle'}, 'no sub-steps'));
  } else {
    g.append(
      s('rect', {class: 'box', width: w, height: h, rx: 8}),
      s('rect', {class: 'stripe', width: 6, height: h - 12, x: 6, y: 6, rx: 3}),
      s('text', {class: 'name', x: 20, y: 22}, truncate(node.name, w - 28, NAME_CHAR_W)),
      s('text', {class: 'meta', x: 20, y: 40}),
    );
  }
  paintNode(g, node, w);
  return g;
}

// edgePath draws an edge through the points dagre routed it by, rounding each bend, ending
// short of the target for the arrowhead.
function edgePath(e) {
  const pts = e.points.slice();
  if (pts.length < 2) return '';
  const last = pts.length - 1;
  const [lx, ly] = pts[last];
  const [px, py] = pts[last - 1];
  const len = Math.hypot(lx - px, ly - py) || 1;
  pts[last] = [lx - ((lx - px) / len) * 3, ly - ((ly - py) / len) * 3];
  let d = `M${pts[0][0]},${pts[0][1]}`;
  for (let k = 1; k < last; k++) {
    const [x, y] = pts[k];
    const [nx, ny] = pts[k + 1];
    d += ` Q${x},${y} ${(x + nx) / 2},${(y + ny) / 2}`;
  }
  return d + ` L${pts[last][0]},${pts[last][1]}`;
}

// groupToggle is the button in a group's head that collapses it to one box, or opens it.
function groupToggle(p, collapsed) {
  const what = p.node.loop || loopEntries(p.node) ? 'iterations of' : 'group';
  const label = `${collapsed ? 'Expand' : 'Collapse'} the ${what} ${p.node.name}`;
  return s('g', {class: 'toggle', transform: `translate(${p.x + p.w - 26},${p.y + 5})`, tabindex: 0, role: 'button', 'aria-label': label, 'aria-expanded': collapsed ? 'false' : 'true', dataset: {toggle: p.node.name}},
    s('title', null, label),
    s('rect', {width: 20, height: 18, rx: 4}),
    s('text', {x: 10, y: 13, 'text-anchor': 'middle'}, collapsed ? '+' : '−'));
}

// Graph draws a model into an SVG inside a viewport (this.el) and keeps it current:
// update(model) repaints the nodes in place when the structure is unchanged, and redraws
// otherwise. onSelect(name) is called when a node is clicked or activated with Enter or Space;
// without it the nodes are pictures only. The viewport pans (drag, or the minimap), zooms (the
// wheel, or the controls in this.controls) and fits the whole graph in both axes; it is fitted
// until the user pans or zooms, and again with Fit. A group collapses to one box with the
// button in its head.
const ARROWS = {ArrowDown: [0, 1], ArrowUp: [0, -1], ArrowRight: [1, 0], ArrowLeft: [-1, 0]};
const ZOOM_STEP = 1.25;
const MAX_ZOOM = 3;
const VIEW_MIN_H = 140;
const FIT_MARGIN = 8; // px
const MINIMAP_BELOW = 0.6; // a zoom below which the minimap is shown
const WORKER_AT = 250; // steps: a larger graph is laid out in a worker, the page stays responsive
const VIEW_MAX_H = 0.72; // of the window's height

export class Graph {
  constructor(onSelect) {
    this.onSelect = onSelect;
    this.interactive = !!onSelect;
    this.key = null;
    this.model = null;
    this.selected = null;
    this.collapsed = new Set();
    this.loops = new Set(); // the loops shown with their iterations
    this.size = {w: 0, h: 0};
    this.fitted = true;
    this.view = {x: 0, y: 0, k: 1};
    this.boxes = [];
    this.svg = s('svg', {class: 'graph', role: 'group', 'aria-label': 'Step graph', preserveAspectRatio: 'xMinYMin meet'});
    this.lens = s('rect', {class: 'lens'});
    this.mini = s('svg', {class: 'minimap', 'aria-hidden': 'true', preserveAspectRatio: 'xMidYMid meet'});
    this.el = h('div', {class: 'graph-view'}, this.svg, this.mini);
    this.svg.addEventListener('click', (ev) => {
      if (this.panned) return;
      const t = ev.target.closest('[data-toggle]');
      if (t) return this.toggle(t.dataset.toggle);
      const g = ev.target.closest('[data-step]');
      if (g && this.interactive) this.onSelect(g.dataset.of || g.dataset.step);
    });
    this.svg.addEventListener('keydown', (ev) => {
      const t = ev.target.closest('[data-toggle]');
      if (t && (ev.key === 'Enter' || ev.key === ' ')) {
        ev.preventDefault();
        return this.toggle(t.dataset.toggle);
      }
      const g = ev.target.closest('[data-step]');
      if (!g || !this.interactive) return;
      if (ev.key === 'Enter' || ev.key === ' ') {
        ev.preventDefault();
        this.onSelect(g.dataset.of || g.dataset.step);
      } else if (ARROWS[ev.key]) {
        const next = this.neighbour(g, ARROWS[ev.key]);
        if (next) {
          ev.preventDefault();
          next.focus();
        }
      }
    });
    this.svg.addEventListener('focusin', (ev) => this.reveal(ev.target.closest('[data-step]')));
    this.svg.addEventListener('wheel', (ev) => {
      ev.preventDefault();
      const r = this.svg.getBoundingClientRect();
      this.zoomAt(this.view.k * Math.pow(1.0015, -ev.deltaY), ev.clientX - r.left, ev.clientY - r.top);
    }, {passive: false});
    this.svg.addEventListener('pointerdown', (ev) => this.startPan(ev, (dx, dy) => this.panBy(dx, dy)));
    this.mini.addEventListener('pointerdown', (ev) => {
      const at = (e) => {
        const r = this.mini.getBoundingClientRect();
        const scale = Math.max(this.size.w / r.width, this.size.h / r.height);
        const ox = (r.width - this.size.w / scale) / 2;
        const oy = (r.height - this.size.h / scale) / 2;
        this.centreOn((e.clientX - r.left - ox) * scale, (e.clientY - r.top - oy) * scale);
      };
      at(ev);
      this.startPan(ev, null, at);
    });
    this.level = h('span', {class: 'zoom-level', 'aria-live': 'polite'});
    const button = (label, text, fn) => h('button', {type: 'button', class: 'secondary small', 'aria-label': label, title: label, onclick: fn}, text);
    this.controls = h('div', {class: 'zoom', role: 'group', 'aria-label': 'Zoom the graph'},
      button('Zoom out', '−', () => this.zoomAt(this.view.k / ZOOM_STEP)),
      button('Fit the whole graph', 'Fit', () => this.fit()),
      button('Zoom in', '+', () => this.zoomAt(this.view.k * ZOOM_STEP)),
      this.level);
    // Fitted again whenever the viewport's size changes, the first time included: a graph is
    // often drawn before its page is on the screen.
    this.resize = typeof ResizeObserver === 'function' ? new ResizeObserver(() => this.applyZoom()) : null;
    if (this.resize) this.resize.observe(this.el);
  }

  // startPan follows a drag from ev: move(dx, dy) with the pointer's moves in screen pixels, or
  // each(event). A drag of more than a few pixels is a pan, not a click.
  startPan(ev, move, each) {
    if (ev.button !== 0) return;
    let last = [ev.clientX, ev.clientY];
    const start = last;
    this.panned = false;
    const onMove = (e) => {
      if (!this.panned && Math.hypot(e.clientX - start[0], e.clientY - start[1]) < 4) return;
      this.panned = true;
      if (move) move(e.clientX - last[0], e.clientY - last[1]);
      if (each) each(e);
      last = [e.clientX, e.clientY];
    };
    const onUp = () => {
      window.removeEventListener('pointermove', onMove);
      window.removeEventListener('pointerup', onUp);
      setTimeout(() => (this.panned = false), 0);
    };
    window.addEventListener('pointermove', onMove);
    window.addEventListener('pointerup', onUp);
  }

  // neighbour is the node nearest to g in direction [dx, dy], for moving with the arrow keys.
  neighbour(g, [dx, dy]) {
    const at = (el) => this.boxes.find((b) => b.name === el.dataset.step);
    const a = at(g);
    if (!a) return null;
    let best = null;
    let bestScore = Infinity;
    for (const b of this.boxes) {
      if (b === a) continue;
      const along = (b.cx - a.cx) * dx + (b.cy - a.cy) * dy;
      if (along <= 1) continue;
      const across = Math.abs((b.cx - a.cx) * dy) + Math.abs((b.cy - a.cy) * dx);
      const score = along + 2 * across;
      if (score < bestScore) {
        bestScore = score;
        best = b;
      }
    }
    return best ? this.nodeEl(best.name) : null;
  }

  // viewport is the size of the visible area in pixels.
  viewport() {
    return {w: this.svg.clientWidth || 0, h: this.svg.clientHeight || 0};
  }

  // fit shows the whole graph, in both axes, never larger than its natural size.
  fit() {
    this.fitted = true;
    this.applyZoom();
  }

  zoomAt(k, px, py) {
    const vp = this.viewport();
    if (px === undefined) [px, py] = [vp.w / 2, vp.h / 2];
    const min = Math.min(0.5, this.fitScale() / 2);
    k = Math.max(min, Math.min(MAX_ZOOM, k));
    const gx = this.view.x + px / this.view.k;
    const gy = this.view.y + py / this.view.k;
    this.view = {x: gx - px / k, y: gy - py / k, k};
    this.fitted = false;
    this.applyView();
  }

  panBy(dx, dy) {
    this.view = {...this.view, x: this.view.x - dx / this.view.k, y: this.view.y - dy / this.view.k};
    this.fitted = false;
    this.applyView();
  }

  centreOn(gx, gy) {
    const vp = this.viewport();
    this.view = {...this.view, x: gx - vp.w / 2 / this.view.k, y: gy - vp.h / 2 / this.view.k};
    this.fitted = false;
    this.applyView();
  }

  // reveal pans a node that got the focus into view.
  reveal(g) {
    if (!g) return;
    const b = this.boxes.find((x) => x.name === g.dataset.step);
    const vp = this.viewport();
    if (!b || !vp.w) return;
    const {x, y, k} = this.view;
    if (b.x >= x && b.y >= y && b.x + b.w <= x + vp.w / k && b.y + b.h <= y + vp.h / k) return;
    this.centreOn(b.cx, b.cy);
  }

  fitScale() {
    const vp = this.viewport();
    if (!vp.w || !vp.h || !this.size.w || !this.size.h) return 1;
    return Math.min(1, (vp.w - FIT_MARGIN) / this.size.w, (vp.h - FIT_MARGIN) / this.size.h); // a margin for the strokes
  }

  // current is the zoom shown.
  current() {
    return this.view.k;
  }

  // setZoom(null) fits the graph; setZoom(k) zooms to k about the centre.
  setZoom(z) {
    if (z === null) this.fit();
    else this.zoomAt(z);
  }

  // applyZoom sizes the viewport (as tall as the graph, within bounds) and, while the graph is
  // fitted, fits it again.
  applyZoom() {
    const maxH = Math.max(VIEW_MIN_H, Math.round((typeof window === 'object' ? window.innerHeight : 800) * VIEW_MAX_H));
    const want = `${Math.max(VIEW_MIN_H, Math.min(maxH, Math.ceil(this.size.h) + FIT_MARGIN))}px`;
    if (this.el.style.height !== want) this.el.style.height = want;
    if (this.fitted) {
      const vp = this.viewport();
      const k = this.fitScale();
      this.view = {x: (this.size.w - vp.w / k) / 2, y: (this.size.h - vp.h / k) / 2, k};
      if (k === 1) this.view.y = 0;
    }
    this.applyView();
  }

  applyView() {
    const vp = this.viewport();
    const {x, y, k} = this.view;
    if (vp.w && vp.h) this.svg.setAttribute('viewBox', `${x} ${y} ${vp.w / k} ${vp.h / k}`);
    this.level.textContent = `${Math.round(k * 100)}%`;
    // The minimap is for finding one's way: shown while part of the graph is out of view, or
    // the whole of it is drawn too small to read.
    const whole = x <= 0 && y <= 0 && x + vp.w / k >= this.size.w && y + vp.h / k >= this.size.h;
    this.mini.toggleAttribute('hidden', whole && k >= MINIMAP_BELOW); // an SVG element has no .hidden
    this.lens.setAttribute('x', x);
    this.lens.setAttribute('y', y);
    this.lens.setAttribute('width', vp.w / k);
    this.lens.setAttribute('height', vp.h / k);
  }

  // destroy stops watching the container's size.
  destroy() {
    if (this.resize) this.resize.disconnect();
    if (this.worker) this.worker.terminate();
  }

  // toggle collapses the named group to one box, or opens it again.
  toggle(name) {
    const loop = this.model && this.model.nodes.find((n) => n.name === name && loopEntries(n));
    const set = loop ? this.loops : this.collapsed;
    if (set.has(name)) set.delete(name);
    else set.add(name);
    this.key = null;
    if (this.model) this.update(this.model);
    const t = [...this.svg.querySelectorAll('[data-toggle]')].find((x) => x.dataset.toggle === name);
    if (t) t.focus();
  }

  update(given) {
    this.model = given;
    const model = withLoops(given, this.loops);
    const key = structureKey(model) + JSON.stringify([...this.collapsed].sort());
    if (key === this.key) {
      walk(model, (node) => {
        const g = this.nodeEl(node.name);
        if (g) paintNode(g, node, Number(g.dataset.w));
      });
    } else {
      this.key = key;
      let count = 0;
      walk(model, () => count++);
      if (count >= WORKER_AT && typeof Worker === 'function') this.layOutAside(model, count);
      else this.draw(model, layout(model, {collapsed: this.collapsed}));
    }
    this.select(this.selected);
  }

  // layOutAside lays a large graph out in a worker (layout-worker.js), saying so meanwhile, and
  // draws it with the model current when the layout comes back; a layout of a structure that
  // has changed since is dropped.
  layOutAside(model, count) {
    if (!this.worker) {
      this.worker = new Worker(new URL('./layout-worker.js', import.meta.url), {type: 'module'});
      this.worker.addEventListener('message', (ev) => this.laidOut(ev.data));
      this.worker.addEventListener('error', () => {
        if (this.pending) this.laidOut({seq: this.pending, L: null});
      });
    }
    this.seq = (this.seq || 0) + 1;
    this.pending = this.seq;
    this.svg.replaceChildren(s('text', {class: 'empty', x: 16, y: 34}, `Laying out ${count} steps…`));
    this.worker.postMessage({seq: this.seq, model, collapsed: [...this.collapsed]});
  }

  laidOut({seq, L}) {
    if (seq !== this.pending) return;
    this.pending = 0;
    const model = withLoops(this.model, this.loops);
    if (L) {
      const byName = new Map();
      walk(model, (n) => byName.set(n.name, n));
      L.nodes = L.nodes.map((p) => ({...p, node: byName.get(p.name)}));
      if (L.nodes.some((p) => !p.node)) L = null;
    }
    this.draw(model, L || layout(model, {collapsed: this.collapsed})); // the worker failed: here
    this.select(this.selected);
    for (const done of this.waiting || []) done();
    this.waiting = [];
  }

  // drawn resolves once the graph shows the last model given to update.
  drawn() {
    if (!this.pending) return Promise.resolve();
    return new Promise((done) => (this.waiting = [...(this.waiting || []), done]));
  }

  nodeEl(name) {
    return this.els ? this.els.get(name) || null : null;
  }

  draw(model, L) {
    const focused = document.activeElement && this.svg.contains(document.activeElement) ? document.activeElement.dataset.step : null;
    const defs = s('defs', null,
      s('marker', {id: 'arrow', viewBox: '0 0 10 10', refX: 8, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse'},
        s('path', {class: 'arrowhead', d: 'M0,0 L10,5 L0,10 z'})));
    const groups = s('g', {class: 'groups'});
    const edges = s('g', {class: 'edges', 'aria-hidden': 'true'});
    const steps = s('g', {class: 'steps'});
    const toggles = s('g', {class: 'toggles'});
    this.els = new Map();
    this.boxes = [];
    let outline = '';
    for (const p of L.nodes) {
      const g = drawNode(p, this.interactive);
      g.dataset.w = String(p.w);
      this.els.set(p.node.name, g);
      this.boxes.push({name: p.node.name, x: p.x, y: p.y, w: p.w, h: p.h, cx: p.x + p.w / 2, cy: p.y + p.h / 2});
      if (p.group && !p.collapsed) groups.append(g);
      else steps.append(g);
      if (p.group) toggles.append(groupToggle(p, p.collapsed));
      else if (loopEntries(p.node)) toggles.append(groupToggle(p, true));
      if (p.node.iteration) g.dataset.of = p.node.iteration.of;
      if (!p.group || p.collapsed) outline += `M${p.x},${p.y}h${p.w}v${p.h}h${-p.w}z`;
    }
    for (const e of L.edges) {
      edges.append(s('path', {class: `edge edge-${e.kind}`, d: edgePath(e), 'marker-end': 'url(#arrow)', dataset: {from: e.from, to: e.to}}));
    }
    this.size = {w: L.width, h: L.height};
    this.svg.replaceChildren(defs, groups, edges, steps, toggles);
    if (!model.nodes.length) {
      this.size = {w: 320, h: 60};
      this.svg.append(s('text', {class: 'empty', x: 16, y: 34}, 'This run has no steps yet.'));
    }
    this.mini.setAttribute('viewBox', `0 0 ${this.size.w} ${this.size.h}`);
    this.mini.replaceChildren(s('path', {class: 'outline', d: outline}), this.lens);
    this.applyZoom();
    if (focused) {
      const g = this.nodeEl(focused);
      if (g) g.focus();
    }
  }

  select(name) {
    this.selected = name;
    for (const g of this.els ? this.els.values() : []) {
      const on = g.dataset.step === name;
      g.classList.toggle('selected', on);
      if (this.interactive) g.setAttribute('aria-pressed', on ? 'true' : 'false');
    }
  }
}
