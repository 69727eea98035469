// The status page: certificates from certs.list, renew (enroll again), preferred suite (kept in
// chrome.storage.local for compose), whether encrypted mail hides its subject (account.settings,
// kept with the account by the host), PKCS#12 export downloaded as a file, and importing an
// identity the person already holds (keys.import: bring your own certificate).

import {
  $, clearError, el, getPreference, longRequest, request, setPreference, showError, showProgress,
} from './common.js';
import {
  backupText, exportFileName, formatDate, keyKind, keyStatusText, originText, suiteName,
} from './messages.js';

const errorBox = $('#error');
const notice = $('#notice');
let address = null;

function say(text) {
  notice.textContent = text;
  notice.hidden = false;
}

async function loadCertificates() {
  const { accounts } = await request('account.list');
  address = accounts?.[0]?.address ?? null;
  $('#account-line').textContent = address ? `Account: ${address}` : 'No mail account is set up yet.';
  const { keys } = await request('certs.list', address ? { address } : {});
  const body = $('#certs tbody');
  body.replaceChildren(
    ...keys.map((key) => el(
      'tr',
      { 'data-key-id': key.keyId, 'data-suite': key.suite, 'data-status': key.status, 'data-origin': key.origin },
      el('td', { text: keyKind(key.suite, key.keyType) }),
      el('td', { text: originText(key.origin, key.certificate?.issuer) }),
      el('td', { text: keyStatusText(key.status) }),
      el('td', { text: formatDate(key.notAfter) || '—' }),
      el('td', { text: backupText(key.backup?.state) }),
    )),
  );
  $('#certs').hidden = keys.length === 0;
  $('#no-certs').hidden = keys.length > 0;
  $('#renew').disabled = !address;
  return keys;
}

async function renew() {
  clearError(errorBox);
  notice.hidden = true;
  const button = $('#renew');
  button.disabled = true;
  $('#renew-progress').hidden = false;
  const codeField = $('#renew-recovery-code');
  const recoveryCode = codeField.value.trim();
  try {
    const result = await longRequest('enroll', { address, ...(recoveryCode ? { recoveryCode } : {}) }, {
      onProgress: (event) => showProgress($('#renew-bar'), $('#renew-stage'), event),
    });
    say(result.recoveryCode
      ? `New certificates are ready. Your new recovery code is ${result.recoveryCode} — write it down now; it is shown only once.`
      : 'New certificates are ready. Your old keys stay, so older mail still opens.');
    codeField.value = '';
    $('#renew-code').hidden = true;
    await loadCertificates();
  } catch (error) {
    showError(errorBox, error, { codeGiven: Boolean(recoveryCode) });
    if (error.code === 'recovery_code') {
      $('#renew-code').hidden = false;
      codeField.focus();
    }
  } finally {
    button.disabled = false;
    $('#renew-progress').hidden = true;
  }
}

let lastFileUrl = null;

/** Offer the file as a link (kept for a new click) and start its download at once. */
function download(base64, name) {
  const bytes = Uint8Array.fromBase64(base64);
  if (lastFileUrl) URL.revokeObjectURL(lastFileUrl);
  lastFileUrl = URL.createObjectURL(new Blob([bytes], { type: 'application/x-pkcs12' }));
  const link = $('#export-link');
  link.href = lastFileUrl;
  link.download = name;
  link.textContent = `Save ${name} again`;
  $('#export-saved').hidden = false;
  link.click();
}

