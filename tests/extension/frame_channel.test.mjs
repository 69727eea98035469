import assert from 'node:assert/strict';
import test from 'node:test';

import { TRUSTED_COMMAND, isTrustedCommand } from '../../extension/ui/frame_channel.js';

const ID = 'fiekebmfepdmfcompphbnjohdkchbpdj';
const params = { channel: '0b6f3a4e-8f1c-4d2b-9a7e-1c2d3e4f5a6b', origin: 'https://mail.google.com' };
const contentScript = { id: ID, tab: { id: 4 }, frameId: 0, url: 'https://mail.google.com/mail/u/0/' };
const send = { type: TRUSTED_COMMAND, channel: params.channel, command: { type: 'send', envelope: {} } };

test('a command from this extension\'s content script, on this frame\'s channel, is trusted', () => {
  assert.equal(isTrustedCommand(send, contentScript, params, ID), true);
});

test('anything else is not', () => {
  assert.equal(isTrustedCommand({ ...send, channel: 'another' }, contentScript, params, ID), false);
  assert.equal(isTrustedCommand(send, { ...contentScript, id: 'someotherextension' }, params, ID), false);
  // the worker or another extension page: no tab, so not the content script that placed the frame
  assert.equal(isTrustedCommand(send, { id: ID }, params, ID), false);
  assert.equal(isTrustedCommand({ ...send, type: 'autosmime.request' }, contentScript, params, ID), false);
  assert.equal(isTrustedCommand({ ...send, command: { envelope: {} } }, contentScript, params, ID), false);
  assert.equal(isTrustedCommand(null, contentScript, params, ID), false);
});
