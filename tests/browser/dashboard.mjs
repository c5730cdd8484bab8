// Dashboard end-to-end tests in headless Chromium (Debian's /usr/bin/chromium driven by
// playwright-core) against a live lcmd started by test_dashboard.py. Env: LCM_URL, LCM_TOKEN,
// LCM_ARTIFACTS (screenshots), LCM_TOPOLOGY (a CML topology file for the seed definition).
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const BASE = process.env.LCM_URL;
const TOKEN = process.env.LCM_TOKEN;
const ART = process.env.LCM_ARTIFACTS || path.join(path.dirname(new URL(import.meta.url).pathname), 'artifacts');
const WAIT_AUTOSCALER_MS = Number(process.env.LCM_WAIT_AUTOSCALER_MS || 20000);
const WAIT_PIPELINE_MS = Number(process.env.LCM_WAIT_PIPELINE_MS || 15000);
fs.mkdirSync(ART, { recursive: true });

const notes = [];
function note(msg) { notes.push(msg); console.log(`note: ${msg}`); }
function check(cond, msg) { if (!cond) throw new Error(msg); }

async function api(method, p, body) {
  const r = await fetch(BASE + p, {
    method,
    headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json', Accept: 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  let doc = null;
  try { doc = text ? JSON.parse(text) : null; } catch { doc = text; }
  return { status: r.status, doc };
}

async function must(method, p, body, ok = [200, 201, 202]) {
  const r = await api(method, p, body);
  check(ok.includes(r.status), `${method} ${p} -> ${r.status} ${JSON.stringify(r.doc)}`);
  return r.doc;
}

// Polls with page.evaluate (CDP, not subject to the page's CSP) rather than waitForFunction,
// which compiles its predicate inside the page and is refused by lcmd's CSP (no unsafe-eval):
// the dashboard is tested under the same policy it ships with.
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function until(fn, ms, what) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    last = await fn();
    if (last) return last;
    await sleep(200);
  }
  throw new Error(`timed out waiting for ${what}`);
}

// ---- seed data through the API ------------------------------------------------------------
async function seed() {
  const topo = fs.readFileSync(process.env.LCM_TOPOLOGY, 'utf8');
  await must('POST', '/api/v1/templates', {
    name: 'multi-sessions', instance_type: 'm5zn.metal', region: 'us-east-1', ami_name_pattern: process.env.LCM_AMI_PATTERN || 'cisco-cml2.9-lablet-*',
    capacity: { cpu_cores: 48, memory_gb: 192, storage_gb: 256, max_nodes: 200 }, license_type: 'enterprise',
    cost_per_hour: 3.9641, enabled: true,
  }, [200, 201, 409]);
  const def = await must('POST', '/api/v1/definitions', {
    name: 'TEST-LAB', version: '1.1.0', form_qualified_name: 'Exam Associate AUTO v1.1 LAB TEST-LAB-1.1', topology: topo,
    resource_requirements: { cpu_cores: 4, memory_gb: 8, storage_gb: 10 }, node_count: 3, lds_enabled: true, grading_enabled: false,
  });
  await must('POST', `/api/v1/definitions/${encodeURIComponent(def.id)}/activate`, undefined, [200, 202]);
  return def;
}

// ---- browser --------------------------------------------------------------------------------
const external = [];
const problems = [];

async function openBrowser(viewport) {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'lcm-chromium-'));
  const ctx = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.LCM_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    viewport,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--no-first-run', '--disable-dev-shm-usage'],
  });
  const base = new URL(BASE);
  // The dashboard must not reach beyond its lcmd: anything else is recorded and refused.
  await ctx.route('**/*', (route) => {
    const u = new URL(route.request().url());
    if (u.host === base.host || u.protocol === 'data:' || u.protocol === 'blob:') return route.continue();
    external.push(u.href);
    return route.abort();
  });
  const page = ctx.pages()[0] || await ctx.newPage();
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) problems.push(`console: ${m.text()}`); });
  return { ctx, page, profile };
}

async function shot(page, name) {
  const f = path.join(ART, `${name}.png`);
  await page.screenshot({ path: f, fullPage: true });
  console.log(`screenshot ${f}`);
}

// Every form control has an accessible name (label[for], aria-label or a wrapping label).
async function checkLabels(page, where) {
  const missing = await page.evaluate(() => [...document.querySelectorAll('main input, main select, main textarea, #login input')]
    .filter((el) => !el.closest('[hidden]'))
    .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label') && !el.getAttribute('aria-labelledby'))
    .map((el) => el.id || el.name || el.outerHTML.slice(0, 60)));
  check(missing.length === 0, `${where}: form controls without a label: ${missing.join(', ')}`);
}

