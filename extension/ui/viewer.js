// The secure viewer: opens an S/MIME message through the host (message.open) and shows it. The
// raw message arrives from the content script (ciphertext); the plaintext exists only here and in
// the sandboxed frame below (no scripts, unique origin, strict CSP), never in the webmail page.
import { ask, connectFrame } from './frame_channel.js';
import { contentDocument, describeSecurity } from './viewer_status.js';

const status = document.getElementById('status');
const frame = document.getElementById('content');
const textView = document.getElementById('text');
const list = document.getElementById('attachments');
const remote = document.getElementById('remote');
let raw = null;
// "status": mail that is signed but not encrypted, which the webmail renders itself; this frame
// then shows only the verified status next to it (the content too, should it turn out encrypted).
const statusOnly = new URLSearchParams(location.hash.replace(/^#/, '')).get('mode') === 'status';
if (statusOnly) document.body.classList.add('status-only');
// Chromium gives the sandboxed content frame a process of its own: start it (empty) while the
// message is still being fetched and opened, so showing the plaintext does not wait for it.
else frame.srcdoc = contentDocument('');

function fromBase64(data) {
  const binary = atob(data);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

function showStatus(state, parts, icon = '🔒') {
  status.setAttribute('data-state', state);
  status.textContent = `${icon} ${parts.join(' ')}`;
}

function render(view, allowRemote) {
  const { state, parts } = describeSecurity(view.security);
  showStatus(state, parts, view.security?.encrypted ? '🔒' : '✍');
  if (statusOnly && !view.security?.encrypted) return;
  if (view.html) {
    frame.srcdoc = contentDocument(view.html, allowRemote);
    frame.hidden = false;
    textView.hidden = true;
    frame.addEventListener('load', () => {
      // A sandboxed frame without allow-same-origin cannot be measured; give it room.
      frame.style.height = '320px';
      // bench/browser.py: epoch ms the plaintext finished loading (open-to-plaintext).
      frame.dataset.renderedAt = String(performance.timeOrigin + performance.now());
    }, { once: true });
  } else {
    textView.textContent = view.text ?? '';
    textView.hidden = false;
    frame.hidden = true;
  }
  remote.hidden = !(view.remoteImagesBlocked > 0) || allowRemote;
  remote.querySelector('span').textContent = `${view.remoteImagesBlocked} remote image(s) blocked.`;
  list.replaceChildren(...(view.attachments ?? []).filter((a) => !a.inline).map((a) => {
    const item = document.createElement('li');
    const link = document.createElement('a');
    link.href = URL.createObjectURL(new Blob([fromBase64(a.data)], { type: 'application/octet-stream' }));
    link.download = a.name || 'attachment';
    link.textContent = `📎 ${a.name || 'attachment'} (${a.size ?? '?'} bytes)`;
    item.append(link);
    return item;
  }));
}

async function open(allowRemote = false) {
  try {
    const view = await ask('message.open', { raw, allowRemote });
    render(view, allowRemote);
    post?.('opened', { state: status.getAttribute('data-state') });
  } catch (error) {
    showStatus('error', [`Could not open this message: ${error.message}`]);
    post?.('error', { code: error.code ?? 'internal' });
  }
}

document.getElementById('allow-remote').addEventListener('click', () => open(true));

const post = connectFrame((command) => {
  if (command.type === 'open' && typeof command.raw === 'string' && raw === null) {
    raw = command.raw;
    open(false);
  } else if (command.type === 'fail') {
    showStatus('error', [String(command.message ?? 'The webmail did not give the message.')]);
  }
});
if (post) post('ready');
else showStatus('error', ['This viewer only works inside a webmail page.']);
