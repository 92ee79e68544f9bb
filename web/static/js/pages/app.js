// The page of one Application: its phase, its components' health per cluster, the graph of the
// run delivering its latest revision, its revisions (with a rollback to each earlier one) and
// what it applied. It polls the Application, its revisions and that run every few seconds, as
// the runs list does; the decisions are in ./app/logic.js.

import * as api from '../api.js';
import {h, replace, keepFocus, link, badge, timeEl, dl, fmtAgo} from '../dom.js';
import {Graph, buildModel} from '../graph.js';
import {errorPage, actionButton} from './common.js';
import {stepHash} from './run/logic.js';
import {
  appPhase, phaseClass, healthCounts, componentRows, latestRun, revisionTime, revisionPhase,
  revisionChanges, resourceText, rollbackReason,
} from './app/logic.js';

const REFRESH_MS = 2500;

// appBadge shows an Application's phase in the colour of the run phase it is like.
export function appBadge(phase) {
  const p = phase || 'pending';
  return h('span', {class: `badge phase-${phaseClass(phase)}`, dataset: {phase: p}}, p);
}

// healthText shows the health counts: "2 healthy", "1 healthy, 1 unhealthy", or a dash.
export function healthText({healthy, unhealthy}) {
  if (!healthy && !unhealthy) return h('span', {class: 'muted'}, '—');
  return h('span', {class: 'health-counts'},
    healthy ? h('span', {class: 'health ok', dataset: {healthy: String(healthy)}}, `${healthy} healthy`) : null,
    healthy && unhealthy ? ', ' : null,
    unhealthy ? h('span', {class: 'health bad', dataset: {unhealthy: String(unhealthy)}}, `${unhealthy} unhealthy`) : null);
}

function healthBadge(healthy) {
  return h('span', {class: `badge phase-${healthy ? 'succeeded' : 'failed'}`, dataset: {health: healthy ? 'healthy' : 'unhealthy'}}, healthy ? 'healthy' : 'unhealthy');
}

function appPath(ns, name) {
  return `/applications/${encodeURIComponent(ns)}/${encodeURIComponent(name)}`;
}

