// The head of the run page: the run's name and phase, its operations, banners for what needs
// a person (a step waiting for approval, the step that failed) and the run's facts.

import * as api from '../../api.js';
import {h, replace, keepFocus, link, badge, timeEl, dl, parseTime} from '../../dom.js';
import {actionButton} from '../common.js';
import {runSummary, runOpReasons, waitingForApproval, firstFailedStep, failureText} from './logic.js';
import {liveDuration} from './live.js';

// runHead is the head of page (see run.js): {el, paint(model)}.
export function runHead(page) {
  const el = h('section', {class: 'run-head', 'aria-labelledby': 'run-title'});
  const paint = (model) => {
    const {ctx, ns, name, canOperate, state} = page;
    const summary = runSummary(state.run);
    const actions = runActions(page, summary);
    const banners = runBanners(page, model, summary);
    keepFocus(el, () => replace(el,
      h('div', {class: 'page-head'},
        h('div', null,
          h('p', {class: 'crumbs'}, h('a', {href: '#/runs'}, 'Runs'), ' / ', ns),
          h('h1', {id: 'run-title'}, name, ' ', h('span', {id: 'run-phase'}, badge(summary.phase)))),
        actions),
      canOperate ? null : h('p', {class: 'muted small', id: 'read-only'}, `Read only: your token's role is ${ctx.me.role}; operating runs needs operator or admin.`),
      summary.message ? h('p', {class: 'run-message', id: 'run-message'}, summary.message) : null,
      banners,
      runFacts(ns, summary)));
  };
  return {el, paint};
}

// runActions are the buttons of the run's operations, each disabled with the reason when it
// is not possible.
function runActions(page, summary) {
  const {ctx, name, state} = page;
  const why = runOpReasons({canOperate: page.canOperate, deleted: state.deleted}, summary);
  const confirmed = (op, question, text, label, done, failed) => async () => {
    if (await ctx.confirm(question, text, label)) await page.operate(op, undefined, done, failed);
  };
  return h('div', {class: 'actions', role: 'group', 'aria-label': 'Run operations'},
    actionButton('op-suspend', 'Suspend', () => page.operate('suspend', undefined, `Run ${name} suspended.`, 'Suspending failed'),
      {reason: why.suspend, kind: 'secondary'}),
    actionButton('op-resume', 'Resume', () => page.operate('resume', undefined, `Run ${name} resumed.`, 'Resuming failed'),
      {reason: why.resume, kind: 'secondary'}),
    actionButton('op-terminate', 'Terminate', confirmed('terminate', `Terminate run ${name}?`,
      'Running and suspended steps fail with reason Terminate; steps with if: always still run.', 'Terminate',
      `Run ${name} terminated.`, 'Terminating failed'), {reason: why.terminate, kind: 'danger'}),
    actionButton('op-restart', 'Restart', confirmed('restart', `Restart run ${name}?`,
      'Its status and run variables are cleared and it runs again from the start.', 'Restart',
      `Run ${name} restarted.`, 'Restarting failed'), {reason: why.restart, kind: 'secondary'}),
    actionButton('op-delete', 'Delete', () => removeRun(page), {reason: why.delete, kind: 'danger'}));
}

// removeRun deletes the run once confirmed, and goes to the list of runs.
async function removeRun({ctx, name, path}) {
  const ok = await ctx.confirm(`Delete run ${name}?`, 'The run, its status and its log are deleted. A run still executing is terminated first.', 'Delete');
  if (!ok) return;
  try {
    await api.del(path, {signal: ctx.signal});
    ctx.notify(`Run ${name} deleted.`);
    location.hash = '#/runs';
  } catch (e) {
    if (!api.isAbort(e)) ctx.notify(`Deleting failed: ${e.message}`, 'error');
  }
}

// runBanners say that the run was deleted, which steps wait for approval and, in a failed
// run, which step failed; each offers to select the step.
function runBanners(page, model, summary) {
  const banners = [];
  if (page.state.deleted) banners.push(h('p', {class: 'banner error', id: 'run-deleted', role: 'alert'}, 'This run was deleted.'));
  for (const step of waitingForApproval(model)) {
    banners.push(h('p', {class: 'banner waiting'}, `Step ${step} is waiting for approval. `,
      h('button', {type: 'button', class: 'link', onclick: () => page.select(step)}, `Review ${step}`)));
  }
  const failed = summary.phase === 'failed' ? firstFailedStep(model) : null;
  if (failed) {
    banners.push(h('p', {class: 'banner failed'}, failureText(failed),
      h('button', {type: 'button', class: 'link', onclick: () => page.select(failed.name)}, `Show ${failed.name}`)));
  }
  return banners;
}

// runFacts lists where the run comes from (the Application it delivers, its template, its
// parent), when it ran and how.
function runFacts(ns, summary) {
  const {template, templateVersion, parent, application, startTime, endTime, finished} = summary;
  return dl([
    ['Application', application ? h('a', {href: link('applications', ns, application), id: 'run-application'}, application) : ''],
    ['Template', template ? h('span', null, h('a', {href: link('templates', ns, template)}, template), templateVersion ? ` version ${templateVersion}` : '') : ''],
    ['Parent run', parent ? h('a', {href: link('runs', ns, parent)}, parent) : ''],
    ['Started', parseTime(startTime) ? timeEl(startTime) : ''],
    ['Ended', parseTime(endTime) ? timeEl(endTime) : ''],
    ['Duration', parseTime(startTime) ? liveDuration(startTime, finished ? endTime || startTime : null) : ''],
    ['Mode', summary.mode],
  ], {class: 'facts', id: 'run-facts'});
}
