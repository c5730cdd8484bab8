// Plugins: the provider plugins lcmd loaded (kind, version, SPI, ops implemented, declared
// configuration) and the files it refused, with the reason.
import { h, replace } from '../dom.js';
import { get } from '../api.js';
import { badge, table, section, errorBox, num, generic } from '../ui.js';

export async function render(root, ctx) {
  const box = h('div');
  const refused = h('div');
  const head = h('p', { class: 'muted' });
  replace(root, h('h1', null, 'Plugins'), head, section('Loaded', box), section('Refused', refused));
  async function load() {
    let doc;
    try {
      doc = await get('/api/v1/plugins');
    } catch (e) {
      replace(box, errorBox(e));
      return;
    }
    head.textContent = `Host SPI ${doc.spi?.major}.${doc.spi?.minor}; plugin directory ${doc.dir || '-'}${doc.dir_error ? ` (${doc.dir_error})` : ''}`;
    replace(box, table(doc.loaded || [], [
      { head: 'Plugin', get: (p) => h('span', null, h('strong', null, p.name), h('br'), h('small', { class: 'muted' }, p.description)) },
      { head: 'Kind', get: (p) => p.kind },
      { head: 'Version', get: (p) => p.version },
      { head: 'SPI', get: (p) => `${p.spi?.major}.${p.spi?.minor}` },
      { head: 'Status', get: (p) => badge(p.status === 'ok' ? 'ok' : 'partial') },
      { head: 'Ops', get: (p) => `${(p.ops || []).filter((o) => o.implemented).length}/${(p.ops || []).length}` },
      { head: 'In flight', get: (p) => num(p.inflight), cls: 'num' },
      { head: 'Details', get: (p) => h('details', null, h('summary', null, 'ops and config'),
        h('h3', null, 'Operations'), table(p.ops || [], [
          { head: 'Op', get: (o) => o.name }, { head: 'Required', get: (o) => (o.required ? 'yes' : 'no') },
          { head: 'Since', get: (o) => o.since }, { head: 'Implemented', get: (o) => (o.implemented ? 'yes' : 'no') }], { caption: `${p.name} operations` }),
        h('h3', null, 'Configuration'), generic(p.config || {})) },
    ], { caption: 'Loaded plugins', rowKey: (p) => p.name, empty: 'No plugin loaded.' }));
    replace(refused, table(doc.refused || [], [
      { head: 'File', get: (r) => h('code', null, r.file) },
      { head: 'Reason', get: (r) => r.reason },
    ], { caption: 'Refused plugin files', empty: 'None refused.' }));
  }
  await load();
  ctx.every(15000, load);
}
