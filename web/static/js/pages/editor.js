// The YAML editor of templates and definitions (admins only): CodeMirror (vendored) with YAML
// highlighting, folding and line numbers, linted as you type by the server's checks
// (POST /validate, debounced; each problem marked on its line), Validate, and Save, which
// validates first and stores nothing while there are problems.

import * as api from '../api.js';
import {h, replace, link} from '../dom.js';
import {toYAML, cleanObject, metadataOf} from '../yaml.js';
import {errorPage, problemList, problemText, roleNote} from './common.js';
import * as cm from '../../vendor/codemirror-6.0.2/codemirror.js';

const LINT_DELAY = 600; // ms after the last keystroke

// THEME fits CodeMirror to the page: its colours are the page's (CSS variables reach into the
// editor's shadow root).
const THEME = cm.EditorView.theme({
  '&': {height: '36rem', fontSize: '13px', color: 'var(--text)', backgroundColor: 'var(--panel)'},
  '&.cm-focused': {outline: 'none', boxShadow: 'inset 0 0 0 2px var(--focus)'},
  '.cm-scroller': {fontFamily: 'var(--mono)', lineHeight: '1.5'},
  '.cm-gutters': {backgroundColor: 'var(--code-bg)', color: 'var(--muted)', borderRight: '1px solid var(--border)'},
  '.cm-activeLine, .cm-activeLineGutter': {backgroundColor: 'color-mix(in srgb, var(--focus) 8%, transparent)'},
  '.cm-content': {caretColor: 'var(--text)'},
  '.cm-tooltip': {backgroundColor: 'var(--panel)', color: 'var(--text)', border: '1px solid var(--border)'},
});

// diagnostics turns the server's problems into CodeMirror's: each on its line (from its column,
// else the whole line); a problem without a line marks the first.
export function diagnostics(doc, problems) {
  return problems.map((p) => {
    const line = doc.line(Math.min(Math.max(1, p.line || 1), doc.lines));
    const from = p.column ? Math.min(line.from + p.column - 1, line.to) : line.from;
    return {from, to: Math.max(from, line.to), severity: 'error', message: problemText({...p, line: 0}), source: 'stepflow'}; // the mark is on its line
  });
}

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

  const problems = h('div', {id: 'editor-problems', 'aria-live': 'polite'});
  const status = h('p', {id: 'editor-status', class: 'muted', role: 'status'});
  const validateBtn = h('button', {type: 'button', class: 'secondary', id: 'validate'}, 'Validate');
  const saveBtn = h('button', {type: 'button', id: 'save'}, 'Save');
  const back = isNew ? `#/${kind}` : link(kind, ns, name);
  const text_ = () => view.state.doc.toString();

  // lint asks the server about the text as it stands; CodeMirror calls it a while after the
  // last change and drops an answer that a later change made stale.
  const lint = async (v) => {
    try {
      await api.request('POST', '/validate', {yaml: v.state.doc.toString(), signal: ctx.signal});
      return [];
    } catch (e) {
      if (api.isAbort(e) || e.status !== 400) return [];
      return diagnostics(v.state.doc, e.problems.length ? e.problems : [{message: e.message}]);
    }
  };
  const saveKey = cm.keymap.of([{key: 'Mod-s', preventDefault: true, run: () => (save(), true)}]);
  // The editor lives in a shadow root: there CodeMirror's styles are a constructed style sheet,
  // which the page's Content-Security-Policy (style-src 'self') allows, where a <style> is not.
  const host = h('div', {class: 'editor', id: 'editor-box'});
  const root = host.attachShadow({mode: 'open'});
  const view = new cm.EditorView({
    root,
    parent: root,
    state: cm.EditorState.create({
      doc: text,
      extensions: [
        saveKey,
        cm.basicSetup,
        cm.yaml(),
        cm.linter(lint, {delay: LINT_DELAY}),
        cm.lintGutter(),
        THEME,
        cm.EditorView.updateListener.of((u) => {
          if (u.docChanged) status.textContent = 'Unsaved changes.';
        }),
        cm.EditorView.contentAttributes.of({'aria-label': 'YAML'}),
      ],
    }),
  });
  ctx.onCleanup(() => view.destroy());

  const goToLine = (p) => {
    const [d] = diagnostics(view.state.doc, [p]);
    view.dispatch({selection: {anchor: d.from, head: d.to}, scrollIntoView: true});
    view.focus();
  };

  const showProblems = (e) => {
    replace(problems, problemList(e, goToLine));
  };

  const clearProblems = () => {
    replace(problems);
  };

  // validate answers true when the server finds nothing wrong; problems are shown otherwise.
  const validate = async () => {
    status.textContent = 'Validating…';
    cm.forceLinting(view);
    try {
      await api.request('POST', '/validate', {yaml: text_(), signal: ctx.signal});
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
          ? await api.request('POST', `/${kind}`, {yaml: text_(), signal: ctx.signal})
          : await api.request('PUT', api.objPath(kind, ns, name), {yaml: text_(), signal: ctx.signal});
      } catch (e) {
        if (api.isAbort(e)) return;
        status.textContent = 'Not saved.';
        showProblems(e.status === 409 ? {message: `A ${singular} of that name exists already.`, problems: e.problems} : e);
        return;
      }
      const obj = saved && (saved.definition || saved);
      const md = (obj && obj.metadata) || metadataOf(text_());
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

  replace(ctx.main,
    h('div', {class: 'page-head'},
      h('div', null,
        h('p', {class: 'crumbs'}, h('a', {href: `#/${kind}`}, kind === 'templates' ? 'Templates' : 'Definitions'), isNew ? null : [' / ', h('a', {href: back}, name)]),
        h('h1', null, title))),
    h('p', {class: 'hint', id: 'editor-help'},
      kind === 'templates'
        ? 'A Workflow: mode and steps at the top level, optional parameters. '
        : 'A WorkflowStepDefinition: its CUE in spec.schematic.cue.template. ',
      'Problems are marked on their lines as you type. Save validates first and stores nothing while there are problems. Ctrl+S saves.'),
    h('div', {class: 'editor-label', id: 'editor-label'}, 'YAML'),
    host,
    h('div', {class: 'actions'}, validateBtn, saveBtn, h('a', {class: 'button secondary', href: back}, 'Cancel')),
    status,
    problems);
  ctx.ready(title);
}
