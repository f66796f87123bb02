// The chat demo: the bundled chat plugin through the Switchboard client
// (../index.js), served by the gateway itself (`static` in etc/demo.ini).
// No build step and nothing from a CDN. Everything the page shows is also
// in `window.demo`, for the browser test (tests/browser).
import { Switchboard } from '../index.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
// ?ws=PATH picks the WebSocket's path, ?wsport=N another port on the same
// host (the browser test puts a proxy there to cut the connection).
const wsHost = params.get('wsport')
  ? `${location.hostname}:${params.get('wsport')}`
  : location.host;
const wsUrl =
  (location.protocol === 'https:' ? 'wss://' : 'ws://') + wsHost +
  (params.get('ws') || '/');

const sb = new Switchboard(wsUrl, { backoffInitial: 250, backoffMax: 5000 });
const rooms = new Map(); // name -> { members, messages: [] }
let current = null;
const mine = new Set(); // this page's client ids: a resume gives a new one
const demo = {
  sb,
  state: sb.state,
  rooms,
  received: [],   // every `said`, in arrival order: {room, from, text}
  recoveries: [], // every recovery report
  get current() { return current; },
};
window.demo = demo;

// A room of the chat plugin is host room "chat:NAME" on the recovery wire.
const roomName = (r) => (r.startsWith('chat:') ? r.slice(5) : r);

function showState(state) {
  demo.state = state;
  const el = $('state');
  el.textContent = state;
  el.className = `state ${state}`;
  el.dataset.state = state;
  const open = state === 'open';
  for (const el of document.querySelectorAll('#say input, #say button'))
    el.disabled = !current;
  $('join').querySelector('button').disabled = false;
  document.body.dataset.online = String(open);
}

function renderRooms() {
  const ul = $('rooms');
  ul.replaceChildren();
  for (const [name, r] of rooms) {
    const li = document.createElement('li');
    li.dataset.room = name;
    li.className = name === current ? 'current' : '';
    const label = document.createElement('span');
    label.textContent = name;
    const count = document.createElement('span');
    count.className = 'count';
    count.textContent = r.members == null ? '' : `${r.members} online`;
    li.append(label, count);
    li.onclick = () => select(name);
    ul.append(li);
  }
}

function renderMessages() {
  const ol = $('messages');
  ol.replaceChildren();
  const r = rooms.get(current);
  $('title').textContent = current ? `#${current}` : 'No room yet';
  for (const m of r ? r.messages : []) {
    const li = document.createElement('li');
    if (m.note) {
      li.className = 'note';
      li.textContent = m.note;
    } else {
      const from = document.createElement('span');
      from.className = 'from';
      from.textContent = mine.has(m.from) ? 'me' : `#${m.from}`;
      li.append(from, document.createTextNode(m.text));
    }
    ol.append(li);
  }
  ol.scrollTop = ol.scrollHeight;
}

function select(name) {
  current = name;
  showState(sb.state);
  renderRooms();
  renderMessages();
}

async function refreshMembers(name) {
  try {
    const { members } = await sb.request('who', { room: name });
    const r = rooms.get(name);
    if (r) r.members = members.length;
    renderRooms();
  } catch (err) {
    // Offline, or the room was left: the next refresh tries again.
  }
}

async function join(name) {
  if (!rooms.has(name)) rooms.set(name, { members: null, messages: [] });
  select(name);
  try {
    const { members } = await sb.request('join', { room: name });
    rooms.get(name).members = members;
    renderRooms();
  } catch (err) {
    note(name, `cannot join: ${err.message}`);
  }
}

function note(name, text) {
  const r = rooms.get(name);
  if (!r) return;
  r.messages.push({ note: text });
  if (name === current) renderMessages();
}

sb.addEventListener('state', ({ state }) => showState(state));
sb.on('said', ({ room, from, text }) => {
  demo.received.push({ room, from, text });
  const r = rooms.get(room);
  if (!r) return;
  r.messages.push({ from, text });
  if (room === current) renderMessages();
});
sb.addEventListener('open', ({ reconnect, resuming }) => {
  $('me').textContent = sb.clientId ? `you are #${sb.clientId}` : '';
  // Without recovery a reconnect is a new client: join again.
  if (reconnect && !resuming)
    for (const name of rooms.keys()) join(name);
});
sb.addEventListener('session', ({ client, previous }) => {
  mine.add(client);
  if (previous != null) mine.add(previous);
  $('me').textContent = `you are #${client}`;
  renderMessages();
});
sb.addEventListener('recovery', (report) => {
  demo.recoveries.push(report);
  const parts = [];
  if (report.fresh) parts.push('the session was gone: rooms joined again');
  for (const [room, r] of Object.entries(report.rooms ?? {})) {
    const name = roomName(room);
    if (r.recovered) {
      parts.push(`#${name}: recovered, ${r.replayed} missed message(s) replayed`);
      note(name, `reconnected: ${r.replayed} missed message(s) replayed`);
    } else {
      parts.push(`#${name}: history lost`);
      note(name, 'reconnected: some messages may be missing');
    }
  }
  if (report.fresh) for (const name of rooms.keys()) join(name);
  const el = $('recovery');
  el.textContent = parts.join('; ') || 'reconnected';
  el.hidden = false;
});

$('join').addEventListener('submit', (e) => {
  e.preventDefault();
  const name = $('room').value.trim();
  if (name) join(name);
});
$('say').addEventListener('submit', (e) => {
  e.preventDefault();
  const text = $('text').value;
  if (!text || !current) return;
  sb.emit('say', { room: current, text });
  $('text').value = '';
});
setInterval(() => { for (const name of rooms.keys()) refreshMembers(name); }, 2000);
showState(sb.state);
if (params.get('room')) join(params.get('room'));
