// connectSecureFrame's port to the worker: what a frame does when the worker closes it before
// any claim bound. A quiet MV3 worker is stopped after 30 s and its ports close; the spare viewer
// the content script loads ahead may wait much longer than that for its message.
import assert from 'node:assert/strict';
import test from 'node:test';

const ports = [];
function fakePort() {
  const listeners = { message: [], disconnect: [] };
  const port = {
    sent: [],
    postMessage: (message) => port.sent.push(message),
    onMessage: { addListener: (f) => listeners.message.push(f) },
    onDisconnect: { addListener: (f) => listeners.disconnect.push(f) },
    fromWorker: (message) => listeners.message.forEach((f) => f(message)),
    close: () => listeners.disconnect.forEach((f) => f()),
  };
  ports.push(port);
  return port;
}
const manifest = { web_accessible_resources: [{ resources: ['ui/viewer.html'], matches: ['https://mail.google.com/*'] }] };
globalThis.chrome = { runtime: { connect: () => fakePort(), getManifest: () => manifest } };
const parent = {};
const windowListeners = [];
globalThis.window = {
  parent,
  addEventListener: (type, f) => windowListeners.push(f),
  removeEventListener: (type, f) => windowListeners.splice(windowListeners.indexOf(f), 1),
};
const { CLAIM, connectSecureFrame } = await import('../../extension/ui/frame_channel.js');

const claim = (secret) => windowListeners.slice().forEach((f) => f({
  source: parent, origin: 'https://mail.google.com', data: { autosmime: CLAIM, secret },
}));

test('a viewer waiting unbound claims over a new port once the worker closed its first', () => {
  ports.length = 0;
  windowListeners.length = 0;
  const seen = [];
  connectSecureFrame((message) => seen.push(message), { waitUnbound: true });
  assert.equal(ports.length, 1);
  ports[0].close(); // the quiet worker stopped
  assert.deepEqual(seen, []); // nothing to say: it still waits
  claim('ab'.repeat(32));
  assert.equal(ports.length, 2, 'the claim opens a new port');
  assert.deepEqual(ports[1].sent, [{ type: 'claim', secret: 'ab'.repeat(32) }]);
  ports[1].fromWorker({ type: 'bound', kind: 'viewer' });
  assert.deepEqual(seen, [{ type: 'bound', kind: 'viewer' }]);
  ports[1].close(); // once bound, a closed port is the end
  assert.deepEqual(seen.at(-1), { type: 'disconnected', wasBound: true });
});

test('a frame that does not wait says it was disconnected and claims nothing more', () => {
  ports.length = 0;
  windowListeners.length = 0;
  const seen = [];
  connectSecureFrame((message) => seen.push(message));
  ports[0].close();
  assert.deepEqual(seen, [{ type: 'disconnected', wasBound: false }]);
  claim('cd'.repeat(32));
  assert.equal(ports.length, 1);
  assert.deepEqual(ports[0].sent, []);
});
