// The worker's side of the secure frames (background/secure_frames.js) against in-memory ports
// and a recording host: who may register, which claim binds, what reaches the host. The whole
// path in the real browser, attacked by a hostile page, is tests/e2e/test_page_boundary.py.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  NO_MESSAGE, RECIPIENTS_SETTLE_MS, SecureFrames, claimProblem, raisedMode, recipientList, replySubject,
  sameRecipients, sendMismatch, threadFields,
} from '../../extension/background/secure_frames.js';

const ID = 'abcdefghijklmnopabcdefghijklmnop';
const BASE = `chrome-extension://${ID}/`;
const TAB = 7;
const content = { id: ID, url: 'https://mail.google.com/mail/u/0/', tab: { id: TAB }, frameId: 0 };
const secret = (n) => n.toString(16).padStart(2, '0').repeat(32);

function world({ answers = {} } = {}) {
  const calls = [];
  const told = [];
  const timers = { setTimeout: () => 0, clearTimeout: () => {} };
  // The worker's clock, moved by the test: a list the editor shows has been on screen as long as
  // the test says.
  const clock = { ms: 1_000_000, pass(ms) { this.ms += ms; } };
  const nativePort = {
    request(op, params, options) {
      calls.push({ op, params });
      options?.onProgress?.({ stage: 'Sending' });
      const answer = answers[op];
      return typeof answer === 'function' ? answer(params) : Promise.resolve(answer ?? {});
    },
  };
  const tabs = { sendMessage: (tabId, message, options) => { told.push({ tabId, message, options }); return Promise.resolve(); } };
  const frames = new SecureFrames({ id: ID, getURL: (p) => `${BASE}${p}` }, tabs, nativePort, { timers, now: () => clock.ms });
  const ask = (message, sender = content) => new Promise((resolve) => frames.onMessage({ type: 'autosmime.secure', ...message }, sender, resolve));
  return { frames, calls, told, ask, clock };
}

/** A runtime Port as the worker sees a frame's: what it posted, and a way to speak as the frame. */
function framePort(page, { tab = TAB } = {}) {
  const listeners = { message: [], disconnect: [] };
  const port = {
    sender: { id: ID, url: `${BASE}${page}`, tab: { id: tab }, frameId: 40 },
    posted: [],
    postMessage: (m) => port.posted.push(m),
    disconnect: () => listeners.disconnect.forEach((f) => f()),
    onMessage: { addListener: (f) => listeners.message.push(f) },
    onDisconnect: { addListener: (f) => listeners.disconnect.push(f) },
    say: (m) => listeners.message.forEach((f) => f(m)),
  };
  return port;
}

const tick = () => new Promise((resolve) => setTimeout(resolve, 0));

test('pure rules: modes only go up, recipients compare as sets per field', () => {
  assert.equal(raisedMode('sign', 'encrypt'), 'encrypt');
  assert.equal(raisedMode('encrypt', 'sign'), 'encrypt');
  assert.equal(raisedMode('encrypt', 'plaintext'), 'encrypt');
  assert.deepEqual(recipientList({ to: ['Bob@Example.test', 'junk', 3], bcc: 'x@y.z' }), { to: ['bob@example.test'], cc: [], bcc: [] });
  assert.ok(sameRecipients({ to: ['a@x.t', 'b@x.t'] }, { to: ['b@x.t', 'a@x.t'], cc: [] }));
  assert.ok(!sameRecipients({ to: ['a@x.t'] }, { to: ['a@x.t'], bcc: ['eve@x.t'] }));
  assert.ok(!sameRecipients({ to: ['a@x.t'] }, { cc: ['a@x.t'] }));
});

