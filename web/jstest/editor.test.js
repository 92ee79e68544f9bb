// The YAML editor's marks (static/js/pages/editor.js): the server's problems on their lines.

import {test} from 'node:test';
import assert from 'node:assert/strict';
import {diagnostics} from '../static/js/pages/editor.js';
import * as cm from '../static/vendor/codemirror-6.0.2/codemirror.js';

test('diagnostics marks each problem from its column to the end of its line', () => {
  const doc = cm.EditorState.create({doc: 'a: 1\nb:\n  c: 2\n'}).doc;
  const [d] = diagnostics(doc, [{line: 3, column: 3, field: 'b.c', message: 'bad'}]);
  assert.equal(doc.sliceString(d.from, d.to), 'c: 2');
  assert.equal(d.severity, 'error');
  assert.equal(d.message, 'b.c: bad');
});

test('diagnostics puts a problem without a line on the first, and one past the end on the last', () => {
  const doc = cm.EditorState.create({doc: 'a: 1\nb: 2'}).doc;
  const [none, past, whole] = diagnostics(doc, [{message: 'no line'}, {line: 99, column: 2, message: 'far'}, {line: 2, message: 'no column'}]);
  assert.equal(doc.sliceString(none.from, none.to), 'a: 1');
  assert.equal(doc.lineAt(past.from).number, 2);
  assert.equal(doc.sliceString(whole.from, whole.to), 'b: 2');
});
