// A template's triggers, on its page: each with its schedules (a cloudevents trigger's filter),
// its state, its last and next firing and its last run; operators pause and unpause cron triggers and backfill the firings of
// a past interval; admins add, change and delete triggers. API text reaches the page only as
// text nodes.

import * as api from '../api.js';
import {h, replace, link, timeEl} from '../dom.js';
import {problemList, roleNote} from './common.js';
import {requestOf, fieldsOf} from './triggers/logic.js';

// schedulesOf is a cron trigger's schedules as one line.
function schedulesOf(t) {
  const specs = Array.isArray(t.schedules) && t.schedules.length ? t.schedules : t.schedule ? [t.schedule] : [];
  return specs.join('; ') + (t.timeZone ? ` (${t.timeZone})` : '');
}

// whatFires is what starts a run of a webhook or cloudevents trigger, for its row.
function whatFires(t) {
  if (t.type !== 'cloudevents') return h('span', {class: 'muted'}, 'a request to its URL');
  if (!t.filter) return h('span', {class: 'muted'}, 'every event');
  return h('span', {class: 'trigger-filter'}, 'events where ', h('code', null, t.filter));
}

// triggersSection answers the section listing the template's triggers, loading them.
export function triggersSection(ctx, ns, name) {
  const canOperate = ctx.can('operator');
  const canAdmin = ctx.can('admin');
  const list = h('div', {id: 'template-triggers'}, h('p', {class: 'muted'}, 'Loading…'));
  const backfill = h('div', {id: 'backfill'});
  const editor = triggerForm(ctx, ns, name, () => load());
  const section = h('section', {class: 'card', 'aria-labelledby': 'triggers-title'},
    h('h2', {id: 'triggers-title'}, 'Triggers'), list,
    canAdmin ? editor.el : h('p', {class: 'muted', id: 'trigger-form-disabled'}, `Adding or changing triggers: ${roleNote('admin')}`),
    backfill);

  const remove = async (t) => {
    const ok = await ctx.confirm(`Delete trigger ${t.id}?`,
      t.type === 'cron' ? 'It fires no more. Runs it started stay.' : 'Its URL answers 401 from now on. Runs it started stay.', 'Delete');
    if (!ok) return;
    try {
      await api.del(`/triggers/${encodeURIComponent(t.id)}`, {signal: ctx.signal});
      ctx.notify(`Trigger ${t.id} deleted.`);
      if (editor.editing() === t.id) editor.reset();
      await load();
    } catch (e) {
      if (!api.isAbort(e)) ctx.notify(`Deleting failed: ${e.message}`, 'error');
    }
  };

  const setPaused = async (t, pause) => {
    try {
      await api.post(`/triggers/${encodeURIComponent(t.id)}/${pause ? 'pause' : 'unpause'}`, undefined, {signal: ctx.signal});
      ctx.notify(`Trigger ${t.id} ${pause ? 'paused' : 'unpaused'}.`);
      await load();
    } catch (e) {
      if (!api.isAbort(e)) ctx.notify(`${pause ? 'Pausing' : 'Unpausing'} failed: ${e.message}`, 'error');
    }
  };

  const row = (t) => {
    const cron = t.type === 'cron';
    const state = cron ? (t.paused ? 'paused' : 'active') : 'active';
    let action = null;
    if (cron && canOperate) {
      action = h('button', {type: 'button', class: 'secondary', id: `trigger-${t.paused ? 'unpause' : 'pause'}-${t.id}`, onclick: () => setPaused(t, !t.paused)},
        t.paused ? 'Unpause' : 'Pause');
    }
    const admin = canAdmin ? [
      h('button', {type: 'button', class: 'secondary', id: `trigger-edit-${t.id}`, onclick: () => editor.edit(t)}, 'Edit'),
      h('button', {type: 'button', class: 'secondary danger', id: `trigger-delete-${t.id}`, onclick: () => remove(t)}, 'Delete'),
    ] : [];
    return h('tr', {dataset: {trigger: t.id, state}},
      h('th', {scope: 'row'}, h('code', null, t.id)),
      h('td', null, t.type),
      h('td', null, cron ? schedulesOf(t) : whatFires(t)),
      h('td', {class: 'trigger-state'}, state),
      h('td', null, cron ? timeEl(t.lastFire) : ''),
      h('td', null, cron && !t.paused ? timeEl(t.nextFire) : ''),
      h('td', null, t.lastRun ? h('a', {href: link('runs', ns, t.lastRun)}, t.lastRun) : '',
        t.lastError ? h('p', {class: 'error trigger-error'}, t.lastError) : null),
      h('td', {class: 'trigger-actions'}, action, ...admin));
  };

  const backfillForm = (crons) => {
    const select = h('select', {id: 'backfill-trigger'}, crons.map((t) => h('option', {value: t.id}, `${t.id}: ${schedulesOf(t)}`)));
    const from = h('input', {id: 'backfill-from', type: 'text', placeholder: '2026-03-01T00:00:00Z', autocomplete: 'off', spellcheck: 'false', 'aria-describedby': 'backfill-hint'});
    const to = h('input', {id: 'backfill-to', type: 'text', placeholder: '2026-03-02T00:00:00Z', autocomplete: 'off', spellcheck: 'false', 'aria-describedby': 'backfill-hint'});
    const submit = h('button', {type: 'submit', id: 'backfill-submit'}, 'Backfill');
    const result = h('div', {id: 'backfill-result', 'aria-live': 'polite'});
    const form = h('form', {id: 'backfill-form', novalidate: true, 'aria-labelledby': 'backfill-title'},
      h('h3', {id: 'backfill-title'}, 'Backfill'),
      h('p', {class: 'hint', id: 'backfill-hint'}, 'A run for each time the schedules came round from one time to another (RFC 3339, both included, at most 100), each with context.scheduledTime. A firing that has its run already gets no second one.'),
      h('div', {class: 'field'}, h('label', {for: 'backfill-trigger'}, 'Trigger'), select),
      h('div', {class: 'field'}, h('label', {for: 'backfill-from'}, 'From'), from),
      h('div', {class: 'field'}, h('label', {for: 'backfill-to'}, 'To'), to),
      h('div', {class: 'actions'}, submit),
      result);
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      replace(result);
      submit.disabled = true;
      submit.setAttribute('aria-busy', 'true');
      try {
        const ans = await api.post(`/triggers/${encodeURIComponent(select.value)}/backfill`, {from: from.value.trim(), to: to.value.trim()}, {signal: ctx.signal});
        const runs = (ans && Array.isArray(ans.runs)) ? ans.runs : [];
        const started = runs.filter((r) => !r.existed).length;
        replace(result,
          h('p', {id: 'backfill-summary'}, `${started} run${started === 1 ? '' : 's'} started, ${runs.length - started} already there.`),
          runs.length ? h('ul', {id: 'backfill-runs'}, runs.map((r) => h('li', {dataset: {existed: r.existed ? 'true' : 'false'}},
            h('code', null, r.scheduledTime), ' ', h('a', {href: link('runs', r.namespace, r.name)}, r.name), r.existed ? ' (already there)' : ' (started)'))) : null);
        ctx.notify(`Backfill: ${started} run${started === 1 ? '' : 's'} started.`);
      } catch (e) {
        if (!api.isAbort(e)) replace(result, problemList(e));
      } finally {
        submit.disabled = false;
        submit.removeAttribute('aria-busy');
      }
    });
    return form;
  };

  async function load() {
    try {
      const data = await api.get(`${api.objPath('templates', ns, name)}/triggers`, {signal: ctx.signal});
      const items = (data && Array.isArray(data.items) ? data.items : []).filter((t) => t && t.id);
      replace(list, items.length
        ? h('div', {class: 'scroll-x'}, h('table', {class: 'data', id: 'triggers'},
          h('thead', null, h('tr', null, ['Trigger', 'Type', 'Schedules', 'State', 'Last firing', 'Next firing', 'Last run', ''].map((c) => h('th', {scope: 'col'}, c)))),
          h('tbody', null, items.map(row))))
        : h('p', {class: 'muted'}, 'No triggers.'));
      const crons = items.filter((t) => t.type === 'cron');
      if (!crons.length) replace(backfill);
      else if (!canOperate) replace(backfill, h('p', {class: 'muted', id: 'backfill-disabled'}, `Backfill: ${roleNote('operator')}`));
      else if (!backfill.querySelector('#backfill-form')) replace(backfill, backfillForm(crons));
    } catch (e) {
      if (!api.isAbort(e)) replace(list, h('p', {class: 'error'}, `Loading triggers failed: ${e.message}`));
    }
  }
  load();
  return section;
}