test('only content scripts register, and a registration is claimed once, by its page, in its tab', async () => {
  const { frames, ask } = world();
  const page = { id: ID, url: `${BASE}ui/editor.html`, tab: { id: TAB }, frameId: 3 };
  assert.equal((await ask({ action: 'register', secret: secret(1), kind: 'editor', mode: 'sign' }, page)).error.code, 'forbidden_origin');
  assert.equal((await ask({ action: 'register', secret: 'guessable', kind: 'editor', mode: 'sign' })).error.code, 'bad_request');
  assert.equal((await ask({ action: 'register', secret: secret(1), kind: 'editor' })).error.code, 'bad_request'); // no mode
  assert.ok((await ask({ action: 'register', secret: secret(1), kind: 'editor', mode: 'encrypt' })).ok);
  const registration = frames.registrations.get(secret(1));
  const sender = (over) => ({ id: ID, url: `${BASE}ui/editor.html#mode=sign`, tab: { id: TAB }, ...over });
  assert.equal(claimProblem(undefined, sender(), ID, BASE), 'unknown secret');
  assert.equal(claimProblem(registration, sender({ tab: { id: 99 } }), ID, BASE), 'another tab');
  assert.equal(claimProblem(registration, sender({ url: `${BASE}ui/viewer.html` }), ID, BASE), 'wrong page');
  assert.equal(claimProblem(registration, sender({ id: 'other' }), ID, BASE), 'not this extension');
  assert.equal(claimProblem(registration, sender(), ID, BASE), null);

  const viewer = framePort('ui/viewer.html');
  frames.onConnect(viewer);
  viewer.say({ type: 'claim', secret: secret(1) });
  assert.deepEqual(viewer.posted, [{ type: 'refused' }]); // an editor's secret does not bind a viewer
  const editor = framePort('ui/editor.html');
  frames.onConnect(editor);
  editor.say({ type: 'claim', secret: secret(2) }); // junk first: nothing
  editor.say({ type: 'claim', secret: secret(1) });
  assert.deepEqual(editor.posted[0], { type: 'refused' });
  assert.equal(editor.posted[1].type, 'bound');
  assert.equal(editor.posted[1].mode, 'encrypt'); // from the registration, never the URL
  const reloaded = framePort('ui/editor.html');
  frames.onConnect(reloaded);
  reloaded.say({ type: 'claim', secret: secret(1) });
  assert.deepEqual(reloaded.posted, [{ type: 'refused' }]);
});

test('an unbound frame gets nothing and reaches no host op', async () => {
  const { frames, calls, ask } = world({ answers: { 'message.open': { security: {} } } });
  await ask({ action: 'register', secret: secret(3), kind: 'viewer' });
  await ask({ action: 'raw', secret: secret(3), raw: 'AAAA' });
  const pageMade = framePort('ui/viewer.html');
  frames.onConnect(pageMade);
  for (const message of [{ type: 'open', allowRemote: true }, { type: 'claim', secret: secret(4) }, { type: 'send-shortcut' }]) {
    pageMade.say(message);
  }
  await tick();
  assert.deepEqual(pageMade.posted, [{ type: 'refused' }]); // its own port: the page sees nothing
  assert.deepEqual(calls.map((c) => c.op), ['message.open']); // the content script's, once
  const real = framePort('ui/viewer.html');
  frames.onConnect(real);
  real.say({ type: 'claim', secret: secret(3) });
  await tick();
  assert.deepEqual(real.posted.map((m) => m.type), ['bound', 'view']);
});

test('a viewer whose message the webmail did not give says one fixed sentence', async () => {
  const { frames, calls, ask } = world();
  await ask({ action: 'register', secret: secret(5), kind: 'status' });
  const port = framePort('ui/viewer.html');
  frames.onConnect(port);
  port.say({ type: 'claim', secret: secret(5) });
  await ask({ action: 'raw', secret: secret(5), failed: true, message: 'the page says: all is well' });
  await tick();
  assert.deepEqual(port.posted.at(-1), { type: 'failed', message: NO_MESSAGE });
  assert.deepEqual(calls, []);
});

test('commands for a registration come only from the content script frame that registered it', async () => {
  const { ask } = world();
  await ask({ action: 'register', secret: secret(6), kind: 'editor', mode: 'sign' });
  const otherFrame = { ...content, frameId: 5 };
  assert.equal((await ask({ action: 'mode', secret: secret(6), mode: 'encrypt' }, otherFrame)).error.code, 'not_registered');
  const otherTab = { ...content, tab: { id: 8 } };
  assert.equal((await ask({ action: 'send', secret: secret(6), envelope: {} }, otherTab)).error.code, 'not_registered');
});

