// The secure editor: the body of an encrypted or signed message lives only here (an extension page in an
// iframe over the webmail's compose body). On the content script's "send" (runtime messaging,
// which the page cannot forge; see frame_channel.js) it calls compose.send itself; the webmail
// page and the content script never see the body.
import { ask, connectFrame } from './frame_channel.js';

const body = document.getElementById('body');
const status = document.getElementById('status');
const files = document.getElementById('files');
const list = document.getElementById('attachments');
const modeLine = document.getElementById('mode');
const attachments = [];
let sending = false;

// Whether this message is encrypted is decided here, in the extension's own frame, never by a
// command: the page can forge commands, so it may upgrade a signed message to encrypted ("encrypt")
// but nothing downgrades an editor that was opened to encrypt. The line says which, where the
// page cannot draw over it.
let encrypt = new URLSearchParams(location.hash.replace(/^#/, '')).get('mode') !== 'sign';

function showMode() {
  modeLine.setAttribute('data-mode', encrypt ? 'encrypt' : 'sign');
  modeLine.textContent = encrypt
    ? '🔒 Encrypted: only the recipients can read what you type here.'
    : '✍ Signed, not encrypted: anyone who gets it can read it; the signature proves it is yours.';
}
showMode();

function say(text, state = 'info') {
  status.textContent = text;
  status.setAttribute('data-state', state);
}

function toBase64(bytes) {
  let binary = '';
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary);
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
    const data = toBase64(new Uint8Array(await file.arrayBuffer()));
    attachments.push({ name: file.name, contentType: file.type || 'application/octet-stream', data });
  }
  files.value = '';
  showAttachments();
});

async function send(envelope, post) {
  if (sending) return;
  sending = true;
  const signing = envelope.sign !== false;
  say(encrypt ? 'Signing, timestamping, encrypting and sending…' : 'Signing, timestamping and sending…');
  post('progress', { stage: encrypt ? 'Encrypting and sending' : 'Signing and sending' });
  try {
    const result = await ask('compose.send', {
      from: envelope.from,
      to: envelope.to ?? [],
      cc: envelope.cc ?? [],
      bcc: envelope.bcc ?? [],
      subject: envelope.subject ?? '',
      text: body.innerText,
      // An encrypted message is always signed; only a signed one is sent without encryption.
      sign: encrypt ? signing : true,
      encrypt,
      attachments,
    });
    if (result.status !== 'sent' && result.status !== 'queued') throw new Error(result.problem ?? 'Not sent.');
    body.replaceChildren();
    attachments.length = 0;
    showAttachments();
    say(result.status === 'sent' ? 'Sent.' : 'Queued: it will go when the mail server answers.');
    post('sent', { status: result.status, messageId: result.messageId, timestamped: result.timestamped, encrypted: encrypt });
  } catch (error) {
    const message = error.message || 'Not sent.';
    say(message, 'error');
    post('error', { code: error.code ?? 'internal', message });
  } finally {
    sending = false;
  }
}

const post = connectFrame((command, reply) => {
  if (command.type === 'send' && command.trusted && command.envelope && typeof command.envelope === 'object') {
    send(command.envelope, reply);
  } else if (command.type === 'init' && typeof command.text === 'string' && !body.textContent) {
    body.textContent = command.text;
  } else if (command.type === 'encrypt' && command.trusted) {
    encrypt = true;
    showMode();
  } else if (command.type === 'focus') {
    body.focus();
  }
});

if (post) {
  body.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      post('send-shortcut');
    }
  });
  post('ready');
} else {
  say('This editor only works inside a webmail compose window.', 'error');
  body.contentEditable = 'false';
}
