// A recovery storm ([recovery], issue 13): N clients join one room, all
// drop at once (no close frame), a publisher sends M room messages while
// they are gone, then all N reconnect at the same moment and resume.
// Reports the time from the first reconnect until every client has its
// sb:resumed and all M missed messages, the share recovered, duplicates
// and gaps seen, and the server's VmRSS before the joins, with the
// sessions kept, and after the storm.
//
// usage: node recovery_storm.mjs PORT SERVER_PID [N=10000] [M=50]
// (the `ws` package on NODE_PATH or in SB_NODE_MODULES). In a cluster,
// PORT and SERVER_PID are comma-separated lists (one per node): client i
// joins on node i mod K and resumes on the next node, the publisher is on
// the first, and the RSS is the nodes' sum.
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';

const require = createRequire(import.meta.url);
const WebSocket = require(path.join(process.env.SB_NODE_MODULES ?? '', 'ws'));
const ports = process.argv[2].split(',').map(Number);
const pids = process.argv[3].split(',').map(Number);
const N = Number(process.argv[4] ?? 10000);
const M = Number(process.argv[5] ?? 50);
const K = ports.length;
const rssOf = (pid) => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);
const rss = () => pids.reduce((sum, pid) => sum + rssOf(pid), 0);

function open(onFrame, node = 0) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${ports[node % K]}/`, { perMessageDeflate: false });
    ws.on('message', (d) => onFrame(JSON.parse(d)));
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

async function inBatches(n, size, fn) {
  for (let i = 0; i < n; i += size) {
    const batch = [];
    for (let j = i; j < Math.min(n, i + size); j++) batch.push(fn(j));
    await Promise.all(batch);
  }
}

const rssStart = rss();
const clients = [];
await inBatches(N, 500, (i) =>
  new Promise((resolve, reject) => {
    const c = { token: null, epoch: null, offset: 0, ws: null, joined: false };
    clients[i] = c;
    open((m) => {
      if (m.event === 'sb:session') c.token = m.data.token;
      else if (m.event === 'sb:joined') { c.epoch = m.data.epoch; c.offset = m.data.offset; }
      else if (m.event === 'joined') c.joined = true;
      if (c.joined && c.epoch !== null) resolve(); // either order in a cluster
    }, i).then((ws) => {
      c.ws = ws;
      ws.send(JSON.stringify({ event: 'join', data: { room: 'storm' } }));
    }, reject);
  }),
);
const rssJoined = rss();

let pubGot = 0;
const pub = await open((m) => { if (m.event === 'said') pubGot++; });
pub.send(JSON.stringify({ event: 'join', data: { room: 'storm' } }));
await new Promise((r) => setTimeout(r, 200));

for (const c of clients) c.ws._socket.destroy();
await new Promise((r) => setTimeout(r, 1000)); // the server sees them go
for (let i = 1; i <= M; i++)
  pub.send(JSON.stringify({ event: 'say', data: { room: 'storm', text: `m${i}` } }));
while (pubGot < M) await new Promise((r) => setTimeout(r, 10));
const rssDropped = rss();

let done = 0, recovered = 0, dups = 0, gaps = 0;
let finish;
const allDone = new Promise((r) => (finish = r));
const t0 = process.hrtime.bigint();
await inBatches(N, 2000, (i) => {
  const c = clients[i];
  let resumed = false, got = 0, ok = false, last = c.offset, counted = false;
  const check = () => {
    if (!counted && resumed && (!ok || got === M)) {
      counted = true;
      if (++done === N) finish();
    }
  };
  return open((m) => {
    if (m.event === 'sb:resumed') {
      resumed = true;
      ok = m.data.rooms?.['chat:storm']?.recovered === true;
      if (ok) recovered++;
    } else if (m.event === 'said') {
      if (m.offset <= last) dups++;
      else if (m.offset !== last + 1) gaps++;
      last = Math.max(last, m.offset);
      got++;
    }
    check();
  }, i + 1).then((ws) => {
    c.ws = ws;
    ws.send(JSON.stringify({ event: 'sb:resume', data: { token: c.token, rooms: { 'chat:storm': { epoch: c.epoch, offset: c.offset } } } }));
  });
});
await allDone;
const ms = Number(process.hrtime.bigint() - t0) / 1e6;
const rssAfter = rss();
console.log(
  `clients=${N} missed=${M} resume_all_ms=${ms.toFixed(0)} recovered=${recovered}/${N} ` +
    `duplicates=${dups} gaps=${gaps} replayed_frames=${recovered * M} ` +
    `rss_kib_start=${rssStart} rss_kib_joined=${rssJoined} rss_kib_sessions_kept=${rssDropped} rss_kib_after=${rssAfter}`,
);
for (const c of clients) c.ws.terminate();
pub.terminate();
process.exit(0);
