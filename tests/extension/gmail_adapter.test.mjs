// Unit tests of the Gmail adapter's pure pieces (the classic content script run in a vm context),
// the router's op rules and the secure frames' channel and status logic.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import vm from 'node:vm';
import { senderMayAsk, isSecureFrame, CONTENT_SCRIPT_OPS } from '../../extension/background/router.js';
import {
  UNPROTECTED, contentDocument, describeSecurity, headerRows, headerWarnings, isUnprotected,
  protectionSentence, renderPlan,
} from '../../extension/ui/viewer_status.js';

function loadAdapter() {
  const context = vm.createContext({ TextDecoder, TextEncoder, URLSearchParams });
  context.globalThis = context;
  for (const file of ['addresses.js', 'gmail.js']) {
    vm.runInContext(readFileSync(new URL(`../../extension/content/adapters/${file}`, import.meta.url), 'utf-8'), context);
  }
  return context.autosmimeAdapters.gmail;
}

const gmail = loadAdapter();

test('addresses from chips are cleaned, lower-cased and deduplicated', () => {
  assert.deepEqual(
    [...gmail.uniqueAddresses(['Bob@Example.test', ' bob@example.test', 'not an address', null, 'carol@x.test'])],
    ['bob@example.test', 'carol@x.test'],
  );
});

test('a reply\'s In-Reply-To and References come from the replied message\'s header', () => {
  const header = 'From: bob@example.test\r\nMessage-ID:\r\n <b2@example.test>\r\n'
    + 'In-Reply-To: <a2@example.test>\r\nReferences: <a1@example.test>\r\n <a2@example.test>\r\nSubject: x';
  assert.deepEqual(JSON.parse(JSON.stringify(gmail.replyHeadersFrom(header))), {
    inReplyTo: '<b2@example.test>',
    references: ['<a1@example.test>', '<a2@example.test>', '<b2@example.test>'],
  });
  // No References: the parent's In-Reply-To stands for them; no Message-ID: no thread.
  assert.deepEqual(
    [...gmail.replyHeadersFrom('In-Reply-To: <a@x>\nMessage-Id: <b@x>').references], ['<a@x>', '<b@x>'],
  );
  assert.equal(gmail.replyHeadersFrom('Subject: no id\r\nX-Message-ID: <not@this>'), null);
  // Only the header counts: a Message-ID line in the body is not the message's.
  const raw = new TextEncoder().encode('Subject: s\r\nMessage-ID: <h@x>\r\n\r\nMessage-ID: <body@x>\r\n');
  assert.equal(gmail.replyHeadersFrom(gmail.headerBlock(raw)).inReplyTo, '<h@x>');
});

test('the Show original URL is built from data-message-id under the account path', () => {
  assert.equal(gmail.permMessageId('#msg-f:1665118316230599953'), 'msg-f:1665118316230599953');
  assert.equal(gmail.permMessageId('#msg-a:r-123'), null);
  assert.equal(gmail.accountPath('/mail/u/2/'), '/mail/u/2/');
  assert.equal(gmail.accountPath('/somewhere'), '/mail/u/0/');
  assert.equal(
    gmail.rawMessageUrlFor('https://mail.google.com', '/mail/u/1/', '#msg-f:42', 'abc'),
    'https://mail.google.com/mail/u/1/?ik=abc&view=om&permmsgid=msg-f%3A42',
  );
  assert.equal(gmail.rawMessageUrlFor('https://mail.google.com', '/mail/u/0/', 'junk'), null);
});

test('S/MIME parts are recognised by attachment name', () => {
  assert.equal(gmail.smimeKind(['report.pdf', 'smime.p7m']), 'encrypted');
  assert.equal(gmail.smimeKind(['smime.p7s']), 'signed');
  assert.equal(gmail.smimeKind(['notes.txt']), null);
});

test('raw bytes pass through; a Show original HTML page gives its <pre> text', () => {
  const bytes = new TextEncoder().encode('Subject: x\r\n\r\nbody');
  assert.equal(gmail.rawFromResponse('message/rfc822', bytes, null), bytes);
  const fakeDoc = { querySelector: (s) => (s === '#raw_message_text' ? { textContent: 'A: 1\nB: 2\n' } : null) };
  const out = gmail.rawFromResponse('text/html; charset=utf-8', new TextEncoder().encode('<html>'), () => fakeDoc);
  assert.equal(new TextDecoder().decode(out), 'A: 1\r\nB: 2\r\n');
});

const ID = 'abcdefghijklmnopabcdefghijklmnop';
const BASE = `chrome-extension://${ID}/`;

test('content scripts may look certificates up but never send or open', () => {
  const content = { id: ID, url: 'https://mail.google.com/mail/u/0/', tab: { id: 3 }, frameId: 0 };
  assert.ok(CONTENT_SCRIPT_OPS.has('certs.lookup'));
  assert.equal(senderMayAsk(content, 'certs.lookup', ID, BASE), true);
  for (const op of ['compose.send', 'message.open', 'keys.export', 'backup.restore']) {
    assert.equal(senderMayAsk(content, op, ID, BASE), false, op);
  }
});

test('the secure frames may ask the host for nothing (a copy the page framed must not reach it)', () => {
  const editor = { id: ID, url: `${BASE}ui/editor.html`, tab: { id: 3 }, frameId: 7 };
  const viewer = { id: ID, url: `${BASE}ui/viewer.html`, tab: { id: 3 }, frameId: 8 };
  assert.ok(isSecureFrame(editor, ID, BASE) && isSecureFrame(viewer, ID, BASE));
  for (const op of ['compose.send', 'message.open', 'hello', 'certs.lookup', 'keys.export']) {
    assert.equal(senderMayAsk(editor, op, ID, BASE), false, op);
    assert.equal(senderMayAsk(viewer, op, ID, BASE), false, op);
  }
  const spoof = { id: ID, url: `https://mail.google.com/${BASE}ui/editor.html`, tab: { id: 3 }, frameId: 0 };
  assert.equal(isSecureFrame(spoof, ID, BASE), false);
});

