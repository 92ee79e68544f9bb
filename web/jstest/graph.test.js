// The model and layout of static/js/graph.js: everything but the drawing.

import {test} from 'node:test';
import assert from 'node:assert/strict';
import {specSteps, buildModel, walk, findNode, producers, rootVar, layout, structureKey, withLoops, NODE_W} from '../static/js/graph.js';

const step = (name, extra) => ({name, type: 'print-message-in-status', ...extra});
const run = (mode, steps, status = {}) => ({spec: {mode: {steps: mode}, workflowSpec: {steps}}, status});
const names = (prefix, n) => Array.from({length: n}, (_, i) => prefix + i);
const group = (name, mode, n, chain) => ({name, type: 'step-group', mode, subSteps: names(name + '-', n).map((x, i) => step(x, chain && i ? {dependsOn: [`${name}-${i - 1}`]} : {}))});

test('specSteps prefers the steps the run resolved to those its spec writes', () => {
  const spec = [step('a')];
  const resolved = [step('b')];
  assert.deepEqual(specSteps({spec: {workflowSpec: {steps: spec}}}), spec);
  assert.deepEqual(specSteps({spec: {workflowSpec: {steps: spec}}, stepflow: {steps: resolved}}), resolved);
  assert.deepEqual(specSteps({spec: {workflowSpec: {steps: spec}}, stepflow: {steps: []}}), spec);
  assert.deepEqual(specSteps({}), []);
  assert.deepEqual(specSteps(null), []);
});

test('buildModel merges the spec with the status, groups holding their sub-steps', () => {
  const r = run('StepByStep', [
    step('a', {outputs: [{name: 'tag', valueFrom: 'x'}]}),
    {name: 'g', type: 'step-group', subSteps: [step('g1'), step('g2', {dependsOn: ['g1'], inputs: [{from: 'tag.version'}]})]},
    {type: 'suspend'},
  ], {
    mode: {subSteps: 'StepByStep'},
    steps: [
      {name: 'a', phase: 'succeeded'},
      {name: 'g', phase: 'running', subSteps: [{name: 'g1', phase: 'succeeded'}, {name: 'extra', phase: 'failed', type: 'x'}]},
      {name: 'only-in-status', phase: 'skipped', type: 'y'},
    ],
  });
  const m = buildModel(r);
  assert.equal(m.mode, 'StepByStep');
  assert.deepEqual(m.nodes.map((n) => [n.name, n.phase]), [['a', 'succeeded'], ['g', 'running'], ['step-2', 'pending'], ['only-in-status', 'skipped']]);
  const g = m.nodes[1];
  assert.equal(g.mode, 'StepByStep', 'a group without a mode takes the run\'s sub-step mode');
  assert.deepEqual(g.children.map((c) => [c.name, c.phase, c.type]), [['g1', 'succeeded', 'print-message-in-status'], ['g2', 'pending', 'print-message-in-status'], ['extra', 'failed', 'x']]);
  assert.deepEqual(g.children[1].deps, ['g1']);
  assert.deepEqual(g.children[1].inputs, ['tag.version']);
  assert.deepEqual(m.nodes[0].outputs, ['tag']);
  assert.equal(m.nodes[0].children, null);
  assert.equal(m.nodes[2].type, 'suspend');
});

test('buildModel of a template gives its steps no phase: they never run', () => {
  const r = run('StepByStep', [step('a'), {name: 'g', type: 'step-group', subSteps: [step('g1')]}], {});
  const m = buildModel(r, {template: true});
  const phases = [];
  walk(m, (n) => phases.push([n.name, n.phase]));
  assert.deepEqual(phases, [['a', ''], ['g', ''], ['g1', '']]);
});

test('buildModel takes the modes from the status, then the spec, then the defaults', () => {
  assert.equal(buildModel({spec: {}, status: {}}).mode, 'StepByStep');
  assert.equal(buildModel(run('DAG', [])).mode, 'DAG');
  assert.equal(buildModel({...run('DAG', []), status: {mode: {steps: 'StepByStep'}}}).mode, 'StepByStep');
  const m = buildModel(run('DAG', [{name: 'g', type: 'step-group', subSteps: []}]));
  assert.equal(m.nodes[0].mode, 'DAG');
  assert.deepEqual(m.nodes[0].children, []);
});

test('walk visits sub-steps after their group, with the group; findNode finds either', () => {
  const m = buildModel(run('StepByStep', [step('a'), group('g', 'DAG', 2), step('b')]));
  const seen = [];
  walk(m, (n, p) => seen.push(`${n.name}<${p ? p.name : ''}`));
  assert.deepEqual(seen, ['a<', 'g<', 'g-0<g', 'g-1<g', 'b<']);
  assert.equal(findNode(m, 'g-1').name, 'g-1');
  assert.equal(findNode(m, 'nope'), null);
});