async function login(page) {
  await page.goto(BASE + '/');
  await page.waitForSelector('#login-form', { state: 'visible' });
  await checkLabels(page, 'login');
  await shot(page, 'login');
  // wrong token: refused with a message, nothing stored
  await page.fill('#token-input', 'not-a-valid-token');
  await page.click('button[type=submit]');
  await until(() => page.evaluate(() => document.getElementById('login-error').textContent.length > 0), 10000, 'the login error');
  check(await page.evaluate(() => sessionStorage.getItem('lcm.token')) === null, 'a refused token was kept');
  await page.fill('#token-input', TOKEN);
  await page.keyboard.press('Enter');   // keyboard submit
  await page.waitForSelector('#nav', { state: 'visible' });
  await page.waitForSelector('#login', { state: 'hidden' });
  await page.waitForSelector('#live[data-state=live]', { timeout: 10000 });
}

const tests = [];
const test = (name, fn) => tests.push({ name, fn });
let def;
let page;
let sessionId;

test('login keeps the token in sessionStorage and goes live', async () => {
  await login(page);
  check(await page.evaluate(() => sessionStorage.getItem('lcm.token')) === TOKEN, 'token not in sessionStorage');
  // a reload keeps the session (same tab)
  await page.reload();
  await page.waitForSelector('#live[data-state=live]', { timeout: 10000 });
});

test('fleet page shows a worker appearing after a booking, without a reload', async () => {
  await page.goto(BASE + '/#/fleet');
  await page.waitForSelector('h1:text("Fleet")');
  await page.waitForSelector('#workers-total');
  await page.evaluate(() => { window.__noReload = 1; });
  const before = await page.$$eval('tr[data-id]', (rows) => rows.map((r) => r.dataset.id));
  await shot(page, 'fleet-empty');
  const s = await must('POST', '/api/v1/sessions', { definition_id: def.id, reservation_id: `browser-${Date.now()}` });
  sessionId = s.id;
  let workerId = null;
  try {
    workerId = await until(async () => {
      const ids = await page.$$eval('tr[data-id]', (rows) => rows.map((r) => r.dataset.id));
      return ids.find((i) => !before.includes(i)) || null;
    }, WAIT_AUTOSCALER_MS, 'the autoscaler to add a worker');
    note(`the autoscaler added worker ${workerId} after the booking`);
  } catch {
    note(`no worker appeared within ${WAIT_AUTOSCALER_MS} ms of the booking (autoscaler not running here): creating one through the API`);
    const w = await must('POST', '/api/v1/workers', { template: 'multi-sessions', region: 'us-east-1', name: 'browser-w1' });
    workerId = w.id;
    await page.waitForSelector(`tr[data-id="${workerId}"]`, { timeout: 10000 });
  }
  check(await page.evaluate(() => window.__noReload === 1), 'the page reloaded');
  const row = page.locator(`tr[data-id="${workerId}"]`);
  check((await row.locator('[role=meter]').count()) === 3, 'capacity bars missing on the worker row');
  const total = Number((await page.textContent('#workers-total')).replace(/\D/g, ''));
  check(total >= before.length + 1, `workers total ${total}`);
  await until(() => page.evaluate(() => document.querySelectorAll('.timeline li').length > 0), 5000, 'scale events');
  await shot(page, 'fleet');
});

test('a session changes status live to ready and shows the login URL', async () => {
  await page.goto(BASE + `/#/sessions/${encodeURIComponent(sessionId)}`);
  await page.waitForSelector('#session-status');
  await page.evaluate(() => { window.__noReload = 1; });
  const status = async () => (await api('GET', `/api/v1/sessions/${encodeURIComponent(sessionId)}`)).doc;
  let s = await status();
  const t0 = Date.now();
  while (s.status !== 'ready' && Date.now() - t0 < WAIT_PIPELINE_MS) {
    await sleep(300);
    s = await status();
  }
  check(s.status === 'ready', `session never became ready (status ${s.status})`);
  await page.waitForSelector('#session-status [data-status="ready"]', { timeout: 10000 });
  check(await page.evaluate(() => window.__noReload === 1), 'the page reloaded');
  const hist = await page.locator('table:has(caption:text("Status history")) tbody tr').count();
  check(hist >= 1, 'status history empty');
  check(s.user_session && s.user_session.login_url, 'ready without a login_url');
  await page.waitForSelector('#login-url', { timeout: 10000 });
  check(await page.getAttribute('#login-url', 'href') === s.user_session.login_url, 'login URL differs from the API');
  await shot(page, 'session-ready');
  await page.goto(BASE + '/#/sessions');
  await page.waitForSelector(`tr[data-id="${sessionId}"]`);
  await page.selectOption('#f-status', 'ready');
  await page.waitForSelector(`tr[data-id="${sessionId}"]`);
  await page.selectOption('#f-status', 'pending');
  await page.waitForSelector(`tr[data-id="${sessionId}"]`, { state: 'detached' });
  await page.selectOption('#f-status', '');
  await checkLabels(page, 'sessions');
  await shot(page, 'sessions');
});

