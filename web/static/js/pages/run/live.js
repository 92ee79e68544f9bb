// What keeps the run page current without loading it again: the run's event stream (events
// `run`, `log` and `deleted`, docs/api.md), the indicator saying whether it is connected, and
// the durations that tick while a run or step goes on.

import * as api from '../../api.js';
import {h, between, parseTime} from '../../dom.js';
import {nextRetry} from './logic.js';

// liveStatus is the indicator of the event stream: {el, set(text, cls)}, cls one of on, wait
// and off.
export function liveStatus() {
  const el = h('span', {class: 'live', id: 'live', role: 'status'});
  return {
    el,
    set(text, cls) {
      el.textContent = text;
      el.className = `live ${cls}`;
    },
  };
}

// liveDuration is the duration from start to end; without an end, it grows: startTicker
// rewrites the elements carrying data-since.
export function liveDuration(start, end) {
  const el = h('span', null, between(start, end));
  if (parseTime(start) && !parseTime(end)) el.dataset.since = start;
  return el;
}

// startTicker rewrites the growing durations of the page every second, until it is left.
export function startTicker(ctx) {
  const ticker = setInterval(() => {
    for (const el of ctx.main.querySelectorAll('[data-since]')) el.textContent = between(el.dataset.since, null);
  }, 1000);
  ctx.onCleanup(() => clearInterval(ticker));
}

// follow subscribes to the event stream of the run at path until the page is left. The stream
// starts again with the run and every log entry so far each time it (re)connects, which on.open
// is told first. on: {status(text, cls), open(), run(run), log(entry), deleted()}. When the
// browser gives up on the stream (an answer that was not an event stream), the run is fetched
// to find out why: deleted (404), or else it is shown and the stream tried again, a second
// later each time (at most five). deps replaces the browser's EventSource, setTimeout and
// clearTimeout and the API's url and get, for tests.
export function follow(ctx, path, on, deps = {}) {
  const {EventSource = globalThis.EventSource, setTimeout = globalThis.setTimeout, clearTimeout = globalThis.clearTimeout, url = api.url, get = api.get} = deps;
  let es = null;
  let retry = 0;
  let ended = false;

  const parsed = (what, handle) => (ev) => {
    try {
      handle(JSON.parse(ev.data));
    } catch (e) {
      console.error(`${what} event`, e);
    }
  };

  const gaveUp = async () => {
    on.status('Disconnected', 'off');
    try {
      on.run(await get(path, {signal: ctx.signal}));
    } catch (e) {
      if (api.isAbort(e) || !ctx.alive()) return;
      if (e.status === 404) {
        ended = true;
        on.deleted();
        return;
      }
    }
    const next = nextRetry(retry);
    retry = next.retry;
    const t = setTimeout(() => ctx.alive() && connect(), next.delay);
    ctx.onCleanup(() => clearTimeout(t));
  };

  const connect = () => {
    es = new EventSource(url(`${path}/events`));
    es.addEventListener('open', () => {
      retry = 0;
      on.status('Live', 'on');
      on.open();
    });
    es.addEventListener('run', parsed('run', on.run));
    es.addEventListener('log', parsed('log', on.log));
    es.addEventListener('deleted', () => {
      ended = true;
      es.close();
      on.status('Deleted', 'off');
      on.deleted();
    });
    es.addEventListener('error', () => {
      if (!ctx.alive() || ended) return;
      if (es.readyState !== EventSource.CLOSED) {
        on.status('Reconnecting…', 'wait');
        return;
      }
      gaveUp();
    });
  };

  ctx.onCleanup(() => {
    if (es) es.close();
  });
  on.status('Connecting…', 'wait');
  connect();
}
