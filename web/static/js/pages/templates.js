// Templates (Workflows): the list, and a template's page with its run form, its steps drawn as
// a graph, its YAML, its recent runs, its triggers (triggers.js) and its revisions (history,
// a diff to the current one, a run of a revision, a rollback).

import * as api from '../api.js';
import {h, replace, link, badge, timeEl} from '../dom.js';
import {Graph, buildModel} from '../graph.js';
import {toYAML, cleanObject} from '../yaml.js';
import {errorPage, problemList, roleNote, stepCounts} from './common.js';
import {triggersSection} from './triggers.js';

function stepCount(wf) {
  const steps = Array.isArray(wf.steps) ? wf.steps : [];
  return steps.reduce((n, s) => n + 1 + (Array.isArray(s.subSteps) ? s.subSteps.length : 0), 0);
}

export async function renderTemplates(ctx) {
  const nsFilter = ctx.query.get('namespace') || '';
  const isAdmin = ctx.can('admin');
  const nsInput = h('input', {id: 't-namespace', type: 'text', value: nsFilter, autocomplete: 'off'});
  const nameInput = h('input', {id: 't-name', type: 'search', autocomplete: 'off'});
  const body = h('tbody');
  const error = h('p', {class: 'error', role: 'alert'});
  const form = h('form', {class: 'filters', role: 'search', 'aria-label': 'Filter templates'},
    h('div', {class: 'field'}, h('label', {for: 't-name'}, 'Name contains'), nameInput),
    h('div', {class: 'field'}, h('label', {for: 't-namespace'}, 'Namespace'), nsInput),
    h('div', {class: 'field buttons'}, h('button', {type: 'submit'}, 'Apply')));
  replace(ctx.main,
    h('div', {class: 'page-head'}, h('h1', null, 'Templates'),
      isAdmin ? h('a', {class: 'button', href: '#/templates/new', id: 'new-template'}, 'New template') : null),
    form, error,
    h('div', {class: 'scroll-x'}, h('table', {class: 'data', id: 'templates'},
      h('caption', {class: 'visually-hidden'}, 'Templates'),
      h('thead', null, h('tr', null, ['Template', 'Namespace', 'Version', 'Mode', 'Steps', 'Parameters'].map((c) => h('th', {scope: 'col'}, c)))),
      body)));
  ctx.ready('Templates');

  let items = [];
  const paint = () => {
    const needle = nameInput.value.trim().toLowerCase();
    const shown = items.filter((t) => !needle || (t.metadata.name || '').toLowerCase().includes(needle));
    if (!shown.length) {
      replace(body, h('tr', null, h('td', {colspan: 6, class: 'empty'}, items.length ? 'No template matches.' : 'No templates yet.')));
      return;
    }
    replace(body, shown.map((t) => {
      const params = Array.isArray(t.parameters) ? t.parameters : [];
      return h('tr', null,
        h('th', {scope: 'row'}, h('a', {href: link('templates', t.metadata.namespace, t.metadata.name)}, t.metadata.name)),
        h('td', null, t.metadata.namespace || ''),
        h('td', {class: 'num'}, String(t.metadata.generation || '')),
        h('td', null, (t.mode && t.mode.steps) || 'StepByStep'),
        h('td', {class: 'num'}, String(stepCount(t))),
        h('td', null, params.length ? params.map((p) => p.name).join(', ') : h('span', {class: 'muted'}, 'none')));
    }));
  };
  const load = async () => {
    try {
      const data = await api.get('/templates', {query: {namespace: nsInput.value.trim()}, signal: ctx.signal});
      items = (data && Array.isArray(data.items) ? data.items : []).filter((t) => t && t.metadata);
      items.sort((a, b) => (a.metadata.namespace || '').localeCompare(b.metadata.namespace || '') || a.metadata.name.localeCompare(b.metadata.name));
      error.textContent = '';
      paint();
    } catch (e) {
      if (!api.isAbort(e)) error.textContent = `Loading templates failed: ${e.message}`;
    }
  };
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const ns = nsInput.value.trim();
    history.replaceState(null, '', '#/templates' + (ns ? `?namespace=${encodeURIComponent(ns)}` : ''));
    load();
  });
  nameInput.addEventListener('input', paint);
  await load();
}

