// The step graph of a run: a model of the steps (spec merged with status), a layered layout
// (longest-path layering, placeholders for long edges, barycentre ordering) and its SVG, zoomed
// to fit the page's width when it is wider.
// Step-groups are boxes holding their sub-steps' own layout; edges come from dependsOn, from
// inputs to the step whose output they read (dashed), and in StepByStep mode from each step to
// the next.

import {h, s} from './dom.js';

export const NODE_W = 188;
const NODE_H = 52;
const NODE_MAX_W = 300;
const NAME_CHAR_W = 7.4;
const GAP_X = 28;
const GAP_Y = 44;
const PAD = 14;
const HEAD = 34;
const DUMMY_W = 14;
const DUMMY_H = 0;

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
// coordinates relative to the level's top left corner: longest-path layers from top to bottom,
// an edge that spans layers routed through a placeholder in each layer it crosses, the order
// within layers from barycentre sweeps, and each node moved towards its neighbours.
function layoutLevel(nodes, mode, producer) {
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

  // Longest-path layering. A dependency cycle (the server refuses one) must not hang the
  // page: its back edges are left out of the layering, and drawn all the same.
  const preds = nodes.map(() => []);
  for (const e of edges) preds[e.to].push(e.from);
  const layer = new Array(n).fill(0);
  const state = new Array(n).fill(0);
  const longest = (i) => {
    if (state[i] === 2) return layer[i];
    if (state[i] === 1) return -1;
    state[i] = 1;
    let l = 0;
    for (const p of preds[i]) {
      const lp = longest(p);
      if (lp >= 0) l = Math.max(l, lp + 1);
    }
    state[i] = 2;
    layer[i] = l;
    return l;
  };
  for (let i = 0; i < n; i++) longest(i);

  // Items: the nodes, then one placeholder per layer an edge crosses.
  const items = nodes.map((node, i) => {
    if (!node.children) return {id: i, layer: layer[i], w: leafWidth(node), h: NODE_H, inner: null};
    const inner = layoutLevel(node.children, node.mode || 'DAG', producer);
    const w = Math.max(NODE_W + 2 * PAD, inner.width + 2 * PAD);
    const h = HEAD + Math.max(inner.height, node.children.length ? 0 : 18) + PAD;
    return {id: i, layer: layer[i], w, h, inner};
  });
  const up = items.map(() => []);
  const down = items.map(() => []);
  const link = (a, b) => {
    down[a].push(b);
    up[b].push(a);
  };
  for (const e of edges) {
    e.via = [];
    if (layer[e.to] <= layer[e.from]) continue; // a back edge of a cycle
    let prev = e.from;
    for (let l = layer[e.from] + 1; l < layer[e.to]; l++) {
      const id = items.length;
      items.push({id, layer: l, w: DUMMY_W, h: 0, dummy: true});
      up.push([]);
      down.push([]);
      link(prev, id);
      e.via.push(id);
      prev = id;
    }
    link(prev, e.to);
  }

  // Order within layers: spec order, then barycentre sweeps down and up.
  const layers = [];
  for (const it of items) (layers[it.layer] ||= []).push(it.id);
  const pos = new Array(items.length).fill(0);
  const number = (ids) => ids.forEach((id, k) => (pos[id] = (k + 0.5) / ids.length));
  layers.forEach(number);
  const sweep = (l, neighbours) => {
    const ids = layers[l];
    const key = new Map(ids.map((id) => {
      const ns = neighbours[id];
      return [id, ns.length ? ns.reduce((a, x) => a + pos[x], 0) / ns.length : pos[id]];
    }));
    ids.sort((a, b) => key.get(a) - key.get(b) || a - b);
    number(ids);
  };
  for (let round = 0; round < 3; round++) {
    for (let l = 1; l < layers.length; l++) sweep(l, up);
    for (let l = layers.length - 2; l >= 0; l--) sweep(l, down);
  }
  for (let l = 1; l < layers.length; l++) sweep(l, up);

  const rows = layers;

  // Horizontal positions: each row packed and centred on the widest. (Moving nodes towards
  // their neighbours spreads a dense graph far wider than a screen; centred rows stay compact
  // and the placeholders keep long edges between the nodes.)
  const cx = new Array(items.length).fill(0);
  const gap = (a, b) => (items[a].w + items[b].w) / 2 + (items[a].dummy || items[b].dummy ? GAP_X / 2 : GAP_X);
  const rowW = rows.map((row) => row.reduce((w, id, k) => w + (k > 0 ? gap(row[k - 1], id) : 0), 0) + (items[row[0]].w + items[row[row.length - 1]].w) / 2);
  const width = rows.length ? Math.max(...rowW) : 0;
  rows.forEach((row, r) => {
    let x = (width - rowW[r]) / 2 + items[row[0]].w / 2;
    row.forEach((id, k) => {
      if (k > 0) x += gap(row[k - 1], id);
      cx[id] = x;
    });
  });
  const minX = 0;
  const maxX = width;

  // Vertical positions: rows one under the other, items aligned at the top of their row; a
  // placeholder spans its row's height, so that its edge runs straight through.
  const boxes = new Array(items.length);
  let y = 0;
  rows.forEach((row, r) => {
    if (r > 0) y += GAP_Y;
    const rowH = Math.max(...row.map((id) => items[id].h), DUMMY_H);
    for (const id of row) {
      const it = items[id];
      boxes[id] = {node: it.dummy ? null : nodes[id], x: cx[id] - it.w / 2 - minX, y, w: it.w, h: it.dummy ? rowH : it.h, inner: it.inner};
    }
    y += rowH;
  });
  return {width: maxX - minX, height: y, boxes: boxes.slice(0, n), via: boxes, edges};
}

