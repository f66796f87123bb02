// The JavaScript client (sdk/js) against the real gateway binary: a real
// INI on 127.0.0.1 with the nest-example and chat plugins, the client on the
// `ws` package. Requests settled by their id, exceptions as Errors, the
// NestJS events, bare values reported as bad frames, and a server restart:
// the client reconnects with backoff and flushes what was sent meanwhile,
// in order. Session recovery ([recovery], issue 13): a client whose
// connection drops resumes its session, its room and the messages it
// missed, each once.
//
// Environment: SB_BINARY, SB_PLUGIN_DIR, SB_NODE_MODULES (the folder holding
// ws), SB_TEST_WRAPPER (optional, e.g. valgrind). Exits 77 (skipped) when
// the ws package is missing.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
const { SB_BINARY, SB_PLUGIN_DIR, SB_NODE_MODULES } = process.env;

let WebSocket;
try {
  WebSocket = require(path.join(SB_NODE_MODULES ?? '', 'ws')).WebSocket;
} catch {
  console.log(`SKIP: the npm ws package is not in '${SB_NODE_MODULES}'`);
  process.exit(77);
}
const { Switchboard, ServerError } = await import(path.join(here, '../../sdk/js/index.js'));

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-js-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

const wait = (ms) => new Promise((r) => setTimeout(r, ms));
async function until(fn, ms, what) {
  const end = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await wait(10);
  }
}

// Starts the gateway on `port`; resolves once it logs that it listens.
async function startServer(port, extra = '') {
  const ini = path.join(dir, 'switchboard.ini');
  fs.writeFileSync(
    ini,
    `[server]\nhost = 127.0.0.1\nport = ${port}\nshutdown_timeout = 2\n` +
      extra +
      `[plugin.nest-example]\nfile = ${SB_PLUGIN_DIR}/nest-example.so\n` +
      `[plugin.chat]\nfile = ${SB_PLUGIN_DIR}/chat.so\n`,
  );
  const wrapper = (process.env.SB_TEST_WRAPPER ?? '').split(' ').filter(Boolean);
  const argv = [...wrapper, SB_BINARY, '-c', ini];
  const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr.on('data', (d) => (log += d));
  child.log = () => log;
  child.exited = new Promise((r) => child.once('exit', (code, signal) => r({ code, signal })));
  await until(() => log.includes('listening on') || child.exitCode !== null, 30000, 'the server');
  assert.ok(log.includes('listening on'), `server did not start:\n${log}`);
  return child;
}

async function stopServer(child) {
  child.kill('SIGTERM');
  const { code, signal } = await child.exited;
  assert.equal(code, 0, `server exit ${code} ${signal}:\n${child.log()}`);
}

