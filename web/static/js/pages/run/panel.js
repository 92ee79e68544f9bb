// The step panel of the run page: the selected step's operations (approve, retry), its facts,
// sub-steps, iterations, inputs, outputs, properties and log.

import * as api from '../../api.js';
import {h, replace, keepFocus, link, badge, timeEl, between, pretty, dl, parseTime} from '../../dom.js';
import {findNode} from '../../graph.js';
import {toYAML} from '../../yaml.js';
import {actionButton, table} from '../common.js';
import {isFinished, approveReason, retryReason, parentOf, outputValues, inputValue, panelKey, isActive,
  iterationSummary, allIterations, loopAndRetry, stepOf} from './logic.js';
import {logList, messageView} from './logs.js';
import {liveDuration} from './live.js';

// stepPanel is the panel of page's selected step (see run.js): {el, paint(model), redraw(model),
// addLog(entry), resetLog()}. paint leaves the panel alone when what it shows is unchanged;
// redraw draws it all the same, as when another step is selected.
export function stepPanel(page) {
  const el = h('aside', {class: 'step-panel card', id: 'step-panel', 'aria-label': 'Selected step'});
  let key = null; // what el shows: panelKey's, '' for the hint, null for nothing known
  let log = null; // the list of the shown step's log, to append to

  const paint = (model) => {
    const {state} = page;
    if (!state.selected) {
      if (key === '') return;
      key = '';
      log = null;
      replace(el, h('h2', {id: 'step-title', tabindex: -1}, 'Step details'),
        h('p', {class: 'muted'}, 'Select a step in the graph to see its status, properties, outputs and log.'));
      return;
    }
    const node = findNode(model, state.selected);
    if (!node) {
      key = null;
      log = null;
      replace(el, h('h2', {id: 'step-title', tabindex: -1}, state.selected), h('p', {class: 'muted'}, 'This run has no step of that name.'));
      return;
    }
    const finished = isFinished(state.run);
    const vars = outputValues(state.run);
    const k = panelKey(node, {finished, deleted: state.deleted}, vars);
    if (k === key) return;
    key = k;

    const stepLogs = state.logs.filter((e) => stepOf(e, node.name));
    log = logList(stepLogs, node.name);
    keepFocus(el, () => replace(el,
      h('div', {class: 'panel-head'},
        h('h2', {id: 'step-title', tabindex: -1}, node.name),
        h('button', {type: 'button', class: 'secondary small', onclick: () => page.select(null), 'aria-label': 'Close the step details'}, 'Close')),
      stepActions(page, node, finished),
      stepFacts(page, model, node),
      subSteps(page, node),
      iterations(page, node),
      stepInputs(node.spec || {}, vars),
      stepOutputs(node.spec || {}, vars),
      stepProperties(node.spec || {}),
      h('h3', null, 'Log'),
      h('p', {class: 'muted empty-log', hidden: stepLogs.length > 0}, 'No log lines for this step yet.'),
      log.table));
  };

  return {
    el,
    paint,
    redraw(model) {
      key = null;
      paint(model);
    },
    // addLog appends a new log entry to the panel when it is the shown step's.
    addLog(entry) {
      if (!log || !log.step || !stepOf(entry, log.step)) return;
      log.body.append(log.item(entry));
      const empty = el.querySelector('.empty-log');
      if (empty) empty.hidden = true;
    },
    // resetLog empties the shown step's log, when the stream starts again from the beginning.
    resetLog() {
      if (log) log.body.replaceChildren();
    },
  };
}

// stepActions approve a suspend step (shown on suspend steps only) and retry the run from a
// failed step, once confirmed as Restart is.
function stepActions(page, node, finished) {
  const who = {canOperate: page.canOperate, deleted: page.state.deleted};
  const retry = async () => {
    const ok = await page.ctx.confirm(`Retry run ${page.name} from step ${node.name}?`,
      `Step ${node.name} and the steps after it run again; the steps that succeeded keep their results and outputs.`, 'Retry');
    if (ok) await page.operate('restart', {step: node.name}, `Retrying from step ${node.name}.`, `Retrying from ${node.name} failed`);
  };
  return h('div', {class: 'actions', role: 'group', 'aria-label': 'Step operations'},
    node.type === 'suspend' ? actionButton('op-approve', 'Approve', () => page.operate('resume', {step: node.name}, `Step ${node.name} approved.`, `Approving ${node.name} failed`),
      {reason: approveReason(who, node, finished)}) : null,
    actionButton('op-retry', 'Retry from this step', retry,
      {reason: retryReason(who, node, finished), kind: 'secondary'}));
}

