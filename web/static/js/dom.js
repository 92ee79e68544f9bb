// DOM helpers. Everything the API returns reaches the page through text nodes and attributes
// set here: no HTML string is ever parsed, so a step message such as `<img onerror=...>` shows
// as the text it is.

const SVG_NS = 'http://www.w3.org/2000/svg';

// Properties set as DOM properties rather than attributes.
const PROPS = new Set(['value', 'checked', 'selected', 'indeterminate']);

function setAttrs(el, attrs) {
  if (!attrs) return;
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else if (key === 'dataset') {
      for (const [k, v] of Object.entries(value)) el.dataset[k] = String(v);
    } else if (PROPS.has(key)) {
      el[key] = value;
    } else {
      el.setAttribute(key, value === true ? '' : String(value));
    }
  }
}

function appendChildren(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

// h creates an HTML element: h('a', {href: '#/runs', class: 'x'}, 'text', otherNode).
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  appendChildren(el, children);
  return el;
}

// s creates an SVG element, as h does.
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  appendChildren(el, children);
  return el;
}

// replace empties el and appends the children.
export function replace(el, ...children) {
  el.replaceChildren();
  appendChildren(el, children);
  return el;
}

// keepFocus runs draw, which draws container's content again, and gives focus back to the
// control that had it (found again by its id), so that a live update does not take the
// keyboard's place away.
export function keepFocus(container, draw) {
  const id = container.contains(document.activeElement) ? document.activeElement.id : '';
  draw();
  if (id) {
    const el = document.getElementById(id);
    if (el && container.contains(el) && !el.disabled) el.focus({preventScroll: true});
  }
}

// link builds a hash route from path segments, each encoded: link('runs', ns, name).
export function link(...segments) {
  return '#/' + segments.map((x) => encodeURIComponent(x)).join('/');
}

const pad = (n) => String(n).padStart(2, '0');

// fmtTime shows an RFC 3339 time in local time, to the second; '' for none.
export function fmtTime(t) {
  const d = parseTime(t);
  if (!d) return '';
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

// parseTime answers a Date, or null for an empty or zero time.
export function parseTime(t) {
  if (!t) return null;
  const d = new Date(t);
  if (Number.isNaN(d.getTime()) || d.getFullYear() <= 1) return null;
  return d;
}

// fmtAgo shows how long before now t was, as a person says it: "just now", "42s ago",
// "5 min ago", "3 h ago", "yesterday", "4 days ago"; older than a week, the date. A time
// ahead of now (a clock apart) is "just now". '' for none.
export function fmtAgo(t, now = new Date()) {
  const d = parseTime(t);
  if (!d) return '';
  const sec = Math.floor((now - d) / 1000);
  if (sec < 5) return 'just now';
  if (sec < 60) return `${sec}s ago`;
  const min = Math.floor(sec / 60);
  if (min < 60) return `${min} min ago`;
  const hr = Math.floor(min / 60);
  if (hr < 24) return `${hr} h ago`;
  const days = Math.floor(hr / 24);
  if (days === 1) return 'yesterday';
  if (days < 7) return `${days} days ago`;
  return fmtTime(t).slice(0, 10);
}

// timeEl is a <time> element showing t relative to now ("5 min ago"), with the local time
// to the second and the exact value as its title.
export function timeEl(t) {
  const d = parseTime(t);
  if (!d) return h('span', {class: 'muted'}, '—');
  return h('time', {datetime: d.toISOString(), title: `${fmtTime(t)} (${d.toISOString()})`}, fmtAgo(t));
}

// fmtDuration shows milliseconds as 1h 2m, 3m 4s, 5.2s or 120ms.
export function fmtDuration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms) || ms < 0) return '';
  if (ms > 0 && ms < 1) return '<1ms';
  if (ms < 1000) return `${Math.round(ms)}ms`;
  const sec = ms / 1000;
  if (sec < 10) return `${sec.toFixed(1)}s`;
  if (sec < 60) return `${Math.round(sec)}s`;
  const total = Math.round(sec);
  const d = Math.floor(total / 86400);
  const hr = Math.floor((total % 86400) / 3600);
  const m = Math.floor((total % 3600) / 60);
  const ss = total % 60;
  if (d) return `${d}d ${hr}h`;
  if (hr) return `${hr}h ${m}m`;
  return `${m}m ${ss}s`;
}

// between is the duration from start to end (to now when end is missing), or '' without a start.
export function between(start, end) {
  const a = parseTime(start);
  if (!a) return '';
  const b = parseTime(end) || new Date();
  // Kubernetes times are whole seconds: two of them give whole seconds, not 0ms or 2.0s.
  if (parseTime(end) && !/\.\d/.test(String(start) + String(end)) && b - a < 60000) {
    return b - a < 1000 ? '<1s' : `${Math.round((b - a) / 1000)}s`;
  }
  return fmtDuration(b - a);
}

// badge shows a run or step phase as a coloured label.
export function badge(phase) {
  const p = phase || 'pending';
  return h('span', {class: `badge phase-${p}`, dataset: {phase: p}}, p);
}

// pretty shows a JSON value for people: strings as they are, the rest as indented JSON.
export function pretty(v) {
  if (typeof v === 'string') return v;
  if (v === undefined) return '';
  return JSON.stringify(v, null, 2);
}

// dl builds a description list from [term, value] pairs, leaving out empty values.
export function dl(pairs, attrs) {
  const el = h('dl', attrs || {class: 'facts'});
  for (const [term, value] of pairs) {
    if (value === undefined || value === null || value === '') continue;
    el.append(h('div', null, h('dt', null, term), h('dd', null, value)));
  }
  return el;
}
