// The Application pages' logic (static/js/pages/app/logic.js).

import {test} from 'node:test';
import assert from 'node:assert/strict';
import * as logic from '../static/js/pages/app/logic.js';

const comp = (name, image, traits) => ({name, type: 'webservice', properties: {image}, ...(traits ? {traits} : {})});
const rev = (number, hash, components, extra = {}) => ({
  number, hash, run: `shop-v${number}`,
  object: {metadata: {name: `shop-v${number}`, creationTimestamp: `2026-01-0${number}T00:00:00Z`}, spec: {application: {spec: {components, ...extra}}}, status: {}},
});

test('phaseClass colours the phases as the run phases they are like', () => {
  assert.equal(logic.phaseClass('running'), 'succeeded');
  assert.equal(logic.phaseClass('runningWorkflow'), 'running');
  assert.equal(logic.phaseClass('workflowSuspending'), 'suspending');
  assert.equal(logic.phaseClass('workflowFailed'), 'failed');
  assert.equal(logic.phaseClass('unhealthy'), 'failed');
  assert.equal(logic.phaseClass(''), 'pending');
  assert.equal(logic.appPhase({status: {status: 'running'}}), 'running');
  assert.equal(logic.appPhase({}), '');
});

test('healthCounts counts each component in each cluster; an unhealthy trait makes its place unhealthy', () => {
  const app = {status: {services: [
    {name: 'web', cluster: 'east', healthy: true},
    {name: 'web', cluster: 'west', healthy: true, traits: [{type: 'gateway', healthy: false, message: 'no address'}]},
    {name: 'cache', cluster: 'east', healthy: false},
  ]}};
  assert.deepEqual(logic.healthCounts(app), {healthy: 1, unhealthy: 2});
  assert.deepEqual(logic.healthCounts({}), {healthy: 0, unhealthy: 0});
});

test('componentRows keeps the spec order, lists each place, and keeps components not reported yet', () => {
  const app = {
    spec: {components: [comp('web', 'nginx', [{type: 'scaler'}]), comp('cache', 'redis')]},
    status: {services: [
      {name: 'web', cluster: 'west', namespace: 'shop', healthy: true, message: 'Ready:1/1'},
      {name: 'web', namespace: 'shop', healthy: false, message: 'Ready:0/1'},
      {name: 'old', cluster: 'east', healthy: true},
    ]},
  };
  const rows = logic.componentRows(app);
  assert.deepEqual(rows.map((r) => r.name), ['web', 'cache', 'old']);
  assert.deepEqual(rows[0].traits, ['scaler']);
  assert.deepEqual(rows[0].places.map((p) => [p.cluster, p.healthy, p.message]), [['west', true, 'Ready:1/1'], ['local', false, 'Ready:0/1']]);
  assert.deepEqual(rows[1].places, []);
});

test('latestRun is the run of the latest revision, else a run named as the revision', () => {
  const app = {status: {latestRevision: {name: 'shop-v2', revision: 2}}};
  assert.equal(logic.latestRun(app, [{number: 1, run: 'shop-v1'}, {number: 2, run: 'shop-v2-run'}]), 'shop-v2-run');
  assert.equal(logic.latestRun(app, []), 'shop-v2');
  assert.equal(logic.latestRun({status: {}}, []), '');
});

test('revisionChanges names the components added, removed and changed, and a return to an earlier spec', () => {
  const v1 = rev(1, 'h1', [comp('web', 'nginx:1'), comp('cache', 'redis')]);
  const v2 = rev(2, 'h2', [comp('web', 'nginx:2')]);
  const v3 = rev(3, 'h1', [comp('web', 'nginx:1'), comp('cache', 'redis')]);
  const v4 = rev(4, 'h4', [comp('web', 'nginx:1'), comp('cache', 'redis')], {policies: [{name: 'p', type: 'topology'}]});
  const v5 = rev(5, 'h5', [comp('web', 'nginx:1'), comp('cache', 'redis')], {policies: [{type: 'topology', name: 'p'}]});
  const all = [v1, v2, v3, v4, v5];
  assert.deepEqual(logic.revisionChanges(all, 0), ['first revision']);
  assert.deepEqual(logic.revisionChanges(all, 1), ['removed cache', 'changed web']);
  assert.deepEqual(logic.revisionChanges(all, 2), ['same spec as v1', 'added cache', 'changed web']);
  assert.deepEqual(logic.revisionChanges(all, 3), ['policies changed']);
  assert.deepEqual(logic.revisionChanges(all, 4), ['definitions changed'], 'key order is no change');
  assert.deepEqual(logic.revisionChanges(all, 9), []);
});

test('revisionTime and revisionPhase read the revision object', () => {
  const r = rev(1, 'h', []);
  assert.equal(logic.revisionTime(r), '2026-01-01T00:00:00Z');
  assert.equal(logic.revisionPhase(r), '');
  r.object.status = {workflow: {status: 'executing'}};
  assert.equal(logic.revisionPhase(r), 'executing');
  r.object.status = {succeeded: true, workflow: {status: 'succeeded'}};
  assert.equal(logic.revisionPhase(r), 'succeeded');
});

test('rollbackReason refuses only the revision delivered now', () => {
  const app = {status: {latestRevision: {name: 'shop-v2', revision: 2}}};
  assert.notEqual(logic.rollbackReason(app, {number: 2}), '');
  assert.equal(logic.rollbackReason(app, {number: 1}), '');
});

test('resourceText names an applied object', () => {
  assert.equal(logic.resourceText({apiVersion: 'apps/v1', kind: 'Deployment', namespace: 'shop', name: 'web'}), 'apps/v1 Deployment shop/web');
  assert.equal(logic.resourceText({apiVersion: 'v1', kind: 'Namespace', name: 'shop'}), 'v1 Namespace shop');
});
