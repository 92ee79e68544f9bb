import {test} from 'node:test';
import assert from 'node:assert/strict';
import {requestOf, fieldsOf} from '../static/js/pages/triggers/logic.js';

test('a cron form asks for its schedules, one per line, and only what was filled in', () => {
  assert.deepEqual(requestOf({type: 'cron', schedules: ' 0 2 * * *\n\n@hourly ', timeZone: ' Europe/Paris ', concurrencyPolicy: 'Forbid', startingDeadlineSeconds: '300', paused: false, context: '{"env": "prod"}'}),
    {type: 'cron', schedules: ['0 2 * * *', '@hourly'], timeZone: 'Europe/Paris', concurrencyPolicy: 'Forbid', startingDeadlineSeconds: 300, context: {env: 'prod'}});
  assert.deepEqual(requestOf({type: 'cron', schedules: '@daily', paused: true}), {type: 'cron', schedules: ['@daily'], paused: true});
});

test('a webhook form sends no schedule', () => {
  assert.deepEqual(requestOf({type: 'webhook', schedules: '@daily', context: ''}), {type: 'webhook'});
});

test('a cloudevents form sends its filter, trimmed, and no schedule', () => {
  assert.deepEqual(requestOf({type: 'cloudevents', schedules: '@daily', filter: ' context.event.type == "push" ', context: '{"env": "prod"}'}),
    {type: 'cloudevents', filter: 'context.event.type == "push"', context: {env: 'prod'}});
  assert.deepEqual(requestOf({type: 'cloudevents', filter: '  '}), {type: 'cloudevents'});
  assert.deepEqual(requestOf({type: 'webhook', filter: 'true'}), {type: 'webhook'});
  assert.equal(fieldsOf({type: 'cloudevents', filter: 'context.event.type == "push"'}).filter, 'context.event.type == "push"');
});

test('fields that cannot be read are named', () => {
  assert.throws(() => requestOf({type: 'cron', schedules: ' \n '}), /Schedules: at least one/);
  assert.throws(() => requestOf({type: 'cron', schedules: '@daily', startingDeadlineSeconds: '-1'}), /Starting deadline/);
  assert.throws(() => requestOf({type: 'webhook', context: '{env: prod}'}), /Context: not JSON/);
  assert.throws(() => requestOf({type: 'webhook', context: '["prod"]'}), /Context: a JSON object/);
});

test('a trigger edited fills the form as it was given', () => {
  assert.deepEqual(fieldsOf({type: 'cron', schedule: '*/5 * * * *', concurrencyPolicy: 'Replace', startingDeadlineSeconds: 0, context: {env: 'prod'}}),
    {type: 'cron', schedules: '*/5 * * * *', timeZone: '', concurrencyPolicy: 'Replace', startingDeadlineSeconds: '0', paused: false, context: '{\n  "env": "prod"\n}', filter: ''});
  const back = requestOf(fieldsOf({type: 'cron', schedules: ['0 1 * * *', '0 13 * * *'], timeZone: 'UTC', paused: true}));
  assert.deepEqual(back, {type: 'cron', schedules: ['0 1 * * *', '0 13 * * *'], timeZone: 'UTC', concurrencyPolicy: 'Allow', paused: true});
});
