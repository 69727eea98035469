// The viewer's words for who signed (ui/viewer_status.js): a signature vouches for a message only
// when its signer is the one sender the message names; a mismatch is said in words, and an
// unknown answer is never taken for a match.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { describeSecurity, isUnprotected, renderPlan, revocationWords } from '../../extension/ui/viewer_status.js';

const MALLORY = 'mallory@example.test';
// message.open's signatures for mallory's valid signature under each forged From (issue 11).
const FORGED = [
  ['mismatch', `Signed by ${MALLORY}, but the message says it is from alice@example.test.`],
  ['no_sender', `Signed by ${MALLORY}, but the message names no sender.`],
  ['several_senders', `Signed by ${MALLORY}, but the message names more than one sender (${MALLORY}, alice@example.test); a signature vouches for one.`],
].map(([code, reason]) => ({
  valid: false, signer: MALLORY, chainValid: true, fromMatches: false, fromCode: code, fromReason: reason,
  reasons: [reason], codes: [`from_${code}`], timestamp: null, summary: reason,
}));

for (const signature of FORGED) {
  test(`a signature whose signer is not the sender (${signature.fromCode}) is said as the mismatch`, () => {
    const said = describeSecurity({ encrypted: false, signatures: [signature] });
    assert.equal(said.state, 'invalid');
    assert.ok(said.parts.includes(signature.fromReason), said.parts.join(' '));
    assert.doesNotMatch(said.parts.join(' '), /: valid\./);
  });
}

test('an unknown sender answer is never a match', () => {
  for (const fromMatches of [null, undefined]) {
    const signature = { valid: true, signer: MALLORY, chainValid: true, fromMatches, reasons: [], codes: [] };
    const said = describeSecurity({ encrypted: false, signatures: [signature] });
    assert.equal(said.state, 'invalid');
    assert.ok(said.parts.includes(`Signed by ${MALLORY}, but nothing shows that the message is from ${MALLORY}.`));
    // nor does such a signature vouch for CBC content
    const cbc = { encrypted: true, decrypted: true, cipher: 'aes256_cbc', authenticatedCipher: false, signatures: [signature] };
    assert.equal(isUnprotected(cbc), true);
    assert.equal(renderPlan({ html: '<p>x</p>', text: 'x', security: cbc }).as, 'text');
  }
});

test('a signature that fails for other reasons says them, and the sender too', () => {
  const reason = `Signed by ${MALLORY}, but the message names no sender.`;
  const signature = {
    valid: false, signer: MALLORY, chainValid: true, fromMatches: false, fromCode: 'no_sender', fromReason: reason,
    reasons: ['The content was changed after signing.', reason], codes: ['message_digest_mismatch', 'from_no_sender'],
  };
  const said = describeSecurity({ encrypted: false, signatures: [signature] });
  assert.equal(said.state, 'invalid');
  assert.match(said.parts.join(' '), /NOT valid \(The content was changed after signing\.; Signed by mallory/);
});

test('the signer who is the sender is valid', () => {
  const signature = {
    valid: true, signer: MALLORY, chainValid: true, fromMatches: true, fromCode: 'match',
    fromReason: `Signed by ${MALLORY}, the message's sender.`, reasons: [], codes: [],
  };
  const said = describeSecurity({ encrypted: false, signatures: [signature] });
  assert.equal(said.state, 'valid');
  assert.ok(said.parts.includes(`Signed by ${MALLORY}: valid.`));
});

const ALICE = 'alice@example.test';
function alice(revocation, valid = true, reasons = []) {
  return {
    valid, signer: ALICE, chainValid: valid, fromMatches: true, fromCode: 'match', reasons,
    codes: valid ? [] : ['revoked'], revocation, timestamp: { valid: true, trustedTime: '2026-11-28T10:00:00Z' },
  };
}

test('a CRL that could not be had is "revocation not checked", with why', () => {
  const summary = 'Revocation not checked: The CRL at http://pki.test/crl/intl-issuing.crl could not be fetched: connection refused.';
  const said = describeSecurity({ encrypted: false, signatures: [alice({ status: 'not_checked', summary, revokedAt: null, validAsOf: null })] });
  assert.equal(said.state, 'valid');
  assert.ok(said.parts.includes(summary));
  // no revocation answer at all is never taken for "checked"
  assert.equal(revocationWords(undefined), 'Revocation not checked.');
  assert.equal(revocationWords({ status: 'not_checked', summary: 'no CRL of the issuer was supplied.' }),
    'Revocation not checked. no CRL of the issuer was supplied.');
});

test('revoked after the trusted time stands as of then; revoked before is not valid', () => {
  const after = "'alice@example.test' was revoked on 2026-11-29 08:00 UTC (key compromise), after the trusted time 2026-11-28 10:00 UTC: valid as of that time.";
  const standing = describeSecurity({ encrypted: false, signatures: [alice({ status: 'revoked', summary: after, revokedAt: '2026-11-29T08:00:00Z', validAsOf: '2026-11-28T10:00:00Z' })] });
  assert.equal(standing.state, 'valid');
  assert.ok(standing.parts.includes(after));
  const before = "'alice@example.test' was revoked on 2026-11-27 08:00 UTC (key compromise) before the trusted time of its use.";
  const fallen = describeSecurity({ encrypted: false, signatures: [alice({ status: 'revoked', summary: before, revokedAt: '2026-11-27T08:00:00Z', validAsOf: null }, false, [before])] });
  assert.equal(fallen.state, 'invalid');
  assert.match(fallen.parts.join(' '), /NOT valid \('alice@example.test' was revoked on 2026-11-27/);
});