async function exportKeys(event) {
  event.preventDefault();
  clearError(errorBox);
  notice.hidden = true;
  $('#export-saved').hidden = true;
  const form = event.target;
  const password = $('#export-password').value;
  if (!password) {
    showError(errorBox, { code: 'bad_params', message: 'Choose a password for the file.' });
    $('#export-password').focus();
    return;
  }
  if (password !== $('#export-password2').value) {
    showError(errorBox, { code: 'bad_params', message: 'The two passwords are not the same.' });
    $('#export-password2').focus();
    return;
  }
  const flavour = form.elements.flavour.value;
  $('#export').disabled = true;
  try {
    const result = await longRequest('keys.export', { flavour, password, ...(address ? { address } : {}) });
    download(result.pkcs12, exportFileName(address, flavour));
    const left = Object.keys(result.leftOut ?? {}).length;
    say(`The file is downloaded with ${result.keyIds.length} key${result.keyIds.length === 1 ? '' : 's'}${left ? ` (${left} left out: this format cannot hold them)` : ''}.`);
    $('#export-password').value = '';
    $('#export-password2').value = '';
  } catch (error) {
    showError(errorBox, error);
  } finally {
    $('#export').disabled = false;
  }
}

async function importIdentity(event) {
  event.preventDefault();
  clearError(errorBox);
  notice.hidden = true;
  const file = $('#import-file').files?.[0];
  if (!file) {
    showError(errorBox, { code: 'bad_params', message: 'Choose the file (.p12 or .pfx) that holds your certificate.' });
    $('#import-file').focus();
    return;
  }
  const recoveryCode = $('#import-recovery-code').value.trim();
  const params = {
    pkcs12: new Uint8Array(await file.arrayBuffer()).toBase64(),
    password: $('#import-password').value,
    publish: $('#import-publish').checked,
    ...(address ? { address } : {}),
    ...(recoveryCode ? { recoveryCode } : {}),
  };
  $('#import').disabled = true;
  $('#import-progress').hidden = false;
  try {
    const result = await longRequest('keys.import', params, {
      onProgress: (event) => showProgress($('#import-bar'), $('#import-stage'), event),
    });
    const parts = [`${result.subject} is now your certificate for ${result.address}, backed up in your mailbox.`];
    if (!result.trusted) parts.push('Your organisation does not vouch for its issuer, so some people may see it as unverified.');
    if (result.published) parts.push('It is published in your organisation’s directory.');
    else if (result.publishProblem) parts.push(`It was not published: ${result.publishProblem}`);
    if (result.recoveryCode) parts.push(`Your recovery code is ${result.recoveryCode} — write it down now; it is shown only once.`);
    say(parts.join(' '));
    $('#import-form').reset();
    $('#import-code').hidden = true;
    await loadCertificates();
  } catch (error) {
    showError(errorBox, error, { codeGiven: Boolean(recoveryCode) });
    if (error.code === 'recovery_code') {
      $('#import-code').hidden = false;
      $('#import-recovery-code').focus();
    }
  } finally {
    $('#import-password').value = '';
    $('#import').disabled = false;
    $('#import-progress').hidden = true;
  }
}

async function setupSuite() {
  const form = $('#suite-form');
  form.elements.suite.value = await getPreference('suite', 'intl');
  form.addEventListener('change', async () => {
    await setPreference('suite', form.elements.suite.value);
    say(`New messages will use ${suiteName(form.elements.suite.value)} encryption when possible.`);
  });
}

/** Whether encrypted mail hides its subject: account.settings, stored with the account. */
async function setupHideSubject() {
  const box = $('#hide-subject');
  if (!address) return;
  box.checked = (await request('account.settings', { account: address })).hideSubject;
  box.disabled = false;
  box.addEventListener('change', async () => {
    clearError(errorBox);
    box.disabled = true;
    try {
      const { hideSubject } = await request('account.settings', { account: address, hideSubject: box.checked });
      box.checked = hideSubject;
      say(hideSubject
        ? 'Encrypted mail you send will show “[...]” as its subject in inbox lists.'
        : 'Encrypted mail you send will show its subject in inbox lists (it is still signed).');
    } catch (error) {
      box.checked = !box.checked;
      showError(errorBox, error);
    } finally {
      box.disabled = false;
    }
  });
}

$('#renew').addEventListener('click', renew);
$('#export-form').addEventListener('submit', exportKeys);
$('#import-form').addEventListener('submit', importIdentity);
setupSuite();
loadCertificates().then(setupHideSubject).catch((error) => showError(errorBox, error)).finally(() => {
  document.body.dataset.loaded = 'true';
});
