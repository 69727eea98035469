// First run: address (detected when possible), password or a sign-in with the mail provider,
// then account.configure and enroll (or backup.restore on a new device) with the host's own stage
// names; the recovery code is shown once and confirmed. The organisation's PKI comes from its
// policy, else the well-known document of the mail domain, else "Advanced" (organisation.js);
// with none, the page says plainly what to ask the administrator for.
//
// Sign in (Google, Microsoft, or a provider an organisation set up): the host builds the
// authorization URL with a fresh state and PKCE verifier (account.signInStart), the browser shows
// the provider's sign-in (identity.launchWebAuthFlow), and account.configure gets the URL it
// came back to: the host exchanges the code and keeps the refresh token in the keyring. State and
// verifier live in this page only. `?signin=ADDRESS` is the way back after a grant expired (the
// account keeps its PKI and keys).

import {
  $, RequestError, clearError, detectedAddress, el, loadConfig, longRequest, openOptions, request,
  showError, showProgress,
} from './common.js';
import { lastGroupMatches, normalizeRecoveryCode } from './messages.js';
import { MAIL_PARAMS, PKI_PARAMS, findPki, managedSettings, pick } from './organisation.js';

const form = $('#account-form');
const errorBox = $('#error');
const identity = (globalThis.browser ?? globalThis.chrome)?.identity;
const query = new URLSearchParams(location.search);
const signingInAgain = query.has('signin');
let recoveryCode = null;
let managed = {};
const FIELDS = {
  imapUrl: '#imap-url', smtpUrl: '#smtp-url', caFile: '#ca-file', pkiUrl: '#pki-url', pkiRoots: '#pki-roots',
  acmeDirectoryUrl: '#acme-directory-url', certsUrl: '#certs-url', tsaUrl: '#tsa-url',
};

function show(step) {
  for (const section of document.querySelectorAll('main > section')) section.hidden = section.id !== step;
}

function mode() {
  return form.elements.mode.value;
}

async function prefill() {
  const config = await loadConfig();
  for (const [key, selector] of Object.entries(FIELDS)) {
    if (typeof config[key] === 'string') $(selector).value = config[key];
  }
  await applyPolicy();
  let address = null;
  let source = null;
  try {
    const { accounts } = await request('account.list');
    if (accounts?.length) {
      address = accounts[0].address;
      source = 'This address is already set up on this computer.';
    }
  } catch { /* no host yet: the error shows when the person starts */ }
  if (!address) {
    address = await detectedAddress();
    if (address) source = 'Found in your webmail. Change it if it is not the address you want.';
  }
  if (address) {
    $('#address').value = address;
    $('#address-hint').textContent = source;
    $('#address-hint').hidden = false;
    $('#password').focus();
  } else {
    $('#address').focus();
  }
  if (query.get('mode') === 'restore') {
    form.elements.mode.value = 'restore';
    updateMode();
  }
  if (signingInAgain) {
    $('#address').value = query.get('signin');
    $('#sign-in-again').hidden = false;
  }
  await showSignIn();
}

/** A "Sign in with …" button for every provider the host has an OAuth client for. */
async function showSignIn() {
  let providers = [];
  try {
    ({ providers } = await request('account.signInOptions'));
  } catch { /* no host yet, or an older one: passwords only */ }
  if (!providers?.length || !identity?.launchWebAuthFlow) return;
  $('#sign-in-buttons').replaceChildren(...providers.map((provider) => {
    const button = el('button', { type: 'button', class: 'sign-in', 'data-provider': provider.id, text: `Sign in with ${provider.name}` });
    button.addEventListener('click', (event) => start(event, provider));
    return button;
  }));
  $('#sign-in').hidden = false;
  const wanted = query.get('provider');
  if (signingInAgain) ($(`#sign-in-buttons [data-provider="${CSS.escape(wanted ?? '')}"]`) ?? $('#sign-in-buttons button')).focus();
}

