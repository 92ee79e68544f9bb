// The text helpers of static/js/pages/common.js and the pure part of static/js/api.js.

import {test} from 'node:test';
import assert from 'node:assert/strict';
import {problemText, roleNote} from '../static/js/pages/common.js';
import {ApiError, allows, isAbort, objPath, runPath} from '../static/js/api.js';

test('problemText says where a problem is before what it is', () => {
  assert.equal(problemText({line: 12, column: 9, field: 'steps[0].type', message: 'unknown type'}), 'line 12, column 9: steps[0].type: unknown type');
  assert.equal(problemText({line: 3, message: 'bad'}), 'line 3: bad');
  assert.equal(problemText({field: 'metadata.name', message: 'required'}), 'metadata.name: required');
  assert.equal(problemText({message: 'just this'}), 'just this');
  assert.equal(problemText({line: 4}), 'line 4: ');
  assert.equal(problemText({}), '');
});

test('roleNote names the least role needed', () => {
  assert.equal(roleNote('operator'), "Your token's role may not do this (operator or above needed).");
});

test('allows ranks viewer below operator below admin', () => {
  assert.equal(allows({role: 'admin'}, 'operator'), true);
  assert.equal(allows({role: 'operator'}, 'operator'), true);
  assert.equal(allows({role: 'viewer'}, 'operator'), false);
  assert.equal(allows({role: 'viewer'}, 'viewer'), true);
  assert.equal(allows({role: 'unknown'}, 'viewer'), false);
  assert.equal(allows(null, 'viewer'), false);
});

test('runPath and objPath encode their names', () => {
  assert.equal(runPath('default', 'a/b'), '/runs/default/a%2Fb');
  assert.equal(objPath('templates', 'team x', 'deploy'), '/templates/team%20x/deploy');
});

test('isAbort tells an aborted request from a failure', () => {
  assert.equal(isAbort(new DOMException('gone', 'AbortError')), true);
  assert.equal(!!isAbort(new ApiError(500, 'boom')), false);
  assert.equal(!!isAbort(null), false);
});

test('ApiError keeps the status and the problems of an answer', () => {
  const e = new ApiError(400, 'invalid', [{line: 1, message: 'x'}]);
  assert.equal(e.status, 400);
  assert.equal(e.message, 'invalid');
  assert.deepEqual(e.problems, [{line: 1, message: 'x'}]);
  assert.deepEqual(new ApiError(500, 'boom', 'not a list').problems, []);
});
