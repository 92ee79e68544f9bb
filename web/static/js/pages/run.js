// The run page: the run's state, its step graph and the selected step's panel, kept live by
// the run's event stream (events `run`, `log` and `deleted`).

import * as api from '../api.js';
import {h, replace, link, badge, timeEl, between, pretty, dl, parseTime, fmtDuration} from '../dom.js';
import {Graph, buildModel, findNode, walk} from '../graph.js';
import {toYAML} from '../yaml.js';
import {errorPage, actionButton, roleNote, table} from './common.js';

const FINISHED = new Set(['succeeded', 'failed', 'terminated']);
const PHASES = ['pending', 'running', 'suspending', 'succeeded', 'failed', 'skipped'];

const version = (run) => (run && run.stepflow && Number(run.stepflow.version)) || 0;

function isFinished(run) {
  const st = run.status || {};
  return !!st.finished || FINISHED.has(st.status);
}

// stepOf tells whether a log entry belongs to a step: its own lines and its iterations'.
function stepOf(entry, name) {
  const s = entry.step || '';
  return s === name || s.startsWith(`${name}[`);
}

function clock(t) {
  const d = parseTime(t);
  if (!d) return '';
  const p = (n, w = 2) => String(n).padStart(w, '0');
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}

function logRow(entry, withStep) {
  const dur = Number(entry.duration);
  const msg = h('td', {class: 'message'}, entry.message || '');
  if (entry.data !== undefined && entry.data !== null && !(typeof entry.data === 'object' && Object.keys(entry.data).length === 0)) {
    msg.append(h('details', null, h('summary', null, 'data'), h('pre', null, pretty(entry.data))));
  }
  return h('tr', {class: `log level-${entry.level || 'info'}`},
    h('td', null, h('time', {datetime: entry.time || '', title: entry.time || ''}, clock(entry.time))),
    withStep ? h('td', null, entry.step || '') : null,
    h('td', null, entry.level || ''),
    h('td', null, entry.action || ''),
    h('td', null, entry.outcome || ''),
    h('td', {class: 'num'}, dur ? fmtDuration(dur / 1e6) : ''),
    msg);
}

// logItem is a log entry in the narrow step panel: when, what and how it went, its message
// below; an iteration's lines name the iteration.
function logItem(entry, step) {
  const dur = Number(entry.duration);
  const hasData = entry.data !== undefined && entry.data !== null && !(typeof entry.data === 'object' && Object.keys(entry.data).length === 0);
  return h('li', {class: `log level-${entry.level || 'info'}`},
    h('div', {class: 'log-meta'},
      h('time', {datetime: entry.time || '', title: entry.time || ''}, clock(entry.time)),
      entry.step && entry.step !== step ? h('span', {class: 'log-step'}, entry.step) : null,
      entry.level && entry.level !== 'info' ? h('span', {class: 'log-level'}, entry.level) : null,
      entry.action ? h('code', null, entry.action) : null,
      entry.outcome ? h('span', {class: `log-outcome outcome-${entry.outcome}`}, entry.outcome) : null,
      dur ? h('span', {class: 'muted'}, fmtDuration(dur / 1e6)) : null),
    entry.message ? h('div', {class: 'log-message'}, entry.message) : null,
    hasData ? h('details', null, h('summary', null, 'data'), h('pre', null, pretty(entry.data))) : null);
}

function logList(entries, step) {
  const body = h('ol', {class: 'log-list', id: 'step-log'}, entries.map((e) => logItem(e, step)));
  return {table: body, body, step, item: (e) => logItem(e, step)};
}

function logTable(entries, withStep, id) {
  const cols = ['Time', ...(withStep ? ['Step'] : []), 'Level', 'Action', 'Outcome', 'Took', 'Message'];
  const body = h('tbody', null, entries.map((e) => logRow(e, withStep)));
  return {table: h('table', {class: 'data log-table', id}, h('thead', null, h('tr', null, cols.map((c) => h('th', {scope: 'col'}, c)))), body), body};
}

function legend() {
  return h('ul', {class: 'legend', 'aria-label': 'Phase colours'}, PHASES.map((p) => h('li', null, h('span', {class: `swatch phase-${p}`, 'aria-hidden': 'true'}), p)));
}

