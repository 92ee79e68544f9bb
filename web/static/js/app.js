// The dashboard's shell: hash routes, the session (whoami, login, logout), the header, and the
// page context every page renders with (an AbortSignal and cleanups that end with the page).

import * as api from './api.js';
import {h, replace} from './dom.js';
import {renderLogin} from './pages/login.js';
import {renderRuns} from './pages/runs.js';
import {renderRun} from './pages/run.js';
import {renderTemplates, renderTemplate} from './pages/templates.js';
import {renderDefinitions, renderDefinition} from './pages/definitions.js';
import {renderEditor} from './pages/editor.js';
import {renderDesigner} from './pages/designer.js';
import {renderApps} from './pages/apps.js';
import {renderApp} from './pages/app.js';
import {errorPage} from './pages/common.js';

const main = document.getElementById('main');
const who = document.getElementById('who');
const nav = document.getElementById('nav');
const toast = document.getElementById('toast');

const session = {me: null};
let current = null;
let generation = 0;

// parseHash splits `#/runs/default/x?phase=failed` into decoded segments and a query.
function parseHash(hash = location.hash) {
  const raw = hash.replace(/^#\/?/, '');
  const qi = raw.indexOf('?');
  const path = qi >= 0 ? raw.slice(0, qi) : raw;
  const query = new URLSearchParams(qi >= 0 ? raw.slice(qi + 1) : '');
  const segs = path
    .split('/')
    .filter(Boolean)
    .map((x) => {
      try {
        return decodeURIComponent(x);
      } catch {
        return x;
      }
    });
  return {segs, query};
}

function toLogin() {
  session.me = null;
  if (parseHash().segs[0] === 'login') return;
  const next = location.hash && location.hash !== '#' ? location.hash : '#/runs';
  location.hash = '#/login?next=' + encodeURIComponent(next);
}

api.onUnauthorized(toLogin);

let toastTimer = 0;

// notify shows a short message in the live region.
function notify(message, kind = 'info') {
  clearTimeout(toastTimer);
  toast.className = `toast show ${kind}`;
  toast.textContent = message;
  toastTimer = setTimeout(() => {
    toast.className = 'toast';
    toast.textContent = '';
  }, kind === 'error' ? 8000 : 4000);
}

// confirmAction asks in a modal dialog; answers true when confirmed.
function confirmAction(title, text, ok = 'Confirm') {
  const dialog = document.getElementById('confirm');
  document.getElementById('confirm-title').textContent = title;
  document.getElementById('confirm-text').textContent = text;
  document.getElementById('confirm-ok').textContent = ok;
  return new Promise((resolve) => {
    dialog.returnValue = '';
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), {once: true});
    dialog.showModal();
    document.getElementById('confirm-cancel').focus();
  });
}

function renderHeader(section) {
  const me = session.me;
  nav.hidden = !me;
  for (const a of nav.querySelectorAll('a')) {
    if (a.dataset.section === section) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  if (!me) {
    replace(who);
    return;
  }
  const ns = Array.isArray(me.namespaces) && me.namespaces.length ? me.namespaces.join(', ') : '';
  replace(
    who,
    h('span', {class: 'who-name', id: 'whoami'},
      'Signed in as ', h('strong', null, me.name || 'anonymous'), ' ',
      h('span', {class: `role role-${me.role}`, id: 'whoami-role'}, me.role || ''),
      ns ? h('span', {class: 'muted', title: 'The namespaces this token may see'}, ` in ${ns}`) : null),
    h('button', {type: 'button', class: 'secondary small', id: 'logout', onclick: logout}, 'Log out'),
  );
}

async function logout() {
  try {
    await api.post('/logout', undefined, {quiet401: true});
  } catch (e) {
    if (e.status !== 401) notify(`Logging out failed: ${e.message}`, 'error');
  }
  session.me = null;
  location.hash = '#/login';
}

function notFound(ctx) {
  ctx.ready('Not found');
  replace(main, h('h1', {tabindex: -1}, 'Not found'), h('p', null, 'There is no page at this address. ', h('a', {href: '#/runs'}, 'Go to the runs.')));
}

function dispatch(ctx, segs) {
  const [a, b, c, d] = segs;
  const n = segs.length;
  if (n === 0 || (a === 'runs' && n === 1)) return renderRuns(ctx);
  if (a === 'runs' && n === 3) return renderRun(ctx, b, c);
  if (a === 'designer' && n === 1) return renderDesigner(ctx, null, null);
  if (a === 'designer' && n === 2 && b === 'app') return renderDesigner(ctx, null, null, 'app');
  if (a === 'applications' && n === 4 && d === 'design') return renderDesigner(ctx, b, c, 'app');
  if (a === 'templates' && n === 4 && d === 'design') return renderDesigner(ctx, b, c);
  if (a === 'applications' && n === 1) return renderApps(ctx);
  if (a === 'applications' && n === 3) return renderApp(ctx, b, c);
  if (a === 'templates' || a === 'definitions') {
    const kind = a;
    if (n === 1) return kind === 'templates' ? renderTemplates(ctx) : renderDefinitions(ctx);
    if (n === 2 && b === 'new') return renderEditor(ctx, kind, null, null);
    if (n === 3) return kind === 'templates' ? renderTemplate(ctx, b, c) : renderDefinition(ctx, b, c);
    if (n === 4 && d === 'edit') return renderEditor(ctx, kind, b, c);
  }
  return notFound(ctx);
}

async function route() {
  const gen = ++generation;
  if (current) {
    current.abort.abort();
    for (const fn of current.cleanups) {
      try {
        fn();
      } catch (e) {
        console.error(e);
      }
    }
  }
  const abort = new AbortController();
  const cleanups = [];
  current = {abort, cleanups};
  const {segs, query} = parseHash();
  const ctx = {
    main,
    query,
    signal: abort.signal,
    me: session.me,
    alive: () => gen === generation,
    onCleanup: (fn) => cleanups.push(fn),
    notify,
    confirm: confirmAction,
    can: (role) => api.allows(session.me, role),
    login(me) {
      session.me = me;
    },
    // ready names the page and moves focus to its heading, for keyboard and screen-reader users.
    ready(title) {
      document.title = title ? `${title} · stepflow` : 'stepflow';
      queueMicrotask(() => {
        const h1 = main.querySelector('h1');
        if (h1 && gen === generation && !main.contains(document.activeElement)) {
          h1.setAttribute('tabindex', '-1');
          h1.focus({preventScroll: true});
        }
      });
    },
  };
  if (segs[0] === 'login') {
    session.me = null;
    renderHeader('login');
    renderLogin(ctx, query.get('next'));
    return;
  }
  if (!session.me) {
    try {
      session.me = await api.get('/whoami', {quiet401: true, signal: abort.signal});
    } catch (e) {
      if (gen !== generation || api.isAbort(e)) return;
      if (e.status === 401) {
        toLogin();
        return;
      }
      renderHeader();
      errorPage(ctx, 'stepflow', e);
      return;
    }
    if (gen !== generation) return;
  }
  ctx.me = session.me;
  renderHeader(segs[0] || 'runs');
  try {
    await dispatch(ctx, segs);
  } catch (e) {
    if (api.isAbort(e) || gen !== generation) return;
    console.error(e);
    errorPage(ctx, 'Something went wrong', e);
  }
}

window.addEventListener('hashchange', route);
document.getElementById('skip').addEventListener('click', () => {
  const h1 = main.querySelector('h1');
  (h1 || main).focus();
});
route();
