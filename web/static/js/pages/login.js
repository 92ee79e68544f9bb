// The login page: a token is exchanged for the session cookies.

import * as api from '../api.js';
import {h, replace} from '../dom.js';

// A `next` route is followed only when it is one of the dashboard's own hash routes.
function safeNext(next) {
  return next && /^#\/[^/]/.test(next) && !next.startsWith('#/login') ? next : '#/runs';
}

export function renderLogin(ctx, next) {
  const input = h('input', {id: 'token', name: 'token', type: 'password', autocomplete: 'off', spellcheck: 'false', required: true, 'aria-describedby': 'token-help login-error'});
  const error = h('p', {id: 'login-error', class: 'error', role: 'alert'});
  const submit = h('button', {type: 'submit', id: 'login-submit'}, 'Sign in');
  const form = h('form', {class: 'login card', novalidate: true},
    h('h1', null, 'Sign in'),
    h('div', {class: 'field'},
      h('label', {for: 'token'}, 'API token'),
      input,
      h('p', {class: 'hint', id: 'token-help'}, 'A token made with ', h('code', null, 'stepflow token create'), ' or given to you by an admin. It is kept in an HttpOnly cookie, not by this page.')),
    error,
    h('div', {class: 'actions'}, submit));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const token = input.value.trim();
    if (!token) {
      error.textContent = 'Enter a token.';
      input.setAttribute('aria-invalid', 'true');
      input.focus();
      return;
    }
    submit.disabled = true;
    error.textContent = '';
    try {
      const me = await api.post('/login', {token}, {quiet401: true, signal: ctx.signal});
      ctx.login(me && me.role ? me : null);
      input.value = '';
      location.hash = safeNext(next);
    } catch (e) {
      if (api.isAbort(e)) return;
      error.textContent = e.status === 401 ? 'That token is not valid.' : `Signing in failed: ${e.message}`;
      input.setAttribute('aria-invalid', 'true');
      input.focus();
      input.select();
    } finally {
      submit.disabled = false;
    }
  });
  ctx.ready('Sign in');
  replace(ctx.main, form);
  input.focus();
}
