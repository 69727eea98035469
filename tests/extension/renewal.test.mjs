import assert from 'node:assert/strict';
import test from 'node:test';

import { RENEW_ALARM, RENEW_PERIOD_MINUTES, installDailyRenewal, renewAll } from '../../extension/background/renewal.js';

const FIXED = () => new Date('2026-11-29T00:00:00Z');

function hostError(code, message) {
  return Object.assign(new Error(message), { code });
}

test('renews every account and reports each outcome, errors included', async () => {
  const asked = [];
  const request = async (op, params) => {
    asked.push([op, params]);
    if (op === 'account.list') return { accounts: [{ address: 'a@x.test' }, { address: 'b@x.test' }] };
    if (params.address === 'a@x.test') return { address: 'a@x.test', renewed: true };
    throw hostError('recovery_code_needed', 'Renewal needs your recovery code.');
  };
  const report = await renewAll(request, FIXED);
  assert.deepEqual(asked, [
    ['account.list', {}],
    ['keys.renew', { address: 'a@x.test' }],
    ['keys.renew', { address: 'b@x.test' }],
  ]);
  assert.deepEqual(report, {
    at: '2026-11-29T00:00:00.000Z',
    results: [
      { address: 'a@x.test', renewed: true },
      { address: 'b@x.test', error: { code: 'recovery_code_needed', message: 'Renewal needs your recovery code.' } },
    ],
  });
});

test('a host that cannot be reached gives a report, not a throw', async () => {
  const report = await renewAll(async () => { throw hostError('host_unavailable', 'gone'); }, FIXED);
  assert.deepEqual(report, { at: '2026-11-29T00:00:00.000Z', results: [], error: { code: 'host_unavailable', message: 'gone' } });
});

test('schedules one daily alarm and stores the report when it fires', async () => {
  const created = [];
  let listener = null;
  let stored = null;
  const alarms = {
    get: async () => undefined,
    create: (name, info) => created.push([name, info]),
    onAlarm: { addListener: (fn) => { listener = fn; } },
  };
  const request = async (op) => (op === 'account.list' ? { accounts: [{ address: 'a@x.test' }] } : { renewed: false });
  installDailyRenewal(alarms, { set: async (value) => { stored = value; } }, request);
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(created, [[RENEW_ALARM, { delayInMinutes: 1, periodInMinutes: RENEW_PERIOD_MINUTES }]]);
  await listener({ name: 'something.else' });
  assert.equal(stored, null);
  await listener({ name: RENEW_ALARM });
  assert.deepEqual(stored.renewal.results, [{ address: 'a@x.test', renewed: false }]);
});

test('an existing alarm is kept (the worker restarts often)', async () => {
  const created = [];
  installDailyRenewal(
    { get: async () => ({ name: RENEW_ALARM }), create: (...args) => created.push(args), onAlarm: { addListener() {} } },
    null,
    async () => ({}),
  );
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(created, []);
});

test('the popup names the account whose renewal did not finish, and what to do', async () => {
  const { renewalProblems } = await import('../../extension/ui/messages.js');
  assert.deepEqual(renewalProblems(null), []);
  assert.deepEqual(renewalProblems({ results: [{ address: 'a@x.test', renewed: false }] }), []);
  const [line] = renewalProblems({
    results: [{ address: 'b@x.test', error: { code: 'host_unavailable', message: 'gone' } }],
  });
  assert.match(line, /^Automatic renewal for b@x\.test did not finish: /);
  assert.match(line, /gone/);
  assert.match(renewalProblems({ error: { code: 'host_unavailable', message: 'x' } })[0], /could not run/);
});
