// Sessions: a filterable table that follows status changes live, a booking form, and the
// detail of one session (status history, pipeline steps with timings, login URL, score).
import { h, replace } from '../dom.js';
import { get, list, listOptional, post } from '../api.js';
import { badge, table, section, time, kv, errorBox, actionButton, duration, toast, generic } from '../ui.js';

const STATUSES = ['pending', 'scheduled', 'instantiating', 'ready', 'running', 'collecting', 'grading', 'stopping', 'stopped', 'expired', 'archived', 'terminated'];
const STEP_ORDER = ['resolve_lab', 'allocate_ports', 'sync_tags', 'start_lab', 'lds_session', 'mark_ready', 'collect', 'open_grading', 'record_score', 'stop_lab', 'release_lds', 'wipe_lab'];

export async function render(root, ctx, id) {
  if (id) return detail(root, ctx, id);
  const filters = { status: '', q: '' };
  const tableBox = h('div');
  const count = h('p', { class: 'muted', 'aria-live': 'polite', id: 'sessions-count' });
  const status = h('select', { id: 'f-status', name: 'status' }, h('option', { value: '' }, 'any'), STATUSES.map((s) => h('option', { value: s }, s)));
  const q = h('input', { id: 'f-q', name: 'q', type: 'search', placeholder: 'id, definition, worker, reservation, owner' });
  const filterForm = h('form', { class: 'form-row', role: 'search', 'aria-label': 'Filter sessions' },
    h('label', { for: 'f-status' }, 'Status'), status,
    h('label', { for: 'f-q' }, 'Search'), q);
  filterForm.addEventListener('submit', (e) => e.preventDefault());
  let sessions = [];
  const draw = () => {
    const needle = filters.q.toLowerCase();
    const rows = sessions.filter((s) => (!filters.status || s.status === filters.status) &&
      (!needle || [s.id, s.definition_name, s.definition_id, s.worker_id, s.reservation_id, s.owner].some((x) => x && String(x).toLowerCase().includes(needle))));
    rows.sort((a, b) => String(b.created_at || b.timeslot?.start || '').localeCompare(String(a.created_at || a.timeslot?.start || '')));
    count.textContent = `${rows.length} of ${sessions.length} sessions`;
    replace(tableBox, table(rows, [
      { head: 'Session', get: (s) => h('a', { href: `#/sessions/${encodeURIComponent(s.id)}` }, s.id) },
      { head: 'Definition', get: (s) => `${s.definition_name || s.definition_id || '-'}${s.definition_version ? ` ${s.definition_version}` : ''}` },
      { head: 'Status', get: (s) => badge(s.status) },
      { head: 'Worker', get: (s) => s.worker_id },
      { head: 'Start', get: (s) => (s.timeslot?.start ? time(s.timeslot.start) : 'now') },
      { head: 'End', get: (s) => time(s.timeslot?.end) },
      { head: 'Login URL', get: (s) => (s.user_session?.login_url ? h('a', { href: s.user_session.login_url, target: '_blank', rel: 'noopener noreferrer' }, 'open') : '-') },
      { head: 'Score', get: (s) => score(s.score) },
    ], { caption: 'Sessions', rowKey: (s) => s.id, empty: 'No sessions match.' }));
  };
  status.addEventListener('change', () => { filters.status = status.value; draw(); });
  q.addEventListener('input', () => { filters.q = q.value; draw(); });

  const bookBox = h('div');
  replace(root, h('h1', null, 'Sessions'), section('Filter', filterForm, count), section('All sessions', tableBox), section('Book a session', bookBox));

  async function load() {
    try {
      sessions = await list('sessions');
      draw();
    } catch (e) {
      replace(tableBox, errorBox(e));
    }
  }
  await load();
  await bookForm(bookBox, load);
  // A status change patches the one row at once (no refetch needed), then a debounced
  // reload picks up everything else.
  ctx.onEvent((ev) => {
    if (ev.kind !== 'session' || !ev.aggId) return;
    const s = sessions.find((x) => x.id === ev.aggId);
    const to = ev.doc?.data?.to;
    if (s && to && STATUSES.includes(to)) { s.status = to; draw(); }
  });
  ctx.live(['session'], load, 300);
}

function score(sc) {
  if (!sc || sc.score == null) return '-';
  const txt = `${sc.score}${sc.max_score != null ? `/${sc.max_score}` : ''}`;
  return sc.passed == null ? txt : h('span', null, txt, ' ', badge(sc.passed ? 'passed' : 'failed'));
}

async function bookForm(box, reload) {
  const defs = (await listOptional('definitions').catch(() => null)) || [];
  const active = defs.filter((d) => d.status === 'active');
  if (!active.length) {
    replace(box, h('p', { class: 'empty' }, 'No active definition to book.'));
    return;
  }
  const def = h('select', { id: 'book-def', required: true }, active.map((d) => h('option', { value: d.id }, `${d.name} ${d.version || ''}`)));
  const mins = h('input', { id: 'book-min', type: 'number', min: 5, max: 1440, value: 60, required: true });
  const resv = h('input', { id: 'book-resv', placeholder: 'optional' });
  const form = h('form', { class: 'form-row' },
    h('label', { for: 'book-def' }, 'Definition'), def,
    h('label', { for: 'book-min' }, 'Minutes from now'), mins,
    h('label', { for: 'book-resv' }, 'Reservation id'), resv,
    h('button', { type: 'submit', class: 'primary' }, 'Book'));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const now = new Date();
    const end = new Date(now.getTime() + Number(mins.value) * 60000);
    const body = { definition_id: def.value, timeslot: { start: now.toISOString().replace(/\.\d+Z$/, 'Z'), end: end.toISOString().replace(/\.\d+Z$/, 'Z') } };
    if (resv.value) body.reservation_id = resv.value;
    try {
      const s = await post('/api/v1/sessions', body);
      toast(`Booked ${s?.id || ''}`, 'ok');
      reload();
    } catch (err) {
      toast(err.message, 'bad');
    }
  });
  replace(box, form);
}

