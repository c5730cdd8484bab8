// Lab records (CML labs on workers): status, ports, the session using each, and actions
// (start, stop, wipe, delete) through POST /api/v1/labs/{id}/actions.
import { h, replace } from '../dom.js';
import { listOptional, post } from '../api.js';
import { badge, table, section, errorBox, toast, unavailable, time } from '../ui.js';

const ACTIONS = ['start', 'stop', 'wipe', 'delete'];

export async function render(root, ctx) {
  const box = h('div');
  const filter = h('select', { id: 'labs-status' }, h('option', { value: '' }, 'any'));
  const fForm = h('form', { class: 'form-row', role: 'search', 'aria-label': 'Filter labs' }, h('label', { for: 'labs-status' }, 'Status'), filter);
  fForm.addEventListener('submit', (e) => e.preventDefault());
  replace(root, h('h1', null, 'Labs'), section('Lab records', fForm, box));
  let labs = [];
  const draw = () => {
    const rows = labs.filter((l) => !filter.value || l.status === filter.value);
    replace(box, table(rows, [
      { head: 'Lab', get: (l) => h('span', null, h('strong', null, l.title || l.id), h('br'), h('small', { class: 'muted' }, l.id)) },
      { head: 'Status', get: (l) => h('span', null, badge(l.status), l.pending_action ? h('small', { class: 'muted' }, ` (${l.pending_action} pending)`) : null) },
      { head: 'Worker', get: (l) => l.worker_id },
      { head: 'CML lab', get: (l) => l.cml_lab_id },
      { head: 'Definition', get: (l) => l.definition_id },
      { head: 'Session', get: (l) => (l.active_session_id ? h('a', { href: `#/sessions/${encodeURIComponent(l.active_session_id)}` }, l.active_session_id) : '-') },
      { head: 'Ports', get: (l) => (Array.isArray(l.ports) ? l.ports.map((p) => `${p.name}=${p.port ?? p.number}`).join(', ') : l.ports && typeof l.ports === 'object' ? Object.entries(l.ports).map(([k, v]) => `${k}=${v}`).join(', ') : '-') },
      { head: 'Runs', get: (l) => String((l.runs || []).length), cls: 'num' },
      { head: 'Updated', get: (l) => time(l.updated_at) },
      { head: 'Action', get: (l) => actionCell(l, load) },
    ], { caption: 'Lab records', rowKey: (l) => l.id, empty: 'No lab records.' }));
  };
  filter.addEventListener('change', draw);
  async function load() {
    try {
      const got = await listOptional('labs');
      if (got === null) { replace(box, unavailable('Labs')); return; }
      labs = got;
      const seen = new Set([...filter.options].map((o) => o.value));
      for (const s of new Set(labs.map((l) => l.status))) if (!seen.has(s)) filter.append(h('option', { value: s }, s));
      draw();
    } catch (e) {
      replace(box, errorBox(e));
    }
  }
  await load();
  ctx.live(['lab'], load, 250);
}

function actionCell(l, reload) {
  const id = `lab-act-${l.id}`;
  const sel = h('select', { id, 'aria-label': `Action for lab ${l.title || l.id}` }, ACTIONS.map((a) => h('option', { value: a }, a)));
  const go = h('button', { type: 'button' }, 'Run');
  go.addEventListener('click', async () => {
    if (sel.value === 'delete' && !window.confirm(`Delete lab ${l.title || l.id} from its worker?`)) return;
    go.disabled = true;
    try {
      await post(`/api/v1/labs/${encodeURIComponent(l.id)}/actions`, { action: sel.value });
      toast(`${sel.value} requested for ${l.title || l.id}`, 'ok');
      reload();
    } catch (e) {
      toast(e.message, 'bad');
    } finally {
      go.disabled = false;
    }
  });
  return h('div', { class: 'actions' }, sel, go);
}
