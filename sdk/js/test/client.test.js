// Unit tests of the client against a fake gateway (node:test, ws).
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { RequestError, ServerError, Switchboard } from '../index.js';
import { FakeGateway, until, wait, ws } from './helpers.js';

const WebSocket = ws.WebSocket;
// Fast retries for the tests; the defaults are exercised by backoffDelay.
const fast = { WebSocket, backoffInitial: 20, backoffMax: 80, backoffJitter: 0 };

function client(g, options = {}) {
  return new Switchboard(g.url, { ...fast, ...options });
}

function opened(c) {
  return until(() => c.state === 'open', 3000, 'open');
}

test('emit sends {event, data}; on and off dispatch server events', async (t) => {
  const g = await FakeGateway.start();
  t.after(() => g.stop());
  const c = client(g);
  t.after(() => c.close());
  await opened(c);
  assert.equal(c.emit('events', 'hi'), true);
  c.emit('ping');
  await until(() => g.from(0).length === 2);
  assert.deepEqual(g.from(0), [{ event: 'events', data: 'hi' }, { event: 'ping' }]);

  const got = [];
  const fn = (data, frame) => got.push([data, frame.event]);
  c.on('said', fn);
  g.send(0, { event: 'said', data: { text: 'a' } });
  g.send(0, { event: 'other', data: 1 });
  await until(() => got.length === 1);
  c.off('said', fn);
  g.send(0, { event: 'said', data: { text: 'b' } });
  g.send(0, { event: 'said-too', data: 2 });
  await wait(50);
  assert.deepEqual(got, [[{ text: 'a' }, 'said']]);
});

test('request is settled by the reply carrying its id, or its exception', async (t) => {
  const g = await FakeGateway.start((sock) => {
    sock.on('message', (raw) => {
      const m = JSON.parse(raw.toString());
      if (m.event === 'join') {
        // Another reply first (no id), then one with a foreign id, then ours.
        sock.send(JSON.stringify({ event: 'joined', data: { room: 'x', members: 9 } }));
        sock.send(JSON.stringify({ event: 'joined', data: { members: 8 }, id: m.id + 1000 }));
        sock.send(JSON.stringify({ event: 'joined', data: { room: m.data.room, members: 2 }, id: m.id }));
      } else if (m.event === 'say') {
        sock.send(
          JSON.stringify({
            event: 'exception',
            data: { status: 'error', message: 'not a member of room k', cause: { pattern: 'say', data: m.data } },
            id: m.id,
          }),
        );
      }
    });
  });
  t.after(() => g.stop());
  const c = client(g);
  t.after(() => c.close());
  const broadcast = [];
  c.on('joined', (d) => broadcast.push(d));
  const reply = await c.request('join', { room: 'lobby' });
  assert.deepEqual(reply, { room: 'lobby', members: 2 });
  // The replies that did not settle it reached `on` listeners.
  await until(() => broadcast.length === 2);
  assert.deepEqual(broadcast, [{ room: 'x', members: 9 }, { members: 8 }]);
  const sent = g.from(0).find((m) => m.event === 'join');
  assert.equal(typeof sent.id, 'number');

  await assert.rejects(c.request('say', { room: 'k', text: 't' }), (err) => {
    assert.ok(err instanceof ServerError);
    assert.ok(err instanceof Error);
    assert.equal(err.message, 'not a member of room k');
    assert.equal(err.status, 'error');
    assert.deepEqual(err.cause, { pattern: 'say', data: { room: 'k', text: 't' } });
    return true;
  });
  // Ids are distinct per request.
  const ids = g.from(0).filter((m) => 'id' in m).map((m) => m.id);
  assert.equal(new Set(ids).size, ids.length);
});

