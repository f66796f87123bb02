// Switchboard's JavaScript client: a dependency-free ES module for browsers
// and Node 20+ (pass the `ws` package's WebSocket as `options.WebSocket`).
//
// The wire is the gateway's plain {"event","data","id"} JSON (README, "The
// wire protocol"); this module adds what every app otherwise rewrites:
// requests settled by the reply carrying their id, exceptions as Errors,
// reconnect with bounded exponential backoff and jitter, a bounded queue of
// what is sent while offline, and session recovery over the gateway's
// reserved `sb:` events (issue 13's wire: sb:session, sb:joined, sb:resume,
// sb:resumed, sb:resync, "room" and "offset" on room messages). Nothing the
// server sends is thrown into the app: frames that are not JSON or not an
// envelope are reported to `badframe` listeners.

/** The states a client goes through; `state` event listeners get them. */
export const STATES = Object.freeze(['connecting', 'open', 'reconnecting', 'closed']);

const DEFAULTS = Object.freeze({
  reconnect: true,
  backoffInitial: 500, // ms before the first retry
  backoffMax: 10000, // ms: the delay never grows past this
  backoffFactor: 2,
  backoffJitter: 0.5, // each delay is cut by up to this share, at random
  maxRetries: Infinity, // consecutive failed attempts before giving up
  connectTimeout: 10000, // ms for the WebSocket to open
  requestTimeout: 10000, // ms, request()'s default
  queueSize: 100, // messages kept while offline
  recovery: true, // resume the gateway session on reconnect
  resumeTimeout: 5000, // ms to wait for sb:resumed
  autoConnect: true,
});

/** An `exception` from the gateway, as an Error with the server's message. */
export class ServerError extends Error {
  constructor(data, frame) {
    const message =
      data && typeof data === 'object' && typeof data.message === 'string'
        ? data.message
        : typeof data === 'string'
          ? data
          : 'exception';
    super(message);
    this.name = 'ServerError';
    this.status = data && typeof data === 'object' ? data.status : undefined;
    this.cause = data && typeof data === 'object' ? data.cause : undefined;
    this.data = data;
    this.frame = frame;
  }
}

/** A request that ended without a reply: timeout, overflow, disconnect, close. */
export class RequestError extends Error {
  constructor(message, code) {
    super(message);
    this.name = 'RequestError';
    this.code = code; // 'timeout' | 'overflow' | 'disconnected' | 'closed'
  }
}

