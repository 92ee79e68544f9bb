// The run page's logic (static/js/pages/run/logic.js) and its event-stream subscription
// (static/js/pages/run/live.js, with a fake EventSource).

import {test} from 'node:test';
import assert from 'node:assert/strict';
import {buildModel, findNode} from '../static/js/graph.js';
import * as logic from '../static/js/pages/run/logic.js';
import {follow} from '../static/js/pages/run/live.js';

process.env.TZ = 'UTC';

const meta = (uid, created) => ({name: 'r', namespace: 'default', uid, creationTimestamp: created});
const runAt = (v, uid = 'u1', created = '2024-01-01T00:00:00Z') => ({metadata: meta(uid, created), stepflow: {version: String(v)}});

test('version reads the run\'s stepflow version, 0 without one', () => {
  assert.equal(logic.version(runAt(7)), 7);
  assert.equal(logic.version({}), 0);
  assert.equal(logic.version(null), 0);
});

test('isFinished: a final phase, or the finished flag', () => {
  for (const s of ['succeeded', 'failed', 'terminated']) assert.equal(logic.isFinished({status: {status: s}}), true, s);
  for (const s of ['running', 'suspending', 'initializing']) assert.equal(logic.isFinished({status: {status: s}}), false, s);
  assert.equal(logic.isFinished({status: {status: 'running', finished: true}}), true);
  assert.equal(logic.isFinished({}), false);
});

test('supersedes drops an older state of the same run, not that of a run created again', () => {
  assert.equal(logic.supersedes(runAt(5), runAt(4)), true);
  assert.equal(logic.supersedes(runAt(4), runAt(4)), true, 'the same version is shown again');
  assert.equal(logic.supersedes(runAt(3), runAt(4)), false, 'an event overtaken by an answer');
  assert.equal(logic.supersedes(runAt(1, 'u2'), runAt(4)), true, 'another uid');
  assert.equal(logic.supersedes(runAt(1, 'u1', '2024-02-02T00:00:00Z'), runAt(4)), true, 'created again');
  assert.equal(logic.supersedes(null, runAt(4)), false);
  assert.equal(logic.supersedes({}, runAt(4)), false);
});

test('runSummary reads what the head shows', () => {
  const s = logic.runSummary({
    metadata: {labels: {'workflowrun.oam.dev/parent': 'p', 'app.oam.dev/name': 'shop'}},
    spec: {workflowRef: 'ref'},
    stepflow: {templateVersion: 3},
    status: {status: 'suspending', message: 'm', mode: {steps: 'DAG'}, startTime: 't0'},
  });
  assert.deepEqual(s, {phase: 'suspending', finished: false, suspended: true, message: 'm', template: 'ref', templateVersion: 3,
    parent: 'p', application: 'shop', mode: 'DAG (sub-steps DAG)', startTime: 't0', endTime: undefined});
  const t = logic.runSummary({metadata: {}, stepflow: {template: 'tpl'}, status: {suspend: true, mode: {steps: 'StepByStep', subSteps: 'StepByStep'}}});
  assert.equal(t.phase, 'initializing');
  assert.equal(t.suspended, true);
  assert.equal(t.template, 'tpl');
  assert.equal(t.mode, 'StepByStep (sub-steps StepByStep)');
  assert.equal(logic.runSummary({metadata: {}}).mode, '');
});

test('runOpReasons: the role first, then deletion, then the run\'s state', () => {
  const op = {canOperate: true, deleted: false};
  assert.deepEqual(logic.runOpReasons(op, {finished: false, suspended: false}),
    {suspend: '', resume: 'The run is not suspended.', terminate: '', restart: '', delete: ''});
  assert.deepEqual(logic.runOpReasons(op, {finished: false, suspended: true}),
    {suspend: 'The run is suspended.', resume: '', terminate: '', restart: '', delete: ''});
  const over = 'The run has finished.';
  assert.deepEqual(logic.runOpReasons(op, {finished: true, suspended: true}),
    {suspend: over, resume: over, terminate: over, restart: '', delete: ''});
  const gone = 'The run was deleted.';
  assert.deepEqual(logic.runOpReasons({canOperate: true, deleted: true}, {finished: true, suspended: false}),
    {suspend: gone, resume: gone, terminate: gone, restart: gone, delete: gone});
  const viewer = logic.runOpReasons({canOperate: false, deleted: true}, {finished: false, suspended: false});
  for (const [k, v] of Object.entries(viewer)) assert.match(v, /role may not/, k);
});

