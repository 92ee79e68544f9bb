// The run page's decisions, apart from drawing them: what a run's state says, which
// operation is possible and why not, which log lines belong to a step, when the step panel must
// be drawn again. Nothing here touches the DOM, so that web/jstest tests it under Node.

import {link, parseTime, fmtDuration} from '../../dom.js';
import {walk, rootVar} from '../../graph.js';
import {roleNote} from '../common.js';

const FINISHED = new Set(['succeeded', 'failed', 'terminated']);

// PHASES are the step phases the legend explains, in its order.
export const PHASES = ['pending', 'running', 'suspending', 'succeeded', 'failed', 'skipped'];

// version is the run's stepflow version, which grows with every change of the run; 0 for none.
export const version = (run) => (run && run.stepflow && Number(run.stepflow.version)) || 0;

export function isFinished(run) {
  const st = run.status || {};
  return !!st.finished || FINISHED.has(st.status);
}

// supersedes tells whether next is to be shown instead of current: a state of the run no older
// than it (a stream event overtaken by an operation's answer is older), or the state of a run
// created again under the same name, whose versions start again.
export function supersedes(next, current) {
  if (!next || !next.metadata) return false;
  const same = (next.metadata.uid || '') === (current.metadata.uid || '') && next.metadata.creationTimestamp === current.metadata.creationTimestamp;
  return !(same && version(next) < version(current));
}

// runSummary is what the head of the page says about a run.
export function runSummary(run) {
  const st = run.status || {};
  const sf = run.stepflow || {};
  const phase = st.status || 'initializing';
  return {
    phase,
    finished: isFinished(run),
    suspended: !!st.suspend || phase === 'suspending',
    message: st.message || '',
    template: sf.template || (run.spec && run.spec.workflowRef) || '',
    templateVersion: sf.templateVersion || '',
    parent: (run.metadata.labels && run.metadata.labels['workflowrun.oam.dev/parent']) || '',
    application: (run.metadata.labels && run.metadata.labels['app.oam.dev/name']) || '',
    mode: st.mode && st.mode.steps ? `${st.mode.steps} (sub-steps ${st.mode.subSteps || 'DAG'})` : '',
    startTime: st.startTime,
    endTime: st.endTime,
  };
}

// runOpReasons says, for each operation of the run's head, why it is not possible ('' when it
// is). who: {canOperate, deleted}; summary: runSummary's.
export function runOpReasons({canOperate, deleted}, {finished, suspended}) {
  const why = canOperate ? '' : roleNote('operator');
  const gone = deleted ? 'The run was deleted.' : '';
  const over = finished ? 'The run has finished.' : '';
  return {
    suspend: why || gone || over || (suspended ? 'The run is suspended.' : ''),
    resume: why || gone || over || (!suspended ? 'The run is not suspended.' : ''),
    terminate: why || gone || over,
    restart: why || gone,
    delete: why || gone,
  };
}

// approveReason says why a step cannot be approved, '' when it can.
export function approveReason({canOperate, deleted}, node, finished) {
  if (!canOperate) return roleNote('operator');
  if (deleted) return 'The run was deleted.';
  if (node.type !== 'suspend') return 'Only a suspend step waits for approval.';
  if (node.phase !== 'suspending') return 'The step is not waiting for approval.';
  if (finished) return 'The run has finished.';
  return '';
}

// retryReason says why the run cannot be retried from a step, '' when it can.
export function retryReason({canOperate, deleted}, node, finished) {
  if (!canOperate) return roleNote('operator');
  if (deleted) return 'The run was deleted.';
  if (node.phase !== 'failed') return 'Only a failed step can be retried.';
  if (!finished) return 'The run has not finished yet.';
  return '';
}

// waitingForApproval names the suspend steps waiting for a person, in the graph's order.
export function waitingForApproval(model) {
  const names = [];
  walk(model, (n) => {
    if (n.type === 'suspend' && n.phase === 'suspending') names.push(n.name);
  });
  return names;
}

// firstFailedStep is the first step (not a group) that failed, or null.
export function firstFailedStep(model) {
  let failed = null;
  walk(model, (n) => {
    if (!failed && n.phase === 'failed' && !n.children) failed = n;
  });
  return failed;
}

// failureText is the banner's sentence about a failed step.
export function failureText(node) {
  const msg = node.status && node.status.message;
  return `Step ${node.name} failed${msg ? `: ${msg}` : '.'} `;
}