test('policies reload from the page', async () => {
  await page.goto(BASE + '/#/policies');
  await page.waitForSelector('tr[data-id="placement"] .generation');
  const gen = Number(await page.textContent('tr[data-id="placement"] .generation'));
  await page.focus('#reload-policies');
  await page.keyboard.press('Enter');
  await until(() => page.evaluate(() => /Reloaded/.test(document.getElementById('reload-result').textContent)), 10000, 'the reload result');
  const gen2 = Number(await page.textContent('tr[data-id="placement"] .generation'));
  check(gen2 > gen, `generation ${gen} -> ${gen2}`);
  const api2 = await must('GET', '/api/v1/policies');
  check(api2.policies.find((p) => p.name === 'placement').generation === gen2, 'page and API disagree');
  await shot(page, 'policies');
});

test('every page renders without errors, labelled, at laptop and wide-screen sizes', async () => {
  for (const p of ['definitions', 'labs', 'scheduler', 'plugins', 'fleet']) {
    await page.goto(BASE + `/#/${p}`);
    await page.waitForSelector(`.page[data-page="${p}"] h1`);
    // (no 'networkidle': the event stream keeps a request open for good)
    await until(() => page.evaluate(() => !document.querySelector('main .loading')), 10000, `${p} loaded`);
    await sleep(300);
    const err = await page.$('.error-box');
    check(!err, `${p}: ${err ? await err.textContent() : ''}`);
    await checkLabels(page, p);
    await shot(page, p === 'fleet' ? 'fleet-laptop' : p);
  }
  await page.goto(BASE + '/#/scheduler');
  await page.waitForSelector('#preview-def');
  await page.click('text=Preview placement');
  await page.waitForSelector('#preview-worker', { timeout: 10000 });
  await shot(page, 'scheduler-preview');
  // no horizontal overflow of the page itself at laptop width (tables scroll inside)
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  check(overflow <= 1, `page overflows horizontally by ${overflow}px at laptop width`);
  // the skip link is the first stop of the keyboard on a freshly loaded page
  await page.reload();
  await page.waitForSelector('.page[data-page="scheduler"] h1');
  await page.keyboard.press('Tab');
  check(await page.evaluate(() => document.activeElement.classList.contains('skip')), 'skip link is not first in tab order');
});

async function main() {
  def = await seed();
  const laptop = await openBrowser({ width: 1366, height: 768 });
  page = laptop.page;
  let failed = 0;
  for (const t of tests) {
    const t0 = Date.now();
    try {
      await t.fn();
      console.log(`ok   ${t.name} (${((Date.now() - t0) / 1000).toFixed(2)}s)`);
    } catch (e) {
      failed++;
      console.log(`FAIL ${t.name}: ${e.stack || e}`);
      await shot(page, `failure-${tests.indexOf(t)}`).catch(() => {});
    }
  }
  await laptop.ctx.close();
  // wide screen: the fleet and sessions pages
  const wide = await openBrowser({ width: 2560, height: 1440 });
  try {
    await wide.page.goto(BASE + '/');
    await wide.page.fill('#token-input', TOKEN);
    await wide.page.click('button[type=submit]');
    await wide.page.waitForSelector('#workers-total');
    await wide.page.waitForSelector('tr[data-id]');
    await shot(wide.page, 'fleet-wide');
    console.log('ok   wide-screen fleet page');
  } catch (e) {
    failed++;
    console.log(`FAIL wide-screen fleet page: ${e}`);
  }
  await wide.ctx.close();
  for (const d of [laptop.profile, wide.profile]) fs.rmSync(d, { recursive: true, force: true });
  if (external.length) { failed++; console.log(`FAIL external requests attempted: ${external.join(' ')}`); }
  if (problems.length) { failed++; console.log(`FAIL browser errors:\n  ${problems.join('\n  ')}`); }
  for (const n of notes) console.log(`NOTE ${n}`);
  console.log(`${tests.length + 1 - failed}/${tests.length + 1} passed`);
  process.exit(failed ? 1 : 0);
}

main().catch((e) => { console.error(e); process.exit(1); });
