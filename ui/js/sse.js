// Live updates from GET /api/v1/events. EventSource cannot send an Authorization header, so
// this reads the stream with fetch(), parses text/event-stream itself (WHATWG rules) and
// reconnects with Last-Event-ID (the id of the last event it delivered) after a drop.

export class SseParser {
  constructor(onEvent) {
    this.onEvent = onEvent;
    this.buf = '';
    this.data = [];
    this.hasData = false;
    this.event = '';
    this.id = '';        // id buffer (persists across events)
    this.lastId = '';    // id of the last dispatched event: what a resume sends
    this.retry = null;
    this.skipLf = false;
  }

  feed(text) {
    let start = 0;
    for (let i = 0; i < text.length; i++) {
      const c = text[i];
      if (this.skipLf) {
        this.skipLf = false;
        if (c === '\n') { start = i + 1; continue; }
      }
      if (c === '\r' || c === '\n') {
        const line = this.buf + text.slice(start, i);
        this.buf = '';
        start = i + 1;
        this.skipLf = c === '\r';
        this.line(line);
      }
    }
    this.buf += text.slice(start);
  }

  line(line) {
    if (line === '') return this.dispatch();
    if (line[0] === ':') return;
    const i = line.indexOf(':');
    const name = i < 0 ? line : line.slice(0, i);
    let value = i < 0 ? '' : line.slice(i + 1);
    if (value[0] === ' ') value = value.slice(1);
    if (name === 'data') { this.data.push(value); this.hasData = true; }
    else if (name === 'event') this.event = value;
    else if (name === 'id') { if (!value.includes('\0')) this.id = value; }
    else if (name === 'retry' && /^\d+$/.test(value)) this.retry = Number(value);
  }

  dispatch() {
    if (this.hasData) {
      this.lastId = this.id;
      this.onEvent({ id: this.id, event: this.event || 'message', data: this.data.join('\n') });
    }
    this.data = [];
    this.hasData = false;
    this.event = '';
  }

  reset() {
    this.buf = '';
    this.data = [];
    this.hasData = false;
    this.event = '';
    this.skipLf = false;
    this.id = this.lastId;
  }
}

export class EventStream {
  // onEvent({id, event, type, kind, aggId, doc}); onState('connecting'|'live'|'reconnecting'|'unauthorized')
  constructor({ url = '/api/v1/events', token, onEvent, onState }) {
    this.url = url;
    this.token = token;
    this.onEvent = onEvent;
    this.onState = onState || (() => {});
    this.ctrl = null;
    this.stopped = true;
    this.parser = new SseParser((ev) => this.deliver(ev));
    this.reconnects = 0;
  }

  deliver(ev) {
    let doc = null;
    try { doc = JSON.parse(ev.data); } catch { /* not JSON: pass the text */ }
    const type = (doc && doc.type) || ev.event;
    const kind = (doc && doc.kind) || String(type).split('.')[0];
    this.onEvent({ id: ev.id, event: ev.event, type, kind, aggId: doc && doc.id, doc, data: ev.data });
  }

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    this.loop();
  }

  stop() {
    this.stopped = true;
    if (this.ctrl) this.ctrl.abort();
  }

  async loop() {
    let backoff = 500;
    while (!this.stopped) {
      this.ctrl = new AbortController();
      this.onState(this.reconnects ? 'reconnecting' : 'connecting');
      try {
        const headers = { Accept: 'text/event-stream', Authorization: `Bearer ${this.token()}` };
        if (this.parser.lastId) headers['Last-Event-ID'] = this.parser.lastId;
        const res = await fetch(this.url, { headers, signal: this.ctrl.signal, cache: 'no-store' });
        if (res.status === 401 || res.status === 403) {
          this.onState('unauthorized');
          this.stopped = true;
          window.dispatchEvent(new CustomEvent('lcm:unauthorized'));
          return;
        }
        if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
        this.onState('live');
        backoff = 500;
        const reader = res.body.getReader();
        const dec = new TextDecoder();
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          this.parser.feed(dec.decode(value, { stream: true }));
        }
      } catch (e) {
        if (this.stopped) return;
      }
      this.parser.reset();
      if (this.stopped) return;
      this.reconnects++;
      this.onState('reconnecting');
      const wait = Math.max(backoff, this.parser.retry || 0);
      await new Promise((r) => setTimeout(r, wait));
      backoff = Math.min(backoff * 2, 10000);
    }
  }
}