// A parameter's control, by type: text, number, checkbox, select for an enum, JSON for objects
// and arrays; read() answers its value (undefined when left empty) or throws a message.
function paramField(p, i) {
  const safe = /^[A-Za-z0-9_.-]+$/.test(p.name) ? p.name : String(i);
  const id = `param-${safe}`;
  const type = p.type || 'string';
  const hintId = `${id}-hint`;
  const errId = `${id}-error`;
  const described = [p.description ? hintId : '', errId].filter(Boolean).join(' ');
  const common = {id, name: p.name, 'aria-describedby': described, required: !!p.required, 'aria-required': p.required ? 'true' : false};
  const has = p.default !== undefined && p.default !== null;
  let control;
  let read;
  let boolean = false;
  if (Array.isArray(p.enum) && p.enum.length) {
    const def = has ? p.enum.findIndex((v) => JSON.stringify(v) === JSON.stringify(p.default)) : -1;
    control = h('select', common,
      !p.required || def < 0 ? h('option', {value: '', selected: def < 0}, p.required ? 'Choose…' : '(not set)') : null,
      p.enum.map((v, k) => h('option', {value: String(k), selected: k === def}, typeof v === 'string' ? v : JSON.stringify(v))));
    read = () => (control.value === '' ? undefined : p.enum[Number(control.value)]);
  } else if (type === 'boolean') {
    boolean = true;
    control = h('input', {...common, type: 'checkbox', checked: p.default === true, required: false});
    read = () => control.checked;
  } else if (type === 'number' || type === 'integer') {
    control = h('input', {...common, type: 'number', step: type === 'integer' ? '1' : 'any', value: has ? String(p.default) : '', inputmode: type === 'integer' ? 'numeric' : 'decimal'});
    read = () => {
      const v = control.value.trim();
      if (v === '') {
        if (control.validity && control.validity.badInput) throw new Error('must be a number');
        return undefined;
      }
      const n = Number(v);
      if (!Number.isFinite(n)) throw new Error('must be a number');
      if (type === 'integer' && !Number.isInteger(n)) throw new Error('must be a whole number');
      return n;
    };
  } else if (type === 'object' || type === 'array') {
    control = h('textarea', {...common, rows: 4, spellcheck: 'false', class: 'code', value: has ? JSON.stringify(p.default, null, 2) : ''});
    read = () => {
      const v = control.value.trim();
      if (v === '') return undefined;
      let parsed;
      try {
        parsed = JSON.parse(v);
      } catch (e) {
        throw new Error(`is not valid JSON (${e.message})`);
      }
      const isArr = Array.isArray(parsed);
      if (type === 'array' ? !isArr : isArr || parsed === null || typeof parsed !== 'object') throw new Error(`must be a JSON ${type}`);
      return parsed;
    };
  } else {
    // A sensitive value is not shown as it is typed; the runs redact it everywhere else.
    control = h('input', {...common, type: p.sensitive ? 'password' : 'text', value: has ? String(p.default) : '', autocomplete: 'off', spellcheck: 'false'});
    read = () => (control.value === '' ? undefined : control.value);
  }
  const labelEl = h('label', {for: id},
    h('span', {class: 'param-name'}, p.name),
    p.required ? h('span', {class: 'req', 'aria-hidden': 'true', title: 'required'}, ' *') : null,
    p.required ? h('span', {class: 'visually-hidden'}, ' (required)') : null,
    h('span', {class: 'param-type'}, ` ${Array.isArray(p.enum) && p.enum.length ? 'one of' : type}${p.sensitive ? ', sensitive' : ''}`));
  const error = h('p', {class: 'field-error', id: errId});
  const hint = p.description ? h('p', {class: 'hint', id: hintId}, p.description) : null;
  const el = boolean
    ? h('div', {class: 'field check', dataset: {param: p.name}}, h('div', {class: 'inline'}, control, labelEl), hint, error)
    : h('div', {class: 'field', dataset: {param: p.name}}, labelEl, control, hint, error);
  return {
    el, control, read, required: !!p.required, boolean,
    setError(msg) {
      error.textContent = msg || '';
      if (msg) control.setAttribute('aria-invalid', 'true');
      else control.removeAttribute('aria-invalid');
    },
  };
}

