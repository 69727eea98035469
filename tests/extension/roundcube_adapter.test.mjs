// Unit tests of the Roundcube adapter's pure pieces (the classic content script run in a vm
// context). Inputs are shaped like what the real Roundcube 1.6.5 serves (measured; see
// tests/e2e/test_roundcube.py for the adapter against the real thing).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import vm from 'node:vm';

function loadAdapter() {
  const context = vm.createContext({ TextDecoder, TextEncoder, URLSearchParams, URL });
  context.globalThis = context;
  for (const file of ['addresses.js', 'roundcube.js']) {
    vm.runInContext(readFileSync(new URL(`../../extension/content/adapters/${file}`, import.meta.url), 'utf-8'), context);
  }
  return context.autosmimeAdapters.roundcube;
}

const roundcube = loadAdapter();
const plain = (value) => JSON.parse(JSON.stringify(value));

test('recipient fields: bare, named, quoted and repeated addresses', () => {
  assert.deepEqual(plain(roundcube.addressesFromField('bob@example.test, ')), ['bob@example.test']);
  assert.deepEqual(
    plain(roundcube.addressesFromField(
      'Bob <Bob@Example.test>, "Doe, Jane (jane@evil.test)" <jane@example.test>; carol@x.test, bob@example.test',
    )),
    ['bob@example.test', 'jane@example.test', 'carol@x.test'],
  );
  assert.deepEqual(plain(roundcube.addressesFromField('')), []);
  assert.deepEqual(plain(roundcube.addressesFromField(undefined)), []);
  assert.deepEqual(plain(roundcube.addressesFromField('not an address, also@not@')), []);
});

test('rcmail.set_env objects are read from inline scripts, strings with braces included', () => {
  const script = '\n$(function(){ }); rcmail.set_env({"task":"mail","request_token":"AwwocxAi",'
    + '"drafts_mailbox":"Drafts","identities":{"1":{"email":"alice@example.test"}},'
    + '"label":"a } tricky \\" { string"});\nrcmail.add_label({"x":"y"});\n'
    + 'rcmail.set_env({"compose_id":"1369975736b0b68107186a"});';
  const env = plain(roundcube.envFromScripts(['var x = 1;', script, null]));
  assert.equal(env.request_token, 'AwwocxAi');
  assert.equal(env.drafts_mailbox, 'Drafts');
  assert.equal(env.identities['1'].email, 'alice@example.test');
  assert.equal(env.label, 'a } tricky " { string');
  assert.equal(env.compose_id, '1369975736b0b68107186a');
  assert.deepEqual(plain(roundcube.envFromScripts(['rcmail.set_env("x", 1); rcmail.set_env({broken'])), {});
});

test('the message a preview URL names, and Roundcube\'s raw-message URLs for it', () => {
  const search = '?_task=mail&_caps=pdf%3D1&_uid=17&_mbox=INBOX%2FWork&_framed=1&_action=preview';
  const ref = plain(roundcube.messageRef(search));
  assert.deepEqual(ref, { uid: '17', mbox: 'INBOX/Work' });
  assert.equal(roundcube.messageRef('?_task=mail&_action=list'), null);
  assert.equal(roundcube.messageRef('?_uid=1%0d%0aX'), null);
  assert.deepEqual(plain(roundcube.messageRef('?_uid=3')), { uid: '3', mbox: 'INBOX' });
  assert.equal(
    roundcube.rawMessageUrlFor('https://webmail.example.test', '/', ref, 'TOKEN'),
    'https://webmail.example.test/?_task=mail&_action=viewsource&_uid=17&_mbox=INBOX%2FWork&_save=1&_token=TOKEN',
  );
  assert.equal(
    roundcube.rawMessageUrlFor('https://example.org', '/roundcube/index.php', ref),
    'https://example.org/roundcube/?_task=mail&_action=viewsource&_uid=17&_mbox=INBOX%2FWork',
  );
  assert.equal(roundcube.rawMessageUrlFor('https://example.org', '/', null), null);
});

test('View source (LF) gets its CRLFs back; the exact download is left alone', () => {
  const lf = new TextEncoder().encode('A: 1\nB: 2\r\n\nbody\xe9\n');
  const fixed = new TextDecoder().decode(roundcube.rawFromResponse(lf, false));
  assert.equal(fixed, 'A: 1\r\nB: 2\r\n\r\nbody\xe9\r\n');
  const bytes = Uint8Array.from([0x41, 0x0a, 0x80, 0x9f]);
  assert.deepEqual([...roundcube.rawFromResponse(bytes, false)], [0x41, 0x0d, 0x0a, 0x80, 0x9f]);
  assert.equal(roundcube.rawFromResponse(bytes, true), bytes);
});

test('S/MIME kinds from the attachment list (class words and names, as Roundcube renders them)', () => {
  const encrypted = { classes: ['application', 'pkcs7-mime', 'p7m'], name: 'smime.p7m' };
  const legacy = { classes: ['application', 'x-pkcs7-mime'], name: 'message' };
  const signature = { classes: ['application', 'pkcs7-signature'], name: 'Digital Signature' };
  const pdf = { classes: ['application', 'pdf'], name: 'terms.pdf' };
  assert.equal(roundcube.smimeKind([pdf, encrypted]), 'encrypted');
  assert.equal(roundcube.smimeKind([legacy]), 'encrypted');
  assert.equal(roundcube.smimeKind([signature, pdf]), 'signed');
  assert.equal(roundcube.smimeKind([{ classes: [], name: 'sig.p7s' }]), 'signed');
  assert.equal(roundcube.smimeKind([pdf]), null);
  assert.equal(roundcube.smimeKind([]), null);
});

test('the adapter has the shared interface', () => {
  for (const member of ['matches', 'findComposeWindows', 'readRecipients', 'readSubject', 'readFrom',
    'bodyOf', 'sendButtonOf', 'insertControls', 'discardCompose',
    'findOpenedMessages', 'rawMessageUrl', 'fetchRaw', 'placeViewer', 'placeStatus']) {
    assert.equal(typeof roundcube[member], 'function', member);
  }
  assert.equal(roundcube.name, 'roundcube');
  assert.ok(Object.isFrozen(roundcube.SELECTORS));
});

