// Shared widgets: status badges, capacity bars, times, tables, key/value lists, a generic
// renderer for documents whose shape is not fixed, and buttons that call the API.
import { h } from './dom.js';

const GOOD = new Set(['running', 'ready', 'active', 'booted', 'ok', 'lua', 'stopped', 'archived', 'wiped', 'defined', 'completed', 'done', 'passed', 'skipped']);
const BUSY = new Set(['pending', 'provisioning', 'starting', 'scheduled', 'instantiating', 'collecting', 'grading', 'stopping', 'draining', 'importing', 'queued', 'wiping', 'deleting', 'terminating', 'pending_sync', 'started']);
const BAD = new Set(['failed', 'error', 'expired', 'orphaned', 'terminated', 'deleted', 'deprecated', 'builtin', 'refused']);

export function badge(status) {
  const s = status == null || status === '' ? '-' : String(status);
  const tone = GOOD.has(s) ? 'good' : BUSY.has(s) ? 'busy' : BAD.has(s) ? 'bad' : 'neutral';
  return h('span', { class: `badge badge-${tone}`, dataset: { status: s } }, s);
}

export function num(v, digits = 0) {
  if (v == null || Number.isNaN(Number(v))) return '-';
  return Number(v).toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

// A capacity bar: used of total, with the numbers in text (the bar is decoration).
export function bar(used, total, label, unit = '') {
  const u = Number(used) || 0;
  const t = Number(total) || 0;
  const pct = t > 0 ? Math.min(100, Math.round((u / t) * 100)) : 0;
  const tone = pct >= 90 ? 'hot' : pct >= 70 ? 'warm' : 'cool';
  const text = `${num(u)}/${num(t)}${unit}`;
  return h('div', { class: 'bar-cell' },
    h('div', { class: 'bar', role: 'meter', 'aria-label': `${label} used`, 'aria-valuemin': 0, 'aria-valuemax': t, 'aria-valuenow': u, 'aria-valuetext': `${text} (${pct}%)` },
      h('span', { class: `bar-fill bar-${tone}`, style: `width:${pct}%` })),
    h('span', { class: 'bar-text' }, text));
}

export function fmtTime(t) {
  if (!t) return '-';
  const d = new Date(t);
  if (Number.isNaN(d.getTime())) return String(t);
  return d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z').replace(/:\d\dZ$/, (m) => m);
}

export function ago(t) {
  if (!t) return '';
  const s = Math.round((Date.now() - new Date(t).getTime()) / 1000);
  if (Number.isNaN(s)) return '';
  const a = Math.abs(s);
  const v = a < 60 ? `${a}s` : a < 3600 ? `${Math.round(a / 60)} min` : a < 86400 ? `${Math.round(a / 3600)} h` : `${Math.round(a / 86400)} d`;
  return s >= 0 ? `${v} ago` : `in ${v}`;
}

export function time(t) {
  if (!t) return '-';
  return h('time', { datetime: t, title: ago(t) }, fmtTime(t));
}

export function duration(a, b) {
  if (!a) return '-';
  const ms = (b ? new Date(b) : new Date()) - new Date(a);
  if (Number.isNaN(ms)) return '-';
  const s = ms / 1000;
  const txt = s < 10 ? `${s.toFixed(1)} s` : s < 120 ? `${Math.round(s)} s` : `${(s / 60).toFixed(1)} min`;
  return b ? txt : `${txt} (running)`;
}

export function path(o, p) {
  return p.split('.').reduce((x, k) => (x == null ? undefined : x[k]), o);
}

// cols: [{head, get(row) -> node|string, cls?}], opts: {caption, rowKey, empty, rowClass}
export function table(rows, cols, opts = {}) {
  if (!rows || rows.length === 0) return h('p', { class: 'empty' }, opts.empty || 'None.');
  const t = h('table', { class: 'data' },
    opts.caption ? h('caption', { class: opts.captionVisible ? '' : 'sr-only' }, opts.caption) : null,
    h('thead', null, h('tr', null, cols.map((c) => h('th', { scope: 'col', class: c.cls }, c.head)))),
    h('tbody', null, rows.map((r) => h('tr', { dataset: opts.rowKey ? { id: opts.rowKey(r) } : null, class: opts.rowClass ? opts.rowClass(r) : null },
      cols.map((c, i) => {
        let v = c.get(r);
        if (v === undefined || v === null || v === '') v = '-';
        return i === 0 && opts.rowHeader !== false ? h('th', { scope: 'row', class: c.cls }, v) : h('td', { class: c.cls }, v);
      })))));
  return h('div', { class: 'table-wrap', tabindex: 0, role: 'region', 'aria-label': opts.caption || 'table' }, t);
}

export function kv(pairs) {
  return h('dl', { class: 'kv' }, pairs.filter(Boolean).map(([k, v]) => [h('dt', null, k), h('dd', null, v === undefined || v === null || v === '' ? '-' : v)]));
}

function scalar(v) {
  if (v === null || v === undefined) return '-';
  if (typeof v === 'boolean') return v ? 'yes' : 'no';
  if (typeof v === 'string' && /^\d{4}-\d\d-\d\dT\d\d:\d\d/.test(v)) return time(v);
  return String(v);
}

// Renders any JSON value readably: objects as definition lists, arrays of objects as
// tables (union of keys), arrays of scalars comma-joined.
export function generic(v, depth = 0) {
  if (v === null || typeof v !== 'object') return scalar(v);
  if (Array.isArray(v)) {
    if (v.length === 0) return h('span', { class: 'muted' }, 'none');
    if (v.every((x) => x === null || typeof x !== 'object')) return v.map(scalar).reduce((a, b) => [a, ', ', b]);
    const keys = [...new Set(v.flatMap((x) => (x && typeof x === 'object' ? Object.keys(x) : [])))].slice(0, 10);
    return table(v, keys.map((k) => ({ head: k, get: (r) => (r && typeof r[k] === 'object' && r[k] !== null ? generic(r[k], depth + 1) : scalar(r ? r[k] : null)) })), { rowHeader: false });
  }
  const entries = Object.entries(v);
  if (entries.length === 0) return h('span', { class: 'muted' }, 'none');
  return h('dl', { class: depth ? 'kv kv-nested' : 'kv' }, entries.map(([k, x]) => [h('dt', null, k), h('dd', null, generic(x, depth + 1))]));
}

export function section(title, ...children) {
  const id = `s-${title.toLowerCase().replace(/[^a-z0-9]+/g, '-')}`;
  return h('section', { class: 'card', 'aria-labelledby': id }, h('h2', { id }, title), children);
}

export function errorBox(e) {
  return h('div', { class: 'error-box', role: 'alert' }, h('strong', null, 'Error: '), String(e && e.message ? e.message : e));
}

export function toast(msg, tone = 'info') {
  const t = document.getElementById('toast');
  if (!t) return;
  t.textContent = msg;
  t.className = `toast toast-${tone} show`;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.className = 'toast'; }, 5000);
}

// A button that runs an async action, disables itself meanwhile, and reports the result.
export function actionButton(label, fn, opts = {}) {
  const b = h('button', { type: 'button', class: opts.cls || '', 'aria-label': opts.aria || null }, label);
  b.addEventListener('click', async () => {
    if (opts.confirm && !window.confirm(opts.confirm)) return;
    b.disabled = true;
    try {
      const r = await fn();
      if (opts.ok) toast(typeof opts.ok === 'function' ? opts.ok(r) : opts.ok, 'ok');
    } catch (e) {
      toast(String(e.message || e), 'bad');
      if (opts.onError) opts.onError(e);
    } finally {
      b.disabled = false;
    }
  });
  return b;
}

export function unavailable(what) {
  return h('p', { class: 'notice' }, `${what}: this lcmd does not serve that route yet.`);
}