// runForm builds the form that starts a run of the template, from its parameters.
function runForm(ctx, wf) {
  const ns = wf.metadata.namespace;
  const params = Array.isArray(wf.parameters) ? wf.parameters.filter((p) => p && p.name) : [];
  const fields = new Map(params.map((p, i) => [p.name, paramField(p, i)]));
  const nameInput = h('input', {id: 'run-name', name: 'name', type: 'text', autocomplete: 'off', spellcheck: 'false', 'aria-describedby': 'run-name-hint run-name-error', pattern: '[a-z0-9]([-a-z0-9.]*[a-z0-9])?'});
  const nameError = h('p', {class: 'field-error', id: 'run-name-error'});
  const problems = h('div', {id: 'run-problems'});
  const submit = h('button', {type: 'submit', id: 'run-submit'}, 'Run');
  const form = h('form', {class: 'run-form', id: 'run-form', novalidate: true, 'aria-labelledby': 'run-form-title'},
    h('h2', {id: 'run-form-title'}, 'Run this template'),
    params.length ? null : h('p', {class: 'muted'}, 'This template declares no parameters.'),
    [...fields.values()].map((f) => f.el),
    h('div', {class: 'field'},
      h('label', {for: 'run-name'}, 'Run name ', h('span', {class: 'muted'}, '(optional)')),
      nameInput,
      h('p', {class: 'hint', id: 'run-name-hint'}, `In namespace ${ns}. Left empty, the server names the run.`),
      nameError),
    problems,
    h('div', {class: 'actions'}, submit));

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    replace(problems);
    nameError.textContent = '';
    nameInput.removeAttribute('aria-invalid');
    const context = {};
    let firstBad = null;
    for (const [name, f] of fields) {
      f.setError('');
      try {
        const v = f.read();
        if (v === undefined) {
          if (f.required) throw new Error('is required');
        } else {
          context[name] = v;
        }
      } catch (e) {
        f.setError(`${name} ${e.message}`);
        firstBad ||= f.control;
      }
    }
    if (firstBad) {
      firstBad.focus();
      return;
    }
    const body = {template: wf.metadata.name, namespace: ns, context};
    const runName = nameInput.value.trim();
    if (runName) body.name = runName;
    submit.disabled = true;
    submit.setAttribute('aria-busy', 'true');
    try {
      const run = await api.post('/runs', body, {signal: ctx.signal});
      const md = (run && run.metadata) || {};
      ctx.notify(`Run ${md.name || ''} started.`);
      location.hash = link('runs', md.namespace || ns, md.name || runName);
    } catch (e) {
      if (api.isAbort(e)) return;
      const rest = [];
      for (const p of e.problems || []) {
        const field = String(p.field || '');
        const m = /^context\.([^.[\]]+)/.exec(field);
        const f = m && fields.get(m[1]);
        if (f) {
          f.setError(p.message || 'is not valid');
          firstBad ||= f.control;
        } else if (field === 'name' || field === 'metadata.name') {
          nameError.textContent = p.message || 'is not valid';
          nameInput.setAttribute('aria-invalid', 'true');
          firstBad ||= nameInput;
        } else {
          rest.push(p);
        }
      }
      if (rest.length || !e.problems.length) replace(problems, problemList({message: e.status === 409 ? `${e.message} (a run of that name has not finished)` : e.message, problems: rest}));
      if (firstBad) firstBad.focus();
    } finally {
      submit.disabled = false;
      submit.removeAttribute('aria-busy');
    }
  });
  return form;
}

