// Plain-language text for the extension's pages: host errors as sentences with what to do next,
// progress, dates, certificate status. Pure functions only (no chrome.*), tested by node:test.

const NEXT_STEPS = {
  not_configured: {
    title: 'Setup is not finished yet.',
    next: 'Open the setup page and finish the steps there.',
  },
  mail_failed: {
    title: 'Your mailbox could not be reached.',
    next: 'Check the password (or app password) and your internet connection, then try again. If your provider needs special server settings, open “Advanced”.',
  },
  missing_certificates: {
    title: 'Some recipients cannot receive encrypted mail yet.',
    next: 'Ask them to install autosmime, or remove them from the message; nothing was sent.',
  },
  sign_in_required: {
    title: 'Your sign-in with your mail provider has expired or was revoked.',
    next: 'Sign in again on the setup page (Sign in with …); your keys and settings stay as they are.',
  },
  recovery_code: {
    title: 'That recovery code does not open your backup.',
    next: 'Check the code you wrote down when you first set up autosmime and type it again; nothing was changed.',
  },
  host_unavailable: {
    title: 'The autosmime helper program is not running.',
    next: 'Install it (run “autosmime install”), then reload this page.',
  },
  timeout: {
    title: 'This is taking longer than expected.',
    next: 'Check your internet connection and try again.',
  },
  bad_params: {
    title: 'Some information is missing or not in the right form.',
    next: 'Check the fields on this page and try again.',
  },
  forbidden_origin: {
    title: 'This page is not allowed to do that.',
    next: 'Open it from the autosmime button in the browser toolbar.',
  },
  storage_failed: {
    title: 'The files of autosmime could not be saved on this computer.',
    next: 'Free some disk space, or make the folder named above writable, then try again; nothing was lost.',
  },
  op_failed: {
    title: 'That could not be done.',
    next: 'Do what the details above suggest, then try again.',
  },
  internal: {
    title: 'Something went wrong inside autosmime.',
    next: 'Try again. If it happens again, run “autosmime doctor” and send its report to your support contact.',
  },
};

// recovery_code when no code was given: the host needs it (it is not kept on this device).
const CODE_NEEDED = {
  title: 'Your recovery code is needed for this.',
  next: 'Type the recovery code you wrote down when you first set up autosmime; nothing was changed.',
};

const FALLBACK = {
  title: 'Something went wrong.',
  next: 'Try again. If it happens again, run “autosmime doctor”.',
};

/**
 * A host error ({code, message}) as {title, detail, next}: the title and what to do next for a
 * person; detail is the host's own sentence (it names the part that failed), or '' if it adds
 * nothing.
 */
export function describeError(error, { codeGiven = true } = {}) {
  const code = typeof error?.code === 'string' ? error.code : 'internal';
  let known = NEXT_STEPS[code] ?? FALLBACK;
  if (code === 'recovery_code' && !codeGiven) known = CODE_NEEDED;
  let detail = typeof error?.message === 'string' ? error.message.trim() : '';
  if (detail.length > 500) detail = `${detail.slice(0, 497)}…`;
  return { code, title: known.title, detail, next: known.next };
}

/** describeError as one paragraph of text. */
export function errorSentence(error, context = {}) {
  const { title, detail, next } = describeError(error, context);
  return [title, detail, next].filter(Boolean).join(' ');
}

/** Percent (0..100, whole) for a progress event {done, total}. */
export function progressPercent(progress) {
  const done = Number(progress?.done);
  const total = Number(progress?.total);
  if (!Number.isFinite(done) || !Number.isFinite(total) || total <= 0) return 0;
  return Math.max(0, Math.min(100, Math.round((done / total) * 100)));
}

export const SUITE_NAMES = {
  intl: 'International',
  sm: 'Chinese national standard (SM2)',
};

const KEY_TYPES = { rsa2048: 'RSA 2048', rsa4096: 'RSA 4096', rsa3072: 'RSA 3072', 'rsa-3072': 'RSA 3072', 'ec-secp256r1': 'ECDSA P-256', 'ecdsa-p256': 'ECDSA P-256', sm2: 'SM2' };

/** A key's kind and algorithm for people: "International (ECDSA P-256)", "… (SM2)". */
export function keyKind(suite, keyType) {
  const name = suiteName(suite);
  const type = KEY_TYPES[String(keyType ?? '').toLowerCase()] ?? (keyType ? String(keyType).toUpperCase() : '');
  return type && !name.includes(`(${type})`) ? `${name} (${type})` : name;
}

export function suiteName(suite) {
  return SUITE_NAMES[suite] ?? String(suite ?? 'Unknown');
}

const STATUS_TEXT = {
  current: 'In use',
  pending: 'Being set up',
  superseded: 'Replaced (still opens old mail)',
  expired: 'Expired (still opens old mail)',
  revoked: 'Revoked',
};