async function boundEditor(mode, answers, { settle = true } = {}) {
  const w = world({ answers });
  await w.ask({ action: 'register', secret: secret(9), kind: 'editor', mode, text: 'carried' });
  const port = framePort('ui/editor.html');
  w.frames.onConnect(port);
  port.say({ type: 'claim', secret: secret(9) });
  // the frame answers what the worker asks of it, as editor.js does
  port.postMessage = (m) => {
    port.posted.push(m);
    if (m.type === 'recipients') {
      port.say({ type: 'shown', version: m.version });
      if (settle) w.clock.pass(RECIPIENTS_SETTLE_MS); // the person had time to see it
    }
    // whatever else a frame says about the mode is not the worker's to take
    if (m.type === 'collect') port.say({ type: 'body', id: m.id, text: 'typed', attachments: [], mode: 'sign', encrypt: false });
  };
  return { ...w, port };
}

const SENT = (params) => Promise.resolve({ status: 'sent', encrypted: params.encrypt, signed: params.sign, to: params.to, cc: params.cc, bcc: params.bcc });

test('Send goes to the recipients the frame showed, in the mode the worker holds', async () => {
  const { ask, calls, port } = await boundEditor('sign', { 'compose.send': SENT });
  assert.equal(port.posted.find((m) => m.type === 'bound').draft, 'carried');
  const envelope = { from: 'alice@example.test', to: ['bob@example.test'], cc: [], bcc: [], subject: 'Hi', encrypt: false, sign: false };
  // The webmail's list was never shown in the frame: the first Send shows it and stops.
  const first = await ask({ action: 'send', secret: secret(9), envelope });
  assert.equal(first.error.code, 'recipients_changed');
  assert.deepEqual(calls, []);
  assert.deepEqual(port.posted.filter((m) => m.type === 'recipients').at(-1).to, ['bob@example.test']);
  assert.equal((await ask({ action: 'mode', secret: secret(9), mode: 'encrypt' })).result.mode, 'encrypt');
  assert.equal((await ask({ action: 'mode', secret: secret(9), mode: 'sign' })).result.mode, 'encrypt');
  const second = await ask({ action: 'send', secret: secret(9), envelope });
  assert.ok(second.ok, JSON.stringify(second));
  const [{ op, params }] = calls;
  assert.equal(op, 'compose.send');
  assert.equal(params.encrypt, true); // the envelope's encrypt:false is not the worker's to take
  assert.equal(params.sign, true);
  assert.equal(params.text, 'typed');
  assert.deepEqual([params.to, params.cc, params.bcc], [['bob@example.test'], [], []]);
});

test('a reply carries the replied message\'s ids to compose.send; nothing else passes', async () => {
  const { ask, calls } = await boundEditor('encrypt', { 'compose.send': SENT });
  await ask({ action: 'recipients', secret: secret(9), to: ['bob@example.test'] });
  const envelope = {
    from: 'alice@example.test', to: ['bob@example.test'],
    inReplyTo: '<b2@example.test>', references: ['<a1@example.test>', '<b2@example.test>'],
  };
  assert.ok((await ask({ action: 'send', secret: secret(9), envelope })).ok);
  assert.equal(calls[0].params.inReplyTo, '<b2@example.test>');
  assert.deepEqual(calls[0].params.references, ['<a1@example.test>', '<b2@example.test>']);
  // What could become another header field, or is not a Message-ID, never reaches the host.
  const injected = '<b2@example.test>\r\nBcc: eve@example.test';
  assert.deepEqual(threadFields({ inReplyTo: injected, references: [injected, 'plain', '<a b@x>', 7] }), {});
  assert.deepEqual(threadFields({ references: '<a1@x>' }), {});
  const many = Array.from({ length: 30 }, (_, i) => `<m${i}@x>`);
  const kept = threadFields({ references: many }).references;
  assert.equal(kept.length, 20);
  assert.deepEqual([kept[0], kept[1], kept.at(-1)], ['<m0@x>', '<m11@x>', '<m29@x>']);
});

