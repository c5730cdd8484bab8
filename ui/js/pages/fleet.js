// Fleet overview: workers by status and region, capacity used vs declared per worker, cost
// per hour, and a timeline of scale events (worker creations and status changes).
import { h, replace } from '../dom.js';
import { get, list, listOptional, post } from '../api.js';
import { badge, bar, table, section, time, errorBox, actionButton, toast, num, unavailable, ago, generic } from '../ui.js';

const LIVE_STATES = new Set(['pending', 'provisioning', 'starting', 'running', 'draining', 'stopping']);
const TERMINAL_SESSION = new Set(['stopped', 'expired', 'archived', 'terminated']);

function countBy(items, f) {
  const m = new Map();
  for (const x of items) m.set(f(x), (m.get(f(x)) || 0) + 1);
  return [...m.entries()].sort((a, b) => b[1] - a[1]);
}

function timeline(workers) {
  const ev = [];
  for (const w of workers) {
    const name = w.name || w.id;
    if (w.created_at) ev.push({ at: w.created_at, worker: w, text: `${name} created (${w.origin || 'manual'}, ${w.template || '?'}, ${w.region || '?'})`, kind: w.origin === 'scale_up' ? 'up' : 'info' });
    for (const s of w.status_history || []) {
      const down = ['draining', 'stopping', 'stopped', 'terminating', 'terminated'].includes(s.to);
      ev.push({ at: s.at, worker: w, text: `${name}: ${s.from || '∅'} → ${s.to}${s.reason ? ` (${s.reason})` : ''}`, kind: down ? 'down' : s.to === 'failed' ? 'bad' : 'info' });
    }
  }
  ev.sort((a, b) => String(b.at).localeCompare(String(a.at)));
  return ev.slice(0, 40);
}

export async function render(root, ctx) {
  const summary = h('div', { class: 'summary', 'aria-live': 'polite' });
  const byStatus = h('div');
  const byRegion = h('div');
  const workersBox = h('div');
  const timelineBox = h('div');
  const createBox = h('div');
  replace(root,
    h('h1', null, 'Fleet'),
    summary,
    h('div', { class: 'grid-2' }, section('Workers by status', byStatus), section('Workers by region', byRegion)),
    section('Workers', workersBox),
    h('div', { class: 'grid-2' }, section('Scale events', timelineBox), section('Add a worker', createBox)));

  let templates = [];
  async function load() {
    let workers;
    try {
      workers = await list('workers');
    } catch (e) {
      replace(workersBox, errorBox(e));
      return;
    }
    templates = (await listOptional('templates').catch(() => null)) || [];
    const sessions = (await listOptional('sessions').catch(() => null)) || [];
    const cost = new Map(templates.map((t) => [t.name, Number(t.cost_per_hour ?? t.cost_per_hour_usd ?? 0)]));
    const billable = workers.filter((w) => LIVE_STATES.has(w.status));
    const perHour = billable.reduce((s, w) => s + (cost.get(w.template) || 0), 0);
    const activeSessions = sessions.filter((s) => !TERMINAL_SESSION.has(s.status)).length;
    const running = workers.filter((w) => w.status === 'running').length;
    replace(summary,
      stat('Workers', num(workers.length), 'workers-total'),
      stat('Running', num(running), 'workers-running'),
      stat('Cost per hour', `$${num(perHour, 2)}`, 'cost-per-hour', `${billable.length} billable workers (not stopped or terminated) at their template's cost_per_hour`),
      stat('Active sessions', num(activeSessions), 'sessions-active'));
    replace(byStatus, chips(countBy(workers, (w) => w.status)));
    const regions = countBy(workers, (w) => w.region || '-');
    replace(byRegion, table(regions.map(([r, n]) => ({ r, n, w: workers.filter((w) => (w.region || '-') === r) })), [
      { head: 'Region', get: (x) => x.r },
      { head: 'Workers', get: (x) => num(x.n), cls: 'num' },
      { head: 'Running', get: (x) => num(x.w.filter((w) => w.status === 'running').length), cls: 'num' },
      { head: 'CPU used', get: (x) => bar(sum(x.w, 'allocated.cpu_cores'), sum(x.w, 'declared.cpu_cores'), `CPU in ${x.r}`) },
    ], { caption: 'Workers per region', empty: 'No workers.' }));
    replace(workersBox, table(workers, [
      { head: 'Worker', get: (w) => h('span', null, h('strong', null, w.name || w.id), h('br'), h('small', { class: 'muted' }, w.id)) },
      { head: 'Region', get: (w) => w.region },
      { head: 'Template', get: (w) => w.template },
      { head: 'Status', get: (w) => h('span', null, badge(w.status), w.desired_status && w.desired_status !== w.status ? h('small', { class: 'muted' }, ` → ${w.desired_status}`) : null) },
      { head: 'CML', get: (w) => (w.cml ? `${w.cml.ready ? 'ready' : 'not ready'}${w.cml.version ? ` ${w.cml.version}` : ''}` : '-') },
      { head: 'CPU', get: (w) => bar(w.allocated?.cpu_cores, w.declared?.cpu_cores, 'CPU cores') },
      { head: 'Memory', get: (w) => bar(w.allocated?.memory_gb, w.declared?.memory_gb, 'Memory', ' GB') },
      { head: 'Nodes', get: (w) => bar(w.allocated?.nodes, w.declared?.max_nodes ?? w.license?.node_limit, 'Nodes') },
      { head: 'Sessions', get: (w) => num((w.sessions || []).length), cls: 'num' },
      { head: 'Actions', get: (w) => workerActions(w, load) },
    ], { caption: 'Workers with capacity used versus declared', rowKey: (w) => w.id, empty: 'No workers yet. Book a session (the autoscaler adds one) or add a worker below.' }));
    const ev = timeline(workers);
    // the autoscaler's own record of its decisions (taken or skipped, with the reason)
    const sched = await get('/api/v1/scheduler').catch(() => null);
    const fd = (sched && sched.fleet_decisions) || [];
    replace(timelineBox,
      ev.length ? h('ol', { class: 'timeline', 'aria-label': 'Worker creations and status changes, newest first' }, ev.map((e) => h('li', { class: `tl-${e.kind}` }, time(e.at), ' ', h('span', null, e.text)))) : h('p', { class: 'empty' }, 'No scale events yet.'),
      fd.length ? h('details', null, h('summary', null, `Autoscaler decisions (${fd.length})`), generic(fd.slice(-20).reverse())) : null);
    renderCreate();
  }

  function renderCreate() {
    // rebuilt only when the templates change, so typing is never interrupted by a refresh
    const sig = templates.map((t) => t.name).join(',');
    if (createBox.dataset.sig === sig && createBox.firstChild) return;
    createBox.dataset.sig = sig;
    const tpl = h('select', { id: 'new-worker-template', name: 'template', required: true }, templates.map((t) => h('option', { value: t.name }, `${t.name} (${t.instance_type || '?'}, ${t.license_type || '?'})`)));
    const region = h('input', { id: 'new-worker-region', name: 'region', required: true, value: templates[0]?.region || 'us-east-1' });
    const name = h('input', { id: 'new-worker-name', name: 'name', placeholder: 'optional' });
    const form = h('form', { class: 'form-row' },
      h('label', { for: 'new-worker-template' }, 'Template'), tpl,
      h('label', { for: 'new-worker-region' }, 'Region'), region,
      h('label', { for: 'new-worker-name' }, 'Name'), name,
      h('button', { type: 'submit', class: 'primary' }, 'Add worker'));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      try {
        const body = { template: tpl.value, region: region.value };
        if (name.value) body.name = name.value;
        const w = await post('/api/v1/workers', body);
        toast(`Worker ${w?.name || w?.id || ''} requested`, 'ok');
        load();
      } catch (err) {
        toast(err.message, 'bad');
      }
    });
    replace(createBox, templates.length ? form : unavailable('No worker templates'), h('p', { class: 'muted' }, 'Normally the autoscaler adds workers when bookings need them.'));
  }

  await load();
  ctx.live(['worker', 'session', 'template'], load, 250);
  ctx.every(30000, load);   // refreshes the relative times and anything missed
}

