// The status line of the secure viewer from message.open's `security` (pure; unit-tested).

function when(iso) {
  if (!iso) return null;
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : date.toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC');
}

export const UNPROTECTED = 'Not protected against alteration: encrypted with a cipher that does '
  + 'not detect changes (CBC) and not validly signed, so anyone on the way could have changed it. '
  + 'Shown as plain text only.';

// A signature vouches for the message only when it holds AND its signer is the sender the
// message names: a missing or unknown fromMatches is never taken for a match.
function validSignature(s) {
  return Boolean(s?.valid) && s.chainValid !== false && s.fromMatches === true;
}

/** The sender decision in words: the host's reason, else what the viewer can say itself. */
function senderWords(s, who) {
  if (typeof s.fromReason === 'string' && s.fromReason) return s.fromReason;
  return `Signed by ${who}, but nothing shows that the message is from ${who}.`;
}

// Only the sender is wrong (every problem the host named is a from_ code): the signature holds.
function onlySenderWrong(s) {
  const codes = s.codes ?? [];
  return s.chainValid !== false && codes.every((code) => code.startsWith('from_')) && (s.valid || codes.length > 0);
}

/**
 * Encrypted content nobody vouches for: decrypted with a cipher that does not detect alteration
 * (CBC; authenticatedCipher false) and not carried by a valid signature. An attacker can flip
 * bits of CBC ciphertext and change the text without knowing the key.
 */
export function isUnprotected(security) {
  if (!security?.encrypted || !security.decrypted || security.authenticatedCipher !== false) return false;
  const signatures = security.signatures ?? [];
  return !(signatures.length && signatures.every(validSignature));
}

/**
 * How to show an opened message: unprotected content as text only (no HTML, no remote images),
 * else the sanitized HTML when there is some, else the text.
 */
export function renderPlan(view) {
  const unprotected = isUnprotected(view?.security);
  if (view?.html && !unprotected) return { as: 'html', html: view.html, remote: view.remoteImagesBlocked > 0 };
  if (typeof view?.text === 'string') return { as: 'text', text: view.text, remote: false };
  return { as: 'text', text: null, fromHtml: view?.html ?? null, remote: false };
}

const SHOWN_FIELDS = [['subject', 'Subject'], ['from', 'From'], ['to', 'To'], ['cc', 'Cc'],
  ['date', 'Date'], ['reply-to', 'Reply-To']];

/**
 * The header fields the viewer lists, from message.open's headers and headerProtection (RFC
 * 9788): [{name, value, protection}], protection being "signed and encrypted", "encrypted",
 * "signed" or "unprotected" (a message without header protection: every field unprotected).
 */
export function headerRows(view) {
  const fields = view?.headerProtection?.protected ? view.headerProtection.fields ?? {} : {};
  return SHOWN_FIELDS
    .filter(([key]) => typeof view?.headers?.[key] === 'string' && view.headers[key])
    .map(([key, name]) => ({ name, value: view.headers[key], protection: fields[key] ?? 'unprotected' }));
}

/**
 * One sentence on what RFC 9788 protected, or null: "Subject hidden from the mail servers
 * (encrypted) and signed; From, To, Date signed." A signature that does not hold vouches for
 * nothing, so then only what the encryption hid is named.
 */
export function protectionSentence(view) {
  const rows = headerRows(view);
  const named = (kinds) => rows.filter((r) => kinds.includes(r.protection)).map((r) => r.name).join(', ');
  const hidden = named(['signed and encrypted', 'encrypted']);
  const signed = named(['signed']);
  const parts = [];
  if (hidden) {
    const andSigned = rows.some((r) => r.protection === 'signed and encrypted') ? ' and signed' : '';
    parts.push(`${hidden} hidden from the mail servers (encrypted)${andSigned}`);
  }
  if (signed) parts.push(`${signed} signed`);
  return parts.length ? `Protected headers: ${parts.join('; ')}.` : null;
}