export async function renderTemplate(ctx, ns, name) {
  let wf;
  try {
    wf = await api.get(api.objPath('templates', ns, name), {signal: ctx.signal});
  } catch (e) {
    if (api.isAbort(e) || !ctx.alive()) return;
    errorPage(ctx, `Template ${name}`, e);
    return;
  }
  if (!ctx.alive()) return;
  const isAdmin = ctx.can('admin');
  const md = wf.metadata || {};
  const params = Array.isArray(wf.parameters) ? wf.parameters : [];

  const remove = async () => {
    if (!(await ctx.confirm(`Delete template ${name}?`, 'Runs already started from it keep running; new runs can no longer refer to it.', 'Delete'))) return;
    try {
      await api.del(api.objPath('templates', ns, name), {signal: ctx.signal});
      ctx.notify(`Template ${name} deleted.`);
      location.hash = '#/templates';
    } catch (e) {
      if (!api.isAbort(e)) ctx.notify(`Deleting failed: ${e.message}`, 'error');
    }
  };

  // The steps drawn as a run that has not started.
  const graph = new Graph(null);
  ctx.onCleanup(() => graph.destroy());
  graph.update(buildModel({spec: {mode: wf.mode, workflowSpec: {steps: wf.steps || []}}, status: {}}, {template: true}));

  const recent = h('div', {id: 'template-runs'}, h('p', {class: 'muted'}, 'Loading…'));
  replace(ctx.main,
    h('div', {class: 'page-head'},
      h('div', null,
        h('p', {class: 'crumbs'}, h('a', {href: '#/templates'}, 'Templates'), ' / ', ns),
        h('h1', null, name, ' ', h('span', {class: 'version', id: 'template-version'}, `version ${md.generation || 1}`))),
      h('div', {class: 'actions'},
        isAdmin ? h('a', {class: 'button secondary', href: link('templates', ns, name, 'edit'), id: 'edit-template'}, 'Edit') : null,
        isAdmin ? h('a', {class: 'button secondary', href: link('templates', ns, name, 'design'), id: 'design-template'}, 'Edit in designer') : null,
        isAdmin ? h('button', {type: 'button', class: 'danger', id: 'delete-template', onclick: remove}, 'Delete') : null)),
    h('div', {class: 'two-col'},
      h('section', {class: 'card'},
        ctx.can('operator') ? runForm(ctx, wf) : h('div', null, h('h2', null, 'Run this template'), h('p', {class: 'muted', id: 'run-form-disabled'}, roleNote('operator'))),
        params.length && !ctx.can('operator') ? paramsTable(params) : null),
      h('section', {class: 'card', 'aria-labelledby': 'tsteps-title'},
        h('div', {class: 'section-head'}, h('h2', {id: 'tsteps-title'}, 'Steps'), graph.controls),
        h('div', {class: 'graph-wrap'}, graph.el))),
    h('section', {class: 'card', 'aria-labelledby': 'recent-title'}, h('h2', {id: 'recent-title'}, 'Recent runs'), recent),
    triggersSection(ctx, ns, name),
    revisionsSection(ctx, ns, name),
    h('section', {class: 'card', 'aria-labelledby': 'yaml-title'},
      h('h2', {id: 'yaml-title'}, 'YAML'),
      h('pre', {class: 'yaml', id: 'template-yaml', tabindex: 0}, toYAML(cleanObject(wf)))));
  graph.applyZoom();
  ctx.ready(`Template ${name}`);

  try {
    const data = await api.get('/runs', {query: {namespace: ns, template: name, limit: 10}, signal: ctx.signal});
    const items = (data && data.items) || [];
    replace(recent, items.length
      ? h('div', {class: 'scroll-x'}, h('table', {class: 'data'},
        h('thead', null, h('tr', null, ['Run', 'Phase', 'Steps', 'Started'].map((c) => h('th', {scope: 'col'}, c)))),
        h('tbody', null, items.map((r) => h('tr', null,
          h('th', {scope: 'row'}, h('a', {href: link('runs', r.namespace, r.name)}, r.name)),
          h('td', null, badge(r.phase)), h('td', null, stepCounts(r.steps)), h('td', null, timeEl(r.startTime)))))))
      : h('p', {class: 'muted'}, 'No runs of this template yet.'));
  } catch (e) {
    if (!api.isAbort(e)) replace(recent, h('p', {class: 'error'}, `Loading runs failed: ${e.message}`));
  }
}