test('the status line says encrypted with what, signed by whom, valid or why not, and when', () => {
  const ok = describeSecurity({
    encrypted: true, decrypted: true, cipher: 'aes256-gcm', suite: 'intl', signed: true,
    signatures: [{ valid: true, signer: 'alice@example.test', chainValid: true, fromMatches: true,
      revocation: { status: 'good', summary: "'alice@example.test' is not revoked." },
      timestamp: { valid: true, trustedTime: '2026-11-28T10:00:00Z', tsa: 'Test TSA' } }],
  });
  assert.equal(ok.state, 'valid');
  assert.deepEqual(ok.parts, ['Encrypted with aes256-gcm (intl).', 'Signed by alice@example.test: valid.',
    'Not revoked (the CRL was checked).', 'Trusted timestamp: 2026-11-28 10:00:00 UTC by Test TSA.']);
  const bad = describeSecurity({ encrypted: false, signatures: [{ valid: false, signer: 'mallory@x.test', reasons: ['content was altered'] }] });
  assert.equal(bad.state, 'invalid');
  assert.match(bad.parts.join(' '), /NOT valid \(content was altered\)/);
  assert.equal(describeSecurity({ encrypted: true, decrypted: false, signatures: [], problem: 'No key fits.' }).state, 'invalid');
});

test('encrypted content nobody vouches for (CBC, no valid signature) is labelled and shown as text', () => {
  const cbc = { encrypted: true, decrypted: true, cipher: 'aes256_cbc', authenticatedCipher: false, signatures: [] };
  const view = { html: '<p>hi <img src="https://x.test/p.gif"></p>', text: 'hi', remoteImagesBlocked: 1, security: cbc };
  assert.equal(isUnprotected(cbc), true);
  const said = describeSecurity(cbc);
  assert.equal(said.state, 'unprotected');
  assert.ok(said.parts.includes(UNPROTECTED));
  assert.deepEqual(renderPlan(view), { as: 'text', text: 'hi', remote: false });
  assert.deepEqual(renderPlan({ ...view, text: null }), { as: 'text', text: null, fromHtml: view.html, remote: false });
  const badSignature = { ...cbc, signatures: [{ valid: false, signer: 'a@x.test' }] };
  assert.equal(isUnprotected(badSignature), true);
  assert.equal(describeSecurity(badSignature).state, 'invalid');
  // a valid signature vouches for the content; GCM detects alteration by itself
  const signed = { ...cbc, signatures: [{ valid: true, signer: 'a@x.test', fromMatches: true }] };
  assert.equal(isUnprotected(signed), false);
  assert.equal(renderPlan({ ...view, security: signed }).as, 'html');
  assert.equal(isUnprotected({ ...cbc, cipher: 'aes256_gcm', authenticatedCipher: true }), false);
  assert.equal(isUnprotected({ ...cbc, decrypted: false, authenticatedCipher: null }), false);
  assert.equal(isUnprotected({ encrypted: false, signatures: [] }), false);
});

test('the viewer names the message it opened, from its own headers', () => {
  const headers = { from: 'alice@example.test', subject: 'Q3', date: 'Mon, 1 Dec 2026 10:00:00 +0000', 'message-id': '<x@y>' };
  assert.deepEqual(headerRows({ headers }).map((r) => [r.name, r.value, r.protection]), [
    ['Subject', 'Q3', 'unprotected'], ['From', 'alice@example.test', 'unprotected'],
    ['Date', 'Mon, 1 Dec 2026 10:00:00 +0000', 'unprotected'],
  ]);
  assert.deepEqual(headerRows({ headers: { subject: '' } }), []);
  assert.deepEqual(headerRows(undefined), []);
  assert.equal(protectionSentence({ headers }), null);
});

test('protected headers (RFC 9788) are marked, said in one sentence, and warnings come first', () => {
  const view = {
    headers: { subject: 'Nightjar', from: 'alice@example.test', to: 'bob@example.test', date: 'today' },
    headerProtection: {
      protected: true, hp: 'cipher', legacyDisplayHidden: 1,
      fields: { subject: 'signed and encrypted', from: 'signed', to: 'signed', date: 'signed' },
      warnings: [
        { field: 'subject', severity: 'notice', message: 'The Subject outside was changed.' },
        { field: 'from', severity: 'warning', message: 'The protected From is alice.' },
      ],
    },
  };
  assert.deepEqual(headerRows(view).map((r) => r.protection),
    ['signed and encrypted', 'signed', 'signed', 'signed']);
  assert.equal(protectionSentence(view),
    'Protected headers: Subject hidden from the mail servers (encrypted) and signed; From, To, Date signed.');
  assert.deepEqual(headerWarnings(view).map((w) => w.severity), ['warning', 'notice']);
  const unsignedHidden = { ...view, headerProtection: { ...view.headerProtection, fields: { subject: 'encrypted' } } };
  assert.equal(protectionSentence(unsignedHidden), 'Protected headers: Subject hidden from the mail servers (encrypted).');
  // Fields claimed protected by a message without header protection are not believed.
  assert.equal(protectionSentence({ ...view, headerProtection: { ...view.headerProtection, protected: false } }), null);
});

test('the content document carries its own strict CSP; remote images only when allowed', () => {
  assert.match(contentDocument('<p>x</p>'), /img-src data:;/);
  assert.match(contentDocument('<p>x</p>', true), /img-src data: https:;/);
  assert.doesNotMatch(contentDocument('<p>x</p>'), /script-src/);
});