function stepFacts(page, model, node) {
  const st = node.status || {};
  const sp = node.spec || {};
  const parent = parentOf(model, node);
  const alias = sp.meta && sp.meta.alias;
  const duration = () => (isActive(node) ? liveDuration(st.firstExecuteTime, null) : between(st.firstExecuteTime, st.lastExecuteTime || st.firstExecuteTime));
  return dl([
    ['Phase', h('span', {id: 'step-phase'}, badge(node.phase))],
    ['Type', h('code', null, node.children ? `step-group (${node.mode})` : node.type || '')],
    ['Alias', alias || ''],
    ['In group', parent ? h('button', {type: 'button', class: 'link', onclick: () => page.select(parent.name)}, parent.name) : ''],
    ['Reason', st.reason ? h('span', {id: 'step-reason'}, st.reason) : ''],
    ['Message', st.message ? messageView(st.message, {class: 'message', id: 'step-message'}) : ''],
    ['If', sp.if ? h('code', null, sp.if) : ''],
    ['Depends on', node.deps.length ? node.deps.join(', ') : ''],
    ['Timeout', sp.timeout || ''],
    ['First executed', parseTime(st.firstExecuteTime) ? timeEl(st.firstExecuteTime) : ''],
    ['Last executed', parseTime(st.lastExecuteTime) ? timeEl(st.lastExecuteTime) : ''],
    ['Duration', parseTime(st.firstExecuteTime) ? duration() : ''],
    ['Child run', st.childRun ? h('a', {href: link('runs', page.ns, st.childRun)}, st.childRun) : ''],
  ], {class: 'facts', id: 'step-facts'});
}

// subSteps lists a group's sub-steps, each a button selecting it.
function subSteps(page, node) {
  if (!node.children || !node.children.length) return null;
  return [h('h3', null, 'Sub-steps'),
    h('ul', {class: 'substeps'}, node.children.map((c) => h('li', null,
      h('button', {type: 'button', class: 'link', onclick: () => page.select(c.name)}, c.name), ' ', badge(c.phase))))];
}

// iterations shows a loop's iterations as the status has them (the latest few), and all of
// them on request.
function iterations(page, node) {
  const it = (node.status || {}).iterations;
  if (!it || !it.total) return null;
  const {ctx, path} = page;
  const entries = Array.isArray(it.entries) ? it.entries : [];
  const all = h('div', {class: 'iterations-all'});
  const showAll = async (ev) => {
    ev.target.disabled = true;
    try {
      const {total, rows} = allIterations(await api.get(path, {query: {iterations: node.name}, signal: ctx.signal}));
      replace(all, h('p', null, `All ${total} iterations:`), iterationTable(rows));
    } catch (e) {
      if (!api.isAbort(e)) replace(all, h('p', {class: 'error'}, `Loading the iterations failed: ${e.message}`));
    } finally {
      ev.target.disabled = false;
    }
  };
  return [h('h3', null, 'Iterations'),
    h('p', null, iterationSummary(it)),
    entries.length ? iterationTable(entries.map((e) => ({...e}))) : null,
    h('button', {type: 'button', class: 'secondary small', onclick: showAll}, 'Show all iterations'),
    all];
}

// iterationTable lists iterations, each named by its item (us-east-1) before its step name
// (deploy[2]).
function iterationTable(entries) {
  return table(null, ['#', 'Item', 'Name', 'Phase', 'Reason', 'Message', 'Took'], entries.map((e) => [
    String(e.index ?? ''),
    e.item ? h('strong', {class: 'item'}, e.item) : h('span', {class: 'muted'}, '—'),
    e.name || '',
    badge(e.phase),
    e.reason || '',
    h('span', {class: 'message'}, e.message || ''),
    between(e.firstExecuteTime, e.lastExecuteTime || e.firstExecuteTime),
  ]), {class: 'data iterations'});
}

// stepInputs lists the run variables a step reads, with their values once output.
function stepInputs(sp, vars) {
  const inputs = Array.isArray(sp.inputs) ? sp.inputs : [];
  if (!inputs.length) return null;
  return [h('h3', null, 'Inputs'), table(null, ['From', 'Into parameter', 'Value'], inputs.map((i) => [
    h('code', null, i.from || ''), h('code', null, i.parameterKey || ''),
    inputValue(vars, i.from) !== undefined ? h('pre', {class: 'value'}, pretty(inputValue(vars, i.from))) : h('span', {class: 'muted'}, '—'),
  ]), {class: 'data', id: 'step-inputs'})];
}

// stepOutputs lists the run variables a step outputs, with their values once output.
function stepOutputs(sp, vars) {
  const outs = Array.isArray(sp.outputs) ? sp.outputs : [];
  if (!outs.length) return null;
  return [h('h3', null, 'Outputs'), table(null, ['Name', 'Value from', 'Value'], outs.map((o) => [
    h('code', null, o.name || ''), h('code', null, o.valueFrom || ''),
    vars[o.name] !== undefined ? h('pre', {class: 'value'}, pretty(vars[o.name])) : h('span', {class: 'muted'}, 'not produced'),
  ]), {class: 'data', id: 'step-outputs'})];
}

// stepProperties shows a step's properties, and its loop and retry fields, as YAML.
function stepProperties(sp) {
  const extra = loopAndRetry(sp);
  return [
    sp.properties && Object.keys(sp.properties).length ? [h('h3', null, 'Properties'), h('pre', {class: 'yaml', id: 'step-properties'}, toYAML(sp.properties))] : null,
    Object.keys(extra).length ? [h('h3', null, 'Loop and retry'), h('pre', {class: 'yaml'}, toYAML(extra))] : null,
  ];
}
