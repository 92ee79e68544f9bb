// Definitions (step types): the list, built-ins included, and a definition's page with its
// parameters and CUE.

import * as api from '../api.js';
import {h, replace, link} from '../dom.js';
import {errorPage, nsLabel} from './common.js';

// The route of a definition: the built-ins live under the namespace `builtin`.
const routeNS = (d) => (d.builtin || !d.namespace ? 'builtin' : d.namespace);

export async function renderDefinitions(ctx) {
  const isAdmin = ctx.can('admin');
  const search = h('input', {id: 'd-search', type: 'search', autocomplete: 'off'});
  const kind = h('select', {id: 'd-kind'},
    h('option', {value: ''}, 'all'),
    h('option', {value: 'builtin'}, 'built-in'),
    h('option', {value: 'custom'}, 'custom'));
  const body = h('tbody');
  const error = h('p', {class: 'error', role: 'alert'});
  const pkgBody = h('tbody');
  const pkgError = h('p', {class: 'error', role: 'alert'});
  replace(ctx.main,
    h('div', {class: 'page-head'}, h('h1', null, 'Definitions'),
      isAdmin ? h('a', {class: 'button', href: '#/definitions/new', id: 'new-definition'}, 'New definition') : null),
    h('form', {class: 'filters', role: 'search', 'aria-label': 'Filter definitions', onsubmit: (ev) => ev.preventDefault()},
      h('div', {class: 'field'}, h('label', {for: 'd-search'}, 'Name or description'), search),
      h('div', {class: 'field'}, h('label', {for: 'd-kind'}, 'Kind'), kind)),
    error,
    h('div', {class: 'scroll-x'}, h('table', {class: 'data', id: 'definitions'},
      h('caption', {class: 'visually-hidden'}, 'Step definitions'),
      h('thead', null, h('tr', null, ['Definition', 'Namespace', 'Description'].map((c) => h('th', {scope: 'col'}, c)))),
      body)),
    h('h2', null, 'Packages'),
    h('p', null, 'CUE packages definitions import, whose actions an external provider serves (Package, cue.oam.dev/v1alpha1).'),
    pkgError,
    h('div', {class: 'scroll-x'}, h('table', {class: 'data', id: 'packages'},
      h('caption', {class: 'visually-hidden'}, 'Packages'),
      h('thead', null, h('tr', null, ['Package', 'Namespace', 'Import path', 'Endpoint', 'Actions'].map((c) => h('th', {scope: 'col'}, c)))),
      pkgBody)));
  ctx.ready('Definitions');
  loadPackages(ctx, pkgBody, pkgError);

  let items = [];
  const paint = () => {
    const needle = search.value.trim().toLowerCase();
    const shown = items.filter((d) => {
      if (kind.value === 'builtin' && !d.builtin) return false;
      if (kind.value === 'custom' && d.builtin) return false;
      return !needle || `${d.name} ${d.description || ''}`.toLowerCase().includes(needle);
    });
    if (!shown.length) {
      replace(body, h('tr', null, h('td', {colspan: 3, class: 'empty'}, items.length ? 'No definition matches.' : 'No definitions.')));
      return;
    }
    replace(body, shown.map((d) => h('tr', null,
      h('th', {scope: 'row'}, h('a', {href: link('definitions', routeNS(d), d.name)}, d.name)),
      h('td', null, d.builtin ? h('span', {class: 'tag'}, 'built-in') : nsLabel(d.namespace)),
      h('td', null, d.description || ''))));
  };
  search.addEventListener('input', paint);
  kind.addEventListener('change', paint);
  try {
    const data = await api.get('/definitions', {signal: ctx.signal});
    items = (data && Array.isArray(data.items) ? data.items : []).filter((d) => d && d.name);
    items.sort((a, b) => Number(!!a.builtin) - Number(!!b.builtin) || (a.namespace || '').localeCompare(b.namespace || '') || a.name.localeCompare(b.name));
    paint();
  } catch (e) {
    if (!api.isAbort(e)) error.textContent = `Loading definitions failed: ${e.message}`;
  }
}