function paramsTable(params) {
  return h('div', {class: 'scroll-x'}, h('table', {class: 'data'},
    h('caption', null, 'Parameters'),
    h('thead', null, h('tr', null, ['Name', 'Type', 'Required', 'Default', 'Description'].map((c) => h('th', {scope: 'col'}, c)))),
    h('tbody', null, params.map((p) => h('tr', null,
      h('th', {scope: 'row'}, h('code', null, p.name)),
      h('td', null, Array.isArray(p.enum) ? `${p.type || 'string'}: ${p.enum.map((v) => JSON.stringify(v)).join(', ')}` : p.type || 'string'),
      h('td', null, p.required ? 'yes' : 'no'),
      h('td', null, p.default !== undefined ? h('code', null, JSON.stringify(p.default)) : ''),
      h('td', null, p.description || ''))))));
}

// The template's kept revisions, newest first: each with a diff to the current one, a run of
// it (operators; with the parameters' defaults) and a rollback to it (admins, confirmed).
function revisionsSection(ctx, ns, name) {
  const body = h('div', {id: 'template-revisions'}, h('p', {class: 'muted'}, 'Loading…'));
  const diff = h('pre', {class: 'yaml', id: 'revision-diff', tabindex: 0, hidden: true});
  const base = api.objPath('templates', ns, name);
  const showDiff = async (n) => {
    try {
      const d = await api.get(`${base}/diff`, {query: {from: String(n)}, signal: ctx.signal});
      diff.hidden = false;
      diff.textContent = d.diff || `Revision ${n} is the same as the current one.`;
    } catch (e) {
      if (!api.isAbort(e)) ctx.notify(`Diff failed: ${e.message}`, 'error');
    }
  };
  const runRevision = async (n) => {
    try {
      const run = await api.post('/runs', {template: name, namespace: ns, revision: n}, {signal: ctx.signal});
      const md = (run && run.metadata) || {};
      ctx.notify(`Run ${md.name || ''} of revision ${n} started.`);
      location.hash = link('runs', md.namespace || ns, md.name);
    } catch (e) {
      if (!api.isAbort(e)) ctx.notify(`Running revision ${n} failed: ${e.message}`, 'error');
    }
  };
  const rollback = async (n) => {
    if (!(await ctx.confirm(`Roll back ${name} to revision ${n}?`, 'Its content is stored as a new revision; runs already started keep theirs.', 'Roll back'))) return;
    try {
      const wf = await api.post(`${base}/rollback`, {revision: n}, {signal: ctx.signal});
      ctx.notify(`Template ${name} is revision ${(wf.metadata || {}).generation}, the content of revision ${n}.`);
      await load();
    } catch (e) {
      if (!api.isAbort(e)) ctx.notify(`Rollback failed: ${e.message}`, 'error');
    }
  };
  const load = async () => {
    try {
      const data = await api.get(`${base}/revisions`, {signal: ctx.signal});
      const items = (data && Array.isArray(data.items)) ? data.items : [];
      replace(body, h('table', {class: 'data'},
        h('caption', {class: 'visually-hidden'}, 'Revisions'),
        h('thead', null, h('tr', null, ['Revision', 'Created', 'Hash', ''].map((c) => h('th', {scope: 'col'}, c)))),
        h('tbody', null, items.map((r) => h('tr', {'data-revision': String(r.revision)},
          h('th', {scope: 'row'}, String(r.revision), r.current ? h('span', {class: 'muted'}, ' (current)') : null),
          h('td', null, r.created ? timeEl(r.created) : h('span', {class: 'muted'}, 'unknown')),
          h('td', null, h('code', null, String(r.hash || '').slice(0, 12))),
          h('td', {class: 'actions'},
            r.current ? null : h('button', {type: 'button', class: 'secondary', id: `revision-diff-${r.revision}`, onclick: () => showDiff(r.revision)}, 'Diff to current'),
            ctx.can('operator') ? h('button', {type: 'button', class: 'secondary', id: `revision-run-${r.revision}`, onclick: () => runRevision(r.revision)}, 'Run') : null,
            ctx.can('admin') && !r.current ? h('button', {type: 'button', id: `revision-rollback-${r.revision}`, onclick: () => rollback(r.revision)}, 'Roll back') : null))))));
    } catch (e) {
      if (!api.isAbort(e)) replace(body, h('p', {class: 'error'}, `Loading revisions failed: ${e.message}`));
    }
  };
  load();
  return h('section', {class: 'card', 'aria-labelledby': 'revisions-title'}, h('h2', {id: 'revisions-title'}, 'Revisions'), body, diff);
}