/** The header protection warnings in words, most serious first: [{severity, message}]. */
export function headerWarnings(view) {
  const warnings = Array.isArray(view?.headerProtection?.warnings) ? view.headerProtection.warnings : [];
  return [...warnings]
    .filter((w) => typeof w?.message === 'string')
    .sort((a, b) => (a.severity === 'warning' ? 0 : 1) - (b.severity === 'warning' ? 0 : 1))
    .map((w) => ({ severity: w.severity === 'warning' ? 'warning' : 'notice', message: w.message }));
}

/**
 * Revocation of a signer in words: checked and not revoked; revoked after the trusted time (the
 * signature stands as of that time); or "Revocation not checked" and why. A signature revoked
 * before its trusted time is already NOT valid, with the revocation among its reasons.
 */
export function revocationWords(revocation) {
  if (!revocation) return 'Revocation not checked.';
  if (revocation.status === 'good') return 'Not revoked (the CRL was checked).';
  if (revocation.status === 'revoked') return revocation.validAsOf ? revocation.summary : null;
  const summary = revocation.summary ?? '';
  return summary.startsWith('Revocation not checked') ? summary : `Revocation not checked. ${summary}`.trim();
}

/** {state: valid|invalid|unsigned|unprotected, parts: [sentences]} for the status line. */
export function describeSecurity(security) {
  const parts = [];
  if (!security) return { state: 'invalid', parts: ['The extension could not read this message.'] };
  if (security.encrypted) {
    parts.push(security.decrypted
      ? `Encrypted with ${security.cipher ?? 'an unknown cipher'}${security.suite ? ` (${security.suite})` : ''}.`
      : 'Encrypted, and it could not be opened.');
  } else {
    parts.push('Not encrypted.');
  }
  const signatures = security.signatures ?? [];
  let state = signatures.length ? 'valid' : 'unsigned';
  for (const s of signatures) {
    const who = s.signer ?? s.signerSubject ?? 'an unknown signer';
    if (validSignature(s)) {
      parts.push(`Signed by ${who}: valid.`);
    } else if (s.fromMatches !== true && onlySenderWrong(s)) {
      state = 'invalid';
      parts.push(senderWords(s, who));
    } else {
      state = 'invalid';
      const why = (s.reasons ?? []).join('; ') || s.summary || 'the signature does not verify';
      parts.push(`Signed by ${who}: NOT valid (${why}).`);
      if (s.fromMatches !== true && !(s.reasons ?? []).includes(s.fromReason)) parts.push(senderWords(s, who));
    }
    const revocation = revocationWords(s.revocation);
    if (revocation) parts.push(revocation);
    const stamp = s.timestamp;
    if (stamp?.valid && stamp.trustedTime) {
      parts.push(`Trusted timestamp: ${when(stamp.trustedTime)}${stamp.tsa ? ` by ${stamp.tsa}` : ''}.`);
    } else if (stamp?.problems?.length) {
      parts.push(`Timestamp not trusted: ${stamp.problems.join('; ')}.`);
    } else {
      parts.push('No trusted timestamp.');
    }
  }
  if (!signatures.length) parts.push('Not signed.');
  if (security.problem) {
    parts.push(security.problem);
    if (security.encrypted && !security.decrypted) state = 'invalid';
  }
  if (isUnprotected(security)) {
    parts.push(UNPROTECTED);
    if (state !== 'invalid') state = 'unprotected';
  }
  return { state, parts };
}

/** The document for the sandboxed content frame: sanitized HTML under its own strict CSP. */
export function contentDocument(html, allowRemote = false) {
  const images = allowRemote ? "data: https:" : 'data:';
  return '<!doctype html><html><head><meta charset="utf-8">'
    + `<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src ${images}; style-src 'unsafe-inline'">`
    + '<base target="_blank"><style>body{font:14px/1.5 sans-serif;margin:8px;word-wrap:break-word}</style>'
    + `</head><body>${html}</body></html>`;
}
