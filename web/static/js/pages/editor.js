// The YAML editor of templates and definitions (admins only): a textarea with line numbers,
// Validate (the server's checks, nothing stored) and Save, which validates first and stores
// nothing while there are problems.

import * as api from '../api.js';
import {h, replace, link} from '../dom.js';
import {toYAML, cleanObject, metadataOf} from '../yaml.js';
import {errorPage, problemList, roleNote} from './common.js';

const STARTERS = {
  templates: `apiVersion: core.oam.dev/v1alpha1
kind: Workflow
metadata:
  name: my-template
  namespace: default
parameters:
- name: env
  type: string
  enum: [staging, prod]
  default: staging
steps:
- name: hello
  type: print-message-in-status
  properties:
    message: hello
- name: approve
  type: suspend
- name: done
  type: print-message-in-status
  properties:
    message: done
`,
  definitions: `apiVersion: core.oam.dev/v1beta1
kind: WorkflowStepDefinition
metadata:
  name: my-step
  namespace: default
  annotations:
    definition.oam.dev/description: Shows a message in the step's status
spec:
  schematic:
    cue:
      template: |
        import "vela/builtin"

        parameter: {
        	// +usage=The message to show
        	message: string
        }

        msg: builtin.#Message & {
        	$params: message: parameter.message
        }
`,
};