function sum(ws, p) {
  return ws.reduce((s, w) => s + (Number(p.split('.').reduce((x, k) => x?.[k], w)) || 0), 0);
}

function stat(label, value, id, title) {
  return h('div', { class: 'stat', title }, h('span', { class: 'stat-label', id: `${id}-label` }, label), h('span', { class: 'stat-value', id, 'aria-labelledby': `${id}-label ${id}` }, value));
}

function chips(pairs) {
  if (!pairs.length) return h('p', { class: 'empty' }, 'No workers.');
  return h('ul', { class: 'chips' }, pairs.map(([s, n]) => h('li', null, badge(s), ' ', h('strong', null, num(n)))));
}

function workerActions(w, reload) {
  const id = encodeURIComponent(w.id);
  const out = [];
  if (w.status === 'running') out.push(actionButton('Drain', () => post(`/api/v1/workers/${id}/drain`, { reason: 'operator (dashboard)' }).then(reload), { ok: `Draining ${w.name || w.id}`, confirm: `Drain ${w.name || w.id}? No new sessions will be placed on it.`, aria: `Drain ${w.name || w.id}` }));
  if (w.status === 'draining') out.push(actionButton('Cancel drain', () => post(`/api/v1/workers/${id}/cancel-drain`).then(reload), { ok: 'Drain cancelled', aria: `Cancel drain of ${w.name || w.id}` }));
  if (w.status === 'stopped') out.push(actionButton('Start', () => post(`/api/v1/workers/${id}/start`).then(reload), { ok: 'Start requested', aria: `Start ${w.name || w.id}` }));
  return out.length ? h('div', { class: 'actions' }, out) : h('span', { class: 'muted' }, w.last_activity_at ? `active ${ago(w.last_activity_at)}` : '');
}
