// Policies: each Lua policy's generation, source (lua or the built-in fallback), fixtures,
// reload/refusal/fallback counts and last error; a reload button (POST /policies/reload).
import { h, replace } from '../dom.js';
import { get, post } from '../api.js';
import { badge, table, section, errorBox, kv, num, time, toast } from '../ui.js';

export async function render(root, ctx) {
  const box = h('div');
  const info = h('div');
  const result = h('p', { id: 'reload-result', role: 'status', 'aria-live': 'polite' });
  const btn = h('button', { type: 'button', class: 'primary', id: 'reload-policies' }, 'Reload policies');
  replace(root, h('h1', null, 'Policies'),
    section('Loaded policies', h('div', { class: 'actions' }, btn, result), box),
    section('Sandbox limits', info));

  function draw(doc) {
    replace(box, table(doc.policies || [], [
      { head: 'Policy', get: (p) => h('span', null, h('strong', null, p.name), h('br'), h('small', { class: 'muted' }, p.file)) },
      { head: 'Source', get: (p) => badge(p.source) },
      { head: 'Generation', get: (p) => h('span', { class: 'generation' }, num(p.generation)), cls: 'num' },
      { head: 'SHA-256', get: (p) => (p.sha256 ? h('code', { title: p.sha256 }, p.sha256.slice(0, 12)) : '-') },
      { head: 'Fixtures', get: (p) => num(p.fixtures), cls: 'num' },
      { head: 'Loaded', get: (p) => time(p.loaded_at) },
      { head: 'Reloads', get: (p) => num(p.reloads), cls: 'num' },
      { head: 'Refusals', get: (p) => num(p.refusals), cls: 'num' },
      { head: 'Fallbacks', get: (p) => num(p.fallbacks), cls: 'num' },
      { head: 'Evaluations', get: (p) => num(p.evaluations), cls: 'num' },
      { head: 'Last error', get: (p) => (p.last_error ? h('span', { class: 'error last-error' }, p.last_error) : h('span', { class: 'muted' }, 'none')) },
    ], { caption: 'Policies', rowKey: (p) => p.name }));
    const l = doc.limits || {};
    replace(info, kv([['Directory', doc.dir], ['Memory cap', l.memory_bytes ? `${num(l.memory_bytes / 1048576, 1)} MiB` : '-'], ['Instruction budget', num(l.instruction_budget)], ['Deadline', l.deadline_ms != null ? `${l.deadline_ms} ms` : '-']]));
  }

  async function load() {
    try {
      draw(await get('/api/v1/policies'));
    } catch (e) {
      replace(box, errorBox(e));
    }
  }

  btn.addEventListener('click', async () => {
    btn.disabled = true;
    result.className = '';
    result.textContent = 'Reloading…';
    try {
      const doc = await post('/api/v1/policies/reload');
      draw(doc);
      const gens = (doc.policies || []).map((p) => `${p.name} ${p.generation}`).join(', ');
      result.textContent = `Reloaded at ${new Date().toLocaleTimeString()}: ${gens}`;
      result.className = 'ok';
      toast('Policies reloaded', 'ok');
    } catch (e) {
      result.textContent = `Reload refused: ${e.message}. The last good policy keeps serving.`;
      result.className = 'error';
      await load();
    } finally {
      btn.disabled = false;
    }
  });

  await load();
  ctx.every(15000, load);
}