test('the client against the real gateway', async () => {
  const port = await freePort();
  let server = await startServer(port);
  const c = new Switchboard(`ws://127.0.0.1:${port}/`, {
    WebSocket,
    backoffInitial: 50,
    backoffMax: 200,
    requestTimeout: 5000,
    autoConnect: false,
  });
  const states = [];
  c.addEventListener('state', (d) => states.push(d.state));
  const errors = [];
  c.addEventListener('error', (d) => errors.push(d)); // refused connects
  c.connect();
  const bad = [];
  c.addEventListener('badframe', (d) => bad.push(d));
  try {
    await until(() => c.state === 'open', 10000, 'open');

    // The NestJS tutorial's events: three frames.
    const events = [];
    c.on('events', (d) => events.push(d));
    c.emit('events', 'hi');
    await until(() => events.length === 3, 5000, 'events');
    assert.deepEqual(events, [1, 2, 3]);

    // A request settled by the reply carrying its id.
    const joined = await c.request('join', { room: 'lobby' });
    assert.deepEqual(joined, { room: 'lobby', members: 1 });
    assert.deepEqual(await c.request('rooms'), ['lobby']);

    // The handler's failure, as an Error with the server's message.
    await assert.rejects(c.request('say', { room: 'kitchen', text: 'hello?' }), (err) => {
      assert.ok(err instanceof ServerError);
      assert.equal(err.message, 'not a member of room kitchen');
      assert.deepEqual(err.cause, { pattern: 'say', data: { room: 'kitchen', text: 'hello?' } });
      return true;
    });
    // A malformed envelope is answered with an exception naming the id the
    // scan read: the request is rejected with it.
    await assert.rejects(c.request('join', 'not an object'), /data must be an object/);

    // identity returns its data bare (as NestJS does): not an envelope,
    // reported and not thrown; the client stays open.
    c.emit('identity', 42);
    await until(() => bad.length === 1, 5000, 'bad frame');
    assert.equal(bad[0].reason, 'not an {"event": ...} object');
    assert.equal(bad[0].value, 42);

    // Server restart: SIGTERM closes the client with 1001, the client
    // retries; what it sends meanwhile is queued and flushed in order.
    const said = [];
    c.on('said', (d) => said.push(d.text));
    const disconnects = [];
    c.addEventListener('disconnect', (d) => disconnects.push(d.code));
    await stopServer(server);
    server = null;
    await until(() => c.state === 'reconnecting', 5000, 'reconnecting');
    const rejoin = c.request('join', { room: 'lobby' }, { timeout: 20000 });
    for (let i = 1; i <= 5; i++) c.emit('say', { room: 'lobby', text: `m${i}` });
    assert.equal(c.queued, 6);
    await wait(300); // a few failed attempts against the closed port
    server = await startServer(port);
    assert.deepEqual(await rejoin, { room: 'lobby', members: 1 });
    await until(() => said.length === 5, 10000, 'flushed says');
    assert.deepEqual(said, ['m1', 'm2', 'm3', 'm4', 'm5']);
    assert.equal(disconnects[0], 1001);
    assert.equal(c.queued, 0);
    assert.deepEqual(states.slice(0, 2), ['connecting', 'open']);
    assert.equal(states.at(-1), 'open');
    assert.ok(states.includes('reconnecting'));
  } finally {
    c.close();
    if (server) await stopServer(server);
  }
  assert.deepEqual(states.at(-1), 'closed');
});

test('session recovery against the real gateway', async () => {
  const port = await freePort();
  const server = await startServer(port, '[recovery]\n');
  const opts = { WebSocket, backoffInitial: 50, backoffMax: 200, requestTimeout: 5000 };
  const a = new Switchboard(`ws://127.0.0.1:${port}/`, opts);
  const b = new Switchboard(`ws://127.0.0.1:${port}/`, opts);
  const reports = [];
  a.addEventListener('recovery', (d) => reports.push(d));
  const got = [];
  a.on('said', (d) => got.push(d.text));
  const bGot = [];
  b.on('said', (d) => bGot.push(d.text));
  try {
    await until(() => a.state === 'open' && b.state === 'open', 10000, 'open');
    await until(() => a.session && b.session, 5000, 'sb:session');
    const firstId = a.clientId;
    await a.request('join', { room: 'lobby' });
    await b.request('join', { room: 'lobby' });
    assert.deepEqual(Object.keys(a.rooms), ['chat:lobby']);
    b.emit('say', { room: 'lobby', text: 'm1' });
    await until(() => got.length === 1, 5000, 'm1');
    // The connection drops without a close handshake (1006).
    a._ws._socket.destroy();
    for (let i = 2; i <= 4; i++) b.emit('say', { room: 'lobby', text: `m${i}` });
    await until(() => bGot.length === 4, 5000, 'm2..m4');
    await until(() => reports.length === 1, 10000, 'the resume');
    assert.equal(reports[0].fresh, false);
    assert.equal(reports[0].previous, firstId);
    assert.equal(reports[0].rooms['chat:lobby'].recovered, true);
    await until(() => got.length === 4, 5000, 'the replay');
    b.emit('say', { room: 'lobby', text: 'm5' });
    await until(() => got.length === 5, 5000, 'live after the replay');
    assert.deepEqual(got, ['m1', 'm2', 'm3', 'm4', 'm5']);
    assert.equal(a.stats.duplicates, 0);
    assert.notEqual(a.clientId, firstId);
  } finally {
    a.close();
    b.close();
    await stopServer(server);
  }
});
