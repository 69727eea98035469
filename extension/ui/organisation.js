// Where the organisation's PKI comes from, in order: the administrator's managed policy
// (chrome.storage.managed, declared in managed_schema.json; Firefox: policies.json "3rdparty"),
// else the well-known document of the mail domain (the host's pki.discover), else what the
// person typed under "Advanced"; with none of them, what to ask the administrator for.
// Pure functions, plus managedSettings() which reads the browser's managed storage.

const ext = globalThis.browser ?? globalThis.chrome;

/** account.configure's PKI parameters, and their types. */
export const PKI_PARAMS = {
  pkiUrl: 'string',
  acmeDirectoryUrl: 'string',
  certsUrl: 'string',
  tsaUrl: 'string',
  pkiRoots: 'string',
  tsaRoots: 'string',
  pkiCaFile: 'string',
  acmeContact: 'boolean',
  unauthenticatedChallengeFrom: 'array',
};

/** Mail settings an administrator may set too. */
export const MAIL_PARAMS = { imapUrl: 'string', smtpUrl: 'string', caFile: 'string' };

function fits(value, type) {
  if (type === 'array') return Array.isArray(value) && value.every((v) => typeof v === 'string' && v.trim());
  if (type === 'string') return typeof value === 'string' && value.trim() !== '';
  return typeof value === type;
}

/** The entries of settings whose names and types are in `names` (trimmed strings). */
export function pick(settings, names) {
  const found = {};
  for (const [name, type] of Object.entries(names)) {
    const value = settings?.[name];
    if (fits(value, type)) found[name] = type === 'string' ? value.trim() : value;
  }
  return found;
}

/** Whether params name a PKI the host can use: roots and a service or ACME directory URL. */
export function hasPki(params) {
  return Boolean(params?.pkiRoots && (params.pkiUrl || params.acmeDirectoryUrl));
}

/** The administrator's policy (chrome.storage.managed): {} when none is set. */
export async function managedSettings(area = ext?.storage?.managed) {
  try {
    return (await area?.get(null)) ?? {};
  } catch {
    return {}; // no policy, or a browser without managed storage
  }
}

/**
 * The PKI to set the account up with: {source: 'policy'|'well-known'|'typed', params, note}
 * or {source: null, advice} when none is found. `discover(address)` asks the host
 * (pki.discover); a policy or what the person typed is used without asking.
 */
export async function findPki(address, { managed = {}, typed = {}, discover }) {
  const fromPolicy = pick(managed, PKI_PARAMS);
  if (hasPki(fromPolicy)) {
    return { source: 'policy', params: fromPolicy, note: 'Your organisation set up its certificate service for you.' };
  }
  const fromForm = pick(typed, PKI_PARAMS);
  if (hasPki(fromForm)) return { source: 'typed', params: fromForm, note: null };
  const found = await discover(address);
  if (found?.found && hasPki(found.settings)) {
    const domain = address.split('@').pop();
    return {
      source: 'well-known',
      params: pick(found.settings, PKI_PARAMS),
      note: `Found your organisation's certificate service, published by ${domain}.`,
    };
  }
  return { source: null, advice: found?.advice ?? adviceFor(address) };
}

/** What to ask the administrator for, when nothing was found (the host says the same). */
export function adviceFor(address) {
  const domain = address.split('@').pop() || 'your mail domain';
  return `No certificate service was found for ${domain}. Ask your administrator for: the address of your organisation's certificate service (or of its ACME certificate authority), its root certificates, and, if it has them, its certificate directory and time-stamp authority.`;
}
