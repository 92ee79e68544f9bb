// The Applications list: each Application's phase, revision and health counts, refreshed every
// few seconds as the runs list is.

import * as api from '../api.js';
import {h, replace, link, timeEl} from '../dom.js';
import {appPhase, healthCounts} from './app/logic.js';
import {appBadge, healthText} from './app.js';

const REFRESH_MS = 3000;

export async function renderApps(ctx) {
  const namespace = ctx.query.get('namespace') || '';
  const auto = h('input', {id: 'f-auto', type: 'checkbox', checked: true});
  const status = h('p', {class: 'muted small', id: 'apps-status', 'aria-live': 'polite'});
  const error = h('p', {class: 'error', role: 'alert'});
  const tbody = h('tbody', {id: 'apps-body'});
  const tableEl = h('table', {class: 'data apps', id: 'apps'},
    h('caption', {class: 'visually-hidden'}, 'Applications'),
    h('thead', null, h('tr', null,
      ['Application', 'Namespace', 'Phase', 'Revision', 'Health', 'Age'].map((c) => h('th', {scope: 'col'}, c)))),
    tbody);
  replace(ctx.main,
    h('div', {class: 'page-head'},
      h('h1', null, 'Applications'),
      h('div', {class: 'head-tools'},
        ctx.can('operator') ? h('a', {class: 'button secondary', href: '#/designer/app', id: 'design-new-app'}, 'New in designer') : null,
        h('label', {class: 'inline', for: 'f-auto'}, auto, ' Auto-refresh'))),
    h('p', {class: 'muted small'}, 'Applications are delivered with ', h('code', null, 'stepflow app up'), ' or POST /api/v1/applications; each revision is a run.'),
    error, h('div', {class: 'scroll-x'}, tableEl), status);
  ctx.ready('Applications');

  const paint = (items) => {
    if (!items.length) {
      replace(tbody, h('tr', null, h('td', {colspan: 6, class: 'empty'}, 'No Applications yet.')));
      return;
    }
    replace(tbody, items.map((a) => {
      const ns = a.metadata.namespace;
      const name = a.metadata.name;
      const rev = a.status && a.status.latestRevision;
      return h('tr', {dataset: {app: `${ns}/${name}`}},
        h('th', {scope: 'row'}, h('a', {href: link('applications', ns, name)}, name)),
        h('td', {'data-label': 'Namespace'}, ns),
        h('td', {'data-label': 'Phase'}, appBadge(appPhase(a))),
        h('td', {'data-label': 'Revision'}, rev ? `v${rev.revision}` : h('span', {class: 'muted'}, '—')),
        h('td', {'data-label': 'Health'}, healthText(healthCounts(a))),
        h('td', {'data-label': 'Age'}, timeEl(a.metadata.creationTimestamp)));
    }));
  };

  let loading = false;
  const load = async () => {
    if (loading) return;
    loading = true;
    try {
      const data = await api.get('/applications', {query: {namespace}, signal: ctx.signal});
      if (!ctx.alive()) return;
      error.textContent = '';
      const items = (data && Array.isArray(data.items) ? data.items : []).filter((a) => a && a.metadata);
      items.sort((x, y) => (x.metadata.namespace + '/' + x.metadata.name).localeCompare(y.metadata.namespace + '/' + y.metadata.name));
      paint(items);
      status.textContent = `Updated ${new Date().toLocaleTimeString()}`;
    } catch (e) {
      if (api.isAbort(e) || !ctx.alive()) return;
      error.textContent = `Loading Applications failed: ${e.message}`;
    } finally {
      loading = false;
    }
  };
  const timer = setInterval(() => {
    if (auto.checked && !document.hidden) load();
  }, REFRESH_MS);
  ctx.onCleanup(() => clearInterval(timer));
  await load();
}