function isObject(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

export class Switchboard {
  /**
   * @param {string | (() => string)} url ws:// or wss:// URL, or a function
   *   giving it (called before every attempt, e.g. to put a fresh token in).
   * @param {object} [options] see index.d.ts (SwitchboardOptions)
   */
  constructor(url, options = {}) {
    this.url = url;
    this.options = { ...DEFAULTS, ...options };
    const WS = this.options.WebSocket ?? globalThis.WebSocket;
    if (typeof WS !== 'function')
      throw new TypeError(
        'no WebSocket: pass options.WebSocket (in Node, the ws package\'s)',
      );
    this._WS = WS;
    this.state = 'closed';
    this.session = null; // {client, token, ttl} from sb:session / sb:resumed
    this.clientId = null;
    this._ws = null;
    this._handlers = new Map(); // server event -> Set<fn>
    this._listeners = new Map(); // client event -> Set<fn>
    this._pending = new Map(); // request id -> {resolve, reject, timer, sent}
    this._queue = []; // frames (strings) waiting for an open connection
    this._rooms = new Map(); // room -> {epoch, offset}
    this._nextId = 1;
    this._attempt = 0; // failed attempts since the last open
    this._timer = null; // reconnect or connect timeout
    this._resumeTimer = null;
    this._resuming = false; // sb:resume sent, sb:resumed not yet seen
    this._wanted = false; // connect() called and close() not since
    this._everOpened = false;
    this.stats = { duplicates: 0, overflowed: 0, badFrames: 0 };
    if (this.options.autoConnect) this.connect();
  }

  // ---- listeners ---------------------------------------------------------

  /** Calls fn(data, frame) for every server message with this event. */
  on(event, fn) {
    if (typeof fn !== 'function') throw new TypeError('listener must be a function');
    let set = this._handlers.get(event);
    if (!set) this._handlers.set(event, (set = new Set()));
    set.add(fn);
    return this;
  }

  off(event, fn) {
    const set = this._handlers.get(event);
    if (set) {
      if (fn) set.delete(fn);
      else set.clear();
      if (!set.size) this._handlers.delete(event);
    }
    return this;
  }

  /**
   * Client-side happenings, apart from server events: 'state', 'connecting',
   * 'open', 'reconnecting', 'closed', 'disconnect', 'error', 'badframe',
   * 'overflow', 'session', 'recovery', 'message'. fn(detail).
   */
  addEventListener(type, fn) {
    if (typeof fn !== 'function') throw new TypeError('listener must be a function');
    let set = this._listeners.get(type);
    if (!set) this._listeners.set(type, (set = new Set()));
    set.add(fn);
    return this;
  }

  removeEventListener(type, fn) {
    this._listeners.get(type)?.delete(fn);
    return this;
  }

  // A listener that throws must not break the client: its error goes to
  // 'error' listeners (and to the console when there are none).
  _call(fn, args, where) {
    try {
      fn(...args);
    } catch (err) {
      if (where === 'error') {
        console.error('switchboard: an error listener threw', err);
      } else {
        this._report('error', { error: err, where });
      }
    }
  }

  _report(type, detail) {
    const set = this._listeners.get(type);
    if (set && set.size) {
      for (const fn of [...set]) this._call(fn, [detail], type);
      return;
    }
    // Never silent: what nobody listens for goes to the console.
    if (type === 'error') console.error('switchboard:', detail.error ?? detail);
    else if (type === 'overflow' || type === 'badframe')
      console.warn(`switchboard: ${type}`, detail);
  }

  // `again`: report even when the state is unchanged (each retry).
  _setState(state, detail = {}, again = false) {
    if (this.state === state && !again) return;
    this.state = state;
    this._report('state', { state, ...detail });
    this._report(state, detail);
  }

  // ---- connection --------------------------------------------------------

  /** Opens the connection (done by the constructor unless autoConnect is false). */
  connect() {
    this._wanted = true;
    if (this._ws || this._timer) return this;
    this._open();
    return this;
  }

  /** Closes for good: no reconnect; queued messages and pending requests fail. */
  close(code = 1000, reason = '') {
    this._wanted = false;
    clearTimeout(this._timer);
    clearTimeout(this._resumeTimer);
    this._timer = this._resumeTimer = null;
    const ws = this._ws;
    this._ws = null;
    if (ws) {
      this._detach(ws);
      try {
        ws.close(code, reason);
      } catch {
        /* already closing */
      }
    }
    this._failPending('closed', 'the client was closed', true);
    this._dropQueue();
    // A clean close ends the gateway's session too: a later connect() is
    // a first connection, not a resume.
    this._resuming = false;
    this._everOpened = false;
    this._attempt = 0;
    this.session = null;
    this._rooms.clear();
    this._setState('closed', { code, reason, willReconnect: false });
    return this;
  }

  _resolveUrl() {
    return typeof this.url === 'function' ? this.url() : this.url;
  }

  _open() {
    this._setState(this._everOpened || this._attempt ? 'reconnecting' : 'connecting', {
      attempt: this._attempt,
    });
    let ws;
    try {
      ws = new this._WS(this._resolveUrl());
    } catch (err) {
      this._report('error', { error: err, where: 'connect' });
      this._scheduleRetry({ code: 1006, reason: String(err?.message ?? err) });
      return;
    }
    this._ws = ws;
    this._timer = setTimeout(() => {
      this._timer = null;
      if (this._ws === ws && ws.readyState !== 1) {
        this._detach(ws);
        try {
          ws.close();
        } catch {
          /* never opened */
        }
        this._ws = null;
        this._scheduleRetry({ code: 1006, reason: 'connect timeout' });
      }
    }, this.options.connectTimeout);
    ws.onopen = () => this._onOpen(ws);
    ws.onmessage = (ev) => this._onMessage(ev.data);
    ws.onerror = (ev) => {
      this._report('error', { error: ev?.error ?? new Error('WebSocket error'), where: 'socket' });
    };
    ws.onclose = (ev) => this._onClose(ws, ev);
  }

  _detach(ws) {
    ws.onopen = ws.onmessage = ws.onclose = null;
    // Keep an error handler: the ws package throws on unhandled 'error'.
    ws.onerror = () => {};
  }

  _onOpen(ws) {
    if (this._ws !== ws) return;
    clearTimeout(this._timer);
    this._timer = null;
    const reconnect = this._everOpened;
    this._everOpened = true;
    this._attempt = 0;
    if (reconnect && this.options.recovery && this.session?.token) {
      // The gateway wants sb:resume as the first frame; everything else
      // waits for sb:resumed (the session's rooms are back by then).
      const rooms = {};
      for (const [room, pos] of this._rooms) rooms[room] = { epoch: pos.epoch, offset: pos.offset };
      this._resuming = true;
      this._resumeSent = rooms;
      this._rawSend(JSON.stringify({ event: 'sb:resume', data: { token: this.session.token, rooms } }));
      this._resumeTimer = setTimeout(() => this._resumeTimedOut(), this.options.resumeTimeout);
    } else if (reconnect) {
      // No session to resume: positions are meaningless on a fresh one.
      this._rooms.clear();
    }
    this._setState('open', { reconnect, resuming: this._resuming });
    if (!this._resuming) this._flush();
  }

  _onClose(ws, ev) {
    if (this._ws !== ws) return;
    this._ws = null;
    clearTimeout(this._resumeTimer);
    this._resumeTimer = null;
    this._resuming = false;
    const code = ev?.code ?? 1006;
    const reason = ev?.reason ?? '';
    // Requests sent on this connection cannot be answered on the next.
    this._failPending('disconnected', `connection closed (${code})`, false);
    this._scheduleRetry({ code, reason });
  }

  _scheduleRetry({ code, reason }) {
    clearTimeout(this._timer);
    this._timer = null;
    const o = this.options;
    const retry = this._wanted && o.reconnect && this._attempt < o.maxRetries;
    this._report('disconnect', { code, reason, willReconnect: retry });
    if (!retry) {
      this._wanted = false;
      this._failPending('closed', `connection closed (${code})`, true);
      this._dropQueue();
      this._setState('closed', { code, reason, willReconnect: false });
      return;
    }
    const delay = this.backoffDelay(this._attempt);
    this._attempt++;
    this._setState('reconnecting', { attempt: this._attempt, delay, code, reason }, true);
    this._timer = setTimeout(() => {
      this._timer = null;
      if (this._wanted) this._open();
    }, delay);
  }

  /**
   * The delay before retry number `attempt` (0-based): initial × factor^n,
   * capped at backoffMax, minus a random share up to backoffJitter.
   */
  backoffDelay(attempt, random = Math.random) {
    const o = this.options;
    const base = Math.min(o.backoffMax, o.backoffInitial * o.backoffFactor ** attempt);
    return Math.max(0, Math.round(base * (1 - o.backoffJitter * random())));
  }

  // ---- sending -----------------------------------------------------------

  _rawSend(text) {
    this._ws.send(text);
  }

  _canSend() {
    return this._ws && this._ws.readyState === 1 && !this._resuming;
  }

  // Sends now, or queues; false (and an 'overflow' report) when the queue
  // is full.
  _sendOrQueue(frame, item) {
    if (this._canSend()) {
      this._rawSend(frame);
      return true;
    }
    if (this._queue.length >= this.options.queueSize) {
      this.stats.overflowed++;
      this._report('overflow', { ...item, frame, reason: 'queue full' });
      return false;
    }
    this._queue.push(frame);
    return true;
  }

  _flush() {
    while (this._queue.length && this._canSend()) this._rawSend(this._queue.shift());
    // Requests sent from the queue are now on this connection.
    for (const p of this._pending.values()) if (!p.sent && !this._queue.includes(p.frame)) p.sent = true;
  }

  /** Number of messages waiting for a connection. */
  get queued() {
    return this._queue.length;
  }

  /**
   * Sends {"event","data"}. True when sent or queued; false when the
   * offline queue was full (reported to 'overflow' listeners).
   */
  emit(event, data) {
    if (typeof event !== 'string') throw new TypeError('event must be a string');
    const msg = data === undefined ? { event } : { event, data };
    return this._sendOrQueue(JSON.stringify(msg), { event, data });
  }

  /**
   * Sends {"event","data","id"} and resolves with the data of the first
   * reply carrying that id; rejects with a ServerError for an `exception`
   * carrying it, or a RequestError on timeout, overflow or disconnect.
   */
  request(event, data, { timeout } = {}) {
    if (typeof event !== 'string') return Promise.reject(new TypeError('event must be a string'));
    const id = this._nextId++;
    const msg = data === undefined ? { event, id } : { event, data, id };
    const frame = JSON.stringify(msg);
    return new Promise((resolve, reject) => {
      const ms = timeout ?? this.options.requestTimeout;
      const entry = { resolve, reject, frame, sent: this._canSend(), event, timer: null };
      if (ms > 0 && ms !== Infinity)
        entry.timer = setTimeout(() => {
          this._pending.delete(id);
          const i = this._queue.indexOf(frame);
          if (i >= 0) this._queue.splice(i, 1); // never sent: never send it
          reject(new RequestError(`request '${event}' timed out after ${ms} ms`, 'timeout'));
        }, ms);
      this._pending.set(id, entry);
      if (!this._sendOrQueue(frame, { event, data, id })) {
        clearTimeout(entry.timer);
        this._pending.delete(id);
        reject(new RequestError(`request '${event}' dropped: offline queue full`, 'overflow'));
      }
    });
  }

  // Emits still queued when the client closes for good: reported, never
  // dropped silently (queued requests were rejected already).
  _dropQueue() {
    for (const frame of this._queue.splice(0)) {
      let msg;
      try {
        msg = JSON.parse(frame);
      } catch {
        msg = {};
      }
      this.stats.overflowed++;
      this._report('overflow', { event: msg.event, data: msg.data, frame, reason: 'closed' });
    }
  }

  // all false: fails the requests already sent (their connection is gone);
  // true: every pending request.
  _failPending(code, message, all) {
    for (const [id, p] of this._pending) {
      if (!all && !p.sent) continue;
      clearTimeout(p.timer);
      this._pending.delete(id);
      const i = this._queue.indexOf(p.frame);
      if (i >= 0) this._queue.splice(i, 1);
      p.reject(new RequestError(`request '${p.event}' failed: ${message}`, code));
    }
  }

  // ---- receiving ---------------------------------------------------------

  _onMessage(raw) {
    if (typeof raw !== 'string') {
      this._badFrame('binary frame', raw);
      return;
    }
    let msg;
    try {
      msg = JSON.parse(raw);
    } catch {
      this._badFrame('not JSON', raw);
      return;
    }
    this._report('message', { message: msg, raw });
    if (!isObject(msg) || typeof msg.event !== 'string') {
      // NestJS-style bare values are legal replies, but not an envelope:
      // there is no event to dispatch them to.
      this._badFrame('not an {"event": ...} object', raw, msg);
      return;
    }
    const { event } = msg;
    if (event.startsWith('sb:') && !this._system(msg)) return;
    if (typeof msg.room === 'string' && Number.isInteger(msg.offset) && !this._position(msg)) return;
    if ('id' in msg && this._settle(msg)) return;
    const set = this._handlers.get(event);
    if (set) for (const fn of [...set]) this._call(fn, [msg.data, msg], event);
  }

  _badFrame(reason, raw, value) {
    this.stats.badFrames++;
    this._report('badframe', { reason, raw, value });
  }

  _settle(msg) {
    const p = this._pending.get(msg.id);
    if (!p) return false;
    clearTimeout(p.timer);
    this._pending.delete(msg.id);
    if (msg.event === 'exception') p.reject(new ServerError(msg.data, msg));
    else p.resolve(msg.data);
    return true;
  }

  // A room message: false when it is a duplicate (offset already seen).
  _position(msg) {
    const pos = this._rooms.get(msg.room);
    if (!pos) return true; // a room we hold no position for
    if (msg.offset <= pos.offset) {
      this.stats.duplicates++;
      return false;
    }
    pos.offset = msg.offset;
    return true;
  }

  // The gateway's own events; false when they are not for the app.
  _system(msg) {
    const d = isObject(msg.data) ? msg.data : {};
    switch (msg.event) {
      case 'sb:session':
        this.session = { client: d.client, token: d.token, ttl: d.ttl };
        this.clientId = d.client ?? null;
        this._report('session', { ...this.session, resumed: false });
        break;
      case 'sb:joined':
        if (typeof d.room === 'string')
          this._rooms.set(d.room, { epoch: d.epoch, offset: Number(d.offset) || 0 });
        break;
      case 'sb:resync':
        if (typeof d.room === 'string' && d.epoch !== undefined && Number.isInteger(d.offset))
          this._rooms.set(d.room, { epoch: d.epoch, offset: d.offset });
        this._report('recovery', { resync: true, room: d.room, data: msg.data });
        break;
      case 'sb:resumed':
        this._resumed(d);
        break;
      default:
        break;
    }
    return true;
  }

  _resumed(d) {
    if (!this._resuming) return;
    clearTimeout(this._resumeTimer);
    this._resumeTimer = null;
    this._resuming = false;
    const sent = this._resumeSent ?? {};
    this._resumeSent = null;
    const fresh = d.previous === undefined || d.previous === null;
    this.session = { ...this.session, client: d.client, token: d.token ?? null };
    this.clientId = d.client ?? null;
    const answer = isObject(d.rooms) ? d.rooms : {};
    const rooms = {};
    for (const room of Object.keys(sent)) {
      const a = isObject(answer[room]) ? answer[room] : null;
      const recovered = !fresh && a?.recovered === true;
      if (recovered) {
        // The replay that follows is the messages after our offset, up to
        // the room's position now.
        const pos = this._rooms.get(room);
        if (!pos) continue; // forgotten meanwhile
        const now = Number.isInteger(a.offset) ? a.offset : pos.offset;
        rooms[room] = { recovered: true, replayed: Math.max(0, now - sent[room].offset), epoch: a.epoch };
        if (a.epoch !== undefined) pos.epoch = a.epoch;
      } else if (!fresh && a && Number.isInteger(a.offset)) {
        // Still a member, history lost: start from the room's position.
        this._rooms.set(room, { epoch: a.epoch, offset: a.offset });
        rooms[room] = { recovered: false, replayed: 0, epoch: a.epoch };
      } else {
        this._rooms.delete(room);
        rooms[room] = { recovered: false, replayed: 0, member: false };
      }
    }
    this._report('session', { ...this.session, resumed: !fresh, previous: d.previous ?? null });
    this._report('recovery', { fresh, client: d.client, previous: d.previous ?? null, rooms });
    this._flush();
  }

  _resumeTimedOut() {
    this._resumeTimer = null;
    if (!this._resuming) return;
    // A gateway without recovery (or one that lost us) never answers: carry
    // on as a fresh session rather than hold the queue forever.
    this._resuming = false;
    const rooms = {};
    for (const room of Object.keys(this._resumeSent ?? {})) rooms[room] = { recovered: false, replayed: 0, member: false };
    this._resumeSent = null;
    this._rooms.clear();
    this._report('recovery', { fresh: true, timedOut: true, client: this.clientId, previous: null, rooms });
    this._flush();
  }

  /** The positions held per room: {room: {epoch, offset}}. */
  get rooms() {
    const out = {};
    for (const [room, pos] of this._rooms) out[room] = { ...pos };
    return out;
  }

  /** Stops tracking a room the app left (it is not resumed any more). */
  forgetRoom(room) {
    this._rooms.delete(room);
  }
}

export default Switchboard;