async function detail(root, ctx, id) {
  const box = h('div');
  replace(root, h('p', null, h('a', { href: '#/sessions' }, '← All sessions')), h('h1', null, 'Session ', h('code', null, id)), box);
  async function load() {
    let s;
    try {
      s = await get(`/api/v1/sessions/${encodeURIComponent(id)}`);
    } catch (e) {
      replace(box, errorBox(e));
      return;
    }
    const url = s.user_session?.login_url;
    const steps = Object.entries(s.pipeline || {}).map(([name, p]) => ({ name, ...p }));
    steps.sort((a, b) => STEP_ORDER.indexOf(a.name) - STEP_ORDER.indexOf(b.name));
    const hist = (s.status_history || []).slice().reverse();
    replace(box,
      h('div', { class: 'grid-2' },
        section('Status',
          h('p', { class: 'big-status' }, h('span', { id: 'session-status' }, badge(s.status)), s.desired_status && s.desired_status !== s.status ? h('span', { class: 'muted' }, ` desired: ${s.desired_status}`) : null),
          kv([
            ['Login URL', url ? h('a', { id: 'login-url', href: url, target: '_blank', rel: 'noopener noreferrer' }, url) : h('span', { class: 'muted', id: 'login-url-pending' }, 'not yet (set when the session is ready)')],
            ['Definition', `${s.definition_name || ''} ${s.definition_version || ''} (${s.definition_id})`],
            ['Timeslot', h('span', null, s.timeslot?.start ? time(s.timeslot.start) : 'now (no start)', ' – ', time(s.timeslot?.end))],
            ['Worker', s.worker_id],
            ['Lab record', s.lab_record_id],
            ['CML lab', s.cml_lab_id],
            ['Reservation', s.reservation_id],
            ['Owner', s.owner],
            ['Ports', s.ports && Object.keys(s.ports).length ? Object.entries(s.ports).map(([k, v]) => `${k}=${v}`).join(', ') : '-'],
            ['LDS session', s.user_session?.lds_session_id],
            ['Grading', s.grading?.status ? `${s.grading.status} (${s.grading.grading_session_id || '-'})` : '-'],
          ]),
          h('div', { class: 'actions' },
            actionButton('Collect and grade', () => post(`/api/v1/sessions/${encodeURIComponent(id)}/collect`).then(load), { ok: 'Collection requested' }),
            actionButton('Terminate', () => post(`/api/v1/sessions/${encodeURIComponent(id)}/terminate`, { reason: 'operator (dashboard)' }).then(load), { ok: 'Termination requested', cls: 'danger', confirm: 'Terminate this session? The learner loses the lab.' }))),
        section('Score', s.score && s.score.score != null ? kv([
          ['Score', `${s.score.score}${s.score.max_score != null ? ` / ${s.score.max_score}` : ''}`],
          ['Cut score', s.score.cut_score],
          ['Result', s.score.passed == null ? '-' : badge(s.score.passed ? 'passed' : 'failed')],
          ['Submitted', time(s.score.submitted_at)],
          ['Sections', s.score.sections?.length ? generic(s.score.sections) : '-'],
        ]) : h('p', { class: 'empty' }, 'Not graded yet.'))),
      section('Pipeline', table(steps, [
        { head: 'Step', get: (p) => p.name },
        { head: 'State', get: (p) => badge(p.state) },
        { head: 'Started', get: (p) => time(p.started_at) },
        { head: 'Ended', get: (p) => time(p.ended_at) },
        { head: 'Took', get: (p) => (p.started_at ? duration(p.started_at, p.ended_at) : '-') },
        { head: 'Attempts', get: (p) => p.attempts },
        { head: 'Error', get: (p) => (p.error ? h('span', { class: 'error' }, p.error) : '-') },
      ], { caption: 'Pipeline steps with timings', rowKey: (p) => p.name, empty: 'No pipeline step has run yet.' })),
      section('Status history', table(hist, [
        { head: 'At', get: (x) => time(x.at) },
        { head: 'From', get: (x) => (x.from ? badge(x.from) : '-') },
        { head: 'To', get: (x) => badge(x.to) },
        { head: 'By', get: (x) => x.by },
        { head: 'Reason', get: (x) => x.reason },
      ], { caption: 'Status history, newest first', empty: 'No status change yet.' })));
  }
  await load();
  ctx.onEvent((ev) => {
    // an immediate badge change for a status event, then the full reload
    if (ev.kind === 'session' && ev.aggId === id && ev.doc?.data?.to) {
      const el = document.getElementById('session-status');
      if (el) replace(el, badge(ev.doc.data.to));
    }
  });
  ctx.live(['session'], (ev) => { if (!ev || ev.aggId === id) load(); }, 150);
}
