// Session recovery against a fake gateway speaking issue 13's wire:
// sb:session, sb:joined, room messages with "room" and "offset", sb:resume
// as the first frame of a reconnect, sb:resumed, then the replay.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Switchboard } from '../index.js';
import { FakeGateway, until, wait, ws } from './helpers.js';

const fast = { WebSocket: ws.WebSocket, backoffInitial: 20, backoffMax: 40, backoffJitter: 0 };

function said(offset, text, room = 'lobby') {
  return { event: 'said', data: { room, text }, room, offset };
}

// A first connection that got a session, joined lobby (epoch 7, offset 10)
// and kitchen (epoch 3, offset 0), and received lobby 11 and 12.
async function setup(t, options = {}) {
  const g = await FakeGateway.start((sock, i) => {
    if (i === 0) sock.send(JSON.stringify({ event: 'sb:session', data: { client: 1, token: 'T1', ttl: 120 } }));
  });
  t.after(() => g.stop());
  const c = new Switchboard(g.url, { ...fast, ...options });
  t.after(() => c.close());
  const texts = [];
  c.on('said', (d) => texts.push(`${d.room}:${d.text}`));
  const reports = [];
  c.addEventListener('recovery', (d) => reports.push(d));
  await until(() => c.session?.token === 'T1', 3000, 'session');
  assert.equal(c.clientId, 1);
  g.send(0, { event: 'sb:joined', data: { room: 'lobby', epoch: 7, offset: 10 } });
  g.send(0, { event: 'sb:joined', data: { room: 'kitchen', epoch: 3, offset: 0 } });
  g.send(0, said(11, 'a'));
  g.send(0, said(12, 'b'));
  await until(() => texts.length === 2);
  assert.deepEqual(c.rooms, { lobby: { epoch: 7, offset: 12 }, kitchen: { epoch: 3, offset: 0 } });
  return { g, c, texts, reports };
}

test('reconnect resumes first, replays exactly once, then flushes the queue', async (t) => {
  const { g, c, texts, reports } = await setup(t, { backoffInitial: 100, backoffMax: 100 });
  g.drop(0);
  await until(() => c.state === 'reconnecting');
  c.emit('say', { room: 'lobby', text: 'queued' });
  await until(() => g.conns.length === 2 && g.from(1).length >= 1, 3000, 'resume');
  await wait(50);
  // Only sb:resume so far: the queue waits for sb:resumed.
  assert.deepEqual(g.from(1), [
    {
      event: 'sb:resume',
      data: { token: 'T1', rooms: { lobby: { epoch: 7, offset: 12 }, kitchen: { epoch: 3, offset: 0 } } },
    },
  ]);
  // The gateway: resumed, lobby recovered (now at 15), kitchen not (its
  // history was lost: epoch 4, offset 2).
  g.send(1, {
    event: 'sb:resumed',
    data: {
      client: 5,
      previous: 1,
      token: 'T2',
      rooms: { lobby: { recovered: true, epoch: 7, offset: 15 }, kitchen: { recovered: false, epoch: 4, offset: 2 } },
    },
  });
  // The replay, with a live message racing it (14 twice, 12 again).
  g.send(1, said(13, 'c'));
  g.send(1, said(14, 'd'));
  g.send(1, said(12, 'b'));
  g.send(1, said(14, 'd'));
  g.send(1, said(15, 'e'));
  g.send(1, said(16, 'live'));
  g.send(1, said(3, 'k', 'kitchen'));
  await until(() => texts.length === 7, 3000, 'replay');
  await wait(50);
  assert.deepEqual(texts, ['lobby:a', 'lobby:b', 'lobby:c', 'lobby:d', 'lobby:e', 'lobby:live', 'kitchen:k']);
  assert.equal(c.stats.duplicates, 2);
  assert.equal(c.session.token, 'T2');
  assert.equal(c.clientId, 5);
  assert.equal(reports.length, 1);
  assert.deepEqual(reports[0], {
    fresh: false,
    client: 5,
    previous: 1,
    rooms: {
      lobby: { recovered: true, replayed: 3, epoch: 7 },
      kitchen: { recovered: false, replayed: 0, epoch: 4 },
    },
  });
  assert.deepEqual(c.rooms, { lobby: { epoch: 7, offset: 16 }, kitchen: { epoch: 4, offset: 3 } });
  // The queued emit left after sb:resume, once sb:resumed came.
  await until(() => g.from(1).length === 2);
  assert.deepEqual(g.from(1)[1], { event: 'say', data: { room: 'lobby', text: 'queued' } });

  // A second drop resumes with the new token and the positions now held.
  g.drop(1);
  await until(() => g.conns.length === 3 && g.from(2).length === 1, 3000, 'second resume');
  assert.deepEqual(g.from(2)[0].data, {
    token: 'T2',
    rooms: { lobby: { epoch: 7, offset: 16 }, kitchen: { epoch: 4, offset: 3 } },
  });
});

test('an unknown or expired token: a fresh session, every room reported lost', async (t) => {
  const { g, c, reports } = await setup(t);
  const sessions = [];
  c.addEventListener('session', (d) => sessions.push(d));
  g.drop(0);
  await until(() => g.conns.length === 2 && g.from(1).length === 1, 3000, 'resume');
  g.send(1, { event: 'sb:session', data: { client: 9, token: 'T9', ttl: 120 } });
  g.send(1, { event: 'sb:resumed', data: { client: 9, previous: null, token: 'T9', rooms: {} } });
  await until(() => reports.length === 1);
  assert.equal(reports[0].fresh, true);
  assert.deepEqual(reports[0].rooms, {
    lobby: { recovered: false, replayed: 0, member: false },
    kitchen: { recovered: false, replayed: 0, member: false },
  });
  assert.deepEqual(c.rooms, {});
  assert.equal(c.session.token, 'T9');
  assert.equal(sessions.at(-1).resumed, false);
});

test('a gateway that never answers sb:resume: fresh after resumeTimeout', async (t) => {
  const { g, c, reports } = await setup(t, { resumeTimeout: 150 });
  g.drop(0);
  await until(() => g.conns.length === 2 && g.from(1).length === 1, 3000, 'resume');
  c.emit('after', 1);
  await until(() => reports.length === 1, 3000, 'timeout report');
  assert.equal(reports[0].fresh, true);
  assert.equal(reports[0].timedOut, true);
  await until(() => g.from(1).length === 2);
  assert.deepEqual(g.from(1)[1], { event: 'after', data: 1 });
});

test('recovery off, or no session: a plain reconnect without sb:resume', async (t) => {
  const { g, c } = await setup(t, { recovery: false });
  g.drop(0);
  await until(() => g.conns.length === 2 && c.state === 'open');
  c.emit('hello');
  await until(() => g.from(1).length === 1);
  assert.deepEqual(g.from(1), [{ event: 'hello' }]);
  assert.deepEqual(c.rooms, {});
});

test('forgetRoom stops resuming a room; sb:resync moves its position', async (t) => {
  const { g, c, reports } = await setup(t);
  c.forgetRoom('kitchen');
  g.send(0, { event: 'sb:resync', data: { room: 'lobby', epoch: 8, offset: 40 } });
  await until(() => reports.length === 1);
  assert.equal(reports[0].resync, true);
  assert.deepEqual(c.rooms, { lobby: { epoch: 8, offset: 40 } });
  g.drop(0);
  await until(() => g.conns.length === 2 && g.from(1).length === 1, 3000, 'resume');
  assert.deepEqual(g.from(1)[0].data.rooms, { lobby: { epoch: 8, offset: 40 } });
});
