// The plain Node baseline: a `ws` server that sends every message back as it
// came (text stays text, binary stays binary), nothing else.
//
// Usage: node ws-echo.js [PORT]   (or PORT=..., default 3000; HOST, default
// 127.0.0.1).
//
// With --broadcast JOIN it is instead a minimal fan-out server, used to check
// sb_loadgen's broadcast mode against a known peer: a client that sends
// exactly JOIN becomes a subscriber; any other message is sent to every
// subscriber (the sender too, if it joined).
import { WebSocketServer } from 'ws';

const args = process.argv.slice(2);
let join = null;
const bi = args.indexOf('--broadcast');
if (bi >= 0) {
  join = args[bi + 1];
  args.splice(bi, 2);
}
const port = Number(args[0] || process.env.PORT || 3000);
const host = process.env.HOST || '127.0.0.1';

// No per-message deflate: the benchmark's client never offers it, and the
// echo should cost what ws costs with its defaults otherwise.
const wss = new WebSocketServer({ host, port, perMessageDeflate: false });
const subscribers = new Set();

wss.on('connection', (ws) => {
  ws.on('error', () => {});
  if (join === null) {
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
    return;
  }
  ws.on('message', (data, isBinary) => {
    if (!isBinary && data.length === join.length && data.toString() === join) {
      subscribers.add(ws);
      return;
    }
    for (const s of subscribers) s.send(data, { binary: isBinary });
  });
  ws.on('close', () => subscribers.delete(ws));
});

wss.on('listening', () => {
  const mode = join === null ? 'echo' : 'broadcast';
  console.log(`ws ${mode} listening on ws://${host}:${port}/ (pid ${process.pid})`);
});

const stop = () => process.exit(0);
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
