// The runs list: filters and paging kept in the route's query, refreshed every few seconds.

import * as api from '../api.js';
import {h, replace, link, badge, timeEl, between, parseTime} from '../dom.js';
import {stepCounts} from './common.js';

const PHASES = ['initializing', 'queued', 'executing', 'suspending', 'succeeded', 'failed', 'terminated'];
const LIMITS = [20, 50, 100, 500];
const REFRESH_MS = 3000;

// A datetime-local value shows local time; the route and the API keep RFC 3339.
function toLocalInput(iso) {
  const d = parseTime(iso);
  if (!d) return '';
  const off = d.getTimezoneOffset() * 60000;
  return new Date(d.getTime() - off).toISOString().slice(0, 16);
}

function fromLocalInput(v) {
  if (!v) return '';
  const d = new Date(v);
  return Number.isNaN(d.getTime()) ? '' : d.toISOString();
}

function field(id, text, control) {
  return h('div', {class: 'field'}, h('label', {for: id}, text), control);
}

export async function renderRuns(ctx) {
  const q = ctx.query;
  const filters = {
    phase: q.get('phase') || '',
    template: q.get('template') || '',
    namespace: q.get('namespace') || '',
    since: q.get('since') || '',
    until: q.get('until') || '',
    limit: Number(q.get('limit')) || 20,
    offset: Math.max(0, Number(q.get('offset')) || 0),
  };

  const phase = h('select', {id: 'f-phase', name: 'phase'},
    h('option', {value: ''}, 'any'),
    PHASES.map((p) => h('option', {value: p, selected: p === filters.phase}, p)));
  const template = h('input', {id: 'f-template', name: 'template', type: 'text', value: filters.template, autocomplete: 'off'});
  const namespaces = Array.isArray(ctx.me.namespaces) ? ctx.me.namespaces : [];
  const namespace = namespaces.length
    ? h('select', {id: 'f-namespace', name: 'namespace'},
      h('option', {value: ''}, 'all of mine'),
      namespaces.map((n) => h('option', {value: n, selected: n === filters.namespace}, n)))
    : h('input', {id: 'f-namespace', name: 'namespace', type: 'text', value: filters.namespace, autocomplete: 'off'});
  const since = h('input', {id: 'f-since', name: 'since', type: 'datetime-local', value: toLocalInput(filters.since)});
  const until = h('input', {id: 'f-until', name: 'until', type: 'datetime-local', value: toLocalInput(filters.until)});
  const limit = h('select', {id: 'f-limit', name: 'limit'},
    LIMITS.map((n) => h('option', {value: String(n), selected: n === filters.limit}, String(n))));
  const auto = h('input', {id: 'f-auto', type: 'checkbox', checked: true});

  const form = h('form', {class: 'filters', role: 'search', 'aria-label': 'Filter runs'},
    field('f-phase', 'Phase', phase),
    field('f-template', 'Template', template),
    field('f-namespace', 'Namespace', namespace),
    field('f-since', 'Started after', since),
    field('f-until', 'Started before', until),
    field('f-limit', 'Per page', limit),
    h('div', {class: 'field buttons'},
      h('button', {type: 'submit'}, 'Apply'),
      h('button', {type: 'reset', class: 'secondary'}, 'Reset')));

  const status = h('p', {class: 'muted small', id: 'runs-status', 'aria-live': 'polite'});
  const tbody = h('tbody', {id: 'runs-body'});
  const caption = h('caption', {class: 'visually-hidden'}, 'Runs, newest first');
  const tableEl = h('table', {class: 'data runs', id: 'runs'},
    caption,
    h('thead', null, h('tr', null,
      ['Run', 'Namespace', 'Phase', 'Template', 'Steps', 'Started', 'Duration', 'Message'].map((c) => h('th', {scope: 'col'}, c)))),
    tbody);
  const pager = h('nav', {class: 'pager', 'aria-label': 'Pages of runs'});
  const error = h('p', {class: 'error', role: 'alert'});

  const head = h('div', {class: 'page-head'},
    h('h1', null, 'Runs'),
    h('div', {class: 'head-tools'},
      h('label', {class: 'inline', for: 'f-auto'}, auto, ' Auto-refresh'),
      ctx.can('operator') ? h('a', {class: 'button secondary', href: '#/templates'}, 'Start a run…') : null));
  replace(ctx.main, head, form, error, h('div', {class: 'scroll-x'}, tableEl), pager, status);
  ctx.ready('Runs');

  const query = () => ({
    phase: filters.phase,
    template: filters.template,
    namespace: filters.namespace,
    since: filters.since,
    until: filters.until,
    limit: filters.limit,
    offset: filters.offset,
  });

  // The route's query follows the filters without a new history entry per refresh.
  const syncHash = () => {
    const p = new URLSearchParams();
    for (const [k, v] of Object.entries(query())) {
      if (v === '' || (k === 'offset' && !v) || (k === 'limit' && v === 20)) continue;
      p.set(k, String(v));
    }
    const hash = '#/runs' + (p.toString() ? `?${p}` : '');
    if (location.hash !== hash) history.replaceState(null, '', hash);
  };

  let loading = false;
  const load = async () => {
    if (loading) return;
    loading = true;
    try {
      const data = await api.get('/runs', {query: query(), signal: ctx.signal});
      if (!ctx.alive()) return;
      error.textContent = '';
      paint(data || {});
      status.textContent = `Updated ${new Date().toLocaleTimeString()}`;
    } catch (e) {
      if (api.isAbort(e) || !ctx.alive()) return;
      error.textContent = e.status === 400 ? `The filters are not valid: ${e.message}` : `Loading runs failed: ${e.message}`;
    } finally {
      loading = false;
    }
  };

  const paint = (data) => {
    const items = Array.isArray(data.items) ? data.items : [];
    const total = Number(data.total) || 0;
    if (!items.length) {
      const filtered = filters.phase || filters.template || filters.namespace || filters.since || filters.until;
      replace(tbody, h('tr', null, h('td', {colspan: 8, class: 'empty'}, filtered ? 'No runs match these filters.' : 'No runs yet.')));
    } else {
      replace(tbody, items.map((r) => h('tr', {dataset: {run: `${r.namespace}/${r.name}`}},
        h('th', {scope: 'row'}, h('a', {href: link('runs', r.namespace, r.name)}, r.name)),
        h('td', null, r.namespace),
        h('td', null, badge(r.phase)),
        h('td', null, r.template ? h('a', {href: link('templates', r.namespace, r.template)}, r.template) : h('span', {class: 'muted'}, '—')),
        h('td', null, stepCounts(r.steps)),
        h('td', null, timeEl(r.startTime)),
        h('td', null, between(r.startTime, r.endTime)),
        h('td', {class: 'message'}, r.message || ''))));
    }
    const from = items.length ? filters.offset + 1 : 0;
    const to = filters.offset + items.length;
    caption.textContent = `Runs ${from} to ${to} of ${total}, newest first`;
    const prev = h('button', {type: 'button', class: 'secondary', id: 'page-prev', disabled: filters.offset === 0}, '← Newer');
    const next = h('button', {type: 'button', class: 'secondary', id: 'page-next', disabled: to >= total}, 'Older →');
    prev.addEventListener('click', () => {
      filters.offset = Math.max(0, filters.offset - filters.limit);
      syncHash();
      load();
    });
    next.addEventListener('click', () => {
      filters.offset += filters.limit;
      syncHash();
      load();
    });
    replace(pager, prev, h('span', {id: 'runs-total'}, total ? `${from}–${to} of ${total}` : '0 runs'), next);
  };

  const apply = () => {
    filters.phase = phase.value;
    filters.template = template.value.trim();
    filters.namespace = namespace.value.trim();
    filters.since = fromLocalInput(since.value);
    filters.until = fromLocalInput(until.value);
    filters.limit = Number(limit.value) || 20;
    filters.offset = 0;
    syncHash();
    load();
  };
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    apply();
  });
  // A reset clears the fields (their defaults are the route's values, so they are set here).
  form.addEventListener('reset', (ev) => {
    ev.preventDefault();
    for (const el of [template, since, until]) el.value = '';
    phase.value = '';
    namespace.value = '';
    limit.value = '20';
    apply();
  });

  const timer = setInterval(() => {
    if (auto.checked && !document.hidden) load();
  }, REFRESH_MS);
  ctx.onCleanup(() => clearInterval(timer));
  await load();
}
