// The chat demo (sdk/js/demo) in a real browser: Debian's Chromium, headless,
// driven by puppeteer-core over the DevTools protocol. The gateway is the
// real binary with a real INI: one port serves the page (`static`) and the
// chat plugin's WebSocket, with [recovery]. Two pages join a room, see each
// other's messages and the member count; one page's connection is cut (a
// proxy between it and the gateway drops it, which the gateway sees as an
// abnormal close) while the other keeps talking, and after its recovery the
// page has every message exactly once and says how many were replayed; the
// connection state shows when the server stops and comes back. A
// screenshot of the demo is written to SB_SCREENSHOT when set
// (docs/demo.png comes from it).
//
// Environment: SB_BINARY, SB_PLUGIN_DIR, SB_SOURCE_DIR, SB_NODE_MODULES (the
// folder holding puppeteer-core), SB_CHROMIUM (default /usr/bin/chromium),
// SB_TEST_WRAPPER (optional). Exits 77 (skipped) when Chromium or
// puppeteer-core is missing.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';

const require = createRequire(import.meta.url);
const { SB_BINARY, SB_PLUGIN_DIR, SB_SOURCE_DIR, SB_NODE_MODULES } = process.env;
const chromium = process.env.SB_CHROMIUM || '/usr/bin/chromium';