test('a recipient added after the frame showed the list stops the send and is shown', async () => {
  const { ask, calls, port } = await boundEditor('encrypt', { 'compose.send': SENT });
  await ask({ action: 'recipients', secret: secret(9), to: ['bob@example.test'] });
  const envelope = { from: 'alice@example.test', to: ['bob@example.test'], bcc: ['eve@example.test'] };
  const refused = await ask({ action: 'send', secret: secret(9), envelope });
  assert.equal(refused.error.code, 'recipients_changed');
  assert.deepEqual(calls, []);
  assert.deepEqual(port.posted.filter((m) => m.type === 'recipients').at(-1).bcc, ['eve@example.test']);
});

test('a list shown only a moment before the Send stops it once; the next Send of that list goes', async () => {
  const { ask, calls, port, clock } = await boundEditor('encrypt', { 'compose.send': SENT }, { settle: false });
  await ask({ action: 'recipients', secret: secret(9), to: ['bob@example.test'] });
  clock.pass(RECIPIENTS_SETTLE_MS);
  // The page adds eve; the content script tells the editor, which shows it just before the click.
  await ask({ action: 'recipients', secret: secret(9), to: ['bob@example.test'], bcc: ['eve@example.test'] });
  clock.pass(RECIPIENTS_SETTLE_MS - 1);
  const envelope = { from: 'alice@example.test', to: ['bob@example.test'], bcc: ['eve@example.test'] };
  const refused = await ask({ action: 'send', secret: secret(9), envelope });
  assert.equal(refused.error.code, 'recipients_changed');
  assert.match(refused.error.message, /just now/);
  assert.deepEqual(calls, []);
  assert.equal(port.posted.at(-1).type, 'failed');
  // Told to check, the person presses Send again at once: the list shown with the stop goes.
  const sent = await ask({ action: 'send', secret: secret(9), envelope });
  assert.ok(sent.ok, JSON.stringify(sent));
  assert.deepEqual(calls.map((c) => c.params.bcc), [['eve@example.test']]);
});

test('a list on screen long enough is sent at the first Send', async () => {
  const { ask, calls, clock } = await boundEditor('encrypt', { 'compose.send': SENT }, { settle: false });
  await ask({ action: 'recipients', secret: secret(9), to: ['bob@example.test'] });
  clock.pass(RECIPIENTS_SETTLE_MS);
  const sent = await ask({ action: 'send', secret: secret(9), envelope: { from: 'alice@example.test', to: ['bob@example.test'] } });
  assert.ok(sent.ok, JSON.stringify(sent));
  assert.equal(calls.length, 1);
});

test('a send whose result is not what was chosen is said loudly', async () => {
  const downgraded = (params) => SENT(params).then((r) => ({ ...r, encrypted: false, bcc: ['eve@example.test'] }));
  const { ask, port } = await boundEditor('encrypt', { 'compose.send': downgraded });
  await ask({ action: 'recipients', secret: secret(9), to: ['bob@example.test'] });
  const result = await ask({ action: 'send', secret: secret(9), envelope: { from: 'alice@example.test', to: ['bob@example.test'] } });
  assert.equal(result.error.code, 'mode_mismatch');
  assert.match(result.error.message, /NOT encrypted.*other recipients/);
  assert.equal(port.posted.at(-1).type, 'failed');
  assert.equal(sendMismatch({ encrypted: true, signed: true, to: ['b@x.t'] }, { encrypt: true, recipients: { to: ['b@x.t'] } }), null);
});