// parentOf is the group a node is a sub-step of, or null.
export function parentOf(model, node) {
  let parent = null;
  walk(model, (n, p) => {
    if (n === node) parent = p;
  });
  return parent;
}

// outputValues are the run variables the run's steps have output so far.
export function outputValues(run) {
  return (run.stepflow && run.stepflow.outputs) || {};
}

// inputValue is the value of the run variable an input reads, undefined before it is output.
export function inputValue(vars, from) {
  return vars[rootVar(from)];
}

// panelKey identifies what the step panel shows of a node: when it is unchanged, a run update
// leaves the panel (its open details, its scroll, its log) alone.
export function panelKey(node, {finished, deleted}, vars) {
  return JSON.stringify([node.name, node.status, node.spec, node.phase, finished, deleted, node.outputs.map((o) => vars[o]), node.inputs.map((i) => inputValue(vars, i)),
    (node.children || []).map((c) => [c.name, c.phase])]);
}

// isActive tells a step whose duration is still growing.
export function isActive(node) {
  return node.phase === 'running' || node.phase === 'suspending';
}

// iterationSummary counts a loop's iterations by how they went.
export function iterationSummary(it) {
  return `${it.total} in all: ${it.succeeded || 0} succeeded, ${it.failed || 0} failed, ${it.running || 0} running, ${it.skipped || 0} skipped.`;
}

// allIterations reads the answer of ?iterations=step: its total and one row per iteration,
// numbered from 0.
export function allIterations(data) {
  const items = (data && data.items) || [];
  return {total: data.total ?? items.length, rows: items.map((x, i) => ({index: i, item: x.item || '', ...(x.status || {})}))};
}

// loopAndRetry picks the loop and retry fields of a step's spec; {} when it has none.
export function loopAndRetry(spec) {
  const extra = {};
  for (const k of ['forEach', 'matrix', 'retry']) if (spec[k] !== undefined) extra[k] = spec[k];
  return extra;
}

// stepHash is the page's address with step selected (none for null), the rest of its query kept.
export function stepHash(ns, name, query, step) {
  const q = new URLSearchParams(query);
  if (step) q.set('step', step);
  else q.delete('step');
  return link('runs', ns, name) + (q.toString() ? `?${q}` : '');
}

// stepOf tells whether a log entry belongs to a step: its own lines and its iterations'.
export function stepOf(entry, name) {
  const s = entry.step || '';
  return s === name || s.startsWith(`${name}[`);
}

// clock shows the time of day of a log entry, to the millisecond, in local time; '' for none.
export function clock(t) {
  const d = parseTime(t);
  if (!d) return '';
  const p = (n, w = 2) => String(n).padStart(w, '0');
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}

// tookText shows a log entry's duration (nanoseconds), '' for none.
export function tookText(entry) {
  const dur = Number(entry.duration);
  return dur ? fmtDuration(dur / 1e6) : '';
}

// hasData tells whether a log entry carries data worth showing: not missing, null or {}.
export function hasData(entry) {
  const d = entry.data;
  return d !== undefined && d !== null && !(typeof d === 'object' && Object.keys(d).length === 0);
}

// logTitle is the run log's summary line once it has lines.
export function logTitle(count) {
  return `Log (${count} ${count === 1 ? 'line' : 'lines'})`;
}

// nextRetry is the count of reconnections after one more, and how long to wait before it:
// a second more each time, at most five.
export function nextRetry(retry) {
  const n = Math.min(retry + 1, 5);
  return {retry: n, delay: 1000 * n};
}

// messageJSON splits a message that carries JSON (a service's answer quoted in a failure,
// possibly as an escaped JSON string) into its text and the value: {text, value}, value
// undefined when there is none. Only a JSON object or list counts: it is what a person wants
// to read laid out rather than on one line.
export function messageJSON(message) {
  const msg = message || '';
  for (let i = 0; i < msg.length; i++) {
    const c = msg[i];
    if (c !== '{' && c !== '[' && c !== '"') continue;
    let value;
    try {
      value = JSON.parse(msg.slice(i));
    } catch {
      continue;
    }
    if (typeof value === 'string') { // an escaped document: "{\"error\": ...}"
      try {
        value = JSON.parse(value);
      } catch {
        continue;
      }
    }
    if (value !== null && typeof value === 'object') return {text: msg.slice(0, i).trimEnd(), value};
  }
  return {text: msg, value: undefined};
}