test('approveReason and retryReason', () => {
  const op = {canOperate: true, deleted: false};
  const waiting = {type: 'suspend', phase: 'suspending'};
  assert.equal(logic.approveReason(op, waiting, false), '');
  assert.equal(logic.approveReason(op, waiting, true), 'The run has finished.');
  assert.equal(logic.approveReason(op, {type: 'suspend', phase: 'succeeded'}, false), 'The step is not waiting for approval.');
  assert.equal(logic.approveReason(op, {type: 'x', phase: 'suspending'}, false), 'Only a suspend step waits for approval.');
  assert.equal(logic.approveReason({canOperate: true, deleted: true}, waiting, false), 'The run was deleted.');
  assert.match(logic.approveReason({canOperate: false, deleted: false}, waiting, false), /operator or above/);

  const failed = {type: 'x', phase: 'failed'};
  assert.equal(logic.retryReason(op, failed, true), '');
  assert.equal(logic.retryReason(op, failed, false), 'The run has not finished yet.');
  assert.equal(logic.retryReason(op, {phase: 'succeeded'}, true), 'Only a failed step can be retried.');
  assert.equal(logic.retryReason({canOperate: true, deleted: true}, failed, true), 'The run was deleted.');
  assert.match(logic.retryReason({canOperate: false, deleted: false}, failed, true), /operator or above/);
});

const release = buildModel({
  spec: {mode: {steps: 'StepByStep'}, workflowSpec: {steps: [
    {name: 'prepare', type: 'x', outputs: [{name: 'tag'}]},
    {name: 'checks', type: 'step-group', subSteps: [{name: 'lint', type: 'x'}, {name: 'unit', type: 'x', inputs: [{from: 'tag.v'}]}]},
    {name: 'approve', type: 'suspend'},
    {name: 'again', type: 'suspend'},
  ]}},
  status: {steps: [
    {name: 'prepare', phase: 'succeeded'},
    {name: 'checks', phase: 'failed', subSteps: [{name: 'lint', phase: 'succeeded'}, {name: 'unit', phase: 'failed', message: 'broke'}]},
    {name: 'approve', phase: 'suspending'},
    {name: 'again', phase: 'suspending'},
  ]},
});

test('waitingForApproval and firstFailedStep find what the banners show', () => {
  assert.deepEqual(logic.waitingForApproval(release), ['approve', 'again']);
  const failed = logic.firstFailedStep(release);
  assert.equal(failed.name, 'unit', 'the step, not its group');
  assert.equal(logic.failureText(failed), 'Step unit failed: broke ');
  assert.equal(logic.failureText({name: 'x', status: {}}), 'Step x failed. ');
  assert.equal(logic.firstFailedStep(buildModel({spec: {workflowSpec: {steps: [{name: 'a'}]}}, status: {}})), null);
});

test('parentOf is a sub-step\'s group', () => {
  assert.equal(logic.parentOf(release, findNode(release, 'unit')).name, 'checks');
  assert.equal(logic.parentOf(release, findNode(release, 'checks')), null);
});

test('outputValues and inputValue read the run variables', () => {
  const vars = logic.outputValues({stepflow: {outputs: {tag: {v: 2}}}});
  assert.deepEqual(logic.inputValue(vars, 'tag.v'), {v: 2});
  assert.equal(logic.inputValue(vars, 'other'), undefined);
  assert.deepEqual(logic.outputValues({}), {});
});

test('panelKey follows an input that reads a path of a variable', () => {
  const unit = {...findNode(release, 'unit'), inputs: ['tag.v']};
  const st = {finished: false, deleted: false};
  assert.notEqual(logic.panelKey(unit, st, {}), logic.panelKey(unit, st, {tag: {v: 1}}), 'the value once output');
  assert.notEqual(logic.panelKey(unit, st, {tag: {v: 1}}), logic.panelKey(unit, st, {tag: {v: 2}}));
});

test('panelKey changes with what the panel shows of a step, not with the rest of the run', () => {
  const unit = {...findNode(release, 'unit'), inputs: ['tag']};
  const prepare = findNode(release, 'prepare');
  const st = {finished: true, deleted: false};
  const key = logic.panelKey(unit, st, {tag: 1});
  assert.equal(logic.panelKey(unit, st, {tag: 1, unrelated: 2}), key);
  assert.notEqual(logic.panelKey(unit, st, {tag: 2}), key, 'an input\'s value');
  assert.notEqual(logic.panelKey(unit, {finished: false, deleted: false}, {tag: 1}), key);
  assert.notEqual(logic.panelKey(unit, {finished: true, deleted: true}, {tag: 1}), key);
  assert.notEqual(logic.panelKey(prepare, st, {tag: 1}), logic.panelKey(prepare, st, {tag: 2}), 'an output\'s value');
  const checks = findNode(release, 'checks');
  const moved = {...checks, children: checks.children.map((c) => ({...c, phase: 'running'}))};
  assert.notEqual(logic.panelKey(moved, st, {}), logic.panelKey(checks, st, {}), 'a sub-step\'s phase');
});