test('producers maps each run variable to the first step that outputs it; rootVar reads an input', () => {
  const m = buildModel(run('DAG', [step('a', {outputs: [{name: 'x'}]}), group('g', 'DAG', 0), step('b', {outputs: [{name: 'x'}, {name: 'y'}]})]));
  assert.deepEqual([...producers(m)], [['x', 'a'], ['y', 'b']]);
  assert.equal(rootVar('tag.version'), 'tag');
  assert.equal(rootVar('list[0].x'), 'list');
  assert.equal(rootVar('plain'), 'plain');
});

test('structureKey changes with the structure, not with the phases', () => {
  const steps = [step('a'), step('b', {dependsOn: ['a']})];
  const key = structureKey(buildModel(run('DAG', steps)));
  assert.equal(structureKey(buildModel(run('DAG', steps, {steps: [{name: 'a', phase: 'succeeded', message: 'done'}]}))), key);
  assert.notEqual(structureKey(buildModel(run('DAG', [step('a'), step('b')]))), key);
  assert.notEqual(structureKey(buildModel(run('StepByStep', steps))), key);
});

const edgesOf = (L) => L.edges.map((e) => `${e.from}>${e.to}:${e.kind}`).sort();

test('layout draws the order of StepByStep, dependsOn, and inputs not already ordered', () => {
  const sbs = layout(buildModel(run('StepByStep', [step('a', {outputs: [{name: 'v'}]}), step('b'), step('c', {inputs: [{from: 'v.x'}]})])));
  assert.deepEqual(edgesOf(sbs), ['a>b:seq', 'b>c:seq'], 'c comes after a anyway: no data edge');
  const dag = layout(buildModel(run('DAG', [step('a', {outputs: [{name: 'v'}]}), step('b', {dependsOn: ['a']}), step('c', {inputs: [{from: 'v'}]}), step('d')])));
  assert.deepEqual(edgesOf(dag), ['a>b:dep', 'a>c:data']);
  const sw = layout(buildModel(run('Switch', [step('a'), step('b', {dependsOn: ['a']})])));
  assert.deepEqual(sw.edges, [], 'the branches of a Switch are not ordered');
});

test('layout puts independent DAG steps side by side and a chain in one column', () => {
  const dag = layout(buildModel(run('DAG', [step('a'), step('b'), step('c')])));
  assert.equal(new Set(dag.nodes.map((p) => p.y)).size, 1);
  assert.equal(new Set(dag.nodes.map((p) => p.x)).size, 3);
  const chain = layout(buildModel(run('StepByStep', names('c', 5).map((n) => step(n)))));
  assert.equal(new Set(chain.nodes.map((p) => p.x + p.w / 2)).size, 1);
  assert.deepEqual(chain.nodes.map((p) => p.node.name), names('c', 5));
  for (let i = 1; i < 5; i++) assert.ok(chain.nodes[i].y > chain.nodes[i - 1].y);
});

test('layout widens a box for a long name, within bounds', () => {
  const L = layout(buildModel(run('DAG', [step('a'), step('x'.repeat(30)), step('y'.repeat(200))])));
  const w = Object.fromEntries(L.nodes.map((p) => [p.node.name[0], p.w]));
  assert.equal(w.a, NODE_W);
  assert.ok(w.x > NODE_W && w.x < 300, `${w.x}`);
  assert.equal(w.y, 300);
});

test('layout survives a dependency cycle, and still draws its edges', () => {
  const L = layout(buildModel(run('DAG', [step('a', {dependsOn: ['b']}), step('b', {dependsOn: ['a']})])));
  assert.equal(L.nodes.length, 2);
  assert.deepEqual(edgesOf(L), ['a>b:dep', 'b>a:dep']);
});

test('layout of an empty run has no nodes', () => {
  const L = layout(buildModel(run('DAG', [])));
  assert.deepEqual([L.nodes, L.edges], [[], []]);
});

