// The pure text helpers of the extension's pages (extension/ui/messages.js).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import {
  backupText, daysLeft, describeError, errorSentence, exportFileName, formatDate, keyStatusText,
  keyKind, lastGroup, lastGroupMatches, progressPercent, suiteName, summarize,
} from '../../extension/ui/messages.js';

const protocol = JSON.parse(readFileSync(new URL('../../native_host/protocol.json', import.meta.url), 'utf-8'));

test('every error code of the protocol has its own sentence and a next step', () => {
  const generic = describeError({ code: 'no-such-code', message: '' });
  for (const code of Object.keys(protocol.errorCodes)) {
    if (['bad_json', 'bad_request', 'unknown_op', 'frame_too_large', 'truncated_frame', 'bad_chunk'].includes(code)) continue;
    const text = describeError({ code, message: 'x' });
    assert.notEqual(text.title, generic.title, code);
    assert.match(text.title, /^[A-Z].*\.$/, code);
    assert.match(text.next, /^[A-Z].*\.$/, code);
  }
});

test('the host sentence is kept as the detail, and the sentence reads as one paragraph', () => {
  const error = { code: 'recovery_code', message: 'The recovery code does not open the backup of alice@example.test.' };
  const described = describeError(error);
  assert.equal(described.detail, error.message);
  assert.equal(described.title, 'That recovery code does not open your backup.');
  assert.equal(errorSentence(error), `${described.title} ${error.message} ${described.next}`);
  assert.match(errorSentence({ code: 'mail_failed', message: '' }), /password/);
  assert.match(errorSentence({ code: 'host_unavailable' }), /autosmime install/);
  assert.equal(describeError(undefined).code, 'internal');
  assert.equal(describeError({ code: 'internal', message: 'y'.repeat(900) }).detail.length, 498);
});

test('a recovery code that is needed, not wrong, is said so', () => {
  const needed = describeError({ code: 'recovery_code', message: 'Needed.' }, { codeGiven: false });
  assert.equal(needed.title, 'Your recovery code is needed for this.');
  assert.match(errorSentence({ code: 'recovery_code' }, { codeGiven: false }), /nothing was changed/);
  assert.match(describeError({ code: 'recovery_code' }).title, /does not open/);
});

test('progress percent', () => {
  assert.equal(progressPercent({ done: 3, total: 6 }), 50);
  assert.equal(progressPercent({ done: 7, total: 6 }), 100);
  assert.equal(progressPercent({ done: 1, total: 0 }), 0);
  assert.equal(progressPercent({}), 0);
});

test('names of suites, statuses and backup states', () => {
  assert.match(suiteName('intl'), /International/);
  assert.match(suiteName('sm'), /SM2/);
  assert.equal(suiteName('xyz'), 'xyz');
  assert.equal(keyKind('intl', 'ec-secp256r1'), 'International (ECDSA P-256)');
  assert.equal(keyKind('intl', 'rsa3072'), 'International (RSA 3072)');
  assert.equal(keyKind('sm', 'sm2'), 'Chinese national standard (SM2)');
  assert.equal(keyKind('intl', undefined), 'International');
  assert.equal(keyStatusText('current'), 'In use');
  assert.match(keyStatusText('expired'), /old mail/);
  assert.equal(backupText('proven'), 'Backed up in your mailbox');
  assert.equal(backupText(undefined), backupText('unknown'));
});

test('dates and days left', () => {
  assert.equal(formatDate('2027-03-04T10:00:00Z', 'en-GB'), '4 March 2027');
  assert.equal(formatDate('not a date'), '');
  assert.equal(formatDate(null), '');
  const now = new Date('2027-01-01T00:00:00Z');
  assert.equal(daysLeft('2027-01-11T00:00:00Z', now), 10);
  assert.equal(daysLeft('2026-12-31T00:00:00Z', now), -1);
  assert.equal(daysLeft(undefined, now), null);
});

test('status at a glance', () => {
  const now = new Date('2027-01-01T00:00:00Z');
  assert.equal(summarize([], [], now).state, 'setup');
  const accounts = [{ address: 'alice@example.test' }];
  assert.equal(summarize(accounts, [], now).state, 'enroll');
  const key = (suite, notAfter, backup = 'proven') => ({ suite, status: 'current', notAfter, backup: { state: backup } });
  const ok = summarize(accounts, [key('intl', '2028-01-01T00:00:00Z'), key('sm', '2028-01-01T00:00:00Z')], now);
  assert.equal(ok.state, 'ok');
  assert.match(ok.headline, /alice@example\.test/);
  assert.match(ok.details.join(' '), /2 certificates in use/);
  assert.match(ok.details.join(' '), /backed up/);
  assert.equal(summarize(accounts, [key('intl', '2027-01-20T00:00:00Z')], now).state, 'expiring');
  assert.equal(summarize(accounts, [key('intl', '2026-12-01T00:00:00Z')], now).state, 'expired');
  assert.equal(summarize(accounts, [key('intl', '2028-01-01T00:00:00Z', 'not_yet')], now).state, 'backup');
  const superseded = { ...key('intl', '2026-01-01T00:00:00Z'), status: 'superseded' };
  assert.equal(summarize(accounts, [superseded, key('intl', '2028-01-01T00:00:00Z')], now).state, 'ok');
});

test('recovery code confirmation by its last group', () => {
  const code = '1234-5678-9012-3456-7890-1234-5678-9012-3456';
  assert.equal(lastGroup(code), '3456');
  assert.ok(lastGroupMatches(code, ' 3456 '));
  assert.ok(!lastGroupMatches(code, '1234'));
  assert.ok(!lastGroupMatches('', ''));
});

test('export file names', () => {
  assert.equal(exportFileName('alice@example.test', 'modern'), 'alice@example.test.p12');
  assert.equal(exportFileName('alice@example.test', 'legacy'), 'alice@example.test-legacy.p12');
  assert.equal(exportFileName('a/b', 'modern'), 'a_b.p12');
  assert.equal(exportFileName(null, 'modern'), 'keys.p12');
});
