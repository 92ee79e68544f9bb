// The client of the REST API (docs/api.md) on the page's own origin. The session is the
// HttpOnly cookie set by login; every request that changes something carries the CSRF header
// from the readable cookie `stepflow_csrf`.

export const API = 'api/v1';

// ApiError is an answer that was not 2xx: status, message and the problems of a 400.
export class ApiError extends Error {
  constructor(status, message, problems) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.problems = Array.isArray(problems) ? problems : [];
  }
}

let unauthorized = () => {};

// onUnauthorized sets what happens when any call answers 401 (the app goes to the login page).
export function onUnauthorized(fn) {
  unauthorized = fn;
}

// cookie answers the value of the named cookie, or ''.
export function cookie(name) {
  for (const part of document.cookie.split(';')) {
    const i = part.indexOf('=');
    if (i < 0) continue;
    if (part.slice(0, i).trim() === name) {
      try {
        return decodeURIComponent(part.slice(i + 1).trim());
      } catch {
        return part.slice(i + 1).trim();
      }
    }
  }
  return '';
}

// url builds the address of an API path with its query, leaving out empty query values.
export function url(path, query) {
  const u = new URL(API + path, document.baseURI);
  if (query) {
    for (const [k, v] of Object.entries(query)) {
      if (v === undefined || v === null || v === '') continue;
      u.searchParams.set(k, String(v));
    }
  }
  return u.toString();
}

// request calls the API. opts: body (sent as JSON), yaml (a string sent as application/yaml),
// query, signal, quiet401 (a 401 is only thrown, the app does not go to login).
export async function request(method, path, opts = {}) {
  const headers = {Accept: 'application/json'};
  let payload;
  if (opts.yaml !== undefined) {
    headers['Content-Type'] = 'application/yaml';
    payload = opts.yaml;
  } else if (opts.body !== undefined) {
    headers['Content-Type'] = 'application/json';
    payload = JSON.stringify(opts.body);
  }
  if (method !== 'GET' && method !== 'HEAD') {
    const csrf = cookie('stepflow_csrf');
    if (csrf) headers['X-CSRF-Token'] = csrf;
  }
  let res;
  try {
    res = await fetch(url(path, opts.query), {
      method,
      headers,
      body: payload,
      credentials: 'same-origin',
      signal: opts.signal,
    });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, `The server could not be reached (${e.message}).`);
  }
  const text = await res.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (res.ok) return data;
  const err = (data && typeof data === 'object' && data.error) || {};
  const message = err.message || (typeof data === 'string' && data.trim()) || `${res.status} ${res.statusText}`;
  const e = new ApiError(res.status, message, err.problems);
  if (res.status === 401 && !opts.quiet401) unauthorized(e);
  throw e;
}

export const get = (path, opts) => request('GET', path, opts);
export const post = (path, body, opts = {}) => request('POST', path, {...opts, body});
export const del = (path, opts) => request('DELETE', path, opts);

// runPath is the API path of a run.
export function runPath(ns, name) {
  return `/runs/${encodeURIComponent(ns)}/${encodeURIComponent(name)}`;
}

// objPath is the API path of a template or definition: kind 'templates' or 'definitions'.
export function objPath(kind, ns, name) {
  return `/${kind}/${encodeURIComponent(ns)}/${encodeURIComponent(name)}`;
}

// isAbort tells an aborted request (the page was left) from a failure.
export function isAbort(e) {
  return e && e.name === 'AbortError';
}

const RANK = {viewer: 1, operator: 2, admin: 3};

// allows says whether a role may act as least: allows(me, 'operator').
export function allows(me, least) {
  return !!me && (RANK[me.role] || 0) >= RANK[least];
}