// A live duration: the page's ticker rewrites elements carrying data-since.
function liveDuration(start, end) {
  const el = h('span', null, between(start, end));
  if (parseTime(start) && !parseTime(end)) el.dataset.since = start;
  return el;
}

export async function renderRun(ctx, ns, name) {
  const path = api.runPath(ns, name);
  let first;
  try {
    first = await api.get(path, {signal: ctx.signal});
  } catch (e) {
    if (api.isAbort(e) || !ctx.alive()) return;
    errorPage(ctx, `Run ${name}`, e);
    return;
  }
  if (!ctx.alive()) return;

  const canOperate = ctx.can('operator');
  const state = {run: first, logs: [], selected: ctx.query.get('step') || null, deleted: false, panelKey: null};

  const head = h('section', {class: 'run-head', 'aria-labelledby': 'run-title'});
  const graph = new Graph((step) => select(step));
  const panel = h('aside', {class: 'step-panel card', id: 'step-panel', 'aria-label': 'Selected step'});
  const outputs = h('section', {class: 'run-outputs', id: 'run-outputs', 'aria-labelledby': 'outputs-title'});
  const allLogs = logTable([], true, 'run-log-table');
  const logSummary = h('summary', null, 'Log');
  const logBox = h('details', {class: 'run-log', id: 'run-log'}, logSummary, h('div', {class: 'scroll-x'}, allLogs.table));
  const live = h('span', {class: 'live', id: 'live', role: 'status'});
  let panelLog = null;

  replace(ctx.main,
    head,
    h('div', {class: 'run-body'},
      h('section', {class: 'graph-section card', 'aria-labelledby': 'steps-title'},
        h('div', {class: 'section-head'}, h('h2', {id: 'steps-title'}, 'Steps'), h('div', {class: 'head-tools'}, graph.controls, live)),
        h('div', {class: 'graph-wrap', id: 'graph'}, graph.svg),
        legend(),
        h('p', {class: 'muted small hint'}, 'Select a step with the mouse, or with Tab, the arrow keys and Enter.')),
      panel),
    outputs,
    logBox);

  // --- operations ---

  // applyRun shows a newer state of the run; an older one (a stream event overtaken by an
  // operation's answer) is dropped, unless it is of a run created again under the same name.
  const applyRun = (run) => {
    if (!run || !run.metadata || state.deleted) return;
    const same = (run.metadata.uid || '') === (state.run.metadata.uid || '') && run.metadata.creationTimestamp === state.run.metadata.creationTimestamp;
    if (same && version(run) < version(state.run)) return;
    state.run = run;
    paint();
  };

  // operate posts an operation; done and failed are what the user is told.
  const operate = async (op, body, done, failed) => {
    try {
      const run = await api.post(`${path}/${op}`, body, {signal: ctx.signal});
      applyRun(run);
      ctx.notify(done);
    } catch (e) {
      if (api.isAbort(e)) return;
      ctx.notify(`${failed}: ${e.message}`, 'error');
    }
  };

  const remove = async () => {
    const ok = await ctx.confirm(`Delete run ${name}?`, 'The run, its status and its log are deleted. A run still executing is terminated first.', 'Delete');
    if (!ok) return;
    try {
      await api.del(path, {signal: ctx.signal});
      ctx.notify(`Run ${name} deleted.`);
      location.hash = '#/runs';
    } catch (e) {
      if (!api.isAbort(e)) ctx.notify(`Deleting failed: ${e.message}`, 'error');
    }
  };

  const select = (step) => {
    state.selected = step;
    state.panelKey = null;
    graph.select(step);
    const q = new URLSearchParams(ctx.query);
    if (step) q.set('step', step);
    else q.delete('step');
    const hash = link('runs', ns, name) + (q.toString() ? `?${q}` : '');
    if (location.hash !== hash) history.replaceState(null, '', hash);
    paintPanel(buildModel(state.run));
    if (step) panel.querySelector('h2')?.focus({preventScroll: true});
  };

  // The focused control keeps focus when its part of the page is drawn again.
  const keepFocus = (container, draw) => {
    const id = container.contains(document.activeElement) ? document.activeElement.id : '';
    draw();
    if (id) {
      const el = document.getElementById(id);
      if (el && container.contains(el) && !el.disabled) el.focus({preventScroll: true});
    }
  };

  // --- painting ---

  const paintHead = (model) => {
    const run = state.run;
    const st = run.status || {};
    const finished = isFinished(run);
    const phase = st.status || 'initializing';
    const sf = run.stepflow || {};
    const template = sf.template || (run.spec && run.spec.workflowRef) || '';
    const parent = run.metadata.labels && run.metadata.labels['workflowrun.oam.dev/parent'];
    const mode = st.mode && st.mode.steps ? `${st.mode.steps} (sub-steps ${st.mode.subSteps || 'DAG'})` : '';
    const why = canOperate ? '' : roleNote('operator');
    const gone = state.deleted ? 'The run was deleted.' : '';
    const suspended = !!st.suspend || phase === 'suspending';

    const actions = h('div', {class: 'actions', role: 'group', 'aria-label': 'Run operations'},
      actionButton('op-suspend', 'Suspend', () => operate('suspend', undefined, `Run ${name} suspended.`, 'Suspending failed'),
        {reason: why || gone || (finished ? 'The run has finished.' : suspended ? 'The run is suspended.' : ''), kind: 'secondary'}),
      actionButton('op-resume', 'Resume', () => operate('resume', undefined, `Run ${name} resumed.`, 'Resuming failed'),
        {reason: why || gone || (finished ? 'The run has finished.' : !suspended ? 'The run is not suspended.' : ''), kind: 'secondary'}),
      actionButton('op-terminate', 'Terminate', async () => {
        if (await ctx.confirm(`Terminate run ${name}?`, 'Running and suspended steps fail with reason Terminate; steps with if: always still run.', 'Terminate')) {
          await operate('terminate', undefined, `Run ${name} terminated.`, 'Terminating failed');
        }
      }, {reason: why || gone || (finished ? 'The run has finished.' : ''), kind: 'danger'}),
      actionButton('op-restart', 'Restart', async () => {
        if (await ctx.confirm(`Restart run ${name}?`, 'Its status and run variables are cleared and it runs again from the start.', 'Restart')) {
          await operate('restart', undefined, `Run ${name} restarted.`, 'Restarting failed');
        }
      }, {reason: why || gone, kind: 'secondary'}),
      actionButton('op-delete', 'Delete', remove, {reason: why || gone, kind: 'danger'}));

    const banners = [];
    if (state.deleted) banners.push(h('p', {class: 'banner error', id: 'run-deleted', role: 'alert'}, 'This run was deleted.'));
    walk(model, (n) => {
      if (n.type === 'suspend' && n.phase === 'suspending') {
        banners.push(h('p', {class: 'banner waiting'}, `Step ${n.name} is waiting for approval. `,
          h('button', {type: 'button', class: 'link', onclick: () => select(n.name)}, `Review ${n.name}`)));
      }
    });
    if (phase === 'failed') {
      let failed = null;
      walk(model, (n) => {
        if (!failed && n.phase === 'failed' && !n.children) failed = n;
      });
      if (failed) {
        banners.push(h('p', {class: 'banner failed'}, `Step ${failed.name} failed${failed.status.message ? `: ${failed.status.message}` : '.'} `,
          h('button', {type: 'button', class: 'link', onclick: () => select(failed.name)}, `Show ${failed.name}`)));
      }
    }

    keepFocus(head, () => replace(head,
      h('div', {class: 'page-head'},
        h('div', null,
          h('p', {class: 'crumbs'}, h('a', {href: '#/runs'}, 'Runs'), ' / ', ns),
          h('h1', {id: 'run-title'}, name, ' ', h('span', {id: 'run-phase'}, badge(phase)))),
        actions),
      canOperate ? null : h('p', {class: 'muted small', id: 'read-only'}, `Read only: your token's role is ${ctx.me.role}; operating runs needs operator or admin.`),
      st.message ? h('p', {class: 'run-message', id: 'run-message'}, st.message) : null,
      banners,
      dl([
        ['Template', template ? h('span', null, h('a', {href: link('templates', ns, template)}, template), sf.templateVersion ? ` version ${sf.templateVersion}` : '') : ''],
        ['Parent run', parent ? h('a', {href: link('runs', ns, parent)}, parent) : ''],
        ['Started', parseTime(st.startTime) ? timeEl(st.startTime) : ''],
        ['Ended', parseTime(st.endTime) ? timeEl(st.endTime) : ''],
        ['Duration', parseTime(st.startTime) ? liveDuration(st.startTime, finished ? st.endTime || st.startTime : null) : ''],
        ['Mode', mode],
      ], {class: 'facts', id: 'run-facts'})));
  };

  const outputValues = () => (state.run.stepflow && state.run.stepflow.outputs) || {};

  const paintOutputs = (model) => {
    const vars = outputValues();
    const producer = new Map();
    walk(model, (n) => {
      for (const o of n.outputs) if (!producer.has(o)) producer.set(o, n.name);
    });
    const names = Object.keys(vars);
    const ctxVals = state.run.spec && state.run.spec.context;
    replace(outputs,
      h('h2', {id: 'outputs-title'}, 'Outputs'),
      names.length
        ? table(null, ['Name', 'Value', 'From step'], names.map((k) => [
          h('code', null, k),
          h('pre', {class: 'value'}, pretty(vars[k])),
          producer.has(k) ? h('button', {type: 'button', class: 'link', onclick: () => select(producer.get(k))}, producer.get(k)) : '',
        ]), {class: 'data', id: 'outputs-table'})
        : h('p', {class: 'muted'}, 'No run variables yet.'),
      ctxVals && Object.keys(ctxVals).length
        ? h('details', {class: 'context'}, h('summary', null, 'Context'), h('pre', {class: 'yaml', id: 'run-context'}, toYAML(ctxVals)))
        : null);
  };

  const approveReason = (node, finished) => {
    if (!canOperate) return roleNote('operator');
    if (state.deleted) return 'The run was deleted.';
    if (node.type !== 'suspend') return 'Only a suspend step waits for approval.';
    if (node.phase !== 'suspending') return 'The step is not waiting for approval.';
    if (finished) return 'The run has finished.';
    return '';
  };

  const retryReason = (node, finished) => {
    if (!canOperate) return roleNote('operator');
    if (state.deleted) return 'The run was deleted.';
    if (node.phase !== 'failed') return 'Only a failed step can be retried.';
    if (!finished) return 'The run has not finished yet.';
    return '';
  };

  const paintPanel = (model) => {
    const run = state.run;
    const finished = isFinished(run);
    if (!state.selected) {
      if (state.panelKey === '') return;
      state.panelKey = '';
      panelLog = null;
      replace(panel, h('h2', {id: 'step-title', tabindex: -1}, 'Step details'),
        h('p', {class: 'muted'}, 'Select a step in the graph to see its status, properties, outputs and log.'));
      return;
    }
    const node = findNode(model, state.selected);
    if (!node) {
      state.panelKey = null;
      panelLog = null;
      replace(panel, h('h2', {id: 'step-title', tabindex: -1}, state.selected), h('p', {class: 'muted'}, 'This run has no step of that name.'));
      return;
    }
    const vars = outputValues();
    const key = JSON.stringify([node.name, node.status, node.spec, node.phase, finished, state.deleted, node.outputs.map((o) => vars[o]), node.inputs.map((i) => vars[i]),
      (node.children || []).map((c) => [c.name, c.phase])]);
    if (key === state.panelKey) return;
    state.panelKey = key;

    const st = node.status || {};
    const sp = node.spec || {};
    let parent = null;
    walk(model, (n, p) => {
      if (n === node) parent = p;
    });
    const alias = sp.meta && sp.meta.alias;
    const stepLogs = state.logs.filter((e) => stepOf(e, node.name));
    panelLog = logList(stepLogs, node.name);

    const sections = [];
    const act = h('div', {class: 'actions', role: 'group', 'aria-label': 'Step operations'},
      actionButton('op-approve', 'Approve', () => operate('resume', {step: node.name}, `Step ${node.name} approved.`, `Approving ${node.name} failed`), {reason: approveReason(node, finished)}),
      actionButton('op-retry', 'Retry from this step', () => operate('restart', {step: node.name}, `Retrying from step ${node.name}.`, `Retrying from ${node.name} failed`), {reason: retryReason(node, finished), kind: 'secondary'}));

    sections.push(dl([
      ['Phase', h('span', {id: 'step-phase'}, badge(node.phase))],
      ['Type', h('code', null, node.children ? `step-group (${node.mode})` : node.type || '')],
      ['Alias', alias || ''],
      ['In group', parent ? h('button', {type: 'button', class: 'link', onclick: () => select(parent.name)}, parent.name) : ''],
      ['Reason', st.reason ? h('span', {id: 'step-reason'}, st.reason) : ''],
      ['Message', st.message ? h('span', {class: 'message', id: 'step-message'}, st.message) : ''],
      ['If', sp.if ? h('code', null, sp.if) : ''],
      ['Depends on', node.deps.length ? node.deps.join(', ') : ''],
      ['Timeout', sp.timeout || ''],
      ['First executed', parseTime(st.firstExecuteTime) ? timeEl(st.firstExecuteTime) : ''],
      ['Last executed', parseTime(st.lastExecuteTime) ? timeEl(st.lastExecuteTime) : ''],
      ['Duration', parseTime(st.firstExecuteTime)
        ? (node.phase === 'running' || node.phase === 'suspending' ? liveDuration(st.firstExecuteTime, null) : between(st.firstExecuteTime, st.lastExecuteTime || st.firstExecuteTime))
        : ''],
      ['Child run', st.childRun ? h('a', {href: link('runs', ns, st.childRun)}, st.childRun) : ''],
    ], {class: 'facts', id: 'step-facts'}));

    if (node.children && node.children.length) {
      sections.push(h('h3', null, 'Sub-steps'),
        h('ul', {class: 'substeps'}, node.children.map((c) => h('li', null,
          h('button', {type: 'button', class: 'link', onclick: () => select(c.name)}, c.name), ' ', badge(c.phase)))));
    }

    const it = st.iterations;
    if (it && it.total) {
      const entries = Array.isArray(it.entries) ? it.entries : [];
      const all = h('div', {class: 'iterations-all'});
      sections.push(h('h3', null, 'Iterations'),
        h('p', null, `${it.total} in all: ${it.succeeded || 0} succeeded, ${it.failed || 0} failed, ${it.running || 0} running, ${it.skipped || 0} skipped.`),
        entries.length ? iterationTable(entries.map((e) => ({...e}))) : null,
        h('button', {type: 'button', class: 'secondary small', onclick: async (ev) => {
          ev.target.disabled = true;
          try {
            const data = await api.get(path, {query: {iterations: node.name}, signal: ctx.signal});
            const items = (data && data.items) || [];
            replace(all, h('p', null, `All ${data.total ?? items.length} iterations:`), iterationTable(items.map((x, i) => ({index: i, ...(x.status || {})}))));
          } catch (e) {
            if (!api.isAbort(e)) replace(all, h('p', {class: 'error'}, `Loading the iterations failed: ${e.message}`));
          } finally {
            ev.target.disabled = false;
          }
        }}, 'Show all iterations'),
        all);
    }

    const inputs = Array.isArray(sp.inputs) ? sp.inputs : [];
    if (inputs.length) {
      sections.push(h('h3', null, 'Inputs'), table(null, ['From', 'Into parameter', 'Value'], inputs.map((i) => [
        h('code', null, i.from || ''), h('code', null, i.parameterKey || ''),
        vars[String(i.from).split(/[.[]/)[0]] !== undefined ? h('pre', {class: 'value'}, pretty(vars[String(i.from).split(/[.[]/)[0]])) : h('span', {class: 'muted'}, '—'),
      ]), {class: 'data', id: 'step-inputs'}));
    }
    const outs = Array.isArray(sp.outputs) ? sp.outputs : [];
    if (outs.length) {
      sections.push(h('h3', null, 'Outputs'), table(null, ['Name', 'Value from', 'Value'], outs.map((o) => [
        h('code', null, o.name || ''), h('code', null, o.valueFrom || ''),
        vars[o.name] !== undefined ? h('pre', {class: 'value'}, pretty(vars[o.name])) : h('span', {class: 'muted'}, 'not produced'),
      ]), {class: 'data', id: 'step-outputs'}));
    }
    if (sp.properties && Object.keys(sp.properties).length) {
      sections.push(h('h3', null, 'Properties'), h('pre', {class: 'yaml', id: 'step-properties'}, toYAML(sp.properties)));
    }
    const extra = {};
    for (const k of ['forEach', 'matrix', 'retry']) if (sp[k] !== undefined) extra[k] = sp[k];
    if (Object.keys(extra).length) sections.push(h('h3', null, 'Loop and retry'), h('pre', {class: 'yaml'}, toYAML(extra)));

    sections.push(h('h3', null, 'Log'),
      h('p', {class: 'muted empty-log', hidden: stepLogs.length > 0}, 'No log lines for this step yet.'),
      panelLog.table);

    keepFocus(panel, () => replace(panel,
      h('div', {class: 'panel-head'},
        h('h2', {id: 'step-title', tabindex: -1}, node.name),
        h('button', {type: 'button', class: 'secondary small', onclick: () => select(null), 'aria-label': 'Close the step details'}, 'Close')),
      act,
      sections));
  };

  const paint = () => {
    const model = buildModel(state.run);
    paintHead(model);
    graph.update(model);
    graph.select(state.selected);
    paintPanel(model);
    paintOutputs(model);
  };

  const addLog = (entry) => {
    state.logs.push(entry);
    allLogs.body.append(logRow(entry, true));
    logSummary.textContent = `Log (${state.logs.length} ${state.logs.length === 1 ? 'line' : 'lines'})`;
    if (panelLog && panelLog.step && stepOf(entry, panelLog.step)) {
      panelLog.body.append(panelLog.item(entry));
      const empty = panel.querySelector('.empty-log');
      if (empty) empty.hidden = true;
    }
  };

  const resetLogs = () => {
    state.logs = [];
    allLogs.body.replaceChildren();
    logSummary.textContent = 'Log';
    if (panelLog) panelLog.body.replaceChildren();
  };

  // --- live updates ---

  let es = null;
  let retry = 0;
  const setLive = (text, cls) => {
    live.textContent = text;
    live.className = `live ${cls}`;
  };
  const connect = () => {
    es = new EventSource(api.url(`${path}/events`));
    es.addEventListener('open', () => {
      retry = 0;
      setLive('Live', 'on');
      // The stream starts again with the run and every log entry so far.
      resetLogs();
    });
    es.addEventListener('run', (ev) => {
      try {
        applyRun(JSON.parse(ev.data));
      } catch (e) {
        console.error('run event', e);
      }
    });
    es.addEventListener('log', (ev) => {
      try {
        addLog(JSON.parse(ev.data));
      } catch (e) {
        console.error('log event', e);
      }
    });
    es.addEventListener('deleted', () => {
      state.deleted = true;
      es.close();
      setLive('Deleted', 'off');
      paint();
    });
    es.addEventListener('error', async () => {
      if (!ctx.alive() || state.deleted) return;
      if (es.readyState !== EventSource.CLOSED) {
        setLive('Reconnecting…', 'wait');
        return;
      }
      // The browser gave up (an answer that was not an event stream): find out why.
      setLive('Disconnected', 'off');
      try {
        applyRun(await api.get(path, {signal: ctx.signal}));
      } catch (e) {
        if (api.isAbort(e) || !ctx.alive()) return;
        if (e.status === 404) {
          state.deleted = true;
          paint();
          return;
        }
      }
      retry = Math.min(retry + 1, 5);
      const t = setTimeout(() => ctx.alive() && connect(), 1000 * retry);
      ctx.onCleanup(() => clearTimeout(t));
    });
  };

  const ticker = setInterval(() => {
    for (const el of ctx.main.querySelectorAll('[data-since]')) el.textContent = between(el.dataset.since, null);
  }, 1000);
  ctx.onCleanup(() => {
    clearInterval(ticker);
    graph.destroy();
    if (es) es.close();
  });

  ctx.ready(`Run ${name}`);
  setLive('Connecting…', 'wait');
  paint();
  connect();
}

function iterationTable(entries) {
  return table(null, ['#', 'Name', 'Phase', 'Reason', 'Message', 'Took'], entries.map((e) => [
    String(e.index ?? ''),
    e.name || '',
    badge(e.phase),
    e.reason || '',
    h('span', {class: 'message'}, e.message || ''),
    between(e.firstExecuteTime, e.lastExecuteTime || e.firstExecuteTime),
  ]), {class: 'data iterations'});
}