test('isActive: running and suspending steps', () => {
  assert.deepEqual(['running', 'suspending', 'succeeded', 'pending'].map((phase) => logic.isActive({phase})), [true, true, false, false]);
});

test('iterationSummary, allIterations and loopAndRetry', () => {
  assert.equal(logic.iterationSummary({total: 5, succeeded: 2, failed: 1}), '5 in all: 2 succeeded, 1 failed, 0 running, 0 skipped.');
  assert.deepEqual(logic.allIterations({items: [{item: 'us-east-1', status: {name: 'a[0]', phase: 'succeeded'}}, {}]}),
    {total: 2, rows: [{index: 0, item: 'us-east-1', name: 'a[0]', phase: 'succeeded'}, {index: 1, item: ''}]});
  assert.equal(logic.allIterations({items: [], total: 9}).total, 9);
  assert.deepEqual(logic.allIterations({}), {total: 0, rows: []});
  assert.deepEqual(logic.loopAndRetry({type: 'x', forEach: [1], retry: {limit: 2}, properties: {}}), {forEach: [1], retry: {limit: 2}});
  assert.deepEqual(logic.loopAndRetry({type: 'x'}), {});
});

test('stepHash keeps the query, setting or dropping the step', () => {
  const q = new URLSearchParams('tab=log&step=old');
  assert.equal(logic.stepHash('default', 'r 1', q, 'new'), '#/runs/default/r%201?tab=log&step=new');
  assert.equal(logic.stepHash('default', 'r', q, null), '#/runs/default/r?tab=log');
  assert.equal(logic.stepHash('default', 'r', new URLSearchParams('step=x'), null), '#/runs/default/r');
  assert.equal(q.get('step'), 'old', 'the page\'s query is left alone');
});

test('stepOf takes a step\'s lines and its iterations\', not a step whose name starts the same', () => {
  assert.equal(logic.stepOf({step: 'build'}, 'build'), true);
  assert.equal(logic.stepOf({step: 'build[2]'}, 'build'), true);
  assert.equal(logic.stepOf({step: 'build-2'}, 'build'), false);
  assert.equal(logic.stepOf({}, 'build'), false);
});

test('clock, tookText, hasData and logTitle format log entries', () => {
  assert.equal(logic.clock('2024-01-01T09:05:03.042Z'), '09:05:03.042');
  assert.equal(logic.clock(''), '');
  assert.equal(logic.tookText({duration: 1500000000}), '1.5s');
  assert.equal(logic.tookText({duration: '250000'}), '<1ms');
  assert.equal(logic.tookText({}), '');
  assert.deepEqual([{data: {a: 1}}, {data: [1]}, {data: 0}, {data: ''}, {data: []}, {data: {}}, {data: null}, {}].map(logic.hasData),
    [true, true, true, true, false, false, false, false]);
  assert.equal(logic.logTitle(1), 'Log (1 line)');
  assert.equal(logic.logTitle(3), 'Log (3 lines)');
});

test('nextRetry waits a second more each time, at most five', () => {
  let r = 0;
  const delays = [];
  for (let i = 0; i < 7; i++) {
    const n = logic.nextRetry(r);
    r = n.retry;
    delays.push(n.delay);
  }
  assert.deepEqual(delays, [1000, 2000, 3000, 4000, 5000, 5000, 5000]);
});

// fakeStream is follow's world: a page context, an EventSource whose instances the test makes
// fire events, timers the test runs, and the API's get.
function fakeStream({get} = {}) {
  const sources = [];
  class FakeEventSource {
    static CLOSED = 2;
    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.listeners = {};
      sources.push(this);
    }
    addEventListener(type, fn) {
      (this.listeners[type] ||= []).push(fn);
    }
    close() {
      this.readyState = FakeEventSource.CLOSED;
    }
    fire(type, data) {
      for (const fn of this.listeners[type] || []) fn({data});
    }
  }
  const timers = [];
  const cleanups = [];
  const got = [];
  const w = {
    sources, timers, cleanups, got,
    alive: true,
    calls: [],
    ctx: {signal: null, alive: () => w.alive, onCleanup: (fn) => cleanups.push(fn)},
    deps: {
      EventSource: FakeEventSource,
      url: (p) => `http://x/api/v1${p}`,
      setTimeout: (fn, ms) => timers.push({fn, ms}) - 1,
      clearTimeout: (id) => (timers[id].cleared = true),
      get: async (path) => {
        got.push(path);
        return get ? get(path) : runAt(9);
      },
    },
  };
  const record = (name) => (...args) => w.calls.push([name, ...args]);
  w.on = {status: record('status'), open: record('open'), run: record('run'), log: record('log'), deleted: record('deleted')};
  return w;
}