/** The provider's sign-in in the browser; what account.configure needs to finish it. */
async function signIn(provider, address) {
  const redirectUri = identity.getRedirectURL();
  const started = await request('account.signInStart', { provider: provider.id, redirectUri, address });
  let redirectUrl;
  try {
    redirectUrl = await identity.launchWebAuthFlow({ url: started.authorizationUrl, interactive: true });
  } catch (error) {
    throw new RequestError({ code: 'op_failed', message: `The sign-in with ${provider.name} was closed before it finished (${error?.message ?? error}).` });
  }
  return { provider: provider.id, redirectUri, redirectUrl, state: started.state, codeVerifier: started.codeVerifier };
}

/** The administrator's settings, shown (read-only) under "Advanced": read at load and again
 * whenever the browser's policy arrives or changes (it may come after the page opened). */
async function applyPolicy() {
  managed = await managedSettings();
  const fromPolicy = pick(managed, { ...MAIL_PARAMS, ...PKI_PARAMS });
  for (const [key, selector] of Object.entries(FIELDS)) {
    if (typeof fromPolicy[key] === 'string') {
      $(selector).value = fromPolicy[key];
      $(selector).readOnly = true; // the administrator's choice
    }
  }
  $('#managed-hint').hidden = Object.keys(fromPolicy).length === 0;
}

function updateMode() {
  const restoring = mode() === 'restore';
  $('#restore-fields').hidden = !restoring;
  $('#start').textContent = restoring ? 'Restore from my mailbox' : 'Set up secure mail';
}

function stageListener() {
  const bar = $('#progress');
  const label = $('#stage');
  const done = $('#stages-done');
  let last = null;
  return (event) => {
    if (last && last !== event.stage && last !== 'Done') done.append(el('li', { text: last }));
    last = event.stage;
    showProgress(bar, label, event);
  };
}

function accountParams(withPassword = true) {
  const value = (name) => form.elements[name].value.trim();
  const params = { address: value('address') };
  if (withPassword) params.password = form.elements.password.value;
  for (const name of ['imapUrl', 'smtpUrl', 'caFile']) {
    if (value(name)) params[name] = value(name);
  }
  return params;
}

/** What the person typed under "Advanced" about the PKI. */
function typedPki() {
  const typed = {};
  for (const name of ['pkiUrl', 'pkiRoots', 'acmeDirectoryUrl', 'certsUrl', 'tsaUrl']) {
    const value = form.elements[name].value.trim();
    if (value) typed[name] = value;
  }
  return typed;
}

/** Nothing found: say what to ask the administrator for, and open "Advanced". */
function showAdvice(text) {
  show('step-account');
  $('#pki-advice-text').textContent = text;
  $('#pki-advice').hidden = false;
  $('#advanced').open = true;
  $('#pki-advice').focus();
}

function problemWithForm(signingIn) {
  if (!/^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(form.elements.address.value.trim())) {
    return { field: '#address', message: 'Type your full email address, like name@example.com.' };
  }
  if (!signingIn && !form.elements.password.value) {
    return { field: '#password', message: 'Type the password (or app password) of your mailbox.' };
  }
  if (mode() === 'restore' && !form.elements.recoveryCode.value.trim()) {
    return { field: '#recovery-code', message: 'Type the recovery code you wrote down.' };
  }
  return null;
}