test('request times out; an exception without a request goes to on("exception")', async (t) => {
  const g = await FakeGateway.start();
  t.after(() => g.stop());
  const c = client(g);
  t.after(() => c.close());
  await opened(c);
  const started = Date.now();
  await assert.rejects(c.request('silent', null, { timeout: 100 }), (err) => {
    assert.ok(err instanceof RequestError);
    assert.equal(err.code, 'timeout');
    return true;
  });
  assert.ok(Date.now() - started >= 95);
  const exceptions = [];
  c.on('exception', (d) => exceptions.push(d.message));
  g.send(0, { event: 'exception', data: { status: 'error', message: 'malformed JSON' } });
  g.send(0, { event: 'exception', data: { status: 'error', message: 'late' }, id: 4242 });
  await until(() => exceptions.length === 2);
  assert.deepEqual(exceptions, ['malformed JSON', 'late']);
});

test('bad frames are reported, never thrown; a throwing listener is reported', async (t) => {
  const g = await FakeGateway.start();
  t.after(() => g.stop());
  const c = client(g);
  t.after(() => c.close());
  const bad = [];
  const errors = [];
  c.addEventListener('badframe', (d) => bad.push(d.reason));
  c.addEventListener('error', (d) => errors.push(d));
  const good = [];
  c.on('ok', (d) => good.push(d));
  c.on('boom', () => {
    throw new Error('app bug');
  });
  await opened(c);
  g.send(0, 'not json {');
  g.send(0, '7'); // a bare NestJS value: not an envelope
  g.send(0, '[1,2]');
  g.send(0, '{"event":5}');
  g.send(0, '{"data":1}');
  g.conns[0].send(Buffer.from([1, 2, 3])); // binary
  g.send(0, { event: 'boom' });
  g.send(0, { event: 'ok', data: 1 });
  await until(() => good.length === 1);
  assert.deepEqual(bad, [
    'not JSON',
    'not an {"event": ...} object',
    'not an {"event": ...} object',
    'not an {"event": ...} object',
    'not an {"event": ...} object',
    'binary frame',
  ]);
  assert.equal(c.stats.badFrames, 6);
  assert.equal(errors.length, 1);
  assert.equal(errors[0].error.message, 'app bug');
  assert.equal(errors[0].where, 'boom');
  assert.equal(c.state, 'open');
});

test('state events through a drop, a reconnect and a close', async (t) => {
  const g = await FakeGateway.start();
  t.after(() => g.stop());
  const c = new Switchboard(g.url, { ...fast, autoConnect: false });
  const states = [];
  const seen = [];
  c.addEventListener('state', (d) => states.push(d.state));
  for (const k of ['connecting', 'open', 'reconnecting', 'closed'])
    c.addEventListener(k, () => seen.push(k));
  const disconnects = [];
  c.addEventListener('disconnect', (d) => disconnects.push(d));
  assert.equal(c.state, 'closed');
  c.connect();
  await opened(c);
  g.drop(0);
  await until(() => g.conns.length === 2 && c.state === 'open');
  c.close();
  await wait(100);
  assert.deepEqual(states, ['connecting', 'open', 'reconnecting', 'open', 'closed']);
  assert.deepEqual(seen, states);
  assert.equal(disconnects.length, 1);
  assert.equal(disconnects[0].code, 1006);
  assert.equal(disconnects[0].willReconnect, true);
  assert.equal(g.conns.length, 2, 'no reconnect after close()');
});

test('backoff grows exponentially, is capped, and jitter only shortens it', () => {
  const c = new Switchboard('ws://127.0.0.1:1/', {
    WebSocket,
    autoConnect: false,
    backoffInitial: 100,
    backoffMax: 1000,
    backoffFactor: 2,
    backoffJitter: 0.5,
  });
  const none = () => 0;
  assert.deepEqual([0, 1, 2, 3, 4, 5, 20].map((a) => c.backoffDelay(a, none)), [100, 200, 400, 800, 1000, 1000, 1000]);
  assert.equal(c.backoffDelay(3, () => 1), 400); // the most jitter removes: half
  for (let i = 0; i < 200; i++) {
    const d = c.backoffDelay(2);
    assert.ok(d >= 200 && d <= 400, `delay ${d}`);
  }
});

