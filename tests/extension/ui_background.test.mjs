// The worker's pieces for the extension's pages: the long-request port (progress relayed, then
// one answer) and the account hint from a content script (address only).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { installLongRequests, isTrustedExtensionPage, LONG_REQUEST_PORT } from '../../extension/background/router.js';
import { addressFromWebmail, installAccountHints } from '../../extension/background/account_hint.js';
import { HostError } from '../../extension/background/native_port.js';

const ID = 'abcdefghijklmnopabcdefghijklmnop';
const BASE = `chrome-extension://${ID}/`;

function fakeRuntime() {
  const listeners = { connect: [], message: [] };
  return {
    id: ID,
    getURL: (path) => `${BASE}${path}`,
    onConnect: { addListener: (f) => listeners.connect.push(f) },
    onMessage: { addListener: (f) => listeners.message.push(f) },
    listeners,
  };
}

function fakePort(name, sender) {
  const listeners = { message: [], disconnect: [] };
  return {
    name,
    sender,
    posted: [],
    disconnected: false,
    onMessage: { addListener: (f) => listeners.message.push(f) },
    onDisconnect: { addListener: (f) => listeners.disconnect.push(f) },
    postMessage(m) { this.posted.push(m); },
    disconnect() { this.disconnected = true; },
    send(m) { listeners.message.forEach((f) => f(m)); },
    close() { listeners.disconnect.forEach((f) => f()); },
  };
}

const settle = () => new Promise((resolve) => setTimeout(resolve, 0));

test('trusted pages: the popup, and our pages as the top frame of a tab; not framed in webmail', () => {
  assert.ok(isTrustedExtensionPage({ id: ID, url: `${BASE}ui/popup.html` }, ID, BASE));
  assert.ok(isTrustedExtensionPage({ id: ID, url: `${BASE}ui/options.html`, tab: { id: 1 }, frameId: 0 }, ID, BASE));
  assert.ok(!isTrustedExtensionPage({ id: ID, url: `${BASE}ui/editor.html`, tab: { id: 1 }, frameId: 7 }, ID, BASE));
  assert.ok(isTrustedExtensionPage({ id: ID, url: `${BASE}ui/onboarding.html?mode=restore`, tab: { id: 1 }, frameId: 0 }, ID, BASE));
  assert.ok(!isTrustedExtensionPage({ id: ID, url: `${BASE}ui/editor.html`, tab: { id: 1 }, frameId: 0 }, ID, BASE));
  assert.ok(!isTrustedExtensionPage({ id: ID, url: 'https://mail.google.com/', tab: { id: 1 }, frameId: 0 }, ID, BASE));
  assert.ok(!isTrustedExtensionPage({ id: 'other', url: `${BASE}ui/popup.html` }, ID, BASE));
});

test('a long request relays every progress event, then the answer, then closes', async () => {
  const runtime = fakeRuntime();
  const calls = [];
  const nativePort = {
    request(op, params, { onProgress }) {
      calls.push({ op, params });
      onProgress({ done: 1, total: 3, stage: 'Creating your keys' });
      onProgress({ done: 2, total: 3, stage: 'Asking the certificate authority' });
      return Promise.resolve({ recoveryCode: '1111' });
    },
  };
  installLongRequests(runtime, nativePort);
  const port = fakePort(LONG_REQUEST_PORT, { id: ID, url: `${BASE}ui/onboarding.html`, tab: { id: 3 }, frameId: 0 });
  runtime.listeners.connect.forEach((f) => f(port));
  port.send({ type: 'autosmime.request', op: 'enroll', params: { address: 'a@b.test' } });
  await settle();
  assert.deepEqual(calls, [{ op: 'enroll', params: { address: 'a@b.test' } }]);
  assert.deepEqual(port.posted, [
    { event: 'progress', done: 1, total: 3, stage: 'Creating your keys' },
    { event: 'progress', done: 2, total: 3, stage: 'Asking the certificate authority' },
    { ok: true, result: { recoveryCode: '1111' } },
  ]);
  assert.ok(port.disconnected);
});