/** Set up with the password typed, or (provider given) with a sign-in at that provider. */
async function start(event, provider = null) {
  event.preventDefault();
  clearError(errorBox);
  const problem = problemWithForm(Boolean(provider));
  if (problem) {
    showError(errorBox, { code: 'bad_params', message: problem.message });
    $(problem.field).focus();
    return;
  }
  await applyPolicy();
  const params = accountParams(!provider);
  const restoring = mode() === 'restore';
  const onProgress = stageListener();
  $('#stages-done').replaceChildren();
  $('#pki-advice').hidden = true;
  $('#progress-heading').textContent = restoring ? 'Restoring your keys' : 'Setting up';
  try {
    show('step-progress');
    if (!signingInAgain) { // an account signing in again keeps its PKI
      const pki = await findPki(params.address, {
        managed,
        typed: typedPki(),
        discover: (address) => longRequest('pki.discover', { address }, { onProgress }),
      });
      if (!pki.params && !restoring) {
        showAdvice(pki.advice);
        return;
      }
      Object.assign(params, pki.params ?? {});
      $('#pki-source').textContent = pki.note ?? '';
      $('#pki-source').hidden = !pki.note;
    }
    if (provider) {
      $('#progress-heading').textContent = `Signing in with ${provider.name}`;
      params.signIn = await signIn(provider, params.address);
    }
    await longRequest('account.configure', params, { onProgress });
    form.elements.password.value = '';
    if (signingInAgain) {
      finish(`You are signed in again: autosmime reaches ${params.address} with your new sign-in. Your keys and settings are as they were.`);
      return;
    }
    if (restoring) {
      const code = normalizeRecoveryCode(form.elements.recoveryCode.value);
      const result = await longRequest('backup.restore', { address: params.address, recoveryCode: code }, { onProgress });
      form.elements.recoveryCode.value = '';
      const count = result.restored.length + result.alreadyHeld.length;
      const made = result.created ? ` from your backup of ${result.created.replace('T', ' ').replace('Z', ' UTC')}` : '';
      const skipped = result.skipped?.length
        ? ` Note: ${result.skipped.length} newer-looking backup message(s) in your mailbox did not open with your code and were skipped.`
        : '';
      finish(`Your ${count} key${count === 1 ? ' is' : 's are'} back on this computer${made}. Your encrypted mail opens here again.${skipped}`);
      return;
    }
    const result = await longRequest('enroll', { address: params.address }, { onProgress });
    const unavailable = Object.values(result.unavailable ?? {}).join(' ');
    $('#unavailable').textContent = unavailable;
    $('#unavailable').hidden = !unavailable;
    if (result.recoveryCode) {
      showCode(result.recoveryCode);
    } else {
      finish('Your certificates are ready. Your earlier recovery code still protects your backup.');
    }
  } catch (error) {
    show('step-account');
    showError(errorBox, error, { codeGiven: restoring });
    if (error.code === 'recovery_code' && !restoring) {
      form.elements.mode.value = 'restore';
      updateMode();
    }
  }
}

function showCode(code) {
  recoveryCode = code;
  $('#recovery-code-shown').textContent = code;
  show('step-code');
  $('#code-heading').setAttribute('tabindex', '-1');
  $('#code-heading').focus();
}

function confirmCode(event) {
  event.preventDefault();
  const typed = $('#last-group').value;
  const ticked = $('#written-down').checked;
  const problem = $('#code-problem');
  if (typed.trim() ? !lastGroupMatches(recoveryCode, typed) : !ticked) {
    problem.textContent = typed.trim()
      ? 'That is not the last group of the code. Look at the code again and type its last four digits.'
      : 'Type the last group of the code, or tick “I have written it down”.';
    problem.hidden = false;
    $('#last-group').focus();
    return;
  }
  // Shown once: forget it here.
  recoveryCode = null;
  $('#recovery-code-shown').textContent = '';
  finish('Your certificates are ready and your keys are backed up in your mailbox. Mail you send can now be signed and encrypted.');
}

function finish(text) {
  $('#done-text').textContent = text;
  show('step-done');
  $('#done-heading').focus();
}

form.addEventListener('submit', start);
(globalThis.browser ?? globalThis.chrome).storage?.onChanged?.addListener((_changes, area) => {
  if (area === 'managed') applyPolicy();
});
form.addEventListener('change', (event) => { if (event.target.name === 'mode') updateMode(); });
$('#code-form').addEventListener('submit', confirmCode);
$('#open-options').addEventListener('click', () => openOptions());
prefill();
