// A template's triggers, on its page: each with its schedules, its state, its last and next
// firing and its last run; operators pause and unpause cron triggers and backfill the firings of
// a past interval. API text reaches the page only as text nodes.

import * as api from '../api.js';
import {h, replace, link, timeEl} from '../dom.js';
import {problemList, roleNote} from './common.js';

// schedulesOf is a cron trigger's schedules as one line.
function schedulesOf(t) {
  const specs = Array.isArray(t.schedules) && t.schedules.length ? t.schedules : t.schedule ? [t.schedule] : [];
  return specs.join('; ') + (t.timeZone ? ` (${t.timeZone})` : '');
}

// triggersSection answers the section listing the template's triggers, loading them.
export function triggersSection(ctx, ns, name) {
  const canOperate = ctx.can('operator');
  const list = h('div', {id: 'template-triggers'}, h('p', {class: 'muted'}, 'Loading…'));
  const backfill = h('div', {id: 'backfill'});
  const section = h('section', {class: 'card', 'aria-labelledby': 'triggers-title'},
    h('h2', {id: 'triggers-title'}, 'Triggers'), list, backfill);

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
    return h('tr', {dataset: {trigger: t.id, state}},
      h('th', {scope: 'row'}, h('code', null, t.id)),
      h('td', null, t.type),
      h('td', null, cron ? schedulesOf(t) : h('span', {class: 'muted'}, 'webhook')),
      h('td', {class: 'trigger-state'}, state),
      h('td', null, cron ? timeEl(t.lastFire) : ''),
      h('td', null, cron && !t.paused ? timeEl(t.nextFire) : ''),
      h('td', null, t.lastRun ? h('a', {href: link('runs', ns, t.lastRun)}, t.lastRun) : '',
        t.lastError ? h('p', {class: 'error trigger-error'}, t.lastError) : null),
      h('td', null, action));
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
