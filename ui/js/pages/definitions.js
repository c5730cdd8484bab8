// Definitions (bookable labs, versioned) and worker templates: tables, status actions, and
// creation from a JSON document (the body of POST /api/v1/definitions or /templates).
import { h, replace } from '../dom.js';
import { listOptional, post } from '../api.js';
import { badge, table, section, errorBox, actionButton, toast, time, num, unavailable } from '../ui.js';

export async function render(root, ctx) {
  const defsBox = h('div');
  const tplBox = h('div');
  replace(root, h('h1', null, 'Definitions and templates'),
    section('Definitions', defsBox, jsonForm('definition', 'New definition (JSON)', '/api/v1/definitions', () => load())),
    section('Worker templates', tplBox, jsonForm('template', 'New template (JSON)', '/api/v1/templates', () => load())));

  async function load() {
    try {
      const defs = await listOptional('definitions');
      replace(defsBox, defs === null ? unavailable('Definitions') : table(defs, [
        { head: 'Name', get: (d) => h('span', null, h('strong', null, d.name), h('br'), h('small', { class: 'muted' }, d.id)) },
        { head: 'Version', get: (d) => d.version },
        { head: 'Status', get: (d) => badge(d.status) },
        { head: 'Nodes', get: (d) => num(d.node_count), cls: 'num' },
        { head: 'Needs', get: (d) => { const r = d.resource_requirements || {}; return `${r.cpu_cores ?? '?'} cpu, ${r.memory_gb ?? '?'} GB${r.cml_version_min ? `, CML ≥ ${r.cml_version_min}` : ''}`; } },
        { head: 'Licence', get: (d) => (d.license_affinity?.length ? d.license_affinity.join(', ') : 'any') },
        { head: 'FQN', get: (d) => d.form_qualified_name },
        { head: 'LDS / grading', get: (d) => `${d.lds_enabled ? 'LDS' : '-'} / ${d.grading_enabled ? 'graded' : '-'}` },
        { head: 'Updated', get: (d) => time(d.updated_at || d.created_at) },
        { head: 'Actions', get: (d) => defActions(d, load) },
      ], { caption: 'Definitions', rowKey: (d) => d.id, empty: 'No definitions.' }));
    } catch (e) {
      replace(defsBox, errorBox(e));
    }
    try {
      const tpls = await listOptional('templates');
      replace(tplBox, tpls === null ? unavailable('Templates') : table(tpls, [
        { head: 'Name', get: (t) => h('strong', null, t.name) },
        { head: 'Instance type', get: (t) => t.instance_type },
        { head: 'Region', get: (t) => t.region },
        { head: 'Licence', get: (t) => t.license_type },
        { head: 'Capacity', get: (t) => { const c = t.capacity || {}; return `${c.cpu_cores ?? '?'} cpu, ${c.memory_gb ?? '?'} GB, ${c.storage_gb ?? '?'} GB disk, ${c.max_nodes ?? '?'} nodes`; } },
        { head: 'Cost per hour', get: (t) => (t.cost_per_hour != null ? `$${num(t.cost_per_hour, 2)}` : '-'), cls: 'num' },
        { head: 'Enabled', get: (t) => (t.enabled ? 'yes' : 'no') },
      ], { caption: 'Worker templates', rowKey: (t) => t.name, empty: 'No templates.' }));
    } catch (e) {
      replace(tplBox, errorBox(e));
    }
  }
  await load();
  ctx.live(['definition', 'template'], load, 250);
}

function defActions(d, reload) {
  const id = encodeURIComponent(d.id);
  const b = [];
  if (d.status !== 'active' && d.status !== 'deleted') b.push(actionButton('Activate', () => post(`/api/v1/definitions/${id}/activate`).then(reload), { ok: `Activated ${d.name}`, aria: `Activate ${d.name} ${d.version}` }));
  if (d.status === 'active') b.push(actionButton('Deactivate', () => post(`/api/v1/definitions/${id}/deactivate`).then(reload), { ok: `Deactivated ${d.name}`, aria: `Deactivate ${d.name} ${d.version}`, confirm: `Deactivate ${d.name} ${d.version}? It can no longer be booked.` }));
  return h('div', { class: 'actions' }, b);
}

function jsonForm(kind, label, path, after) {
  const id = `json-${kind}`;
  const ta = h('textarea', { id, rows: 8, spellcheck: 'false', class: 'code', placeholder: '{ … }' });
  const form = h('form', null, h('label', { for: id }, label), ta, h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, `Create ${kind}`)));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    let body;
    try { body = JSON.parse(ta.value); } catch (err) { toast(`Not valid JSON: ${err.message}`, 'bad'); ta.focus(); return; }
    try {
      await post(path, body);
      toast(`${kind} created`, 'ok');
      ta.value = '';
      after();
    } catch (err) {
      toast(err.message, 'bad');
    }
  });
  return h('details', { class: 'create' }, h('summary', null, label), form);
}
