// The secure editor: the body of an encrypted message lives only here (an extension page in an
// iframe over the webmail's compose body). On the content script's "send" it calls compose.send
// itself; the webmail page and the content script never see the body.
import { ask, connectFrame } from './frame_channel.js';

const body = document.getElementById('body');
const status = document.getElementById('status');
const files = document.getElementById('files');
const list = document.getElementById('attachments');
const attachments = [];
let sending = false;

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
  say('Signing, timestamping, encrypting and sending…');
  post('progress', { stage: 'Encrypting and sending' });
  try {
    const result = await ask('compose.send', {
      from: envelope.from,
      to: envelope.to ?? [],
      cc: envelope.cc ?? [],
      bcc: envelope.bcc ?? [],
      subject: envelope.subject ?? '',
      text: body.innerText,
      sign: envelope.sign !== false,
      encrypt: true,
      attachments,
    });
    if (result.status !== 'sent' && result.status !== 'queued') throw new Error(result.problem ?? 'Not sent.');
    body.replaceChildren();
    attachments.length = 0;
    showAttachments();
    say(result.status === 'sent' ? 'Sent.' : 'Queued: it will go when the mail server answers.');
    post('sent', { status: result.status, messageId: result.messageId, timestamped: result.timestamped });
  } catch (error) {
    const message = error.message || 'Not sent.';
    say(message, 'error');
    post('error', { code: error.code ?? 'internal', message });
  } finally {
    sending = false;
  }
}

const post = connectFrame((command, reply) => {
  if (command.type === 'send' && command.envelope && typeof command.envelope === 'object') {
    send(command.envelope, reply);
  } else if (command.type === 'init' && typeof command.text === 'string' && !body.textContent) {
    body.textContent = command.text;
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