export async function renderApp(ctx, ns, name) {
  const path = appPath(ns, name);
  let first;
  try {
    first = await api.get(path, {signal: ctx.signal});
  } catch (e) {
    if (api.isAbort(e) || !ctx.alive()) return;
    errorPage(ctx, `Application ${name}`, e);
    return;
  }
  if (!ctx.alive()) return;

  const canOperate = ctx.can('operator');
  const state = {app: first, revisions: [], run: null, runName: '', runError: '', deleted: false};

  const head = h('section', {class: 'app-head', 'aria-labelledby': 'app-title'});
  const components = h('section', {class: 'card', id: 'app-components-section', 'aria-labelledby': 'app-components-title'});
  const graph = new Graph((step) => {
    if (state.runName) location.hash = stepHash(ns, state.runName, new URLSearchParams(), step);
  });
  const runLink = h('p', {class: 'small', id: 'app-run'});
  const workflow = h('section', {class: 'graph-section card', 'aria-labelledby': 'app-workflow-title'},
    h('div', {class: 'section-head'}, h('h2', {id: 'app-workflow-title'}, 'Delivery workflow'), h('div', {class: 'head-tools'}, graph.controls)),
    runLink,
    h('div', {class: 'graph-wrap', id: 'graph'}, graph.el),
    h('p', {class: 'muted small hint'}, 'Select a step to open it on its run page.'));
  const revisions = h('section', {class: 'card', id: 'app-revisions-section', 'aria-labelledby': 'app-revisions-title'});
  const resources = h('section', {class: 'card', id: 'app-resources-section', 'aria-labelledby': 'app-resources-title'});
  const status = h('p', {class: 'muted small', id: 'app-status', 'aria-live': 'polite'});
  replace(ctx.main, head, components, workflow, revisions, resources, status);
  ctx.onCleanup(() => graph.destroy());

  const paintHead = () => {
    const {app} = state;
    const phase = appPhase(app);
    const rev = app.status && app.status.latestRevision;
    const wf = app.status && app.status.workflow;
    keepFocus(head, () => replace(head,
      h('div', {class: 'page-head'},
        h('div', null,
          h('p', {class: 'crumbs'}, h('a', {href: '#/applications'}, 'Applications'), ' / ', ns),
          h('h1', {id: 'app-title'}, name, ' ', h('span', {id: 'app-phase'}, appBadge(phase)))),
        canOperate && !state.deleted
          ? h('div', {class: 'actions', role: 'group', 'aria-label': 'Application operations'},
            h('a', {class: 'button secondary', href: link('applications', ns, name, 'design'), id: 'design-app'}, 'Edit in designer'),
            actionButton('app-delete', 'Delete', remove, {kind: 'danger'}))
          : null),
      canOperate ? null : h('p', {class: 'muted small', id: 'read-only'}, `Read only: your token's role is ${ctx.me.role}; rolling back and deleting need operator or admin.`),
      state.deleted ? h('p', {class: 'banner error', id: 'app-deleted', role: 'alert'}, 'This Application was deleted.') : null,
      wf && wf.message && phase !== 'running' ? h('p', {class: 'run-message', id: 'app-message'}, wf.message) : null,
      dl([
        ['Revision', rev ? h('span', {id: 'app-revision'}, `v${rev.revision}`, rev.revisionHash ? h('code', {class: 'muted', title: rev.revisionHash}, ` ${rev.revisionHash.slice(0, 10)}`) : '') : ''],
        ['Health', healthText(healthCounts(app))],
        ['Workflow', state.runName ? h('span', null, h('a', {href: link('runs', ns, state.runName)}, state.runName), ' ', badge(runPhase())) : ''],
        ['Created', timeEl(app.metadata && app.metadata.creationTimestamp)],
      ], {class: 'facts', id: 'app-facts'})));
  };

  const runPhase = () => (state.run && state.run.status && state.run.status.status) || (state.app.status && state.app.status.workflow && state.app.status.workflow.status) || 'pending';

  const paintComponents = () => {
    const rows = [];
    for (const c of componentRows(state.app)) {
      const what = h('span', null, h('strong', null, c.name), c.type ? h('span', {class: 'muted'}, ` (${c.type})`) : '',
        c.traits.length ? h('span', {class: 'muted small traits'}, ` + ${c.traits.join(', ')}`) : '');
      if (!c.places.length) {
        rows.push(h('tr', {dataset: {component: c.name}},
          h('th', {scope: 'row'}, what),
          h('td', {colspan: 4, class: 'muted'}, 'Not reported yet')));
        continue;
      }
      c.places.forEach((p, i) => {
        const traits = p.traits.filter((t) => !t.healthy || t.message);
        rows.push(h('tr', {dataset: {component: c.name, cluster: p.cluster, health: p.healthy ? 'healthy' : 'unhealthy'}},
          h('th', {scope: 'row'}, i === 0 ? what : h('span', {class: 'visually-hidden'}, c.name)),
          h('td', {'data-label': 'Cluster'}, p.cluster),
          h('td', {'data-label': 'Namespace'}, p.namespace),
          h('td', {'data-label': 'Health'}, healthBadge(p.healthy)),
          h('td', {'data-label': 'Message', class: 'message'}, p.message,
            traits.length ? h('ul', {class: 'trait-health'}, traits.map((t) => h('li', null, `${t.type}: ${t.healthy ? 'healthy' : 'unhealthy'}${t.message ? `, ${t.message}` : ''}`))) : null)));
      });
    }
    replace(components,
      h('h2', {id: 'app-components-title'}, 'Components'),
      h('div', {class: 'scroll-x'}, h('table', {class: 'data app-components', id: 'app-components'},
        h('caption', {class: 'visually-hidden'}, 'Components and their health in each cluster'),
        h('thead', null, h('tr', null, ['Component', 'Cluster', 'Namespace', 'Health', 'Message'].map((c) => h('th', {scope: 'col'}, c)))),
        h('tbody', null, rows.length ? rows : h('tr', null, h('td', {colspan: 5, class: 'empty'}, 'No components.'))))));
  };

  const paintWorkflow = () => {
    if (!state.runName) {
      replace(runLink, h('span', {class: 'muted'}, 'No delivery run yet.'));
    } else {
      replace(runLink, 'Run ', h('a', {href: link('runs', ns, state.runName), id: 'app-run-link'}, state.runName), ' ', badge(runPhase()),
        state.runError ? h('span', {class: 'muted'}, ` (${state.runError})`) : '');
    }
    if (state.run) graph.update(buildModel(state.run));
  };

  const paintRevisions = () => {
    const revs = state.revisions;
    const rows = revs.map((r, i) => {
      const why = rollbackReason(state.app, r);
      return h('tr', {dataset: {revision: String(r.number)}},
        h('th', {scope: 'row'}, `v${r.number}`),
        h('td', {'data-label': 'Made'}, timeEl(revisionTime(r))),
        h('td', {'data-label': 'Hash'}, r.hash ? h('code', {title: r.hash}, r.hash.slice(0, 10)) : ''),
        h('td', {'data-label': 'Changes', class: 'changes'}, revisionChanges(revs, i).join('; ')),
        h('td', {'data-label': 'Delivery'}, r.run ? h('span', null, h('a', {href: link('runs', ns, r.run)}, r.run), ' ', revisionPhase(r) ? badge(revisionPhase(r)) : '') : ''),
        canOperate ? h('td', null, why
          ? h('span', {class: 'muted small'}, 'Delivered now')
          : actionButton(`rollback-${r.number}`, 'Roll back to this revision', () => rollback(r.number), {kind: 'secondary small', reason: state.deleted ? 'The Application was deleted.' : ''})) : null);
    }).reverse();
    const cols = ['Revision', 'Made', 'Hash', 'Changes', 'Delivery'];
    if (canOperate) cols.push(h('span', {class: 'visually-hidden'}, 'Roll back'));
    keepFocus(revisions, () => replace(revisions,
      h('h2', {id: 'app-revisions-title'}, 'Revisions'),
      h('div', {class: 'scroll-x'}, h('table', {class: 'data app-revisions', id: 'app-revisions'},
        h('caption', {class: 'visually-hidden'}, 'Revisions, newest first'),
        h('thead', null, h('tr', null, cols.map((c) => h('th', {scope: 'col'}, c)))),
        h('tbody', null, rows.length ? rows : h('tr', null, h('td', {colspan: cols.length, class: 'empty'}, 'No revisions.')))))));
  };

  const paintResources = () => {
    const applied = (state.app.status && Array.isArray(state.app.status.appliedResources) && state.app.status.appliedResources) || [];
    replace(resources,
      h('h2', {id: 'app-resources-title'}, 'Applied resources'),
      applied.length
        ? h('div', {class: 'scroll-x'}, h('table', {class: 'data app-resources', id: 'app-resources'},
          h('caption', {class: 'visually-hidden'}, 'The objects applied, in every cluster'),
          h('thead', null, h('tr', null, ['Cluster', 'Object', 'Made by'].map((c) => h('th', {scope: 'col'}, c)))),
          h('tbody', null, applied.map((r) => h('tr', null,
            h('td', {'data-label': 'Cluster'}, r.cluster || 'local'),
            h('td', {'data-label': 'Object'}, h('code', null, resourceText(r))),
            h('td', {'data-label': 'Made by'}, r.creator || ''))))))
        : h('p', {class: 'muted', id: 'app-resources'}, 'Nothing applied yet.'));
  };

  // paint draws again only the sections whose data changed, so that a button is not replaced
  // under the pointer by a refresh that brought nothing new; the relative times are rewritten
  // in place.
  const drawn = {};
  const paint = () => {
    const {app, revisions: revs, run, runName, runError, deleted} = state;
    const st = app.status || {};
    const sections = {
      head: [app.metadata, st.status, st.latestRevision, st.services, st.workflow && st.workflow.message, runName, runPhase(), deleted],
      components: [app.spec && app.spec.components, st.services],
      workflow: [runName, runError, run && run.status, run && run.stepflow],
      revisions: [revs, st.latestRevision, deleted],
      resources: [st.appliedResources],
    };
    const painters = {head: paintHead, components: paintComponents, workflow: paintWorkflow, revisions: paintRevisions, resources: paintResources};
    for (const [part, data] of Object.entries(sections)) {
      const key = JSON.stringify(data);
      if (drawn[part] === key) continue;
      drawn[part] = key;
      painters[part]();
    }
    for (const el of ctx.main.querySelectorAll('time[datetime]')) {
      const text = fmtAgo(el.getAttribute('datetime'));
      if (el.textContent !== text) el.textContent = text;
    }
  };

  let loading = false;
  const load = async () => {
    if (loading || state.deleted) return;
    loading = true;
    try {
      const [app, revs] = await Promise.all([
        api.get(path, {signal: ctx.signal}),
        api.get(`${path}/revisions`, {signal: ctx.signal}),
      ]);
      if (!ctx.alive()) return;
      state.app = app;
      state.revisions = (revs && Array.isArray(revs.items) ? revs.items : []).filter(Boolean);
      state.runName = latestRun(app, state.revisions);
      if (state.runName) {
        try {
          state.run = await api.get(api.runPath(ns, state.runName), {signal: ctx.signal});
          state.runError = '';
        } catch (e) {
          if (api.isAbort(e)) throw e;
          state.run = null;
          state.runError = e.status === 404 ? 'not found' : e.message;
        }
      }
      if (!ctx.alive()) return;
      paint();
      status.textContent = `Updated ${new Date().toLocaleTimeString()}`;
    } catch (e) {
      if (api.isAbort(e) || !ctx.alive()) return;
      if (e.status === 404) {
        state.deleted = true;
        paint();
        return;
      }
      status.textContent = `Updating failed: ${e.message}`;
    } finally {
      loading = false;
    }
  };

  async function rollback(n) {
    const ok = await ctx.confirm(`Roll back ${name} to revision v${n}?`,
      `Revision v${n}'s spec, with the definitions it used, is delivered again as a new revision; what the newer revisions applied and v${n} does not is deleted once it succeeds.`,
      'Roll back');
    if (!ok) return;
    try {
      const up = await api.post(`${path}/rollback`, {revision: n}, {signal: ctx.signal});
      ctx.notify(up && up.unchanged
        ? `${name} already delivers v${n}'s spec (revision ${up.revision}).`
        : `Rolling back to v${n}: revision ${up.revision} is delivered by run ${up.run}.`);
    } catch (e) {
      if (api.isAbort(e)) return;
      ctx.notify(`Rolling back failed: ${e.message}`, 'error');
      return;
    }
    await load();
  }

  async function remove() {
    const ok = await ctx.confirm(`Delete Application ${name}?`,
      'Everything its revisions applied is deleted in every cluster, then its runs, its revisions and the Application.', 'Delete');
    if (!ok) return;
    try {
      await api.del(path, {signal: ctx.signal});
      ctx.notify(`Application ${name} deleted.`);
      location.hash = '#/applications';
    } catch (e) {
      if (!api.isAbort(e)) ctx.notify(`Deleting failed: ${e.message}`, 'error');
    }
  }

  paint();
  ctx.ready(`Application ${name}`);
  const timer = setInterval(() => {
    if (!document.hidden) load();
  }, REFRESH_MS);
  ctx.onCleanup(() => clearInterval(timer));
  await load();
}
