// A fake gateway for the unit tests, on the `ws` package: it records what
// each connection sends and lets a test answer by hand. `ws` is found on
// NODE_PATH or in SB_NODE_MODULES (the build's node_modules).
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(import.meta.url);

export function loadWs() {
  try {
    return require('ws');
  } catch {
    const dir = process.env.SB_NODE_MODULES;
    if (!dir) throw new Error('the ws package is missing: set NODE_PATH or SB_NODE_MODULES');
    return require(path.join(dir, 'ws'));
  }
}

export const ws = loadWs();

export function wait(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls fn until it returns a truthy value (or throws after ms). */
export async function until(fn, ms = 3000, what = 'condition') {
  const end = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await wait(5);
  }
}

export class FakeGateway {
  /** onConnection(sock, index) runs for every new connection. */
  static async start(onConnection = () => {}, port = 0) {
    const g = new FakeGateway();
    g.onConnection = onConnection;
    g.conns = [];
    g.received = []; // [{conn: index, msg}] in arrival order
    g.wss = new ws.WebSocketServer({ host: '127.0.0.1', port });
    await new Promise((r) => g.wss.once('listening', r));
    g.port = g.wss.address().port;
    g.url = `ws://127.0.0.1:${g.port}/`;
    g.wss.on('connection', (sock) => {
      const index = g.conns.length;
      g.conns.push(sock);
      sock.on('message', (data) => g.received.push({ conn: index, msg: JSON.parse(data.toString()) }));
      g.onConnection(sock, index);
    });
    return g;
  }

  /** The messages connection `index` sent (all when index is undefined). */
  from(index) {
    return this.received.filter((r) => index === undefined || r.conn === index).map((r) => r.msg);
  }

  send(index, msg) {
    this.conns[index].send(typeof msg === 'string' ? msg : JSON.stringify(msg));
  }

  /** Drops connection index without a close frame (as a lost network does). */
  drop(index) {
    this.conns[index].terminate();
  }

  async stop() {
    for (const c of this.conns) c.terminate();
    await new Promise((r) => this.wss.close(r));
  }
}
