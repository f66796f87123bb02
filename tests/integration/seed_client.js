// The NestJS tutorial's client, unchanged but for the assertions: a plain
// `ws` WebSocket to ws://localhost:3000 sends {"event":"events",...} and
// must get the three frames the NestJS gateway sends.
const WebSocket = require('ws');

const socket = new WebSocket('ws://localhost:3000');
const got = [];
const timer = setTimeout(() => {
  console.error('timed out; got', JSON.stringify(got));
  process.exit(1);
}, 5000);

socket.on('open', () => {
  socket.send(JSON.stringify({ event: 'events', data: 'hello world' }));
});
socket.on('message', (data) => {
  got.push(JSON.parse(data.toString()));
  if (got.length === 3) {
    const want = [1, 2, 3].map((item) => ({ event: 'events', data: item }));
    if (JSON.stringify(got) !== JSON.stringify(want)) {
      console.error('unexpected frames', JSON.stringify(got));
      process.exit(1);
    }
    socket.close(1000);
  }
});
socket.on('close', (code) => {
  clearTimeout(timer);
  if (got.length !== 3 || code !== 1000) {
    console.error('closed with', code, 'after', JSON.stringify(got));
    process.exit(1);
  }
  console.log('seed client: 3 frames received, closed with', code);
  process.exit(0);
});
socket.on('error', (err) => {
  console.error('error', err.message);
  process.exit(1);
});
