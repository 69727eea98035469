// The status line of the secure viewer from message.open's `security` (pure; unit-tested).

function when(iso) {
  if (!iso) return null;
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : date.toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC');
}

/** {state: valid|invalid|unsigned, parts: [sentences]} for the status line. */
export function describeSecurity(security) {
  const parts = [];
  if (!security) return { state: 'invalid', parts: ['The extension could not read this message.'] };
  if (security.encrypted) {
    parts.push(security.decrypted
      ? `Encrypted with ${security.cipher ?? 'an unknown cipher'}${security.suite ? ` (${security.suite})` : ''}.`
      : 'Encrypted, but none of your keys opens it.');
  } else {
    parts.push('Not encrypted.');
  }
  const signatures = security.signatures ?? [];
  let state = signatures.length ? 'valid' : 'unsigned';
  for (const s of signatures) {
    const who = s.signer ?? s.signerSubject ?? 'an unknown signer';
    if (s.valid && s.chainValid !== false && s.fromMatches !== false) {
      parts.push(`Signed by ${who}: valid.`);
    } else {
      state = 'invalid';
      const why = (s.reasons ?? []).join('; ') || s.summary || 'the signature does not verify';
      parts.push(`Signed by ${who}: NOT valid (${why}).`);
    }
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
