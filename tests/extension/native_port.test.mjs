// NativePort against an in-memory port: the browser's side of the protocol, without a browser.
// (The real port, Chromium and the real host are exercised by tests/e2e.)
import './base64.mjs';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { NativePort, HostError } from '../../extension/background/native_port.js';
import { splitMessage } from '../../extension/background/chunks.js';
import { senderMayAsk, validateRequest } from '../../extension/background/router.js';

const protocol = JSON.parse(readFileSync(new URL('../../native_host/protocol.json', import.meta.url), 'utf-8'));

function fakeConnect(respond) {
  const ports = [];
  const connect = () => {
    const listeners = { message: [], disconnect: [] };
    const port = {
      posted: [],
      onMessage: { addListener: (f) => listeners.message.push(f) },
      onDisconnect: { addListener: (f) => listeners.disconnect.push(f) },
      postMessage(frame) {
        this.posted.push(frame);
        respond(frame, (reply) => listeners.message.forEach((f) => f(reply)), port);
      },
      die() { listeners.disconnect.forEach((f) => f()); },
    };
    ports.push(port);
    return port;
  };
  return { connect, ports };
}

test('replies, progress events and errors reach the right request', async () => {
  const { connect } = fakeConnect((frame, deliver) => {
    if (frame.op === 'echo') {
      deliver({ id: frame.id, event: 'progress', done: 1, total: 1, stage: 'echoing' });
      deliver({ id: frame.id, ok: true, result: frame.params.payload });
    } else {
      deliver({ id: frame.id, ok: false, error: { code: 'unknown_op', message: 'no such op' } });
    }
  });
  const port = new NativePort('h', protocol, connect);
  const progress = [];
  assert.equal(await port.request('echo', { payload: 'x' }, { onProgress: (p) => progress.push(p) }), 'x');
  assert.deepEqual(progress, [{ done: 1, total: 1, stage: 'echoing' }]);
  await assert.rejects(port.request('nope'), (e) => e instanceof HostError && e.code === 'unknown_op');
  assert.equal(port.pending.size, 0);
});

test('a chunked reply is reassembled before it resolves', async () => {
  const { connect } = fakeConnect((frame, deliver) => {
    const reply = { id: frame.id, ok: true, result: 'z'.repeat(3_000_000) };
    for (const f of splitMessage(reply, { maxFrame: protocol.limits.maxHostToBrowserFrame, chunkRawBytes: protocol.limits.chunkRawBytes })) deliver(f);
  });
  const port = new NativePort('h', protocol, connect);
  assert.equal((await port.request('echo', { payload: '' })).length, 3_000_000);
});

test('a dead host fails what was in flight and the next request reconnects', async () => {
  const { connect, ports } = fakeConnect((frame, deliver, port) => {
    if (ports.length === 1) port.die();
    else deliver({ id: frame.id, ok: true, result: 'again' });
  });
  const port = new NativePort('h', protocol, connect);
  await assert.rejects(port.request('echo', { payload: 1 }), (e) => e.code === 'host_unavailable');
  assert.equal(await port.request('echo', { payload: 2 }), 'again');
  assert.equal(port.connections, 2);
});

test('content scripts may ask only for allowed ops; malformed requests are named', () => {
  const base = 'chrome-extension://abc/';
  assert.equal(senderMayAsk({ id: 'abc', tab: {}, url: 'https://mail.google.com/' }, 'echo', 'abc', base), true);
  assert.equal(senderMayAsk({ id: 'abc', tab: {}, url: 'https://mail.google.com/' }, 'keys.export', 'abc', base), false);
  assert.equal(senderMayAsk({ id: 'abc', url: `${base}ui/popup.html` }, 'keys.export', 'abc', base), true);
  assert.equal(senderMayAsk({ id: 'evil', url: `${base}x` }, 'echo', 'abc', base), false);
  assert.equal(validateRequest({ type: 'autosmime.request', op: 'echo', params: {} }), null);
  assert.match(validateRequest({ type: 'autosmime.request', op: '' }), /op/);
  assert.match(validateRequest({ type: 'autosmime.request', op: 'echo', params: [] }), /params/);
  assert.match(validateRequest(null), /not an autosmime/);
});
