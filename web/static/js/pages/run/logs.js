// The run's log as the page shows it: the whole log in a table at the foot of the page, and a
// step's lines as a list in the step panel.

import {h, pretty} from '../../dom.js';
import {clock, hasData, logTitle, messageJSON, tookText} from './logic.js';

// messageView is a message as the pages show it (a step's, a log line's): its text, and any
// JSON it carries laid out below it; attrs go on the element that holds it.
export function messageView(message, attrs) {
  const {text, value} = messageJSON(message);
  if (value === undefined) return h('span', attrs || null, message || '');
  return h('div', attrs || null, text ? h('span', null, text) : null, h('pre', {class: 'message-json'}, pretty(value)));
}

function dataDetails(entry) {
  return h('details', null, h('summary', null, 'data'), h('pre', null, pretty(entry.data)));
}

// severity is how bad a line is: info, warning or error (lines saved before severities
// were recorded count as info).
export function severity(entry) {
  return entry.severity || 'info';
}

// logRow is a log entry as a row of the log table; withStep adds the step's column.
export function logRow(entry, withStep) {
  const msg = h('td', {class: 'message'}, messageView(entry.message));
  if (hasData(entry)) msg.append(dataDetails(entry));
  return h('tr', {class: `log level-${severity(entry)}`},
    h('td', null, h('time', {datetime: entry.time || '', title: entry.time || ''}, clock(entry.time))),
    withStep ? h('td', null, entry.step || '') : null,
    h('td', null, severity(entry)),
    h('td', null, entry.action || ''),
    h('td', null, entry.outcome || ''),
    h('td', {class: 'num'}, tookText(entry)),
    msg);
}

// logItem is a log entry in the narrow step panel: when, what and how it went, its message
// below; an iteration's lines name the iteration.
export function logItem(entry, step) {
  return h('li', {class: `log level-${severity(entry)}`},
    h('div', {class: 'log-meta'},
      h('time', {datetime: entry.time || '', title: entry.time || ''}, clock(entry.time)),
      entry.step && entry.step !== step ? h('span', {class: 'log-step'}, entry.step) : null,
      severity(entry) !== 'info' ? h('span', {class: 'log-level'}, severity(entry)) : null,
      entry.action ? h('code', null, entry.action) : null,
      entry.outcome ? h('span', {class: `log-outcome outcome-${entry.outcome}`}, entry.outcome) : null,
      Number(entry.duration) ? h('span', {class: 'muted'}, tookText(entry)) : null),
    entry.message ? h('div', {class: 'log-message'}, messageView(entry.message)) : null,
    hasData(entry) ? dataDetails(entry) : null);
}

// logList is a step's log in the panel: {table, body, step, item(entry)}, more lines appended
// to body as they arrive.
export function logList(entries, step) {
  const body = h('ol', {class: 'log-list', id: 'step-log'}, entries.map((e) => logItem(e, step)));
  return {table: body, body, step, item: (e) => logItem(e, step)};
}

// logTable is a log as a table: {table, body}.
export function logTable(entries, withStep, id) {
  const cols = ['Time', ...(withStep ? ['Step'] : []), 'Level', 'Action', 'Outcome', 'Took', 'Message'];
  const body = h('tbody', null, entries.map((e) => logRow(e, withStep)));
  return {table: h('table', {class: 'data log-table', id}, h('thead', null, h('tr', null, cols.map((c) => h('th', {scope: 'col'}, c)))), body), body};
}

// runLog is the whole run's log, folded at the foot of the page: {el, add(entry, count),
// reset()}, count being the number of lines with entry.
export function runLog() {
  const all = logTable([], true, 'run-log-table');
  const summary = h('summary', null, 'Log');
  const el = h('details', {class: 'run-log', id: 'run-log'}, summary, h('div', {class: 'scroll-x'}, all.table));
  return {
    el,
    add(entry, count) {
      all.body.append(logRow(entry, true));
      summary.textContent = logTitle(count);
    },
    reset() {
      all.body.replaceChildren();
      summary.textContent = 'Log';
    },
  };
}