// triggerForm is the form that adds a trigger to the template, or changes one (edit(t)); done
// is called after a save. A webhook or cloudevents trigger added shows its URL and secret, once.
function triggerForm(ctx, ns, name, done) {
  let editing = null; // the trigger being changed, or null to add one
  const title = h('h3', {id: 'trigger-form-title'}, 'Add a trigger');
  const type = h('select', {id: 'trigger-type'}, [h('option', {value: 'cron'}, 'cron: on a schedule'), h('option', {value: 'webhook'}, 'webhook: on a request'),
    h('option', {value: 'cloudevents'}, 'cloudevents: on a CloudEvent')]);
  const filter = h('textarea', {id: 'trigger-filter', rows: 2, spellcheck: 'false', placeholder: 'context.event.type == "com.example.push"', 'aria-describedby': 'trigger-filter-hint'});
  const eventFields = h('div', {id: 'trigger-event-fields'},
    h('div', {class: 'field'}, h('label', {for: 'trigger-filter'}, 'Filter'), filter,
      h('p', {class: 'hint', id: 'trigger-filter-hint'}, 'A CUE expression over context.event (the event\'s id, source, type, subject, data…): only the events it is true for start a run. Empty: every event.')));
  const schedules = h('textarea', {id: 'trigger-schedules', rows: 2, spellcheck: 'false', placeholder: '0 2 * * *', 'aria-describedby': 'trigger-schedules-hint'});
  const timeZone = h('input', {id: 'trigger-timezone', type: 'text', placeholder: 'UTC', autocomplete: 'off', spellcheck: 'false'});
  const policy = h('select', {id: 'trigger-policy'}, [
    h('option', {value: 'Allow'}, 'Allow: start it anyway'),
    h('option', {value: 'Forbid'}, 'Forbid: skip it'),
    h('option', {value: 'Replace'}, 'Replace: terminate the running one first')]);
  const deadline = h('input', {id: 'trigger-deadline', type: 'text', inputmode: 'numeric', autocomplete: 'off', placeholder: 'no limit'});
  const paused = h('input', {id: 'trigger-paused', type: 'checkbox'});
  const context = h('textarea', {id: 'trigger-context', rows: 3, spellcheck: 'false', placeholder: '{"env": "prod"}', 'aria-describedby': 'trigger-context-hint'});
  const cronFields = h('div', {id: 'trigger-cron-fields'},
    h('div', {class: 'field'}, h('label', {for: 'trigger-schedules'}, 'Schedules'), schedules,
      h('p', {class: 'hint', id: 'trigger-schedules-hint'}, 'One per line: five cron fields, or @hourly, @daily, @every 30m. A run whenever one comes round.')),
    h('div', {class: 'field'}, h('label', {for: 'trigger-timezone'}, 'Time zone'), timeZone),
    h('div', {class: 'field'}, h('label', {for: 'trigger-policy'}, 'While the last run has not finished'), policy),
    h('div', {class: 'field'}, h('label', {for: 'trigger-deadline'}, 'Starting deadline (seconds late a missed firing may start)'), deadline),
    h('div', {class: 'field check'}, h('span', {class: 'inline'}, paused, h('label', {for: 'trigger-paused'}, 'Paused'))));
  const submit = h('button', {type: 'submit', id: 'trigger-submit'}, 'Add trigger');
  const cancel = h('button', {type: 'button', class: 'secondary', id: 'trigger-cancel', hidden: true}, 'Cancel');
  const result = h('div', {id: 'trigger-result', 'aria-live': 'polite'});
  const form = h('form', {id: 'trigger-form', novalidate: true, 'aria-labelledby': 'trigger-form-title'},
    title,
    h('div', {class: 'field'}, h('label', {for: 'trigger-type'}, 'Type'), type),
    cronFields,
    eventFields,
    h('div', {class: 'field'}, h('label', {for: 'trigger-context'}, 'Context'), context,
      h('p', {class: 'hint', id: 'trigger-context-hint'}, 'A JSON object: the spec.context of the runs it starts (a webhook adds its request body, a cloudevents trigger the event as context.event).')),
    h('div', {class: 'actions'}, submit, cancel),
    result);
  const showType = () => {
    cronFields.hidden = type.value !== 'cron';
    eventFields.hidden = type.value !== 'cloudevents';
  };
  type.addEventListener('change', showType);

  const fill = (f) => {
    type.value = f.type;
    schedules.value = f.schedules;
    timeZone.value = f.timeZone;
    policy.value = f.concurrencyPolicy;
    deadline.value = f.startingDeadlineSeconds;
    paused.checked = f.paused;
    context.value = f.context;
    filter.value = f.filter;
    showType();
  };
  const reset = () => {
    editing = null;
    fill(fieldsOf({type: 'cron'}));
    type.disabled = false;
    title.textContent = 'Add a trigger';
    submit.textContent = 'Add trigger';
    cancel.hidden = true;
  };
  const edit = (t) => {
    editing = t.id;
    fill(fieldsOf(t));
    type.disabled = true; // a trigger's type cannot change
    title.textContent = `Change trigger ${t.id}`;
    submit.textContent = 'Save trigger';
    cancel.hidden = false;
    replace(result);
    schedules.focus();
    form.scrollIntoView({block: 'nearest'});
  };
  cancel.addEventListener('click', () => { reset(); replace(result); });

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    replace(result);
    let body;
    try {
      body = requestOf({type: type.value, schedules: schedules.value, timeZone: timeZone.value, concurrencyPolicy: policy.value,
        startingDeadlineSeconds: deadline.value, paused: paused.checked, context: context.value, filter: filter.value});
    } catch (e) {
      replace(result, h('p', {class: 'error', role: 'alert'}, e.message));
      return;
    }
    submit.disabled = true;
    submit.setAttribute('aria-busy', 'true');
    try {
      if (editing) {
        const id = editing;
        await api.request('PUT', `/triggers/${encodeURIComponent(id)}`, {body, signal: ctx.signal});
        ctx.notify(`Trigger ${id} saved.`);
        reset();
      } else {
        const made = await api.post(`${api.objPath('templates', ns, name)}/triggers`, body, {signal: ctx.signal});
        ctx.notify(`Trigger ${made.id} added.`);
        reset();
        if (made.url) {
          const how = made.type === 'cloudevents'
            ? 'Shown once: keep the secret now. POST CloudEvents (structured or binary mode) to the URL with ?token=SECRET, or sign the body with it (docs/api.md).'
            : 'Shown once: keep the secret now. POST to the URL with ?token=SECRET, or sign the body with it (docs/api.md).';
          replace(result, h('div', {id: 'trigger-created', class: 'secret-once', role: 'status'},
            h('p', null, how),
            h('dl', null, h('dt', null, 'URL'), h('dd', null, h('code', {id: 'trigger-url'}, made.url)),
              h('dt', null, 'Secret'), h('dd', null, h('code', {id: 'trigger-secret'}, made.secret)))));
        }
      }
      await done();
    } catch (e) {
      if (!api.isAbort(e)) replace(result, problemList(e));
    } finally {
      submit.disabled = false;
      submit.removeAttribute('aria-busy');
    }
  });
  reset();
  return {el: form, edit, reset, editing: () => editing};
}
