// The dashboard's HTTP client: bearer token from sessionStorage, JSON in and out, RFC 9457
// problem details turned into ApiError, paginated lists followed through next_cursor.

const KEY = 'lcm.token';

export function getToken() {
  return sessionStorage.getItem(KEY) || '';
}

export function setToken(t) {
  if (t) sessionStorage.setItem(KEY, t);
  else sessionStorage.removeItem(KEY);
}

export class ApiError extends Error {
  constructor(status, problem) {
    const p = problem && typeof problem === 'object' ? problem : {};
    const msg = [p.title || `HTTP ${status}`, p.detail].filter(Boolean).join(': ');
    super(msg + (p.field ? ` (field: ${p.field})` : ''));
    this.status = status;
    this.problem = p;
  }
}

export async function api(method, path, body, opts = {}) {
  const headers = { Accept: 'application/json, application/problem+json', ...(opts.headers || {}) };
  const t = getToken();
  if (t) headers.Authorization = `Bearer ${t}`;
  if (body !== undefined && body !== null) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(path, { method, headers, body: body == null ? undefined : JSON.stringify(body), signal: opts.signal });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, { title: 'lcmd unreachable', detail: String(e.message || e) });
  }
  const text = await res.text();
  let doc = null;
  if (text) {
    try { doc = JSON.parse(text); } catch { doc = text; }
  }
  if (!res.ok) {
    if (res.status === 401) window.dispatchEvent(new CustomEvent('lcm:unauthorized'));
    throw new ApiError(res.status, doc);
  }
  return doc;
}

export const get = (path, opts) => api('GET', path, null, opts);
export const post = (path, body, opts) => api('POST', path, body ?? null, opts);

// All items of a collection (GET /api/v1/<noun> answers {items, next_cursor, total}), up to
// maxPages pages of 500.
export async function list(noun, params = {}, maxPages = 20) {
  const out = [];
  let cursor = null;
  for (let i = 0; i < maxPages; i++) {
    const q = new URLSearchParams({ limit: '500', ...params });
    if (cursor) q.set('cursor', cursor);
    const doc = await get(`/api/v1/${noun}?${q}`);
    const items = Array.isArray(doc) ? doc : (doc && (doc.items || doc[noun] || doc.data)) || [];
    out.push(...items);
    cursor = doc && !Array.isArray(doc) ? doc.next_cursor : null;
    if (!cursor) break;
  }
  return out;
}

// Like list(), but a missing route (404/405/501: that part of the API is not deployed) gives
// null instead of an error, so a page can say so and still show the rest.
export async function listOptional(noun, params) {
  try {
    return await list(noun, params);
  } catch (e) {
    if (e instanceof ApiError && [404, 405, 501].includes(e.status) && (!e.problem.type || /not-found/.test(e.problem.type))) return null;
    throw e;
  }
}
