// Automatic renewal: once a day the worker asks the host to renew every account whose current
// certificate ends within 30 days (keys.renew does nothing otherwise). The last report is kept in
// storage.local so the popup can say when a renewal needs the person (e.g. the recovery code).

export const RENEW_ALARM = 'autosmime.renew';
export const RENEW_PERIOD_MINUTES = 24 * 60;

/** keys.renew for every configured account; a report, never a throw. */
export async function renewAll(request, now = () => new Date()) {
  const report = { at: now().toISOString(), results: [] };
  let accounts;
  try {
    ({ accounts } = await request('account.list', {}));
  } catch (error) {
    report.error = { code: error.code ?? 'internal', message: error.message };
    return report;
  }
  for (const { address } of accounts ?? []) {
    try {
      const result = await request('keys.renew', { address });
      report.results.push({ address, renewed: result.renewed === true });
    } catch (error) {
      report.results.push({ address, error: { code: error.code ?? 'internal', message: error.message } });
    }
  }
  return report;
}

/**
 * Schedules the daily check (kept across worker restarts by the alarms API); returns the check
 * itself (renew, store the report, return it).
 */
export function installDailyRenewal(alarms, storage, request) {
  const check = async () => {
    const renewal = await renewAll(request);
    await storage?.set({ renewal });
    return renewal;
  };
  if (!alarms) return check;
  alarms.get(RENEW_ALARM).then((existing) => {
    if (!existing) alarms.create(RENEW_ALARM, { delayInMinutes: 1, periodInMinutes: RENEW_PERIOD_MINUTES });
  });
  alarms.onAlarm.addListener(async (alarm) => {
    if (alarm.name === RENEW_ALARM) await check();
  });
  return check;
}
