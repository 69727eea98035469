// Where the organisation's PKI comes from (extension/ui/organisation.js): policy, then what the
// person typed, then the mail domain's well-known document (the host's pki.discover), else
// advice; and the managed schema declares every setting the pages read from a policy.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { MAIL_PARAMS, PKI_PARAMS, adviceFor, findPki, hasPki, pick } from '../../extension/ui/organisation.js';
import { originText } from '../../extension/ui/messages.js';

const ROOTS = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----';
const schema = JSON.parse(readFileSync(new URL('../../extension/managed_schema.json', import.meta.url), 'utf-8'));
const manifest = JSON.parse(readFileSync(new URL('../../extension/manifest.json', import.meta.url), 'utf-8'));
const protocol = JSON.parse(readFileSync(new URL('../../native_host/protocol.json', import.meta.url), 'utf-8'));

function never() {
  throw new Error('discover must not be asked');
}

test('a policy wins and the host is not asked', async () => {
  const managed = { pkiUrl: ' https://pki.example.org ', pkiRoots: ROOTS, encryptByDefault: true, junk: 1 };
  const found = await findPki('a@example.org', { managed, typed: { pkiUrl: 'https://other' }, discover: never });
  assert.equal(found.source, 'policy');
  assert.deepEqual(found.params, { pkiUrl: 'https://pki.example.org', pkiRoots: ROOTS });
  assert.match(found.note, /organisation/);
});

test('what the person typed comes before discovery, discovery before advice', async () => {
  const typed = { acmeDirectoryUrl: 'https://ca.example.org/dir', pkiRoots: ROOTS };
  assert.equal((await findPki('a@example.org', { typed, discover: never })).source, 'typed');
  const asked = [];
  const discover = async (address) => {
    asked.push(address);
    return { found: true, settings: { pkiUrl: 'https://pki.example.org', pkiRoots: ROOTS, acmeContact: false, tsaRoots: 7 } };
  };
  const found = await findPki('a@example.org', { managed: { pkiUrl: 'https://half' }, discover });
  assert.deepEqual(asked, ['a@example.org']);
  assert.equal(found.source, 'well-known');
  assert.deepEqual(found.params, { pkiUrl: 'https://pki.example.org', pkiRoots: ROOTS, acmeContact: false });
  assert.match(found.note, /published by example\.org/);
  const none = await findPki('a@example.org', { discover: async () => ({ found: false, advice: 'Ask them.' }) });
  assert.deepEqual(none, { source: null, advice: 'Ask them.' });
  assert.match(adviceFor('a@example.org'), /Ask your administrator for: .*root certificates/);
});

test('hasPki needs the roots and a URL', () => {
  assert.equal(hasPki({ pkiUrl: 'https://x' }), false);
  assert.equal(hasPki({ pkiRoots: ROOTS }), false);
  assert.equal(hasPki({ acmeDirectoryUrl: 'https://x', pkiRoots: ROOTS }), true);
  assert.deepEqual(pick({ unauthenticatedChallengeFrom: ['ca@x', ''] }, PKI_PARAMS), {});
});

test('the managed schema declares what the pages read, with account.configure\'s names', () => {
  assert.equal(manifest.storage.managed_schema, 'managed_schema.json');
  const declared = schema.properties;
  const configure = protocol.ops['account.configure'].params.properties;
  for (const [name, type] of Object.entries({ ...PKI_PARAMS, ...MAIL_PARAMS })) {
    assert.equal(declared[name]?.type, type, name);
    assert.ok(configure[name], `${name} is an account.configure parameter`);
  }
  assert.equal(declared.encryptByDefault.type, 'boolean');
});

test('a key says where it came from', () => {
  assert.equal(originText('enrolled'), 'Set up by autosmime');
  assert.equal(originText('imported', 'Organization: X, Common Name: Commercial CA'), 'Imported (issued by Commercial CA)');
  assert.equal(originText('imported', 'Common Name: CA, Inc. S/MIME, Organization: X'), 'Imported (issued by CA, Inc. S/MIME)');
  assert.equal(originText('imported'), 'Imported');
});