export function keyStatusText(status) {
  return STATUS_TEXT[status] ?? String(status ?? 'Unknown');
}

const BACKUP_TEXT = {
  proven: 'Backed up in your mailbox',
  not_yet: 'Not backed up yet',
  unknown: 'Backup not checked on this device',
};

export function backupText(state) {
  return BACKUP_TEXT[state] ?? BACKUP_TEXT.unknown;
}

/** Where a key came from: enrolled here, or imported (with its certificate's issuer). */
export function originText(origin, issuer) {
  if (origin !== 'imported') return 'Set up by autosmime';
  // A subject as the host names it: "Common Name: X, Organization: Y" (any order).
  const name = /Common Name: (.+?)(?:, [A-Z][A-Za-z ]*: |$)/.exec(String(issuer ?? ''))?.[1]?.trim();
  return name ? `Imported (issued by ${name})` : 'Imported';
}

/** A date (ISO text or Date) as a long, local date; '' when missing or invalid. */
export function formatDate(value, locale = undefined) {
  if (!value) return '';
  const date = value instanceof Date ? value : new Date(value);
  if (Number.isNaN(date.getTime())) return '';
  return date.toLocaleDateString(locale, { year: 'numeric', month: 'long', day: 'numeric', timeZone: 'UTC' });
}

export const EXPIRING_DAYS = 30;

/** Whole days from now until notAfter (negative when past); null without a date. */
export function daysLeft(notAfter, now = new Date()) {
  const end = new Date(notAfter ?? NaN).getTime();
  if (Number.isNaN(end)) return null;
  return Math.floor((end - now.getTime()) / 86_400_000);
}

/**
 * The state at a glance for the popup, from account.list's accounts and certs.list's keys:
 * {state: setup|enroll|ok|expiring|expired|backup, headline, details: [text]}.
 */
export function summarize(accounts, keys, now = new Date()) {
  if (!accounts?.length) {
    return { state: 'setup', headline: 'autosmime is not set up yet.', details: ['Set it up once; it takes about a minute.'] };
  }
  const address = accounts[0].address;
  const current = (keys ?? []).filter((k) => k.status === 'current');
  if (!current.length) {
    return { state: 'enroll', headline: `${address} has no certificates yet.`, details: ['Finish the setup to get them.'] };
  }
  const soonest = Math.min(...current.map((k) => daysLeft(k.notAfter, now) ?? Infinity));
  const unbacked = current.filter((k) => k.backup?.state !== 'proven');
  const details = [
    `${current.length} certificate${current.length === 1 ? '' : 's'} in use: ${current.map((k) => suiteName(k.suite)).join(', ')}.`,
  ];
  const ends = current.map((k) => k.notAfter).filter(Boolean).sort()[0];
  if (ends) details.push(`Valid until ${formatDate(ends)}.`);
  details.push(unbacked.length ? 'Your keys are not backed up in your mailbox yet.' : 'Your keys are backed up in your mailbox.');
  let state = 'ok';
  let headline = `Secure mail is on for ${address}.`;
  if (soonest < 0) {
    state = 'expired';
    headline = `The certificates of ${address} have expired: renew them.`;
  } else if (soonest <= EXPIRING_DAYS) {
    state = 'expiring';
    headline = `The certificates of ${address} expire in ${soonest} day${soonest === 1 ? '' : 's'}: renew them.`;
  } else if (unbacked.length) {
    state = 'backup';
  }
  return { state, headline, details };
}

/** Sentences for the popup about the last automatic renewal (background/renewal.js) that failed. */
export function renewalProblems(report) {
  if (!report) return [];
  if (report.error) return [`The daily renewal check could not run: ${errorSentence(report.error)}`];
  return (report.results ?? []).filter((r) => r.error)
    .map((r) => `Automatic renewal for ${r.address} did not finish: ${errorSentence(r.error)}`);
}

/** Recovery codes are groups joined by '-': the last group, which the person types back. */
export function lastGroup(code) {
  const groups = String(code ?? '').trim().split('-');
  return groups[groups.length - 1] ?? '';
}

/** Whether typed matches the code's last group (spaces and case ignored). */
export function lastGroupMatches(code, typed) {
  const want = lastGroup(code).toUpperCase();
  const got = String(typed ?? '').replace(/\s+/g, '').toUpperCase();
  return want.length > 0 && got === want;
}

/** Normalize a recovery code as typed: spaces become nothing, groups stay separated by '-'. */
export function normalizeRecoveryCode(typed) {
  return String(typed ?? '').trim().replace(/\s+/g, '-').replace(/-+/g, '-').toUpperCase();
}

/** The file name of an exported PKCS#12. */
export function exportFileName(address, flavour) {
  const who = String(address ?? 'keys').replace(/[^A-Za-z0-9._@-]/g, '_');
  return `${who}${flavour === 'legacy' ? '-legacy' : ''}.p12`;
}