export async function renderEditor(ctx, kind, ns, name) {
  const singular = kind === 'templates' ? 'template' : 'definition';
  const isNew = !ns;
  const title = isNew ? `New ${singular}` : `Edit ${singular} ${name}`;
  if (!ctx.can('admin')) {
    ctx.ready(title);
    replace(ctx.main, h('h1', null, title), h('p', {class: 'error', role: 'alert', id: 'editor-denied'}, roleNote('admin')));
    return;
  }
  if (ns === 'builtin') {
    ctx.ready(title);
    replace(ctx.main, h('h1', null, title), h('p', {class: 'error', role: 'alert'}, 'Built-in definitions are part of the binary and cannot be edited. Save a copy under another name in a namespace instead.'));
    return;
  }
  let text = STARTERS[kind];
  if (!isNew) {
    try {
      const obj = await api.get(api.objPath(kind, ns, name), {signal: ctx.signal});
      text = toYAML(cleanObject(kind === 'definitions' ? obj.definition || obj : obj));
    } catch (e) {
      if (api.isAbort(e) || !ctx.alive()) return;
      errorPage(ctx, title, e);
      return;
    }
    if (!ctx.alive()) return;
  }

  const gutter = h('div', {class: 'gutter', 'aria-hidden': 'true'});
  const area = h('textarea', {id: 'editor', class: 'code', wrap: 'off', spellcheck: 'false', autocomplete: 'off', autocapitalize: 'off', rows: 28, 'aria-describedby': 'editor-help editor-problems', value: text});
  const problems = h('div', {id: 'editor-problems', 'aria-live': 'polite'});
  const status = h('p', {id: 'editor-status', class: 'muted', role: 'status'});
  const validateBtn = h('button', {type: 'button', class: 'secondary', id: 'validate'}, 'Validate');
  const saveBtn = h('button', {type: 'button', id: 'save'}, 'Save');
  const back = isNew ? `#/${kind}` : link(kind, ns, name);
  let bad = new Set();

  const paintGutter = () => {
    const n = area.value.split('\n').length;
    if (gutter.childElementCount !== n || bad.size) {
      replace(gutter, Array.from({length: n}, (_, i) => h('div', {class: bad.has(i + 1) ? 'bad' : null}, String(i + 1))));
    }
    gutter.scrollTop = area.scrollTop;
  };

  const goToLine = (p) => {
    const lines = area.value.split('\n');
    const line = Math.min(Math.max(1, p.line), lines.length);
    let start = 0;
    for (let i = 0; i < line - 1; i++) start += lines[i].length + 1;
    const col = p.column ? Math.min(p.column - 1, lines[line - 1].length) : 0;
    area.focus();
    area.setSelectionRange(start + col, start + lines[line - 1].length);
    const lh = parseFloat(getComputedStyle(area).lineHeight) || 20;
    area.scrollTop = Math.max(0, (line - 1) * lh - area.clientHeight / 3);
    paintGutter();
  };

  const showProblems = (e) => {
    bad = new Set((e.problems || []).map((p) => p.line).filter(Boolean));
    paintGutter();
    replace(problems, problemList(e, goToLine));
  };

  const clearProblems = () => {
    bad = new Set();
    replace(problems);
    paintGutter();
  };

  // validate answers true when the server finds nothing wrong; problems are shown otherwise.
  const validate = async () => {
    status.textContent = 'Validating…';
    try {
      await api.request('POST', '/validate', {yaml: area.value, signal: ctx.signal});
      clearProblems();
      status.textContent = 'Valid: no problems found.';
      return true;
    } catch (e) {
      if (api.isAbort(e)) return false;
      status.textContent = e.status === 400 ? `Not valid: ${e.problems.length || 1} problem${e.problems.length > 1 ? 's' : ''}.` : '';
      showProblems(e);
      return false;
    }
  };

  const save = async () => {
    saveBtn.disabled = true;
    validateBtn.disabled = true;
    try {
      if (!(await validate())) {
        status.textContent = `${status.textContent} Nothing was saved.`;
        return;
      }
      status.textContent = 'Saving…';
      let saved;
      try {
        saved = isNew
          ? await api.request('POST', `/${kind}`, {yaml: area.value, signal: ctx.signal})
          : await api.request('PUT', api.objPath(kind, ns, name), {yaml: area.value, signal: ctx.signal});
      } catch (e) {
        if (api.isAbort(e)) return;
        status.textContent = 'Not saved.';
        showProblems(e.status === 409 ? {message: `A ${singular} of that name exists already.`, problems: e.problems} : e);
        return;
      }
      const obj = saved && (saved.definition || saved);
      const md = (obj && obj.metadata) || metadataOf(area.value);
      status.textContent = 'Saved.';
      ctx.notify(`${singular[0].toUpperCase()}${singular.slice(1)} ${md.name || name} saved.`);
      location.hash = link(kind, md.namespace || ns || 'default', md.name || name);
    } finally {
      saveBtn.disabled = false;
      validateBtn.disabled = false;
    }
  };

  validateBtn.addEventListener('click', async () => {
    validateBtn.disabled = true;
    try {
      await validate();
    } finally {
      validateBtn.disabled = false;
    }
  });
  saveBtn.addEventListener('click', save);
  area.addEventListener('input', () => {
    status.textContent = 'Unsaved changes.';
    paintGutter();
  });
  area.addEventListener('scroll', () => {
    gutter.scrollTop = area.scrollTop;
  });
  area.addEventListener('keydown', (ev) => {
    if ((ev.ctrlKey || ev.metaKey) && ev.key === 's') {
      ev.preventDefault();
      save();
    }
  });

  replace(ctx.main,
    h('div', {class: 'page-head'},
      h('div', null,
        h('p', {class: 'crumbs'}, h('a', {href: `#/${kind}`}, kind === 'templates' ? 'Templates' : 'Definitions'), isNew ? null : [' / ', h('a', {href: back}, name)]),
        h('h1', null, title))),
    h('p', {class: 'hint', id: 'editor-help'},
      kind === 'templates'
        ? 'A Workflow: mode and steps at the top level, optional parameters. '
        : 'A WorkflowStepDefinition: its CUE in spec.schematic.cue.template. ',
      'Save validates first and stores nothing while there are problems. Ctrl+S saves.'),
    h('div', {class: 'editor-label'}, h('label', {for: 'editor'}, 'YAML')),
    h('div', {class: 'editor'}, gutter, area),
    h('div', {class: 'actions'}, validateBtn, saveBtn, h('a', {class: 'button secondary', href: back}, 'Cancel')),
    status,
    problems);
  paintGutter();
  ctx.ready(title);
}
