// Dashboard shell: token sign-in (sessionStorage), hash router, one live event stream shared
// by the pages, readiness indicator. Pages are ES modules exporting render(root, ctx, param).
import { getToken, setToken, get } from './api.js';
import { EventStream } from './sse.js';
import { h, replace } from './dom.js';
import { errorBox } from './ui.js';

const pages = {
  fleet: () => import('./pages/fleet.js'),
  sessions: () => import('./pages/sessions.js'),
  definitions: () => import('./pages/definitions.js'),
  labs: () => import('./pages/labs.js'),
  scheduler: () => import('./pages/scheduler.js'),
  policies: () => import('./pages/policies.js'),
  plugins: () => import('./pages/plugins.js'),
};

const main = document.getElementById('main');
const live = document.getElementById('live');
const listeners = new Set();
let stream = null;
let current = { cleanup: null, token: 0 };
const recent = [];   // the last events seen, for pages that show a feed

function setLive(state) {
  const labels = { connecting: 'connecting…', live: 'live', reconnecting: 'reconnecting…', unauthorized: 'not authorised', off: 'offline' };
  live.textContent = labels[state] || state;
  live.className = `pill pill-${state === 'live' ? 'on' : state === 'off' || state === 'unauthorized' ? 'off' : 'wait'}`;
  live.dataset.state = state;
}

function startStream() {
  if (stream) stream.stop();
  stream = new EventStream({
    token: getToken,
    onState: setLive,
    onEvent: (ev) => {
      recent.unshift(ev);
      if (recent.length > 200) recent.pop();
      for (const fn of [...listeners]) {
        try { fn(ev); } catch (e) { console.error(e); }
      }
    },
  });
  stream.start();
}

// Page context: subscriptions made through it end when the page changes.
function makeCtx(token) {
  const subs = [];
  const timers = [];
  const ctx = {
    navigate: (hash) => { location.hash = hash; },
    recent: () => recent.slice(),
    onEvent(fn) {
      const wrapped = (ev) => { if (current.token === token) fn(ev); };
      listeners.add(wrapped);
      subs.push(wrapped);
    },
    // Calls reload (debounced) when an event of one of the kinds arrives.
    live(kinds, reload, delay = 150) {
      let t = null;
      ctx.onEvent((ev) => {
        if (kinds && !kinds.includes(ev.kind)) return;
        clearTimeout(t);
        t = setTimeout(() => { if (current.token === token) reload(ev); }, delay);
        timers.push(t);
      });
    },
    every(ms, fn) {
      const id = setInterval(() => { if (current.token === token) fn(); }, ms);
      timers.push({ interval: id });
    },
    dispose() {
      subs.forEach((s) => listeners.delete(s));
      timers.forEach((t) => (t && t.interval ? clearInterval(t.interval) : clearTimeout(t)));
    },
  };
  return ctx;
}

async function route() {
  if (!getToken()) return showLogin();
  const raw = location.hash.replace(/^#\/?/, '') || 'fleet';
  const [name, ...rest] = raw.split('/');
  const page = pages[name] ? name : 'fleet';
  const param = rest.length ? decodeURIComponent(rest.join('/')) : null;
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.dataset.page === page) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  if (current.ctx) current.ctx.dispose();
  const token = ++current.token;
  const ctx = makeCtx(token);
  current.ctx = ctx;
  replace(main, h('p', { class: 'loading' }, 'Loading…'));
  try {
    const mod = await pages[page]();
    if (token !== current.token) return;
    const root = h('div', { class: 'page', dataset: { page } });
    replace(main, root);
    await mod.render(root, ctx, param);
    document.title = `${root.querySelector('h1')?.textContent || page} · LCM`;
  } catch (e) {
    if (token === current.token) replace(main, errorBox(e));
  }
}

function showLogin(msg) {
  document.getElementById('login').hidden = false;
  main.hidden = true;
  document.getElementById('nav').hidden = true;
  document.getElementById('signout').hidden = true;
  document.getElementById('login-error').textContent = msg || '';
  if (stream) { stream.stop(); stream = null; }
  setLive('off');
  document.getElementById('token-input').focus();
}

function showApp() {
  document.getElementById('login').hidden = true;
  main.hidden = false;
  document.getElementById('nav').hidden = false;
  document.getElementById('signout').hidden = false;
  startStream();
  route();
}

async function readiness() {
  const el = document.getElementById('ready');
  try {
    const r = await fetch('/readyz', { cache: 'no-store' });
    const d = await r.json();
    el.textContent = `${d.status === 'ready' ? 'ready' : 'not ready'}${d.role ? ` · ${d.role}` : ''}`;
    el.className = `pill pill-${d.status === 'ready' ? 'on' : 'wait'}`;
    el.title = `lcmd readiness: ${JSON.stringify(d.checks || {})}${d.holder ? `; leader ${d.holder}` : ''}`;
  } catch {
    el.textContent = 'unreachable';
    el.className = 'pill pill-off';
  }
}

document.getElementById('login-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const t = document.getElementById('token-input').value.trim();
  if (!t) return;
  setToken(t);
  try {
    await get('/api/v1/plugins');   // any read route: checks the token
    document.getElementById('token-input').value = '';
    showApp();
  } catch (err) {
    setToken('');
    showLogin(err.status === 401 ? 'That token was not accepted.' : String(err.message));
  }
});

document.getElementById('signout').addEventListener('click', () => {
  setToken('');
  showLogin();
});

window.addEventListener('lcm:unauthorized', () => {
  setToken('');
  showLogin('The token was refused (expired or revoked). Enter a valid one.');
});
window.addEventListener('hashchange', () => { if (getToken()) route(); });

readiness();
setInterval(readiness, 10000);
if (getToken()) showApp(); else showLogin();