test('a long request passes host errors on, and refuses content scripts and bad requests', async () => {
  const runtime = fakeRuntime();
  let asked = 0;
  installLongRequests(runtime, {
    request() { asked += 1; return Promise.reject(new HostError('recovery_code', 'Wrong code.')); },
  });
  const page = fakePort(LONG_REQUEST_PORT, { id: ID, url: `${BASE}ui/onboarding.html` });
  runtime.listeners.connect.forEach((f) => f(page));
  page.send({ type: 'autosmime.request', op: 'backup.restore', params: {} });
  await settle();
  assert.deepEqual(page.posted, [{ ok: false, error: { code: 'recovery_code', message: 'Wrong code.' } }]);

  const content = fakePort(LONG_REQUEST_PORT, { id: ID, url: 'https://mail.google.com/mail/u/0/', tab: { id: 2 }, frameId: 0 });
  runtime.listeners.connect.forEach((f) => f(content));
  content.send({ type: 'autosmime.request', op: 'keys.export', params: {} });
  await settle();
  assert.equal(content.posted[0].error.code, 'forbidden_origin');

  const bad = fakePort(LONG_REQUEST_PORT, { id: ID, url: `${BASE}ui/options.html` });
  runtime.listeners.connect.forEach((f) => f(bad));
  bad.send({ type: 'autosmime.request', op: '' });
  await settle();
  assert.equal(bad.posted[0].error.code, 'bad_request');
  assert.equal(asked, 1);

  const other = fakePort('someone-else', { id: ID, url: `${BASE}ui/options.html` });
  runtime.listeners.connect.forEach((f) => f(other));
  other.send({ type: 'autosmime.request', op: 'hello' });
  await settle();
  assert.deepEqual(other.posted, []);
});

test('progress after the page went away is dropped', async () => {
  const runtime = fakeRuntime();
  let progress;
  let finish;
  installLongRequests(runtime, {
    request(op, params, { onProgress }) {
      progress = onProgress;
      return new Promise((resolve) => { finish = resolve; });
    },
  });
  const port = fakePort(LONG_REQUEST_PORT, { id: ID, url: `${BASE}ui/options.html` });
  runtime.listeners.connect.forEach((f) => f(port));
  port.send({ type: 'autosmime.request', op: 'enroll', params: {} });
  port.close();
  progress({ done: 1, total: 2, stage: 'x' });
  finish({});
  await settle();
  assert.deepEqual(port.posted, []);
});

test('the webmail address from a Gmail title or account label, and nothing else', () => {
  assert.equal(addressFromWebmail({ title: 'Inbox - alice@example.test - Gmail' }), 'alice@example.test');
  assert.equal(addressFromWebmail({ title: 'Inbox (3) - Alice.B+x@Example.Test - Gmail' }), 'alice.b+x@example.test');
  assert.equal(addressFromWebmail({ label: 'Google Account: Bob Smith\n(bob@example.test)', title: 'Inbox - x@y.test - Gmail' }), 'bob@example.test');
  assert.equal(addressFromWebmail({ title: 'Gmail' }), null);
  assert.equal(addressFromWebmail({}), null);
  assert.equal(addressFromWebmail({ title: `${'a'.repeat(2000)}@example.test` }), null);
});

test('account hints keep the address only, from our own content scripts', () => {
  const runtime = fakeRuntime();
  const stored = [];
  installAccountHints(runtime, { set: (items) => stored.push(items) });
  const [listener] = runtime.listeners.message;
  listener({ type: 'autosmime.accountHint', title: 'Inbox - alice@example.test - Gmail', secret: 'x' }, { id: ID, url: 'https://mail.google.com/mail/u/0/' });
  listener({ type: 'autosmime.accountHint', title: 'Inbox - eve@example.test - Gmail' }, { id: 'another-extension', url: 'https://evil.test/' });
  listener({ type: 'autosmime.request', op: 'hello' }, { id: ID });
  assert.equal(stored.length, 1);
  assert.deepEqual(Object.keys(stored[0]), ['accountHint']);
  const { address, origin } = stored[0].accountHint;
  assert.equal(address, 'alice@example.test');
  assert.equal(origin, 'https://mail.google.com');
});
