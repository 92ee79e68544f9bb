// The formatting helpers of static/js/dom.js that need no document.

import {test} from 'node:test';
import assert from 'node:assert/strict';
import {link, parseTime, fmtTime, fmtAgo, fmtDuration, between, pretty} from '../static/js/dom.js';

// The helpers show local time; the tests read it in UTC wherever they run.
process.env.TZ = 'UTC';

test('link encodes each segment of a hash route', () => {
  assert.equal(link('runs', 'default', 'release-1'), '#/runs/default/release-1');
  assert.equal(link('runs', 'a b', 'x/y?z#w'), '#/runs/a%20b/x%2Fy%3Fz%23w');
  assert.equal(link('templates', ''), '#/templates/');
});

test('parseTime answers a Date, and null for no time or the zero time', () => {
  assert.equal(parseTime('2024-05-06T07:08:09Z').toISOString(), '2024-05-06T07:08:09.000Z');
  for (const t of [undefined, null, '', 'not a time', '0001-01-01T00:00:00Z']) {
    assert.equal(parseTime(t), null, String(t));
  }
});

test('fmtAgo says how long ago, as a person would, and the date past a week', () => {
  const now = new Date('2026-12-07T12:00:00Z');
  assert.equal(fmtAgo('2026-12-07T11:59:58Z', now), 'just now');
  assert.equal(fmtAgo('2026-12-07T12:00:30Z', now), 'just now');
  assert.equal(fmtAgo('2026-12-07T11:59:18Z', now), '42s ago');
  assert.equal(fmtAgo('2026-12-07T11:55:00Z', now), '5 min ago');
  assert.equal(fmtAgo('2026-12-07T09:00:00Z', now), '3 h ago');
  assert.equal(fmtAgo('2026-12-06T10:00:00Z', now), 'yesterday');
  assert.equal(fmtAgo('2026-12-03T12:00:00Z', now), '4 days ago');
  assert.equal(fmtAgo('2026-11-20T12:00:00Z', now), '2026-11-20');
  assert.equal(fmtAgo('', now), '');
});

test('fmtTime shows a time to the second, and nothing for none', () => {
  assert.equal(fmtTime('2024-05-06T07:08:09.999Z'), '2024-05-06 07:08:09');
  assert.equal(fmtTime('2024-12-31T23:59:59+02:00'), '2024-12-31 21:59:59');
  assert.equal(fmtTime(''), '');
  assert.equal(fmtTime('0001-01-01T00:00:00Z'), '');
});

test('fmtDuration picks the unit by size', () => {
  const cases = [
    [0, '0ms'], [0.4, '<1ms'], [120, '120ms'], [999.4, '999ms'], [1000, '1.0s'], [5240, '5.2s'],
    [10000, '10s'], [59400, '59s'], [60000, '1m 0s'], [184000, '3m 4s'], [3600000, '1h 0m'],
    [3720000, '1h 2m'], [86400000, '1d 0h'], [90000000, '1d 1h'],
  ];
  for (const [ms, want] of cases) assert.equal(fmtDuration(ms), want, `${ms}ms`);
  for (const ms of [null, undefined, NaN, -1]) assert.equal(fmtDuration(ms), '', String(ms));
});

test('between shows whole seconds between whole-second times', () => {
  assert.equal(between('2024-01-01T00:00:00Z', '2024-01-01T00:00:00Z'), '<1s');
  assert.equal(between('2024-01-01T00:00:00Z', '2024-01-01T00:00:02Z'), '2s');
  assert.equal(between('2024-01-01T00:00:00Z', '2024-01-01T00:00:59Z'), '59s');
  assert.equal(between('2024-01-01T00:00:00Z', '2024-01-01T00:01:30Z'), '1m 30s');
});

test('between keeps the precision of times that have one', () => {
  assert.equal(between('2024-01-01T00:00:00.000Z', '2024-01-01T00:00:00.250Z'), '250ms');
  assert.equal(between('2024-01-01T00:00:00.5Z', '2024-01-01T00:00:02Z'), '1.5s');
});

test('between runs to now without an end, and is empty without a start', () => {
  const start = new Date(Date.now() - 3 * 60 * 1000).toISOString();
  assert.match(between(start, null), /^3m [0-9]s$/);
  assert.equal(between('', '2024-01-01T00:00:00Z'), '');
});

test('pretty shows strings as they are and other values as indented JSON', () => {
  assert.equal(pretty('text'), 'text');
  assert.equal(pretty(undefined), '');
  assert.equal(pretty(null), 'null');
  assert.equal(pretty(3), '3');
  assert.equal(pretty({a: [1]}), '{\n  "a": [\n    1\n  ]\n}');
});
