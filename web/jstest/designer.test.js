import {test} from 'node:test';
import assert from 'node:assert/strict';
import * as m from '../static/js/designer/model.js';

const TEXT = `# keep me
apiVersion: core.oam.dev/v1alpha1
kind: Workflow
metadata:
  name: d # and me
  namespace: default
steps:
- name: a
  type: suspend
- name: g
  type: step-group
  subSteps:
  - name: b
    type: suspend
`;

test('parse reads steps and the lines of each step and sub-step', () => {
  const p = m.parse(TEXT);
  assert.deepEqual(p.steps.map((s) => s.name), ['a', 'g']);
  assert.deepEqual(p.lines, [{name: 'a', from: 8, to: 9}, {name: 'g', from: 10, to: 14}, {name: 'b', from: 13, to: 14}]);
});

test('parse names the line of a syntax error', () => {
  assert.throws(() => m.parse('steps:\n- name: a\n  type: [x\n'), (e) => e.line >= 3);
  assert.throws(() => m.parse('steps: 3\n'), /steps: not a list/);
});

test('write keeps comments outside steps and follows the canvas', () => {
  let steps = m.parse(TEXT).steps;
  steps = m.addStep(steps, 'suspend').steps;
  steps = m.connect(steps, 'a', 'suspend');
  const out = m.write(TEXT, steps);
  assert.match(out, /^# keep me\n/);
  assert.match(out, /name: d # and me/);
  assert.deepEqual(m.parse(out).steps[2], {name: 'suspend', type: 'suspend', dependsOn: ['a']});
});

test('addStep into a group, unique names', () => {
  const r = m.addStep(m.parse(TEXT).steps, 'suspend', 'g');
  assert.equal(r.name, 'suspend');
  assert.deepEqual(r.steps[1].subSteps.map((s) => s.name), ['b', 'suspend']);
  assert.equal(m.uniqueName(r.steps, 'suspend'), 'suspend-2');
  assert.throws(() => m.addStep(r.steps, 'suspend', 'a'), /not a step group/);
});

test('connect refuses cycles, itself and steps in different groups', () => {
  const steps = m.connect(m.parse(TEXT).steps, 'a', 'g');
  assert.deepEqual(steps[1].dependsOn, ['a']);
  assert.throws(() => m.connect(steps, 'g', 'a'), /cycle/);
  assert.throws(() => m.connect(steps, 'a', 'a'), /itself/);
  assert.throws(() => m.connect(steps, 'a', 'b'), /same group/);
});

test('moveInto a group drops dependencies that no longer join siblings', () => {
  let steps = m.addStep(m.parse(TEXT).steps, 'suspend').steps;
  steps = m.connect(steps, 'a', 'suspend');
  steps = m.moveInto(steps, 'a', 'g');
  assert.deepEqual(steps.map((s) => s.name), ['g', 'suspend']);
  assert.equal(steps[1].dependsOn, undefined);
  assert.deepEqual(steps[0].subSteps.map((s) => s.name), ['b', 'a']);
  assert.throws(() => m.moveInto(steps, 'g', 'g'), /itself/);
  steps = m.moveInto(steps, 'a', '');
  assert.deepEqual(steps.map((s) => s.name), ['g', 'suspend', 'a']);
});

test('rename, remove and setField', () => {
  let steps = m.connect(m.parse(TEXT).steps, 'a', 'g');
  steps = m.rename(steps, 'a', 'first');
  assert.deepEqual(steps[1].dependsOn, ['first']);
  assert.throws(() => m.rename(steps, 'first', 'b'), /exists/);
  steps = m.setField(steps, 'b', ['properties', 'message'], 'hi');
  steps = m.setField(steps, 'b', ['timeout'], '5m');
  assert.deepEqual(steps[1].subSteps[0], {name: 'b', type: 'suspend', properties: {message: 'hi'}, timeout: '5m'});
  steps = m.setField(steps, 'b', ['properties', 'message'], undefined);
  assert.equal(steps[1].subSteps[0].properties, undefined);
  steps = m.remove(steps, 'first');
  assert.deepEqual(steps.map((s) => s.name), ['g']);
  assert.equal(steps[0].dependsOn, undefined);
});

test('fieldKind and readField follow the parameter types', () => {
  assert.deepEqual(m.fieldKind({type: 'string'}), {kind: 'string'});
  assert.deepEqual(m.fieldKind({type: 'int'}), {kind: 'number'});
  assert.deepEqual(m.fieldKind({type: 'bool'}), {kind: 'bool'});
  assert.deepEqual(m.fieldKind({type: '"GET" | "POST"'}), {kind: 'enum', options: ['GET', 'POST']});
  assert.deepEqual(m.fieldKind({type: '{...}'}), {kind: 'json'});
  assert.deepEqual(m.fieldKind({type: '*1 | int'}), {kind: 'number'});
  assert.deepEqual(m.fieldKind({type: '*false | bool'}), {kind: 'bool'});
  assert.deepEqual(m.fieldKind({type: '*"a" | "b"'}), {kind: 'enum', options: ['a', 'b']});
  assert.equal(m.readField('number', '3'), 3);
  assert.throws(() => m.readField('number', 'x'), /not a number/);
  assert.deepEqual(m.readField('json', '{"a":1}'), {a: 1});
  assert.throws(() => m.readField('json', '{'), /JSON/);
  assert.equal(m.readField('string', ''), undefined);
  assert.equal(m.showField('json', {a: 1}), '{"a":1}');
});

test('stepOfProblem by field path, else by line', () => {
  const p = m.parse(TEXT);
  assert.equal(m.stepOfProblem(p, {field: 'steps[1].subSteps[0].type'}), 'b');
  assert.equal(m.stepOfProblem(p, {field: 'steps[0].type'}), 'a');
  assert.equal(m.stepOfProblem(p, {line: 14}), 'b');
  assert.equal(m.stepOfProblem(p, {line: 2}), '');
});

test('toRun and place', () => {
  const run = m.toRun(m.parse(TEXT));
  assert.equal(run.kind, 'WorkflowRun');
  assert.equal(run.metadata.generateName, 'd-');
  assert.equal(run.spec.workflowSpec.steps.length, 2);
  const pos = m.place([{name: 'a'}, {name: 'b'}], new Map([['a', {x: 20, y: 20}]]));
  assert.deepEqual(pos.get('a'), {x: 20, y: 20});
  assert.deepEqual(pos.get('b'), {x: 220, y: 20});
});
