// The secure viewer: shows an S/MIME message the worker opened (message.open) for the frame the
// content script registered (frame_channel.js, background/secure_frames.js). The plaintext exists
// only here and in the sandboxed frame below (no scripts, unique origin, strict CSP), never in the
// webmail page; this frame posts nothing to the page and its size is fixed by the content script,
// so nothing the page can see depends on what was decrypted or verified.
import { connectSecureFrame } from './frame_channel.js';
import {
  contentDocument, describeSecurity, headerRows, headerWarnings, protectionSentence, renderPlan,
} from './viewer_status.js';

const status = document.getElementById('status');
const headers = document.getElementById('headers');
const warnings = document.getElementById('header-warnings');
const frame = document.getElementById('content');
const textView = document.getElementById('text');
const list = document.getElementById('attachments');
const remote = document.getElementById('remote');
const stamp = (name) => { document.documentElement.dataset[name] = String(performance.timeOrigin + performance.now()); };
let statusOnly = false;

// Chromium gives the sandboxed content frame a process of its own: start it (empty) while the
// message is still being opened, so showing the plaintext does not wait for it.
frame.srcdoc = contentDocument('');

function showStatus(state, parts, icon = '🔒') {
  status.setAttribute('data-state', state);
  status.textContent = `${icon} ${parts.join(' ')}`;
}

function showText(text) {
  textView.textContent = text ?? '';
  textView.hidden = false;
  frame.hidden = true;
  // bench/browser.py: epoch ms the plaintext was in place (open-to-plaintext).
  textView.dataset.renderedAt = String(performance.timeOrigin + performance.now());
}

const MARK = { 'signed and encrypted': '🔒', encrypted: '🔒', signed: '✍' };

/** The opened message's own header fields (RFC 9788: the protected ones), each marked. */
function showHeaders(view) {
  headers.replaceChildren(...headerRows(view).map((row) => {
    const line = document.createElement('div');
    line.dataset.field = row.name.toLowerCase();
    line.dataset.protection = row.protection;
    const name = document.createElement('b');
    name.textContent = `${row.name}: `;
    line.append(name, row.value);
    if (MARK[row.protection]) {
      const mark = document.createElement('span');
      mark.className = 'mark';
      mark.title = row.protection;
      mark.textContent = ` ${MARK[row.protection]}`;
      line.append(mark);
    }
    return line;
  }));
  headers.hidden = headers.childElementCount === 0;
}

function showWarnings(view) {
  warnings.replaceChildren(...headerWarnings(view).map((w) => {
    const item = document.createElement('li');
    item.dataset.severity = w.severity;
    item.textContent = `${w.severity === 'warning' ? '⚠ ' : ''}${w.message}`;
    return item;
  }));
  warnings.hidden = warnings.childElementCount === 0;
}

function render(view, allowRemote) {
  const { state, parts } = describeSecurity(view.security);
  const protectedHeaders = view.security?.verified || view.security?.encrypted ? protectionSentence(view) : null;
  showStatus(state, protectedHeaders ? [...parts, protectedHeaders] : parts, view.security?.encrypted ? '🔒' : '✍');
  showWarnings(view);
  if (statusOnly && !view.security?.encrypted) return;
  showHeaders(view);
  const plan = renderPlan(view);
  if (plan.as === 'html') {
    frame.addEventListener('load', () => {
      // bench/browser.py: epoch ms the plaintext finished loading (open-to-plaintext).
      frame.dataset.renderedAt = String(performance.timeOrigin + performance.now());
    }, { once: true });
    frame.srcdoc = contentDocument(plan.html, allowRemote);
    frame.hidden = false;
    textView.hidden = true;
  } else {
    // Text only; HTML without a text part is shown as its text, never rendered.
    const text = plan.text ?? new DOMParser().parseFromString(plan.fromHtml ?? '', 'text/html').body.textContent;
    showText(text);
  }
  remote.hidden = !plan.remote || allowRemote;
  remote.querySelector('span').textContent = `${view.remoteImagesBlocked} remote image(s) blocked.`;
  list.replaceChildren(...(view.attachments ?? []).filter((a) => !a.inline).map((a) => {
    const item = document.createElement('li');
    const link = document.createElement('a');
    link.href = URL.createObjectURL(new Blob([Uint8Array.fromBase64(a.data)], { type: 'application/octet-stream' }));
    link.download = a.name || 'attachment';
    link.textContent = `📎 ${a.name || 'attachment'} (${a.size ?? '?'} bytes)`;
    item.append(link);
    return item;
  }));
}

const channel = connectSecureFrame((message) => {
  if (message.type === 'bound') {
    stamp('boundAt');
    statusOnly = message.kind === 'status';
    document.body.classList.toggle('status-only', statusOnly);
  } else if (message.type === 'view' && message.view) {
    stamp('viewAt');
    render(message.view, message.allowRemote === true);
  } else if (message.type === 'refused') {
    showStatus('error', ['This viewer is not connected: autosmime did not place it here.']);
  } else if (message.type === 'failed') {
    stamp('viewAt');
    showStatus('error', [`Could not open this message: ${message.message}`]);
  }
}, { waitUnbound: true });

document.getElementById('allow-remote').addEventListener('click', (event) => {
  if (event.isTrusted) channel?.post({ type: 'open', allowRemote: true });
});