// layout places every node of the model: {width, height, nodes: [{node, x, y, w, h, group}],
// edges: [{from, to, kind, points}]}, in absolute coordinates with a margin. An edge's points
// run from the bottom of its source through its placeholders to the top of its target.
export function layout(model) {
  const producer = producers(model);
  const top = layoutLevel(model.nodes, model.mode, producer);
  const M = 16;
  const out = {width: top.width + 2 * M, height: top.height + 2 * M, nodes: [], edges: []};
  const place = (level, ox, oy, depth) => {
    for (const b of level.boxes) {
      out.nodes.push({node: b.node, x: ox + b.x, y: oy + b.y, w: b.w, h: b.h, group: !!b.inner, depth});
    }
    for (const e of level.edges) {
      const a = level.boxes[e.from];
      const b = level.boxes[e.to];
      const points = [[ox + a.x + a.w / 2, oy + a.y + a.h]];
      for (const id of e.via) {
        const d = level.via[id];
        points.push([ox + d.x + d.w / 2, oy + d.y], [ox + d.x + d.w / 2, oy + d.y + d.h]);
      }
      points.push([ox + b.x + b.w / 2, oy + b.y]);
      out.edges.push({from: a.node.name, to: b.node.name, kind: e.kind, points});
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
  const level = (nodes) => nodes.map((n) => [n.name, n.deps, n.inputs, n.outputs, n.mode, n.children ? level(n.children) : null]);
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
  if (node.children) parts.push(node.mode === 'Switch' ? 'switch' : `group · ${node.mode}`);
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
      s('text', {class: 'meta', x: w - 12, y: 18, 'text-anchor': 'end'}),
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

// edgePath draws an edge through its points: an S-curve for each gap between rows, a
// straight line through each placeholder. A back edge of a cycle goes from a bottom upwards.
function edgePath(e) {
  const pts = e.points.slice();
  const last = pts.length - 1;
  pts[last] = [pts[last][0], pts[last][1] - 3];
  let d = `M${pts[0][0]},${pts[0][1]}`;
  for (let k = 1; k < pts.length; k++) {
    const [x0, y0] = pts[k - 1];
    const [x1, y1] = pts[k];
    if (k % 2 === 0 && x0 === x1) {
      d += ` L${x1},${y1}`;
      continue;
    }
    const dy = Math.max(16, Math.abs(y1 - y0) / 2);
    const s = y1 >= y0 ? 1 : -1;
    d += ` C${x0},${y0 + s * dy} ${x1},${y1 - s * dy} ${x1},${y1}`;
  }
  return d;
}

// Graph draws a model into an SVG and keeps it current: update(model) repaints the nodes in
// place when the structure is unchanged, and redraws otherwise. onSelect(name) is called when
// a node is clicked or activated with Enter or Space; without it the nodes are pictures only. A graph wider than its container is
// zoomed out to fit (not below MIN_FIT, past which the text is too small); the zoom controls
// (this.controls) change that.
const MIN_FIT = 0.6;
const ARROWS = {ArrowDown: [0, 1], ArrowUp: [0, -1], ArrowRight: [1, 0], ArrowLeft: [-1, 0]};
const ZOOM_STEP = 1.25;

export class Graph {
  constructor(onSelect) {
    this.onSelect = onSelect;
    this.interactive = !!onSelect;
    this.key = null;
    this.selected = null;
    this.size = {w: 0, h: 0};
    this.zoom = null;
    this.svg = s('svg', {class: 'graph', role: 'group', 'aria-label': 'Step graph'});
    this.svg.addEventListener('click', (ev) => {
      const g = ev.target.closest('[data-step]');
      if (g && this.interactive) this.onSelect(g.dataset.step);
    });
    this.svg.addEventListener('keydown', (ev) => {
      const g = ev.target.closest('[data-step]');
      if (!g || !this.interactive) return;
      if (ev.key === 'Enter' || ev.key === ' ') {
        ev.preventDefault();
        this.onSelect(g.dataset.step);
      } else if (ARROWS[ev.key]) {
        const next = this.neighbour(g, ARROWS[ev.key]);
        if (next) {
          ev.preventDefault();
          next.focus();
        }
      }
    });
    this.level = h('span', {class: 'zoom-level', 'aria-live': 'polite'});
    const button = (label, text, fn) => h('button', {type: 'button', class: 'secondary small', 'aria-label': label, title: label, onclick: fn}, text);
    this.controls = h('div', {class: 'zoom', role: 'group', 'aria-label': 'Zoom the graph'},
      button('Zoom out', '−', () => this.setZoom(Math.max(0.3, this.current() / ZOOM_STEP))),
      button('Fit the graph to the width', 'Fit', () => this.setZoom(null)),
      button('Zoom in', '+', () => this.setZoom(Math.min(2, this.current() * ZOOM_STEP))),
      this.level);
    this.resize = typeof ResizeObserver === 'function' ? new ResizeObserver(() => this.zoom === null && this.applyZoom()) : null;
    this.observed = null;
  }

  // neighbour is the node nearest to g in direction [dx, dy], for moving with the arrow keys.
  neighbour(g, [dx, dy]) {
    const centre = (el) => {
      const r = el.getBoundingClientRect();
      return [r.left + r.width / 2, r.top + r.height / 2];
    };
    const [x0, y0] = centre(g);
    let best = null;
    let bestScore = Infinity;
    for (const o of this.svg.querySelectorAll('[data-step]')) {
      if (o === g) continue;
      const [x, y] = centre(o);
      const along = (x - x0) * dx + (y - y0) * dy;
      if (along <= 1) continue;
      const across = Math.abs((x - x0) * dy) + Math.abs((y - y0) * dx);
      const score = along + 2 * across;
      if (score < bestScore) {
        bestScore = score;
        best = o;
      }
    }
    return best;
  }

  // current is the zoom shown: the chosen one, or the one that fits.
  current() {
    if (this.zoom !== null) return this.zoom;
    const parent = this.svg.parentElement;
    const avail = parent ? parent.clientWidth : 0;
    return avail && this.size.w > avail ? Math.max(MIN_FIT, avail / this.size.w) : 1;
  }

  setZoom(z) {
    this.zoom = z;
    this.applyZoom();
  }

  applyZoom() {
    const parent = this.svg.parentElement;
    if (this.resize && parent && this.observed !== parent) {
      if (this.observed) this.resize.unobserve(this.observed);
      this.resize.observe(parent);
      this.observed = parent;
    }
    const z = this.current();
    this.svg.setAttribute('width', String(Math.round(this.size.w * z)));
    this.svg.setAttribute('height', String(Math.round(this.size.h * z)));
    this.level.textContent = `${Math.round(z * 100)}%`;
  }

  // destroy stops watching the container's size.
  destroy() {
    if (this.resize) this.resize.disconnect();
  }

  update(model) {
    const key = structureKey(model);
    if (key === this.key) {
      walk(model, (node) => {
        const g = this.nodeEl(node.name);
        if (g) paintNode(g, node, Number(g.dataset.w));
      });
    } else {
      this.key = key;
      this.draw(model);
    }
    this.select(this.selected);
  }

  nodeEl(name) {
    for (const g of this.svg.querySelectorAll('[data-step]')) if (g.dataset.step === name) return g;
    return null;
  }

  draw(model) {
    const focused = document.activeElement && this.svg.contains(document.activeElement) ? document.activeElement.dataset.step : null;
    const L = layout(model);
    const defs = s('defs', null,
      s('marker', {id: 'arrow', viewBox: '0 0 10 10', refX: 8, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse'},
        s('path', {class: 'arrowhead', d: 'M0,0 L10,5 L0,10 z'})));
    const groups = s('g', {class: 'groups'});
    const edges = s('g', {class: 'edges', 'aria-hidden': 'true'});
    const steps = s('g', {class: 'steps'});
    for (const p of L.nodes) {
      const g = drawNode(p, this.interactive);
      g.dataset.w = String(p.w);
      (p.group ? groups : steps).append(g);
    }
    for (const e of L.edges) {
      edges.append(s('path', {class: `edge edge-${e.kind}`, d: edgePath(e), 'marker-end': 'url(#arrow)', dataset: {from: e.from, to: e.to}}));
    }
    this.size = {w: L.width, h: L.height};
    this.svg.replaceChildren(defs, groups, edges, steps);
    if (!model.nodes.length) {
      this.size = {w: 320, h: 60};
      this.svg.append(s('text', {class: 'empty', x: 16, y: 34}, 'This run has no steps yet.'));
    }
    this.svg.setAttribute('viewBox', `0 0 ${this.size.w} ${this.size.h}`);
    this.applyZoom();
    if (focused) {
      const g = this.nodeEl(focused);
      if (g) g.focus();
    }
  }

  select(name) {
    this.selected = name;
    for (const g of this.svg.querySelectorAll('[data-step]')) {
      const on = g.dataset.step === name;
      g.classList.toggle('selected', on);
      if (this.interactive) g.setAttribute('aria-pressed', on ? 'true' : 'false');
    }
  }
}
