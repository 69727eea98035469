// The secure editor: the body of an encrypted or signed message lives only here (an extension page
// in an iframe over the webmail's compose body). It shows, where the page cannot draw, whether the
// message will be encrypted and exactly who gets it; the worker sends what this frame holds, to
// the recipients it showed, in the mode the extension holds (frame_channel.js,
// background/secure_frames.js). The webmail page and the content script never see the body.
import { RECIPIENTS_SETTLE_MS } from '../background/secure_frames.js';
import { connectSecureFrame } from './frame_channel.js';

const body = document.getElementById('body');
const status = document.getElementById('status');
const files = document.getElementById('files');
const list = document.getElementById('attachments');
const modeLine = document.getElementById('mode');
const recipientsBox = document.getElementById('recipients');
const replyLine = document.getElementById('reply');
let mode = null;
let replySubject = null;

/** A reply to a message whose subject was hidden: which subject it carries, and how. */
function showReply() {
  replyLine.hidden = !replySubject;
  if (!replySubject) return;
  replyLine.textContent = mode === 'encrypt'
    ? `Replying to “${replySubject}”: the reply carries that subject, encrypted; the webmail shows “[...]”.`
    : `Replying to “${replySubject}”: a signed-only reply keeps the webmail's “[...]” subject, so the real one is not revealed.`;
}
const attachments = [];
let shownOnce = false;
let draftTimer = null;
let settleTimer = null;

function say(text, state = 'info') {
  status.textContent = text;
  status.setAttribute('data-state', state);
}

function showMode(newMode) {
  mode = newMode;
  showReply();
  const encrypt = mode === 'encrypt';
  modeLine.setAttribute('data-mode', encrypt ? 'encrypt' : 'sign');
  modeLine.textContent = encrypt
    ? '🔒 Encrypted and signed: only the recipients below can read what you type here.'
    : '✍ Signed, not encrypted: anyone who gets it can read it; the signature proves it is yours.';
}

function showRecipients({ to = [], cc = [], bcc = [] }) {
  const lines = [['to', 'To', to], ['cc', 'Cc', cc], ['bcc', 'Bcc', bcc]]
    .filter(([kind, , addresses]) => kind === 'to' || addresses.length)
    .map(([kind, label, addresses]) => {
      const line = document.createElement('div');
      line.className = 'line';
      const name = document.createElement('span');
      name.className = 'kind';
      name.textContent = `${label}:`;
      const items = document.createElement('ul');
      items.setAttribute('data-kind', kind);
      items.append(...addresses.map((address) => {
        const item = document.createElement('li');
        item.setAttribute('data-address', address);
        item.textContent = address;
        return item;
      }));
      if (!addresses.length) items.textContent = '(nobody yet)';
      line.append(name, items);
      return line;
    });
  recipientsBox.replaceChildren(...lines);
  if (shownOnce) recipientsBox.setAttribute('data-changed', 'true');
  shownOnce = true;
  // A list counts as seen once it has been on screen this long (the worker holds the same rule):
  // until then it is marked, and a Send stops once to show it.
  recipientsBox.setAttribute('data-settled', 'false');
  clearTimeout(settleTimer);
  settleTimer = setTimeout(() => recipientsBox.setAttribute('data-settled', 'true'), RECIPIENTS_SETTLE_MS);
}

function showAttachments() {
  list.replaceChildren(...attachments.map((a, index) => {
    const item = document.createElement('li');
    item.textContent = a.name;
    const remove = document.createElement('button');
    remove.type = 'button';
    remove.textContent = '×';
    remove.title = `Remove ${a.name}`;
    remove.addEventListener('click', () => { attachments.splice(index, 1); showAttachments(); });
    item.append(' ', remove);
    return item;
  }));
}

files.addEventListener('change', async () => {
  for (const file of files.files) {
    const data = new Uint8Array(await file.arrayBuffer()).toBase64();
    attachments.push({ name: file.name, contentType: file.type || 'application/octet-stream', data });
  }
  files.value = '';
  showAttachments();
});

function onWorker(message) {
  switch (message.type) {
    case 'bound':
      showMode(message.mode);
      if (message.draft && !body.textContent) body.textContent = message.draft;
      body.contentEditable = 'true';
      files.disabled = false;
      say('');
      body.focus();
      break;
    case 'mode':
      showMode(message.mode);
      break;
    case 'reply':
      replySubject = typeof message.subject === 'string' && message.subject ? message.subject : null;
      showReply();
      break;
    case 'recipients':
      showRecipients(message);
      channel.post({ type: 'shown', version: message.version });
      break;
    case 'collect':
      channel.post({ type: 'body', id: message.id, text: body.innerText, attachments });
      break;
    case 'progress':
      say(message.stage ?? 'Sending…');
      break;
    case 'sent':
      body.replaceChildren();
      attachments.length = 0;
      showAttachments();
      recipientsBox.removeAttribute('data-changed');
      say(message.status === 'sent' ? 'Sent.' : 'Queued: it will go when the mail server answers.');
      break;
    case 'failed':
      say(message.message ?? 'Not sent.', 'error');
      break;
    case 'refused':
      say('This editor is not connected: nothing typed here will be sent. Use the secure editor '
        + 'autosmime opens in the compose window.', 'error');
      break;
    case 'disconnected':
      body.contentEditable = 'false';
      files.disabled = true;
      say(message.wasBound
        ? 'This secure editor was disconnected: nothing typed here will be sent from it.'
        : 'This editor works only where autosmime places it in a compose window.', 'error');
      break;
    default:
      break;
  }
}

const channel = connectSecureFrame(onWorker) ?? { post: () => {} };

// What is typed is kept in the worker's memory (never on disk), so an editor reopened after this
// one was interfered with loses nothing.
const saveDraft = () => {
  clearTimeout(draftTimer);
  draftTimer = null;
  channel.post({ type: 'draft', text: body.innerText });
};
body.addEventListener('input', () => {
  clearTimeout(draftTimer);
  draftTimer = setTimeout(saveDraft, 150);
});
window.addEventListener('pagehide', () => { if (draftTimer) saveDraft(); });
body.addEventListener('keydown', (event) => {
  if (event.isTrusted && event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    channel.post({ type: 'send-shortcut' });
  }
});