test('follow connects, starts again on open, and hands on runs and log entries', (t) => {
  const w = fakeStream();
  follow(w.ctx, '/runs/default/r', w.on, w.deps);
  assert.equal(w.sources.length, 1);
  assert.equal(w.sources[0].url, 'http://x/api/v1/runs/default/r/events');
  const es = w.sources[0];
  es.fire('open');
  es.fire('run', JSON.stringify(runAt(3)));
  es.fire('log', JSON.stringify({step: 'a', message: 'hi'}));
  const errors = t.mock.method(console, 'error', () => {});
  es.fire('log', '{not json');
  assert.equal(errors.mock.callCount(), 1);
  assert.equal(errors.mock.calls[0].arguments[0], 'log event');
  assert.deepEqual(w.calls, [
    ['status', 'Connecting…', 'wait'],
    ['status', 'Live', 'on'],
    ['open'],
    ['run', runAt(3)],
    ['log', {step: 'a', message: 'hi'}],
  ]);
  for (const fn of w.cleanups) fn();
  assert.equal(es.readyState, 2, 'leaving the page closes the stream');
});

test('follow says Reconnecting while the browser retries by itself', () => {
  const w = fakeStream();
  follow(w.ctx, '/runs/default/r', w.on, w.deps);
  w.sources[0].fire('error');
  assert.deepEqual(w.calls.at(-1), ['status', 'Reconnecting…', 'wait']);
  assert.equal(w.got.length, 0);
  assert.equal(w.timers.length, 0);
});

test('follow fetches the run when the browser gives up, and connects again later and later', async () => {
  const w = fakeStream();
  follow(w.ctx, '/runs/default/r', w.on, w.deps);
  for (let i = 0; i < 6; i++) {
    const es = w.sources.at(-1);
    es.readyState = 2;
    es.fire('error');
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(w.calls.slice(-2), [['status', 'Disconnected', 'off'], ['run', runAt(9)]]);
    w.timers.at(-1).fn();
  }
  assert.deepEqual(w.timers.map((x) => x.ms), [1000, 2000, 3000, 4000, 5000, 5000]);
  assert.equal(w.sources.length, 7);
  // A connection that opens starts the count again.
  w.sources.at(-1).fire('open');
  w.sources.at(-1).readyState = 2;
  w.sources.at(-1).fire('error');
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(w.timers.at(-1).ms, 1000);
  // Leaving the page clears the pending reconnection.
  for (const fn of w.cleanups) fn();
  assert.equal(w.timers.at(-1).cleared, true);
});

test('follow ends when the run is deleted, by event or as a 404', async () => {
  const w = fakeStream();
  follow(w.ctx, '/runs/default/r', w.on, w.deps);
  const es = w.sources[0];
  es.fire('deleted');
  assert.equal(es.readyState, 2);
  assert.deepEqual(w.calls.slice(-2), [['status', 'Deleted', 'off'], ['deleted']]);
  es.fire('error');
  assert.equal(w.got.length, 0, 'nothing is fetched after the deletion');

  const gone = Object.assign(new Error('not found'), {status: 404});
  const v = fakeStream({get: () => Promise.reject(gone)});
  follow(v.ctx, '/runs/default/r', v.on, v.deps);
  v.sources[0].readyState = 2;
  v.sources[0].fire('error');
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(v.calls.slice(-2), [['status', 'Disconnected', 'off'], ['deleted']]);
  assert.equal(v.timers.length, 0, 'no reconnection');
  v.sources[0].fire('error');
  assert.equal(v.got.length, 1);
});

test('follow tries again after another failure to fetch, and not at all once the page is left', async () => {
  const w = fakeStream({get: () => Promise.reject(Object.assign(new Error('down'), {status: 0}))});
  follow(w.ctx, '/runs/default/r', w.on, w.deps);
  w.sources[0].readyState = 2;
  w.sources[0].fire('error');
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(w.timers.length, 1);
  w.alive = false;
  w.timers[0].fn();
  assert.equal(w.sources.length, 1, 'no connection for a page that was left');
  w.sources[0].fire('error');
  assert.equal(w.got.length, 1);
});

test('messageJSON lays out the JSON a message carries, escaped or not', () => {
  assert.deepEqual(logic.messageJSON('request failed: {"error":"status 404","code":7}'), {text: 'request failed:', value: {error: 'status 404', code: 7}});
  assert.deepEqual(logic.messageJSON('answer: "{\\"items\\":[1,2]}"'), {text: 'answer:', value: {items: [1, 2]}});
  assert.deepEqual(logic.messageJSON('[1, 2]'), {text: '', value: [1, 2]});
  // Braces that are not a JSON document, and JSON that is no object, stay text.
  assert.deepEqual(logic.messageJSON('wait for {ready} to be "true"'), {text: 'wait for {ready} to be "true"', value: undefined});
  assert.deepEqual(logic.messageJSON('count is "3"'), {text: 'count is "3"', value: undefined});
  assert.deepEqual(logic.messageJSON(undefined), {text: '', value: undefined});
});
