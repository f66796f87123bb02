// wss:// through the real server: a `ws` client that trusts the test's own
// self-signed certificate sends identity and must get the value back.
const WebSocket = require('ws');
const fs = require('fs');

const [port, certFile] = process.argv.slice(2);
const socket = new WebSocket(`wss://127.0.0.1:${port}/`, {
  ca: fs.readFileSync(certFile),
  servername: 'localhost',
});
// Generous: under valgrind a TLS handshake takes seconds.
const timer = setTimeout(() => {
  console.error('timed out');
  process.exit(1);
}, 20000);
socket.on('open', () => socket.send(JSON.stringify({ event: 'identity', data: 'secret' })));
socket.on('message', (data) => {
  if (data.toString() !== '"secret"') {
    console.error('unexpected reply', data.toString());
    process.exit(1);
  }
  socket.close(1000);
});
socket.on('close', (code) => {
  clearTimeout(timer);
  console.log('wss: reply received, closed with', code);
  process.exit(code === 1000 ? 0 : 1);
});
socket.on('error', (err) => {
  console.error('error', err.message);
  process.exit(1);
});