test('retries are bounded: maxRetries failed attempts, then closed', async (t) => {
  // A port nobody listens on: every attempt fails.
  const g = await FakeGateway.start();
  const url = g.url;
  await g.stop();
  const c = new Switchboard(url, { ...fast, maxRetries: 3 });
  t.after(() => c.close());
  const reconnecting = [];
  c.addEventListener('reconnecting', (d) => d.delay !== undefined && reconnecting.push(d));
  await until(() => c.state === 'closed' && reconnecting.length === 3, 5000, 'give up');
  assert.deepEqual(
    reconnecting.map((d) => [d.attempt, d.delay]),
    [
      [1, 20],
      [2, 40],
      [3, 80],
    ],
  );
  await wait(200);
  assert.equal(c.state, 'closed');
  // A request now cannot be sent: it is queued, and fails when it times out.
  await assert.rejects(c.request('x', null, { timeout: 50 }), /timed out/);
});

test('emits made offline are queued, flushed in order; overflow is reported', async (t) => {
  const g = await FakeGateway.start();
  t.after(() => g.stop());
  const c = client(g, { queueSize: 3, backoffInitial: 300, backoffMax: 300 });
  t.after(() => c.close());
  await opened(c);
  const overflow = [];
  c.addEventListener('overflow', (d) => overflow.push(d));
  g.drop(0);
  await until(() => c.state === 'reconnecting');
  assert.equal(c.emit('m', 1), true);
  assert.equal(c.emit('m', 2), true);
  const req = c.request('r', 3, { timeout: 3000 });
  assert.equal(c.emit('m', 4), false);
  await assert.rejects(c.request('r', 5), (e) => e.code === 'overflow');
  assert.equal(c.queued, 3);
  assert.deepEqual(
    overflow.map((o) => [o.event, o.data, o.reason]),
    [
      ['m', 4, 'queue full'],
      ['r', 5, 'queue full'],
    ],
  );
  assert.equal(c.stats.overflowed, 2);
  await until(() => g.from(1).length === 3, 3000, 'flush');
  assert.deepEqual(
    g.from(1).map((m) => [m.event, m.data]),
    [
      ['m', 1],
      ['m', 2],
      ['r', 3],
    ],
  );
  // The queued request is answered on the new connection.
  const id = g.from(1)[2].id;
  g.send(1, { event: 'r', data: 'done', id });
  assert.equal(await req, 'done');
  assert.equal(c.queued, 0);
});

test('a request sent on a connection that drops is rejected', async (t) => {
  const g = await FakeGateway.start();
  t.after(() => g.stop());
  const c = client(g);
  t.after(() => c.close());
  await opened(c);
  const p = c.request('slow', null, { timeout: 5000 });
  await until(() => g.from(0).length === 1);
  g.drop(0);
  await assert.rejects(p, (e) => e instanceof RequestError && e.code === 'disconnected');
  // close() fails what is still waiting.
  await until(() => c.state === 'open');
  g.drop(1);
  await until(() => c.state === 'reconnecting');
  const q = c.request('queued', null, { timeout: 5000 });
  c.close();
  await assert.rejects(q, (e) => e.code === 'closed');
});

test('a url function is called before every attempt', async (t) => {
  const g = await FakeGateway.start();
  t.after(() => g.stop());
  let n = 0;
  const c = new Switchboard(() => `${g.url}?attempt=${++n}`, fast);
  t.after(() => c.close());
  await opened(c);
  g.drop(0);
  await until(() => g.conns.length === 2 && c.state === 'open');
  assert.equal(n, 2);
});

test('close() then connect() starts afresh', async (t) => {
  const g = await FakeGateway.start((sock) =>
    sock.send(JSON.stringify({ event: 'sb:session', data: { client: 1, token: 'T', ttl: 1 } })),
  );
  t.after(() => g.stop());
  const c = client(g);
  t.after(() => c.close());
  await until(() => c.session?.token === 'T');
  c.close();
  assert.equal(c.session, null);
  const states = [];
  c.addEventListener('state', (d) => states.push(d.state));
  c.connect();
  await until(() => c.state === 'open' && g.conns.length === 2);
  c.emit('first');
  await until(() => g.from(1).length === 1);
  assert.deepEqual(g.from(1), [{ event: 'first' }]); // no sb:resume
  assert.deepEqual(states, ['connecting', 'open']);
});