let puppeteer;
try {
  puppeteer = require(path.join(SB_NODE_MODULES ?? '', 'puppeteer-core'));
} catch {
  console.log(`SKIP: the npm puppeteer-core package is not in '${SB_NODE_MODULES}'`);
  process.exit(77);
}
if (!fs.existsSync(chromium)) {
  console.log(`SKIP: no Chromium at ${chromium} (scripts/deps test installs it)`);
  process.exit(77);
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-browser-'));
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

// A TCP proxy on its own port in front of the gateway's: cut() drops every
// connection through it, and while it is closed it drops new ones at once.
async function startProxy(target) {
  const pairs = new Set();
  let open = true;
  const server = net.createServer((down) => {
    if (!open) return down.destroy();
    const up = net.connect(target, '127.0.0.1');
    const pair = { up, down };
    pairs.add(pair);
    const drop = () => {
      pairs.delete(pair);
      up.destroy();
      down.destroy();
    };
    up.on('error', drop).on('close', drop);
    down.on('error', drop).on('close', drop);
    down.pipe(up);
    up.pipe(down);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: server.address().port,
    cut() {
      for (const { up, down } of pairs) {
        up.destroy();
        down.destroy();
      }
      pairs.clear();
    },
    set open(v) {
      open = v;
    },
    close: () => new Promise((r) => server.close(r)),
  };
}

async function startServer(port, extra = '[recovery]\nsession_ttl = 60\n') {
  const ini = path.join(dir, 'demo.ini');
  fs.writeFileSync(
    ini,
    `[server]\nhost = 127.0.0.1\nport = ${port}\npath = /\nshutdown_timeout = 2\n` +
      `static = ${path.join(SB_SOURCE_DIR, 'sdk/js')}\n` +
      `${extra}[plugin.chat]\nfile = ${SB_PLUGIN_DIR}/chat.so\n`,
  );
  const wrapper = (process.env.SB_TEST_WRAPPER ?? '').split(' ').filter(Boolean);
  const argv = [...wrapper, SB_BINARY, '-c', ini];
  const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr.on('data', (d) => (log += d));
  child.log = () => log;
  child.exited = new Promise((r) => child.once('exit', (code, signal) => r({ code, signal })));
  const end = Date.now() + 30000;
  while (!log.includes('listening on') && child.exitCode === null && Date.now() < end)
    await wait(20);
  assert.ok(log.includes('listening on'), `server did not start:\n${log}`);
  return child;
}

async function stopServer(child) {
  child.kill('SIGTERM');
  const { code, signal } = await child.exited;
  assert.equal(code, 0, `server exit ${code} ${signal}:\n${child.log()}`);
}

// Waits until fn(), evaluated in the page, is truthy; returns its value.
async function pageUntil(page, fn, arg, what, ms = 10000) {
  if (process.env.SB_TEST_VERBOSE) console.error(`waiting: ${what}`);
  try {
    const handle = await page.waitForFunction(fn, { timeout: ms, polling: 50 }, arg);
    return await handle.jsonValue();
  } catch (err) {
    throw new Error(`timed out waiting for ${what}: ${err.message}`);
  }
}

async function say(page, text) {
  if (process.env.SB_TEST_VERBOSE) console.error(`say: ${text}`);
  await page.bringToFront(); // input events go to the page in front
  await page.type('#text', text);
  await page.click('#say button');
}

test('two pages chat through the demo in Chromium', async () => {
  const port = await freePort();
  const server = await startServer(port);
  const browser = await puppeteer.launch({
    executablePath: chromium,
    headless: true,
    // CI runs as root, where Chromium's sandbox cannot start.
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
  const errors = [];
  // Once the server or the proxy has been down on purpose, refused
  // reconnects are expected; uncaught errors never are.
  let sawOutage = false;
  const proxy = await startProxy(port);
  try {
    const url = `http://127.0.0.1:${port}/demo/?room=lobby`;
    const open = async (name, query = '') => {
      const page = await browser.newPage();
      await page.setViewport({ width: 1000, height: 600 });
      page.on('pageerror', (e) => errors.push(`${name}: ${e.message}`));
      page.on('console', (m) => {
        // Reconnects refused while the gateway or the proxy is down on
        // purpose: Chromium logs each, and the client reports each to the
        // console (nobody listens to its `error`). The report may come
        // after the page is open again, so they are told apart by text.
        const text = m.text();
        const refused =
          /^WebSocket connection to .* failed/.test(text) || text.startsWith('switchboard:');
        if (m.type() === 'error' && !(refused && sawOutage)) errors.push(`${name}: ${text}`);
      });
      const res = await page.goto(url + query, { waitUntil: 'load' });
      assert.equal(res.status(), 200, 'the page comes from the gateway');
      await pageUntil(page, () => window.demo && window.demo.state === 'open', null, `${name} open`);
      await pageUntil(
        page,
        () => document.querySelector('#state').dataset.state === 'open',
        null,
        `${name} shows open`,
      );
      return page;
    };
    const a = await open('a');
    // b talks to the gateway through the proxy, so that its connection can
    // be cut.
    const b = await open('b', `&wsport=${proxy.port}`);
    // Both in the room; the member count shows 2 on both (who, every 2 s).
    for (const [name, page] of [['a', a], ['b', b]])
      await pageUntil(
        page,
        () => document.querySelector('#rooms li[data-room="lobby"] .count')?.textContent === '2 online',
        null,
        `${name} sees 2 members`,
      );

    await say(a, 'hello from a');
    await say(b, 'hello from b');
    for (const [name, page] of [['a', a], ['b', b]]) {
      const texts = await pageUntil(
        page,
        () => {
          const t = window.demo.received.map((m) => m.text);
          return t.length >= 2 && t;
        },
        null,
        `${name} received both`,
      );
      assert.deepEqual([...texts].sort(), ['hello from a', 'hello from b'], name);
      const shown = await page.$$eval('#messages li', (lis) => lis.map((li) => li.textContent));
      assert.ok(shown.some((t) => t.endsWith('hello from a')), `${name} shows a's message`);
      assert.ok(shown.some((t) => t.endsWith('hello from b')), `${name} shows b's message`);
    }
    // b's connection drops while a keeps talking: the gateway keeps b's
    // session (an abnormal close), b comes back through the proxy, resumes
    // and gets exactly what it missed, once.
    sawOutage = true;
    proxy.open = false;
    proxy.cut();
    await pageUntil(b, () => window.demo.state !== 'open', null, 'b sees the drop');
    const missed = ['while b was away 1', 'while b was away 2', 'while b was away 3'];
    for (const text of missed) await say(a, text);
    await pageUntil(
      a,
      (n) => window.demo.received.length >= n,
      2 + missed.length,
      'a has its own messages back',
    );
    proxy.open = true;
    const report = await pageUntil(
      b,
      () => window.demo.recoveries.length > 0 && window.demo.recoveries[0],
      null,
      'b recovered',
      20000,
    );
    assert.equal(report.fresh, false, JSON.stringify(report));
    const room = report.rooms['chat:lobby'];
    assert.ok(room && room.recovered === true, JSON.stringify(report));
    assert.equal(room.replayed, missed.length, JSON.stringify(report));
    await pageUntil(
      b,
      (n) => window.demo.received.length >= n,
      2 + missed.length,
      'b has the missed messages',
    );
    await say(a, 'after the recovery');
    await pageUntil(
      b,
      () => window.demo.received.some((m) => m.text === 'after the recovery'),
      null,
      'b receives live traffic again',
    );
    const got = await b.evaluate(() => window.demo.received.map((m) => m.text));
    const order = [...missed, 'after the recovery'].map((t) => got.indexOf(t));
    assert.deepEqual([...order].sort((x, y) => x - y), order, `in order: ${got}`);
    for (const text of [...missed, 'after the recovery'])
      assert.equal(got.filter((t) => t === text).length, 1, `exactly once: ${text} in ${got}`);
    const line = await b.$eval('#recovery', (el) => el.textContent);
    assert.match(line, /3 missed message\(s\) replayed/);
    if (process.env.SB_SCREENSHOT) await b.screenshot({ path: process.env.SB_SCREENSHOT });

    // The connection state is visible: the server goes, the page says so.
    sawOutage = true;
    await stopServer(server);
    await pageUntil(
      b,
      () => ['reconnecting', 'connecting'].includes(document.querySelector('#state').dataset.state),
      null,
      'b shows the lost connection',
    );
    const second = await startServer(port);
    try {
      await pageUntil(b, () => window.demo.state === 'open', null, 'b reconnected', 20000);
      // Without recovery a reconnect joins again: b still talks to a.
      await pageUntil(a, () => window.demo.state === 'open', null, 'a reconnected', 20000);
        await pageUntil(
        b,
        () => document.querySelector('#rooms li[data-room="lobby"] .count')?.textContent === '2 online',
        null,
        'b sees 2 members again',
      );
      await say(b, 'back again');
      await pageUntil(
        a,
        () => window.demo.received.some((m) => m.text === 'back again'),
        null,
        'a receives after the reconnect',
      );
    } finally {
      await stopServer(second);
    }
    assert.deepEqual(errors, [], 'no page errors');
  } finally {
    await browser.close();
    await proxy.close();
    if (server.exitCode === null) await stopServer(server);
  }
});