// The layout stays readable from 1 to 30 steps: no boxes that overlap, no sub-step outside its
// group, edges that lead downwards, a graph as wide as its widest layer. (web/dashboard_test.go
// checks the same in the browser.)
test('layout stays readable from 1 to 30 steps', () => {
  let seed = 7;
  const rnd = (n) => (seed = (seed * 1103515245 + 12345) % 2147483648) % n;
  const s30 = names('s', 30);
  const tangle = s30.map((name, i) => step(name, i < 3 ? {} : {dependsOn: [...new Set([s30[rnd(i)], s30[rnd(i)]])]}));
  const cases = {
    one: ['StepByStep', [step('only')]],
    chain30: ['StepByStep', names('c', 30).map((n) => step(n))],
    fan30: ['DAG', [step('root'), ...names('t', 28).map((n) => step(n, {dependsOn: ['root']})), step('join', {dependsOn: names('t', 28)})]],
    tangle30: ['DAG', tangle],
    groups: ['StepByStep', [step('first'), group('ga', 'DAG', 6, false), group('gb', 'StepByStep', 5, false), group('gc', 'DAG', 5, true), step('last')]],
  };
  for (const [name, [mode, steps]] of Object.entries(cases)) {
    const model = buildModel(run(mode, steps));
    const L = layout(model);
    const parent = {};
    let count = 0;
    walk(model, (n, p) => {
      parent[n.name] = p && p.name;
      count++;
    });
    const box = Object.fromEntries(L.nodes.map((p) => [p.node.name, p]));
    assert.equal(L.nodes.length, count, `${name}: a box for each step`);
    for (const a of L.nodes) {
      assert.ok(a.x >= 0 && a.y >= 0 && a.x + a.w <= L.width && a.y + a.h <= L.height, `${name}: ${a.node.name} is inside the drawing`);
      const p = parent[a.node.name] && box[parent[a.node.name]];
      if (p) assert.ok(a.x >= p.x && a.y >= p.y && a.x + a.w <= p.x + p.w && a.y + a.h <= p.y + p.h, `${name}: ${a.node.name} is inside its group`);
      for (const b of L.nodes) {
        if (a === b || a.depth !== b.depth || a.node.name > b.node.name) continue;
        assert.ok(!(a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h), `${name}: ${a.node.name} overlaps ${b.node.name}`);
      }
    }
    for (const e of L.edges) {
      for (let k = 1; k < e.points.length; k++) assert.ok(e.points[k][1] >= e.points[k - 1][1], `${name}: the edge ${e.from} -> ${e.to} goes down`);
    }
    if (name === 'chain30') assert.equal(new Set(L.nodes.map((p) => p.x + p.w / 2)).size, 1, 'chain30 is one column');
    if (name === 'fan30') assert.ok(L.width <= 28 * (NODE_W + 28) + 200, `fan30 is ${L.width} wide`);
  }
});

test('layout draws a collapsed group as one box, without its sub-steps', () => {
  const model = buildModel(run('StepByStep', [step('first'), group('ga', 'DAG', 6, false), step('last')]));
  const open = layout(model);
  const shut = layout(model, {collapsed: new Set(['ga'])});
  assert.equal(open.nodes.length, 9);
  assert.deepEqual(shut.nodes.map((p) => p.node.name), ['first', 'ga', 'last']);
  const ga = shut.nodes[1];
  assert.ok(ga.group && ga.collapsed && !open.nodes[1].collapsed);
  assert.ok(ga.h < open.nodes[1].h, 'the collapsed group is smaller');
  assert.deepEqual(edgesOf(shut), ['first>ga:seq', 'ga>last:seq']);
});

test('layout of 1,000 steps keeps every box inside the drawing, no two overlapping in a rank', () => {
  const steps = names('s', 1000).map((n, i) => step(n, i ? {dependsOn: ['s' + Math.floor((i - 1) / 3)]} : {}));
  const L = layout(buildModel(run('DAG', steps)));
  assert.equal(L.nodes.length, 1000);
  const rows = new Map();
  for (const p of L.nodes) {
    assert.ok(p.x >= 0 && p.y >= 0 && p.x + p.w <= L.width && p.y + p.h <= L.height, `${p.node.name} is inside`);
    (rows.get(p.y) || rows.set(p.y, []).get(p.y)).push(p);
  }
  for (const row of rows.values()) {
    row.sort((a, b) => a.x - b.x);
    for (let k = 1; k < row.length; k++) assert.ok(row[k].x >= row[k - 1].x + row[k - 1].w, `${row[k].node.name} overlaps ${row[k - 1].node.name}`);
  }
});

test('withLoops shows an opened loop as a box of its kept iterations, each standing for the loop', () => {
  const iterations = {total: 5, succeeded: 3, entries: [{index: 0, name: 'deploy[0]', item: 'us', phase: 'succeeded'}, {index: 4, name: 'deploy[4]', item: 'eu', phase: 'failed'}]};
  const model = buildModel(run('StepByStep', [step('first'), step('deploy'), step('last')], {steps: [{name: 'deploy', phase: 'failed', iterations}]}));
  assert.equal(withLoops(model, new Set()), model, 'no loop opened: the model as it is');
  const open = withLoops(model, new Set(['deploy']));
  const loop = open.nodes[1];
  assert.ok(loop.loop);
  assert.deepEqual(loop.children.map((c) => [c.name, c.phase, c.iteration.of]), [['deploy[0]', 'succeeded', 'deploy'], ['deploy[4]', 'failed', 'deploy']]);
  assert.equal(model.nodes[1].children, null, 'the model given is left alone');
  const L = layout(open);
  assert.equal(L.nodes.length, 5);
  const box = L.nodes.find((p) => p.node.name === 'deploy');
  for (const it of L.nodes.filter((p) => p.node.iteration)) assert.ok(it.x >= box.x && it.x + it.w <= box.x + box.w && it.y >= box.y && it.y + it.h <= box.y + box.h, `${it.node.name} is inside its loop`);
  assert.notEqual(structureKey(open), structureKey(model));
});
