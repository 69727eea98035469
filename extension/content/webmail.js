// Content script for every webmail: a status badge, and the compose and read hooks driven by the
// site adapter that serves this page (content/adapters/*.js, loaded before this file; the first
// whose matches(location) is true). The page is hostile: this script never holds plaintext.
// The body of a secure message lives in the secure editor and the opened message in the secure
// viewer, both extension pages in iframes; this script only moves envelopes (addresses,
// subject, flags) and ciphertext, and shows status.
(() => {
  if (globalThis.__autosmimeContentLoaded) return;
  globalThis.__autosmimeContentLoaded = true;

  const runtime = globalThis.browser?.runtime ?? chrome.runtime;
  const adapter = Object.values(globalThis.autosmimeAdapters ?? {}).find((a) => a.matches(location)) ?? null;
  // Webmails that show mail in frames (Roundcube's preview) run this script in each frame; the
  // badge and the account hint belong to the top frame only.
  const isTop = window.top === window;
  const EXTENSION_ORIGIN = new URL(runtime.getURL('')).origin;

  function ask(op, params = {}) {
    return runtime.sendMessage({ type: 'autosmime.request', op, params }).then((reply) => {
      if (!reply || reply.ok !== true) {
        const error = new Error(reply?.error?.message ?? 'No answer from the extension.');
        error.code = reply?.error?.code ?? 'internal';
        throw error;
      }
      return reply.result;
    });
  }

  function makeBadge() {
    const holder = document.createElement('autosmime-status');
    const shadow = holder.attachShadow({ mode: 'open' });
    const style = document.createElement('style');
    style.textContent = ':host{position:fixed;bottom:8px;right:8px;z-index:2147483647;font:12px sans-serif}'
      + ' span{background:#fff;border:1px solid #999;border-radius:4px;padding:2px 6px}'
      + ' span[data-state=ok]{border-color:#2a7}span[data-state=error]{border-color:#c33}';
    const text = document.createElement('span');
    text.setAttribute('data-state', 'pending');
    text.textContent = 'autosmime: connecting…';
    shadow.append(style, text);
    document.documentElement.append(holder);
    return text;
  }

  const badge = isTop ? makeBadge() : document.createElement('span');
  if (isTop) ask('hello').then(
    (hello) => {
      badge.setAttribute('data-state', 'ok');
      badge.textContent = `autosmime: host ${hello.version} ready (protocol ${hello.protocol})`;
    },
    (error) => {
      badge.setAttribute('data-state', 'error');
      badge.textContent = `autosmime: the native host is not available (${error.code}). Run "autosmime doctor".`;
    },
  );
  // Onboarding fills in the signed-in address from this hint (the worker keeps the address only).
  function reportAccount() {
    const label = adapter?.accountLabel?.() ?? null;
    runtime.sendMessage({ type: 'autosmime.accountHint', title: document.title, label }).catch(() => {});
  }
  if (isTop) reportAccount();
  if (!adapter) return;

  /** A line in the page-corner badge that outlives a discarded compose window. */
  function notice(text, state) {
    badge.setAttribute('data-state', 'ok');
    badge.setAttribute('data-notice', state);
    badge.textContent = `autosmime: ${text}`;
  }

  // ---- secure frames: an extension page in an iframe, spoken to on a per-frame channel ----------

  function secureFrame(page, onEvent, { mode = null, minHeight = 120 } = {}) {
    const channel = crypto.randomUUID();
    const iframe = document.createElement('iframe');
    const params = new URLSearchParams({ channel, origin: location.origin });
    if (mode) params.set('mode', mode);
    iframe.src = `${runtime.getURL(page)}#${params}`;
    iframe.setAttribute('allow', 'clipboard-write');
    iframe.style.cssText = `border:0;width:100%;display:block;min-height:${minHeight}px;background:#fff`;
    window.addEventListener('message', (event) => {
      if (event.source !== iframe.contentWindow || event.origin !== EXTENSION_ORIGIN) return;
      const data = event.data;
      if (!data || data.autosmime !== 'frame-event' || data.channel !== channel) return;
      if (data.type === 'resize' && Number.isFinite(data.height)) {
        iframe.style.height = `${Math.min(Math.max(data.height, minHeight), 4000)}px`;
      }
      onEvent(data);
    });
    const post = (type, payload = {}) => {
      iframe.contentWindow?.postMessage({ autosmime: 'frame-command', channel, type, ...payload }, EXTENSION_ORIGIN);
    };
    // Commands that act (send, encrypt) go through the extension's runtime messaging, which the
    // page cannot use: a command the page forges by postMessage arrives marked untrusted.
    const command = (type, payload = {}) => {
      runtime.sendMessage({ type: 'autosmime.frame-command', channel, command: { type, ...payload } })
        .catch(() => {});
    };
    return { iframe, post, command };
  }

  // ---- compose ---------------------------------------------------------------------------------

  const CONTROLS_CSS = `
    :host{display:block;font:13px/1.4 sans-serif;margin:4px 0}
    .bar{display:flex;gap:8px;align-items:center;flex-wrap:wrap}
    button{font:inherit;border:1px solid #888;border-radius:12px;padding:2px 10px;background:#fff;cursor:pointer}
    button[aria-pressed=true]{background:#1a73e8;color:#fff;border-color:#1a73e8}
    .badge{border-radius:8px;padding:0 6px;font-size:12px;border:1px solid #999}
    .badge[data-cert=found]{border-color:#2a7;color:#175}
    .badge[data-cert=none]{border-color:#c33;color:#a11}
    .status[data-state=error]{color:#a11}
    .status[data-state=sent]{color:#175}`;

  const composes = new WeakMap();

  function setUpCompose(compose) {
    const shadow = adapter.insertControls(compose);
    shadow.innerHTML = `<style>${CONTROLS_CSS}</style>
      <div class="bar">
        <button type="button" data-toggle="encrypt" aria-pressed="false">🔒 Encrypt</button>
        <button type="button" data-toggle="sign" aria-pressed="false">✍ Sign</button>
        <span class="recipients" aria-live="polite"></span>
        <span class="status" role="status" aria-live="polite"></span>
      </div>`;
    // Neither toggle: the webmail sends as it always does. Sign or Encrypt moves the body into
    // the secure editor and the send goes through the host (signed; encrypted too for Encrypt).
    const state = { encrypt: false, sign: false, editor: null, sending: false, lookups: new Map(), shadow };
    composes.set(compose, state);
    const status = shadow.querySelector('.status');
    const say = (text, kind = 'info') => {
      status.textContent = text;
      status.setAttribute('data-state', kind);
    };
    state.say = say;

    const signButton = shadow.querySelector('[data-toggle=sign]');
    const encryptButton = shadow.querySelector('[data-toggle=encrypt]');
    const showToggles = () => {
      signButton.setAttribute('aria-pressed', String(state.sign));
      encryptButton.setAttribute('aria-pressed', String(state.encrypt));
      if (state.encrypt) encryptButton.textContent = '🔒 Encrypted';
    };
    signButton.addEventListener('click', () => {
      if (!state.editor) {
        state.sign = true;
        openEditor(compose, state, 'sign');
      } else if (state.encrypt) {
        state.sign = !state.sign; // encrypted mail may go unsigned; signed-only mail stays signed
      }
      showToggles();
    });
    encryptButton.addEventListener('click', () => {
      if (state.encrypt) return; // once encrypted, the message stays encrypted
      state.encrypt = true;
      state.sign = true;
      if (state.editor) state.editor.command('encrypt');
      else openEditor(compose, state, 'encrypt');
      showToggles();
      refreshRecipients(compose, state);
    });
    adapter.interceptSend(compose, () => state.editor !== null, () => sendSecure(compose, state));
  }

  function openEditor(compose, state, mode) {
    const body = adapter.bodyOf(compose);
    // What the page already had is moved (the page saw it already); from now on it gets nothing.
    const carried = adapter.takeBody ? adapter.takeBody(compose) : takeEditableBody(body);
    const frame = secureFrame('ui/editor.html', (event) => onEditorEvent(compose, state, event), { mode });
    frame.iframe.title = 'autosmime secure editor';
    frame.iframe.className = 'autosmime-editor';
    frame.iframe.style.minHeight = '200px';
    const holder = document.createElement('autosmime-secure-editor');
    holder.attachShadow({ mode: 'open' }).append(frame.iframe);
    if (adapter.placeEditor) adapter.placeEditor(compose, holder);
    else if (body) body.after(holder);
    else state.shadow.host.after(holder);
    state.editor = { ...frame, carried, ready: false };
    state.say(mode === 'encrypt'
      ? 'Encrypted: type your message in the secure editor.'
      : 'Signed: type your message in the secure editor.');
  }

  /** A contenteditable body (Gmail): its text, then emptied, locked and hidden. */
  function takeEditableBody(body) {
    const text = body?.innerText ?? '';
    if (body) {
      body.replaceChildren();
      body.setAttribute('contenteditable', 'false');
      body.style.display = 'none';
    }
    return text;
  }

  function onEditorEvent(compose, state, event) {
    switch (event.type) {
      case 'ready':
        state.editor.ready = true;
        if (state.editor.carried.trim()) state.editor.post('init', { text: state.editor.carried });
        state.editor.carried = '';
        state.editor.post('focus');
        break;
      case 'send-shortcut':
        sendSecure(compose, state);
        break;
      case 'progress':
        state.say(event.stage ? `Sending: ${event.stage}` : 'Sending…');
        break;
      case 'sent': {
        state.sending = false;
        const how = event.encrypted ? (state.sign ? 'signed and encrypted' : 'encrypted') : 'signed';
        state.say(`Sent, ${how}.`, 'sent');
        notice(`Message sent, ${how}.`, 'sent');
        setTimeout(() => adapter.discardCompose(compose), 300);
        break;
      }
      case 'error':
        state.sending = false;
        state.say(event.message ?? 'Not sent.', 'error');
        break;
      default:
        break;
    }
  }

  function sendSecure(compose, state) {
    if (state.sending || !state.editor) return;
    const recipients = adapter.readRecipients(compose);
    if (recipients.to.length + recipients.cc.length + recipients.bcc.length === 0) {
      state.say('Add at least one recipient.', 'error');
      return;
    }
    const from = adapter.readFrom(compose);
    if (!from) {
      state.say('Could not tell which account this is sent from.', 'error');
      return;
    }
    // Files given to the webmail's own Attach went to the webmail, not into the secure editor:
    // sending would leave them out without a word.
    const theirs = adapter.composeAttachments?.(compose) ?? [];
    if (theirs.length) {
      state.say(`Not sent: ${theirs.join(', ')} ${theirs.length === 1 ? 'was' : 'were'} attached outside `
        + 'the secure editor and would not be in this message. Remove it there and attach it with '
        + '📎 Attach in the secure editor.', 'error');
      return;
    }
    state.sending = true;
    state.say(state.encrypt ? 'Sending encrypted…' : 'Sending signed…');
    state.editor.command('send', {
      envelope: { from, ...recipients, subject: adapter.readSubject(compose), sign: state.sign },
    });
  }

  async function refreshRecipients(compose, state) {
    if (!state.encrypt) return;
    const { to, cc, bcc } = adapter.readRecipients(compose);
    const all = [...new Set([...to, ...cc, ...bcc])];
    const key = all.join(',');
    if (state.recipientKey === key) return;
    state.recipientKey = key;
    const holder = state.shadow.querySelector('.recipients');
    const unknown = all.filter((a) => !state.lookups.has(a));
    if (unknown.length) {
      try {
        const { results } = await ask('certs.lookup', { addresses: unknown });
        for (const r of results) state.lookups.set(r.address.toLowerCase(), r.certificates.length > 0);
      } catch {
        /* shown as unknown; the send will say what is missing */
      }
    }
    if (state.recipientKey !== key) return;
    holder.replaceChildren(...all.map((address) => {
      const badge = document.createElement('span');
      badge.className = 'badge';
      const found = state.lookups.get(address);
      badge.setAttribute('data-address', address);
      badge.setAttribute('data-cert', found === undefined ? 'unknown' : found ? 'found' : 'none');
      badge.textContent = `${address}: ${found === undefined ? '?' : found ? 'certificate found' : 'no certificate'}`;
      return badge;
    }));
  }

  // ---- read ------------------------------------------------------------------------------------

  const opened = new WeakSet();

  /**
   * Encrypted (or opaque-signed) mail: the secure viewer takes the body's place. Mail signed but
   * not encrypted: the webmail renders it, and a status strip (the viewer in status mode) says
   * next to it whether the signature and its timestamp hold.
   */
  function setUpMessage(message) {
    opened.add(message.element);
    const statusOnly = message.smime === 'signed';
    // The ciphertext is fetched while the viewer page loads, not after.
    const raw = adapter.fetchRaw(message).then(toBase64);
    raw.catch(() => {}); // reported to the viewer once it is ready
    const frame = secureFrame('ui/viewer.html', async (event) => {
      if (event.type !== 'ready') return;
      try {
        frame.post('open', { raw: await raw, kind: message.smime });
      } catch (error) {
        frame.post('fail', { message: String(error.message ?? error) });
      }
    }, statusOnly ? { mode: 'status', minHeight: 28 } : {});
    frame.iframe.title = statusOnly ? 'autosmime signature status' : 'autosmime secure viewer';
    frame.iframe.className = statusOnly ? 'autosmime-signature-status' : 'autosmime-viewer';
    const holder = document.createElement('autosmime-secure-viewer');
    holder.attachShadow({ mode: 'open' }).append(frame.iframe);
    if (statusOnly) adapter.placeStatus(message, holder);
    else adapter.placeViewer(message, holder);
  }

  function toBase64(bytes) {
    let binary = '';
    for (let i = 0; i < bytes.length; i += 0x8000) {
      binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    }
    return btoa(binary);
  }

  // ---- the watcher -----------------------------------------------------------------------------

  function scan() {
    for (const compose of adapter.findComposeWindows()) {
      const state = composes.get(compose);
      if (!state) setUpCompose(compose);
      else refreshRecipients(compose, state);
    }
    for (const message of adapter.findOpenedMessages()) {
      if (message.smime && !opened.has(message.element)) setUpMessage(message);
    }
  }

  // One scan per burst of mutations, 16 ms after its first: the webmail re-renders in bursts,
  // and a longer debounce is paid on every message opened (100 ms measured by bench browser).
  let pending = false;
  const observer = new MutationObserver(() => {
    if (pending) return;
    pending = true;
    setTimeout(() => {
      pending = false;
      scan();
    }, 16);
  });
  observer.observe(document.documentElement, { childList: true, subtree: true, attributes: true, attributeFilter: ['data-hovercard-id'] });
  scan();
})();