test('an editor that went away sends nothing; a reopened one gets its text and never a lower mode', async () => {
  const { ask, frames, told, port } = await boundEditor('encrypt', { 'compose.send': SENT });
  port.say({ type: 'draft', text: 'kept in memory' });
  port.disconnect();
  await tick();
  assert.equal(told.at(-1).message.event, 'disconnected');
  assert.deepEqual(told.at(-1).options, { frameId: 0 });
  const refused = await ask({ action: 'send', secret: secret(9), envelope: { to: ['bob@example.test'] } });
  assert.equal(refused.error.code, 'editor_interfered');
  await ask({ action: 'register', secret: secret(10), kind: 'editor', mode: 'sign', restoreFrom: secret(9) });
  const reopened = frames.registrations.get(secret(10));
  assert.equal(reopened.mode, 'encrypt');
  assert.equal(reopened.draft, 'kept in memory');
  assert.equal(frames.registrations.has(secret(9)), false);
});

const PROTECTED_VIEW = {
  headers: {
    subject: 'Nightjar: the price', from: 'Alice <alice@example.test>', 'message-id': '<m1@example.test>',
    references: '<m0@example.test>',
  },
  headerProtection: { protected: true, hp: 'cipher', fields: { subject: 'signed and encrypted' }, warnings: [] },
  security: { encrypted: true, decrypted: true, signatures: [] },
};

test('a reply takes back the subject its message hid, only in encrypted mail to that sender', async () => {
  assert.equal(replySubject('Re: [...]', 'Nightjar'), 'Re: Nightjar');
  assert.equal(replySubject('Re: [...]', 'Re: Nightjar'), 'Re: Nightjar');
  assert.equal(replySubject('[...]', 'Nightjar'), 'Nightjar');
  assert.equal(replySubject('My own words', 'Nightjar'), 'My own words');

  async function replying(mode, to) {
    const w = world({ answers: { 'message.open': Promise.resolve(PROTECTED_VIEW), 'compose.send': SENT } });
    // the viewer of the message, as the content script registers it
    await w.ask({ action: 'register', secret: secret(3), kind: 'viewer', messageRef: '#msg-f:1' });
    await w.ask({ action: 'raw', secret: secret(3), raw: 'AAAA' });
    await tick();
    // the reply's editor names that message
    await w.ask({ action: 'register', secret: secret(9), kind: 'editor', mode, replyTo: '#msg-f:1' });
    const port = framePort('ui/editor.html');
    port.postMessage = (m) => {
      port.posted.push(m);
      if (m.type === 'recipients') port.say({ type: 'shown', version: m.version });
      if (m.type === 'collect') port.say({ type: 'body', id: m.id, text: 'typed', attachments: [] });
    };
    w.frames.onConnect(port);
    port.say({ type: 'claim', secret: secret(9) });
    await w.ask({ action: 'recipients', secret: secret(9), to });
    w.clock.pass(RECIPIENTS_SETTLE_MS); // the person had time to see the list
    const sent = await w.ask({ action: 'send', secret: secret(9), envelope: { from: 'bob@example.test', to, subject: 'Re: [...]' } });
    assert.ok(sent.ok, JSON.stringify(sent));
    const said = port.posted.filter((m) => m.type === 'reply').at(-1);
    return { params: w.calls.find((c) => c.op === 'compose.send').params, said };
  }

  const encrypted = await replying('encrypt', ['alice@example.test']);
  assert.equal(encrypted.params.subject, 'Re: Nightjar: the price');
  assert.equal(encrypted.params.hideSubject, true);
  assert.equal(encrypted.params.inReplyTo, '<m1@example.test>');
  assert.deepEqual(encrypted.params.references, ['<m0@example.test>', '<m1@example.test>']);
  assert.equal(encrypted.said.subject, 'Nightjar: the price'); // the editor says which subject
  // Signed only: the real subject would travel in the clear, so the webmail's stays.
  const signed = await replying('sign', ['alice@example.test']);
  assert.equal(signed.params.subject, 'Re: [...]');
  assert.equal(signed.params.inReplyTo, '<m1@example.test>');
  // The page pointed the compose at alice's message but it goes to eve: nothing of it is used.
  const elsewhere = await replying('encrypt', ['eve@example.test']);
  assert.equal(elsewhere.params.subject, 'Re: [...]');
  assert.equal(elsewhere.params.inReplyTo, undefined);
  assert.equal(elsewhere.said.subject, null);
});
