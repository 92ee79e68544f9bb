// toYAML, cleanObject and metadataOf of static/js/yaml.js.

import {test} from 'node:test';
import assert from 'node:assert/strict';
import {toYAML, cleanObject, metadataOf} from '../static/js/yaml.js';

test('toYAML writes scalars plain when YAML reads them back as the same strings', () => {
  assert.equal(toYAML({a: 'plain text', b: 'x-y', c: 'v1.2.3', d: 'a:b'}), 'a: plain text\nb: x-y\nc: v1.2.3\nd: a:b\n');
});

test('toYAML quotes strings YAML would read as another type or as syntax', () => {
  const cases = {
    'true': '"true"', 'no': '"no"', 'on': '"on"', 'null': '"null"', '~': '"~"',
    '1.5': '"1.5"', '42': '"42"', '1e3': '"1e3"', '0x1f': '"0x1f"', '.inf': '".inf"', '.NaN': '".NaN"',
    '': '""', 'a: b': '"a: b"', 'x #y': '"x #y"', '-x': '"-x"', '*ref': '"*ref"', '{a}': '"{a}"',
    ' lead': '" lead"', 'trail ': '"trail "', 'colon:': '"colon:"', 'tab\there': '"tab\\there"',
  };
  for (const [s, want] of Object.entries(cases)) {
    assert.equal(toYAML({k: s}), `k: ${want}\n`, `the string ${JSON.stringify(s)}`);
  }
});

test('toYAML writes numbers, booleans and null as such', () => {
  assert.equal(toYAML({i: 3, f: 1.5, t: true, z: null}), 'i: 3\nf: 1.5\nt: true\nz: null\n');
  assert.equal(toYAML(42), '42\n');
  assert.equal(toYAML(null), 'null\n');
  assert.equal(toYAML('plain'), 'plain\n');
});

test('toYAML quotes keys as it quotes values', () => {
  assert.equal(toYAML({y: 1, n: 2, 'p q': 3, '1': 4}), '"1": 4\n"y": 1\n"n": 2\np q: 3\n');
});

test('toYAML writes multi-line strings as literal blocks, keeping or chomping the last newline', () => {
  assert.equal(toYAML({t: 'line one\nline two\n'}), 't: |\n  line one\n  line two\n');
  assert.equal(toYAML({t: 'line one\nline two'}), 't: |-\n  line one\n  line two\n');
  assert.equal(toYAML({t: 'a\n\nb\n'}), 't: |\n  a\n\n  b\n', 'an empty line inside stays empty, unindented');
  assert.equal(toYAML({o: {t: 'a\nb\n'}}), 'o:\n  t: |\n    a\n    b\n');
});

test('toYAML quotes multi-line strings a literal block cannot keep as they are', () => {
  for (const s of [' indented\nfirst\n', 'trailing blank lines\n\n', 'a\n  \nb', 'bell\u0007\n']) {
    assert.equal(toYAML({t: s}), `t: ${JSON.stringify(s)}\n`, JSON.stringify(s));
  }
});

test('toYAML writes nested maps and sequences in block style', () => {
  const v = {steps: [{name: 'a', type: 'x', properties: {m: 'hi'}}, {name: 'b', dependsOn: ['a']}], list: [1, [2, 3], []]};
  assert.equal(toYAML(v), [
    'steps:',
    '- name: a',
    '  type: x',
    '  properties:',
    '    m: hi',
    '- name: b',
    '  dependsOn:',
    '  - a',
    'list:',
    '- 1',
    '- - 2',
    '  - 3',
    '- []',
    '',
  ].join('\n'));
});

test('toYAML writes empty collections in flow style and leaves out undefined fields', () => {
  assert.equal(toYAML({a: [], b: {}, c: undefined, d: [{}]}), 'a: []\nb: {}\nd:\n- {}\n');
  assert.equal(toYAML([]), '[]\n');
  assert.equal(toYAML({}), '{}\n');
});

test('cleanObject puts apiVersion, kind and metadata first and drops what the server keeps', () => {
  const obj = {
    spec: {a: 1},
    status: {},
    kind: 'Workflow',
    metadata: {name: 'x', namespace: 'ns', uid: 'u', resourceVersion: '7', creationTimestamp: 't', generation: 2, managedFields: [], labels: {}, annotations: {keep: 'me'}},
    apiVersion: 'core.oam.dev/v1alpha1',
  };
  const got = cleanObject(obj);
  assert.deepEqual(Object.keys(got), ['apiVersion', 'kind', 'metadata', 'spec']);
  assert.deepEqual(got.metadata, {name: 'x', namespace: 'ns', annotations: {keep: 'me'}});
  assert.equal(obj.metadata.uid, 'u', 'the original is left alone');
  assert.deepEqual(cleanObject({kind: 'K', status: {phase: 'x'}}).status, {phase: 'x'}, 'a status with content stays');
  assert.equal('status' in cleanObject({kind: 'K', status: null}), false);
});

test('metadataOf reads name and namespace of the first document', () => {
  const text = [
    'apiVersion: v1',
    'kind: Workflow',
    'metadata:',
    '  name: first # a comment',
    '  labels:',
    '    name: not-this',
    '  namespace: "team"',
    'spec: {}',
    '---',
    'metadata:',
    '  name: second',
  ].join('\n');
  assert.deepEqual(metadataOf(text), {name: 'first', namespace: 'team'});
  assert.deepEqual(metadataOf('kind: X\nmetadata: {name: flow, namespace: ns}\n'), {name: 'flow', namespace: 'ns'});
  assert.deepEqual(metadataOf("metadata:\n    name: 'quoted'\n"), {name: 'quoted'});
  assert.deepEqual(metadataOf('kind: X\nspec:\n  name: not-metadata\n'), {});
  assert.deepEqual(metadataOf(''), {});
});
