// The secure frames' side of the hand-off: which window messages count as a claim.
import assert from 'node:assert/strict';
import test from 'node:test';

import { CLAIM, claimedSecret, webmailOrigins } from '../../extension/ui/frame_channel.js';

const SECRET = 'ab'.repeat(32);
const parent = {};
const claim = { source: parent, origin: 'https://mail.google.com', data: { autosmime: CLAIM, secret: SECRET } };

test('a claim is a secret-shaped string posted by the parent window from a webmail origin', () => {
  assert.equal(claimedSecret(claim, parent), SECRET);
});

test('anything else is no claim at all', () => {
  assert.equal(claimedSecret({ ...claim, source: {} }, parent), null); // another window
  assert.equal(claimedSecret({ ...claim, origin: 'https://evil.test' }, parent), null);
  assert.equal(claimedSecret({ ...claim, data: { ...claim.data, secret: 'short' } }, parent), null);
  assert.equal(claimedSecret({ ...claim, data: { ...claim.data, secret: SECRET.toUpperCase() } }, parent), null);
  // what the secure frames used to obey: commands on a channel
  const command = { autosmime: 'frame-command', channel: '0b6f3a4e-8f1c-4d2b-9a7e-1c2d3e4f5a6b', type: 'open', raw: 'AAAA' };
  assert.equal(claimedSecret({ ...claim, data: command }, parent), null);
  assert.equal(claimedSecret({ ...claim, data: null }, parent), null);
  assert.equal(claimedSecret(null, parent), null);
});

test('secure frames accept the webmail origins the manifest opens them to, and only those', () => {
  const manifest = {
    web_accessible_resources: [
      { resources: ['ui/editor.html', 'ui/viewer.html'], matches: ['https://mail.google.com/*', 'https://webmail.example.test/*'] },
      { resources: ['x.png'], matches: ['<all_urls>', 'https://*.example.org/*'] },
    ],
  };
  const origins = webmailOrigins(manifest);
  assert.deepEqual(origins, ['https://mail.google.com', 'https://webmail.example.test']);
  assert.deepEqual(webmailOrigins({}), []);
  const roundcube = { ...claim, origin: 'https://webmail.example.test' };
  assert.equal(claimedSecret(roundcube, parent, origins), SECRET);
  assert.equal(claimedSecret(roundcube, parent), null); // a Gmail-only build
});