// loadPackages fills the table of Packages: name, namespace, import path, provider endpoint and
// the actions each declares.
async function loadPackages(ctx, body, error) {
  try {
    const data = await api.get('/packages', {signal: ctx.signal});
    const items = (data && Array.isArray(data.items) ? data.items : []).filter((p) => p && p.name);
    if (!items.length) {
      replace(body, h('tr', null, h('td', {colspan: 5, class: 'empty'}, 'No Packages.')));
      return;
    }
    replace(body, items.map((p) => h('tr', {'data-package': `${p.namespace}/${p.name}`},
      h('th', {scope: 'row'}, p.name),
      h('td', null, nsLabel(p.namespace)),
      h('td', null, h('code', null, p.path || '')),
      h('td', null, p.endpoint || '—'),
      h('td', null, (Array.isArray(p.actions) ? p.actions : []).join(', ')))));
  } catch (e) {
    if (!api.isAbort(e)) error.textContent = `Loading Packages failed: ${e.message}`;
  }
}

export async function renderDefinition(ctx, ns, name) {
  let data;
  try {
    data = await api.get(api.objPath('definitions', ns, name), {signal: ctx.signal});
  } catch (e) {
    if (api.isAbort(e) || !ctx.alive()) return;
    errorPage(ctx, `Definition ${name}`, e);
    return;
  }
  if (!ctx.alive()) return;
  const def = (data && data.definition) || {};
  const md = def.metadata || {};
  const params = Array.isArray(data && data.parameters) ? data.parameters : [];
  const builtin = ns === 'builtin';
  const cue = (def.spec && def.spec.schematic && def.spec.schematic.cue && def.spec.schematic.cue.template) || '';
  const ann = md.annotations || {};
  const description = ann['definition.oam.dev/description'] || '';
  const isAdmin = ctx.can('admin') && !builtin;

  const remove = async () => {
    if (!(await ctx.confirm(`Delete definition ${name}?`, 'Steps of this type in runs that start later will fail to resolve it.', 'Delete'))) return;
    try {
      await api.del(api.objPath('definitions', ns, name), {signal: ctx.signal});
      ctx.notify(`Definition ${name} deleted.`);
      location.hash = '#/definitions';
    } catch (e) {
      if (!api.isAbort(e)) ctx.notify(`Deleting failed: ${e.message}`, 'error');
    }
  };

  const lines = cue.replace(/\n$/, '').split('\n');
  replace(ctx.main,
    h('div', {class: 'page-head'},
      h('div', null,
        h('p', {class: 'crumbs'}, h('a', {href: '#/definitions'}, 'Definitions'), ' / ', builtin ? 'built-in' : ns),
        h('h1', null, name, builtin ? h('span', {class: 'tag'}, 'built-in') : null)),
      isAdmin ? h('div', {class: 'actions'},
        h('a', {class: 'button secondary', href: link('definitions', ns, name, 'edit'), id: 'edit-definition'}, 'Edit'),
        h('button', {type: 'button', class: 'danger', id: 'delete-definition', onclick: remove}, 'Delete')) : null),
    description ? h('p', {class: 'lead'}, description) : null,
    h('section', {class: 'card', 'aria-labelledby': 'params-title'},
      h('h2', {id: 'params-title'}, 'Parameters'),
      params.length
        ? h('div', {class: 'scroll-x'}, h('table', {class: 'data', id: 'definition-params'},
          h('thead', null, h('tr', null, ['Parameter', 'Type', 'Required', 'Default', 'Usage'].map((c) => h('th', {scope: 'col'}, c)))),
          h('tbody', null, params.map((p) => h('tr', null,
            h('th', {scope: 'row'}, h('code', null, p.path || p.name || '')),
            h('td', null, h('code', null, p.type || '')),
            h('td', null, p.required ? 'yes' : 'no'),
            h('td', null, p.default !== undefined && p.default !== null && p.default !== '' ? h('code', null, typeof p.default === 'string' ? p.default : JSON.stringify(p.default)) : ''),
            h('td', null, p.usage || ''))))))
        : h('p', {class: 'muted'}, 'This step type takes no parameters.')),
    h('section', {class: 'card', 'aria-labelledby': 'cue-title'},
      h('h2', {id: 'cue-title'}, 'CUE'),
      cue
        ? h('pre', {class: 'code numbered', id: 'definition-cue', tabindex: 0}, lines.map((l, i) => h('span', {class: 'line', dataset: {n: i + 1}}, l)))
        : h('p', {class: 'muted'}, 'No CUE template.')));
  ctx.ready(`Definition ${name}`);
}
