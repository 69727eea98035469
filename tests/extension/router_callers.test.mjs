// The router and the worker against protocol.json's `callers`: the one definition of who in the
// extension may ask the host for which op. Any drift between the two fails here.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';

import { CONTENT_SCRIPT_OPS, senderMayAsk } from '../../extension/background/router.js';

const protocol = JSON.parse(readFileSync(new URL('../../native_host/protocol.json', import.meta.url), 'utf-8'));
const ops = Object.entries(protocol.ops);
const named = (caller) => new Set(ops.filter(([, spec]) => spec.callers.includes(caller)).map(([op]) => op));

const ID = 'abcdefghijklmnopabcdefghijklmnop';
const BASE = `chrome-extension://${ID}/`;

test('content scripts may ask for exactly the ops whose callers name content-script', () => {
  assert.deepEqual([...CONTENT_SCRIPT_OPS].sort(), [...named('content-script')].sort());
  const contentScript = { id: ID, tab: { id: 1 }, frameId: 0, url: 'https://mail.google.com/mail/u/0/' };
  for (const [op, spec] of ops) {
    assert.equal(senderMayAsk(contentScript, op, ID, BASE), spec.callers.includes('content-script'), op);
  }
});

test('the extension\'s own pages may ask for exactly the ops whose callers name extension-page', () => {
  const popup = { id: ID, url: `${BASE}ui/popup.html` };
  const options = { id: ID, tab: { id: 2 }, frameId: 0, url: `${BASE}ui/options.html` };
  for (const [op, spec] of ops) {
    assert.equal(senderMayAsk(popup, op, ID, BASE), spec.callers.includes('extension-page'), op);
    assert.equal(senderMayAsk(options, op, ID, BASE), spec.callers.includes('extension-page'), op);
  }
});

test('the secure frames may ask for nothing, whatever protocol.json says', () => {
  for (const page of ['ui/editor.html', 'ui/viewer.html']) {
    const frame = { id: ID, tab: { id: 1 }, frameId: 7, url: `${BASE}${page}` };
    for (const [op] of ops) assert.equal(senderMayAsk(frame, op, ID, BASE), false, `${page} ${op}`);
  }
});

test('the worker asks on its own account for exactly the ops whose callers name worker', () => {
  const folder = new URL('../../extension/background/', import.meta.url);
  const asked = new Set();
  for (const file of readdirSync(folder).filter((name) => name.endsWith('.js'))) {
    const source = readFileSync(new URL(file, folder), 'utf-8');
    for (const match of source.matchAll(/\brequest\('([a-z.]+)'/g)) asked.add(match[1]);
  }
  assert.ok(asked.size > 0, 'no request(...) found: the pattern no longer matches the worker code');
  assert.deepEqual([...asked].sort(), [...named('worker')].sort());
});
