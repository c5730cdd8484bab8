// Scheduler: queue (pending sessions in and before the lead window), rejections by reason,
// recent decisions, and a dry-run placement preview for a definition.
import { h, replace } from '../dom.js';
import { get, listOptional, post } from '../api.js';
import { badge, table, section, errorBox, kv, num, time, generic, unavailable, toast } from '../ui.js';

export async function render(root, ctx) {
  const statusBox = h('div');
  const queueBox = h('div');
  const rejBox = h('div');
  const decisionsBox = h('div');
  const previewBox = h('div');
  const previewOut = h('div', { 'aria-live': 'polite', id: 'preview-result' });
  const autoBox = h('div');
  const ctlBox = h('div');
  const fleetBox = h('div');
  replace(root, h('h1', null, 'Scheduler'),
    h('div', { class: 'grid-2' }, section('Status', statusBox), section('Rejections by reason (last cycle)', rejBox)),
    section('Queue', queueBox),
    section('Placement preview', previewBox, previewOut),
    section('Recent decisions', decisionsBox),
    h('div', { class: 'grid-2' }, section('Autoscaler', autoBox), section('Controllers', ctlBox)),
    section('Fleet decisions', fleetBox));

  async function load() {
    try {
      const doc = await get('/api/v1/scheduler');
      // {leader, holder, controllers[], scheduler{…}, autoscaler{…}, fleet_decisions[]}; an
      // older lcmd answered the scheduler object alone
      const st = doc.scheduler || doc;
      replace(autoBox, doc.autoscaler ? generic(doc.autoscaler) : h('p', { class: 'empty' }, 'Not reported.'));
      replace(ctlBox, doc.controllers ? h('div', null,
        h('p', null, doc.leader ? 'This lcmd is the leader' : `Follower; leader: ${doc.holder || '?'}`, doc.fence ? ` (fencing token ${doc.fence})` : ''),
        table(doc.controllers, [
          { head: 'Controller', get: (c) => c.name },
          { head: 'Running', get: (c) => (c.running ? 'yes' : 'no') },
          { head: 'Reconciles', get: (c) => num(c.reconciles), cls: 'num' },
          { head: 'Last', get: (c) => (c.last_reconcile_ms != null ? `${num(c.last_reconcile_ms, 2)} ms` : '-') },
          { head: 'At', get: (c) => time(c.last_reconcile_at) },
        ], { caption: 'Controllers' })) : h('p', { class: 'empty' }, 'Not reported.'));
      replace(fleetBox, generic((doc.fleet_decisions || []).slice(-30).reverse()));
      replace(statusBox, kv([
        ['Queue depth', num(st.queue_depth)],
        ['Placed', num(st.placed)],
        ['Unplaced attempts', num(st.unplaced_attempts)],
        ['Conflicts', num(st.conflicts)],
        ['Backing off', num(st.backing_off)],
        ['Cycles', num(st.cycles)],
        ['Last cycle', st.last_cycle_ms != null ? `${num(st.last_cycle_ms, 1)} ms` : '-'],
        ['Policy', st.policy_mode],
        ['Lead window', st.lead_window_minutes != null ? `${st.lead_window_minutes} min` : '-'],
      ]));
      replace(rejBox, reasons(st.rejections));
      const dec = (st.decisions || []).slice(-30).reverse();
      replace(decisionsBox, table(dec, [
        { head: 'Decision', get: (d) => badge(d.decision) },
        { head: 'Session', get: (d) => (d.session_id ? h('a', { href: `#/sessions/${encodeURIComponent(d.session_id)}` }, d.session_id) : '-') },
        { head: 'Worker', get: (d) => d.worker_id },
        { head: 'Reason', get: (d) => d.reason },
        { head: 'Rejections', get: (d) => (d.rejections && Object.keys(d.rejections).length ? Object.entries(d.rejections).map(([k, v]) => `${k}: ${v}`).join(', ') : '-') },
        { head: 'At', get: (d) => time(d.at) },
      ], { caption: 'Recent scheduler decisions, newest first', empty: 'No decisions yet.' }));
    } catch (e) {
      replace(statusBox, e.status === 404 ? unavailable('Scheduler status') : errorBox(e));
    }
    try {
      const pending = await listOptional('sessions', { status: 'pending' });
      const q = (pending || []).filter((s) => s.status === 'pending');
      q.sort((a, b) => String(a.timeslot?.start || '').localeCompare(String(b.timeslot?.start || '')));
      replace(queueBox, table(q, [
        { head: 'Session', get: (s) => h('a', { href: `#/sessions/${encodeURIComponent(s.id)}` }, s.id) },
        { head: 'Definition', get: (s) => s.definition_name || s.definition_id },
        { head: 'Start', get: (s) => time(s.timeslot?.start) },
        { head: 'Waiting since', get: (s) => time(s.created_at) },
      ], { caption: 'Pending sessions, earliest timeslot first', empty: 'The queue is empty.' }));
    } catch (e) {
      replace(queueBox, errorBox(e));
    }
  }

  const defs = (await listOptional('definitions').catch(() => null)) || [];
  const sel = h('select', { id: 'preview-def', required: true }, defs.filter((d) => d.status !== 'deleted').map((d) => h('option', { value: d.id }, `${d.name} ${d.version || ''} (${d.status})`)));
  const form = h('form', { class: 'form-row' }, h('label', { for: 'preview-def' }, 'Definition'), sel, h('button', { type: 'submit', class: 'primary' }, 'Preview placement'));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    replace(previewOut, h('p', { class: 'loading' }, 'Asking the scheduler…'));
    try {
      const r = await post('/api/v1/scheduler/preview', { definition_id: sel.value });
      replace(previewOut,
        h('p', { class: 'big-status' }, r.worker_id ? ['Would place on ', h('strong', { id: 'preview-worker' }, r.worker_id), r.score != null ? ` (score ${num(r.score, 3)})` : ''] : h('strong', { id: 'preview-worker' }, 'No worker fits now')),
        kv([['Policy', `${r.policy || '-'}${r.policy_generation ? ` generation ${r.policy_generation}` : ''}`], ['Fallback', r.policy_fallback], ['Workers considered', num(r.considered)], ['Passed the filters', num(r.passed)]]),
        h('h3', null, 'Ranked candidates'), generic(r.candidates || []),
        h('h3', null, 'Rejected workers'), table(r.rejected || [], [{ head: 'Worker', get: (x) => x.worker_id }, { head: 'Reason', get: (x) => badge(x.reason) }], { caption: 'Workers rejected by the filters', empty: 'None rejected.' }),
        h('h3', null, 'Rejections by reason'), reasons(r.rejections));
    } catch (err) {
      replace(previewOut, errorBox(err));
      toast(err.message, 'bad');
    }
  });
  replace(previewBox, defs.length ? form : h('p', { class: 'empty' }, 'No definitions to preview.'));
  await load();
  ctx.live(['session', 'worker'], load, 500);
  ctx.every(10000, load);
}

function reasons(obj) {
  const e = Object.entries(obj || {}).sort((a, b) => b[1] - a[1]);
  if (!e.length) return h('p', { class: 'empty' }, 'No rejections.');
  const max = Math.max(...e.map(([, v]) => v));
  return h('ul', { class: 'hbars', 'aria-label': 'Rejections by reason' }, e.map(([k, v]) => h('li', null,
    h('span', { class: 'hbar-label' }, k),
    h('span', { class: 'hbar', 'aria-hidden': 'true' }, h('span', { class: 'hbar-fill', style: `width:${Math.max(2, Math.round((v / max) * 100))}%` })),
    h('span', { class: 'hbar-value' }, num(v)))));
}
