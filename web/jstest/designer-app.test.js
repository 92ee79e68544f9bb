import {test} from 'node:test';
import assert from 'node:assert/strict';
import * as a from '../static/js/designer/application.js';
import * as m from '../static/js/designer/model.js';

const TEXT = `# keep me
apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: shop # and me
  namespace: default
spec:
  components:
  - name: web
    type: webservice
    properties: {image: "nginx:1.27"}
  workflow:
    steps:
    - name: deploy
      type: deploy
`;

test('parse reads components as the nodes, with their lines', () => {
  const p = a.parse(TEXT);
  assert.deepEqual(p.steps.map((c) => c.name), ['web']);
  assert.deepEqual(p.policies, []);
  assert.deepEqual(p.lines, [{name: 'web', from: 9, to: 11}]);
  assert.throws(() => a.parse('spec:\n  components: 3\n'), (e) => /spec.components: not a list/.test(e.message) && e.line === 2);
  assert.throws(() => a.parse('spec: [x\n'), (e) => e.line >= 1);
});

test('components, traits, dependsOn and policies written back, the rest kept', () => {
  let cs = a.parse(TEXT).steps;
  const r = a.addComponent(cs, 'webservice');
  assert.equal(r.name, 'webservice');
  cs = m.connect(r.steps, 'web', 'webservice');
  cs = a.addTrait(cs, 'web', 'scaler');
  cs = a.setTraitProperty(cs, 'web', 'scaler', 'replicas', 3);
  assert.throws(() => a.addTrait(cs, 'web', 'scaler'), /already/);
  assert.throws(() => a.addTrait(cs, 'nope', 'scaler'), /no component/);
  const pol = a.setPolicyProperty(a.addPolicy([], 'topology').policies, 'topology', 'clusters', ['local']);
  const out = a.write(TEXT, cs, pol);
  assert.match(out, /^# keep me\n/);
  assert.match(out, /name: shop # and me/);
  assert.match(out, /workflow:\n {4}steps:/);
  const p = a.parse(out);
  assert.deepEqual(p.steps, [
    {name: 'web', type: 'webservice', properties: {image: 'nginx:1.27'}, traits: [{type: 'scaler', properties: {replicas: 3}}]},
    {name: 'webservice', type: 'webservice', dependsOn: ['web']},
  ]);
  assert.deepEqual(p.policies, [{name: 'topology', type: 'topology', properties: {clusters: ['local']}}]);
  // Traits and policies removed; no policies: no key.
  cs = a.removeTrait(cs, 'web', 'scaler');
  assert.equal(cs[0].traits, undefined);
  const back = a.write(out, cs, a.removePolicy(pol, 'topology'));
  assert.doesNotMatch(back, /policies/);
  assert.doesNotMatch(back, /scaler/);
});

test('write makes a spec when the text has none, and starts over from broken text', () => {
  assert.deepEqual(a.parse(a.write('kind: Application\n', [{name: 'x', type: 'worker'}])).steps, [{name: 'x', type: 'worker'}]);
  assert.match(a.write('spec: [x\n', []), /kind: Application/);
});

test('componentOfProblem by field path, else by line', () => {
  const p = a.parse(TEXT);
  assert.equal(a.componentOfProblem(p, {field: 'spec.components[0].properties.image'}), 'web');
  assert.equal(a.componentOfProblem(p, {line: 10}), 'web');
  assert.equal(a.componentOfProblem(p, {line: 2}), '');
});
