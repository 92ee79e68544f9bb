// Pieces several pages share.

import {h, replace} from '../dom.js';

// errorPage shows a failure to load a page (a 404 of the API, the server gone).
export function errorPage(ctx, title, e) {
  ctx.ready(title);
  const text = e.status === 404 ? 'It does not exist, or your token may not see it.' : e.message;
  replace(ctx.main, h('h1', {tabindex: -1}, title), h('p', {class: 'error', role: 'alert'}, text));
}

// problemText writes one problem of a 400 answer: "line 12, column 9: field: message".
export function problemText(p) {
  const where = [];
  if (p.line) where.push(`line ${p.line}${p.column ? `, column ${p.column}` : ''}`);
  if (p.field) where.push(p.field);
  return where.length ? `${where.join(': ')}: ${p.message || ''}` : p.message || '';
}

// problemList shows an error and its problems; onPick(problem) makes each one a button.
export function problemList(e, onPick) {
  const problems = (e && e.problems) || [];
  const box = h('div', {class: 'problems', role: 'alert'});
  box.append(h('p', {class: 'error'}, problems.length ? `${e.message}` : e.message || String(e)));
  if (problems.length) {
    box.append(h('ul', null, problems.map((p) => h('li', {dataset: {line: p.line || '', field: p.field || ''}},
      onPick && p.line ? h('button', {type: 'button', class: 'link', onclick: () => onPick(p)}, problemText(p)) : problemText(p)))));
  }
  return box;
}

// table builds a data table: columns [label], rows of cells (nodes or text).
export function table(caption, columns, rows, attrs) {
  return h('table', attrs || {class: 'data'},
    caption ? h('caption', null, caption) : null,
    h('thead', null, h('tr', null, columns.map((c) => h('th', {scope: 'col'}, c)))),
    h('tbody', null, rows.map((r) => h('tr', null, r.map((c) => h('td', null, c))))));
}

// roleNote says why an action is not offered.
export function roleNote(least) {
  return `Your token's role may not do this (${least} or above needed).`;
}

// actionButton is a button that runs fn, disabled while it runs; reason disables it and
// says why (as its title, and to screen readers).
export function actionButton(id, label, fn, {reason, kind} = {}) {
  const b = h('button', {type: 'button', id, class: kind || ''}, label);
  b.disabled = !!reason;
  if (reason) b.title = reason;
  b.addEventListener('click', async () => {
    if (b.disabled) return;
    b.disabled = true;
    b.setAttribute('aria-busy', 'true');
    try {
      await fn();
    } finally {
      b.removeAttribute('aria-busy');
      if (b.isConnected && !b.title) b.disabled = false;
    }
  });
  return b;
}

// nsLabel shows a namespace, the built-ins' empty one as "built-in".
export function nsLabel(ns) {
  return ns ? ns : h('span', {class: 'muted'}, 'built-in');
}

// stepCounts shows the summary's step counts as a small stacked bar with its numbers.
export function stepCounts(steps) {
  if (!steps || !steps.total) return h('span', {class: 'muted'}, '—');
  const order = ['succeeded', 'failed', 'running', 'suspending', 'skipped', 'pending'];
  const bar = h('span', {class: 'bar', 'aria-hidden': 'true'});
  const words = [];
  for (const p of order) {
    const n = steps[p] || 0;
    if (!n) continue;
    const seg = h('span', {class: `seg phase-${p}`});
    seg.style.width = `${(100 * n) / steps.total}%`;
    bar.append(seg);
    words.push(`${n} ${p}`);
  }
  return h('span', {class: 'counts', title: words.join(', ')},
    bar, h('span', {class: 'count-text'}, `${steps.succeeded || 0}/${steps.total}`),
    h('span', {class: 'visually-hidden'}, ` steps succeeded; ${words.join(', ')}`));
}
