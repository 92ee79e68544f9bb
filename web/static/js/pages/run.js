// The run page: the run's state, its step graph and the selected step's panel, kept live by
// the run's event stream. Its parts are in ./run/: head.js (name, phase, operations, facts),
// steps.js (the graph's section), panel.js (the selected step), outputs.js, logs.js (the log
// table and the panel's list), live.js (the event stream and ticking durations) and logic.js
// (the decisions, without the DOM; tested under Node by web/jstest). This file loads the run,
// holds the page's state and ties the parts together.

import * as api from '../api.js';
import {h, replace} from '../dom.js';
import {Graph, buildModel} from '../graph.js';
import {errorPage} from './common.js';
import {supersedes, stepHash} from './run/logic.js';
import {runHead} from './run/head.js';
import {stepsSection} from './run/steps.js';
import {stepPanel} from './run/panel.js';
import {runOutputs} from './run/outputs.js';
import {runLog} from './run/logs.js';
import {liveStatus, startTicker, follow} from './run/live.js';

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

  // page is what the parts share: where the run is, what the user may do, the state shown
  // (the run, its log so far, the selected step, whether the run was deleted) and the
  // operations on it.
  const page = {
    ctx, ns, name, path,
    canOperate: ctx.can('operator'),
    state: {run: first, logs: [], selected: ctx.query.get('step') || null, deleted: false},
    select, operate,
  };
  const {state} = page;

  const graph = new Graph((step) => select(step));
  const live = liveStatus();
  const head = runHead(page);
  const panel = stepPanel(page);
  const outputs = runOutputs(page);
  const log = runLog();
  replace(ctx.main,
    head.el,
    h('div', {class: 'run-body'}, stepsSection(graph, live.el), panel.el),
    outputs.el,
    log.el);

  function paint() {
    const model = buildModel(state.run);
    head.paint(model);
    graph.update(model);
    graph.select(state.selected);
    panel.paint(model);
    outputs.paint(model);
  }

  // applyRun shows a newer state of the run (see supersedes); none once it was deleted.
  function applyRun(run) {
    if (state.deleted || !supersedes(run, state.run)) return;
    state.run = run;
    paint();
  }

  // operate posts an operation; done and failed are what the user is told.
  async function operate(op, body, done, failed) {
    try {
      const run = await api.post(`${path}/${op}`, body, {signal: ctx.signal});
      applyRun(run);
      ctx.notify(done);
    } catch (e) {
      if (api.isAbort(e)) return;
      ctx.notify(`${failed}: ${e.message}`, 'error');
    }
  }

  // select shows a step in the panel (none for null) and keeps it in the page's address.
  function select(step) {
    state.selected = step;
    graph.select(step);
    const hash = stepHash(ns, name, ctx.query, step);
    if (location.hash !== hash) history.replaceState(null, '', hash);
    panel.redraw(buildModel(state.run));
    if (step) panel.el.querySelector('h2')?.focus({preventScroll: true});
  }

  startTicker(ctx);
  ctx.onCleanup(() => graph.destroy());
  ctx.ready(`Run ${name}`);
  paint();
  follow(ctx, path, {
    status: live.set,
    open() {
      state.logs = [];
      log.reset();
      panel.resetLog();
    },
    run: applyRun,
    log(entry) {
      state.logs.push(entry);
      log.add(entry, state.logs.length);
      panel.addLog(entry);
    },
    deleted() {
      state.deleted = true;
      paint();
    },
  });
}
