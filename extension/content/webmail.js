// Content script for every webmail: a status badge, and the compose and read hooks driven by the
// site adapter that serves this page (content/adapters/*.js, loaded before this file; the first
// whose matches(location) is true). The page is hostile: this script never holds plaintext.
// The body of a secure message lives in the secure editor and the opened message in the secure
// viewer, both extension pages in iframes; this script only moves envelopes (addresses,
// subject, flags) and ciphertext, and shows status. It speaks to those frames only through the
// worker (background/secure_frames.js): each frame is registered there under a secret the page
// never sees, and nothing is posted to a frame but that secret (docs/SECURITY.md).
(() => {
  if (globalThis.__autosmimeContentLoaded) return;
  globalThis.__autosmimeContentLoaded = true;

  const runtime = globalThis.browser?.runtime ?? chrome.runtime;
  const adapter = Object.values(globalThis.autosmimeAdapters ?? {}).find((a) => a.matches(location)) ?? null;
  // Webmails that show mail in frames (Roundcube's preview) run this script in each frame; the
  // badge and the account hint belong to the top frame only.
  const isTop = window.top === window;
  const EXTENSION_ORIGIN = new URL(runtime.getURL('')).origin;

  const { ask, call } = globalThis.autosmimeAsk; // shared/ask.js, loaded first

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
      if (adapter) loadSpare();
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

  // ---- secure frames: registered with the worker under a secret, spoken to through it --------

  const SECURE = 'autosmime.secure';
  const SECURE_EVENT = 'autosmime.secure-event';
  // Fixed sizes: nothing the page can measure follows what a frame shows or what is typed in it.
  const FRAME_HEIGHT = { editor: 360, viewer: 480, status: 56 };
  const PAGE_OF_KIND = { editor: 'ui/editor.html', viewer: 'ui/viewer.html', status: 'ui/viewer.html' };
  const frameEvents = new Map(); // secret -> handler of the worker's events for that frame

  function newSecret() {
    const bytes = crypto.getRandomValues(new Uint8Array(32));
    return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  }

  function tell(action, secret, payload = {}) {
    return call({ type: SECURE, action, secret, ...payload });
  }

  /** An iframe of an extension page of `kind`; its URL names the page only. */
  function frameOf(kind) {
    const iframe = document.createElement('iframe');
    iframe.src = runtime.getURL(PAGE_OF_KIND[kind]);
    iframe.setAttribute('allow', 'clipboard-write');
    iframe.style.cssText = `border:0;width:100%;display:block;height:${FRAME_HEIGHT[kind]}px;background:#fff`;
    return iframe;
  }

  /**
   * An iframe of an extension page (a new one, or `loaded`: a spare already loaded), registered
   * with the worker as `kind` under a fresh secret. The secret is posted into it (targetOrigin:
   * the extension, so a document of any other origin gets nothing) until the worker says a frame
   * claimed it: every 10 ms from the start, since the frame's script may run well before its
   * load event (the viewer's sandboxed child delays that), and again on each load. Only the
   * first claim binds.
   */
  function secureFrame(kind, registration, onEvent, loaded = null) {
    const secret = newSecret();
    const registered = tell('register', secret, { kind, ...registration });
    registered.catch(() => {});
    const iframe = loaded ?? frameOf(kind);
    iframe.style.height = `${FRAME_HEIGHT[kind]}px`;
    let handing = null;
    const handOver = () => {
      iframe.contentWindow?.postMessage({ autosmime: 'autosmime.claim', secret }, EXTENSION_ORIGIN);
    };
    const stopHanding = () => {
      clearInterval(handing);
      handing = null;
    };
    frameEvents.set(secret, (event) => {
      if (event.event === 'bound') stopHanding();
      if (event.event === 'disconnected' && kind !== 'editor') frameEvents.delete(secret);
      onEvent?.(event);
    });
    registered.then(() => {
      handOver();
      handing = setInterval(handOver, 10);
      setTimeout(stopHanding, 15_000);
    }, () => {});
    iframe.addEventListener('load', () => registered.then(handOver, () => {}));
    return { iframe, secret, registered };
  }

  // ---- a spare viewer, loaded ahead ------------------------------------------------------------
  // Opening encrypted mail waited about 100 ms for the viewer page to load (bench browser, step
  // 3), on the cores the host was opening it with. Where the webmail shows mail in this document
  // (adapter.spareViewer), a viewer is loaded while nothing happens, parked out of sight and
  // unregistered, and moved into place with moveBefore, which keeps a frame's document
  // (insertBefore would load it again). It is then registered and claimed like a new one. A
  // spare that does not bind at once (the page may have spent its claims, or broken it) is
  // replaced by a new frame; browsers without moveBefore load a frame per message as before.
  const SPARE_NEXT_MS = 500; // after a spare is taken (its message is open by then), the next one loads
  const SPARE_BIND_MS = 1_000; // a spare that has not bound by then is replaced
  const canMoveFrames = typeof Element.prototype.moveBefore === 'function';
  let spare = null; // {holder, iframe}

  function loadSpare() {
    if (!canMoveFrames || !adapter?.spareViewer || spare?.holder.isConnected) return;
    const holder = document.createElement('autosmime-spare-viewer');
    holder.style.display = 'none';
    const iframe = frameOf('viewer');
    iframe.title = 'autosmime secure viewer (not in use)';
    holder.attachShadow({ mode: 'closed' }).append(iframe);
    document.documentElement.append(holder);
    spare = { holder, iframe };
  }

  /** The spare viewer moved into `shadow` (of a holder already in place), or null. */
  function takeSpare(shadow) {
    const taken = spare;
    spare = null;
    if (!taken) return null;
    setTimeout(loadSpare, SPARE_NEXT_MS);
    let moved = null;
    if (taken.iframe.isConnected && shadow.host.isConnected) {
      try {
        shadow.moveBefore(taken.iframe, null);
        moved = taken.iframe;
      } catch { /* the page moved things about: a new frame then */ }
    }
    taken.holder.remove();
    return moved;
  }

  runtime.onMessage.addListener((message, sender) => {
    if (sender.id !== runtime.id || message?.type !== SECURE_EVENT) return false;
    frameEvents.get(message.secret)?.(message);
    return false;
  });

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

  const composes = new Map(); // compose element -> its state, while it is in the page

  function setUpCompose(compose) {
    const shadow = adapter.insertControls(compose);
    shadow.innerHTML = `<style>${CONTROLS_CSS}</style>
      <div class="bar">
        <button type="button" data-toggle="encrypt" aria-pressed="false">🔒 Encrypt</button>
        <button type="button" data-toggle="sign" aria-pressed="false">✍ Sign</button>
        <button type="button" data-action="reopen" hidden>Reopen the secure editor</button>
        <button type="button" data-action="sign-in" hidden>Sign in again</button>
        <span class="recipients" aria-live="polite"></span>
        <span class="status" role="status" aria-live="polite"></span>
      </div>`;
    // Neither toggle: the webmail sends as it always does. Sign or Encrypt moves the body into
    // the secure editor and the send goes through the host (signed; encrypted too for Encrypt).
    // The mode only goes up (sign -> encrypt), and only for a person's click: the page can click
    // these buttons from its script (the shadow root is open), but not with isTrusted.
    const state = { mode: null, editor: null, sending: false, lookups: new Map(), shadow };
    composes.set(compose, state);
    const status = shadow.querySelector('.status');
    state.say = (text, kind = 'info') => {
      status.textContent = text;
      status.setAttribute('data-state', kind);
    };

    const signButton = shadow.querySelector('[data-toggle=sign]');
    const encryptButton = shadow.querySelector('[data-toggle=encrypt]');
    const reopenButton = shadow.querySelector('[data-action=reopen]');
    state.showToggles = () => {
      signButton.setAttribute('aria-pressed', String(state.mode !== null));
      encryptButton.setAttribute('aria-pressed', String(state.mode === 'encrypt'));
      if (state.mode === 'encrypt') encryptButton.textContent = '🔒 Encrypted';
      reopenButton.hidden = !state.editor?.dead;
    };
    signButton.addEventListener('click', (event) => {
      if (!event.isTrusted || state.mode) return; // encrypted mail is always signed too
      state.mode = 'sign';
      openEditor(compose, state);
      state.showToggles();
    });
    encryptButton.addEventListener('click', (event) => {
      if (!event.isTrusted || state.mode === 'encrypt') return;
      state.mode = 'encrypt';
      if (state.editor && !state.editor.dead) {
        tell('mode', state.editor.secret, { mode: 'encrypt' }).catch(() => {});
      } else {
        openEditor(compose, state);
      }
      state.showToggles();
      refreshRecipients(compose, state);
    });
    reopenButton.addEventListener('click', (event) => {
      if (!event.isTrusted || !state.editor?.dead) return;
      openEditor(compose, state);
      state.showToggles();
    });
    // The mail provider's sign-in expired or was revoked: the setup page signs in again.
    const signInButton = shadow.querySelector('[data-action=sign-in]');
    signInButton.addEventListener('click', (event) => {
      if (!event.isTrusted) return;
      call({ type: 'autosmime.signInAgain', address: adapter.readFrom(compose) }).catch(() => {});
    });
    state.offerSignIn = (offer) => { signInButton.hidden = !offer; };
    // An administrator's policy may start every new message encrypted (managed storage: the
    // page can neither read nor set it). Like a person's click, it only moves the mode up.
    encryptedByPolicy().then((on) => {
      if (!on || state.mode !== null || composes.get(compose) !== state) return;
      state.mode = 'encrypt';
      openEditor(compose, state);
      state.showToggles();
      refreshRecipients(compose, state);
    });
  }

  let encryptByDefault = null;
  /** Whether the organisation's policy (encryptByDefault, manifest managed_schema) is on. */
  function encryptedByPolicy() {
    encryptByDefault ??= (async () => {
      try {
        const storage = (globalThis.browser ?? globalThis.chrome).storage;
        return (await storage.managed.get('encryptByDefault'))?.encryptByDefault === true;
      } catch {
        return false; // no policy, or a browser without managed storage
      }
    })();
    return encryptByDefault;
  }

  function openEditor(compose, state) {
    const previous = state.editor;
    // What the page already had is moved (the page saw it already); from now on it gets nothing.
    const text = previous ? '' : (adapter.takeBody ? adapter.takeBody(compose) : takeEditableBody(adapter.bodyOf(compose)));
    // A reply names the message it answers (the adapter's id), so the worker can give it back the
    // subject that message hid (RFC 9788); the page never holds that subject.
    const replyTo = adapter.repliedMessage?.(compose) ?? null;
    const frame = secureFrame('editor', { mode: state.mode, text, restoreFrom: previous?.secret, replyTo },
      (event) => onEditorEvent(compose, state, frame, event));
    frame.iframe.title = 'autosmime secure editor';
    frame.iframe.className = 'autosmime-editor';
    const holder = document.createElement('autosmime-secure-editor');
    holder.attachShadow({ mode: 'open' }).append(frame.iframe);
    if (previous?.holder?.isConnected) previous.holder.replaceWith(holder);
    else if (adapter.placeEditor) adapter.placeEditor(compose, holder);
    else if (adapter.bodyOf(compose)) adapter.bodyOf(compose).after(holder);
    else state.shadow.host.after(holder);
    state.editor = { secret: frame.secret, holder, dead: false, recipientKey: null };
    // A reply keeps its thread: the replied message's ids, looked up once, sent with it.
    state.thread ??= (adapter.threadHeaders?.(compose) ?? Promise.resolve(null)).catch(() => null);
    frame.registered.then(() => pushRecipients(compose, state), () => {
      state.say('The extension did not answer: the secure editor cannot work.', 'error');
    });
    state.say(previous
      ? 'Secure editor reopened with what you had typed; attach files again.'
      : state.mode === 'encrypt'
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

  function onEditorEvent(compose, state, frame, event) {
    if (state.editor?.secret !== frame.secret) return;
    if (event.event === 'send-shortcut') {
      sendSecure(compose, state);
    } else if (event.event === 'disconnected' && composes.has(compose) && compose.isConnected) {
      // The frame we placed went away or was reloaded while the compose window stayed: someone
      // interfered with it. It cannot be claimed again; nothing will be sent from it.
      state.editor.dead = true;
      state.sending = false;
      state.say('The secure editor was interfered with (reloaded or removed by the page): nothing '
        + 'will be sent from it. Reopen it to go on; what you typed is kept.', 'error');
      state.showToggles();
    }
  }

  /**
   * A trusted Send (button or keyboard): the envelope goes to the worker, which sends what the
   * secure editor holds, in the mode the extension holds, to the recipients the editor showed.
   */
  async function sendSecure(compose, state) {
    if (state.sending || !state.editor) return;
    if (state.editor.dead) {
      state.say('Not sent: the secure editor was interfered with. Reopen it, check, and send again.', 'error');
      return;
    }
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
    state.offerSignIn(false);
    state.say(state.mode === 'encrypt' ? 'Sending encrypted…' : 'Sending signed…');
    // The worker shows this list in the editor if it is not the one shown there (and sends only
    // on a second Send): it is now the list the editor has.
    state.editor.recipientKey = JSON.stringify(recipients);
    try {
      const noThread = new Promise((resolve) => { setTimeout(() => resolve(null), 10_000); });
      const thread = (await Promise.race([state.thread, noThread])) ?? {};
      const result = await tell('send', state.editor.secret, {
        envelope: { from, ...recipients, subject: adapter.readSubject(compose), ...thread },
      });
      const how = result.encrypted ? 'signed and encrypted' : 'signed';
      state.say(`Sent, ${how}.`, 'sent');
      notice(`Message sent, ${how}.`, 'sent');
      setTimeout(() => adapter.discardCompose(compose), 300);
    } catch (error) {
      state.say(error.message || 'Not sent.', 'error');
      state.offerSignIn(error.code === 'sign_in_required');
    } finally {
      state.sending = false;
    }
  }

  /** The webmail's recipients, to the secure editor (through the worker) whenever they change. */
  function pushRecipients(compose, state) {
    const editor = state.editor;
    if (!editor || editor.dead) return;
    const recipients = adapter.readRecipients(compose);
    const key = JSON.stringify(recipients);
    if (editor.recipientKey === key) return;
    editor.recipientKey = key;
    tell('recipients', editor.secret, recipients).catch(() => { editor.recipientKey = null; });
  }

  async function refreshRecipients(compose, state) {
    pushRecipients(compose, state);
    if (state.mode !== 'encrypt') return;
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

  // ---- the one send gate -----------------------------------------------------------------------

  /**
   * While a compose window has a secure editor, its Send never reaches the webmail: pointer
   * events on the adapter's Send button, Ctrl/Cmd-Enter anywhere in the window and Enter or
   * Space on the Send button are stopped in the capture phase, and only a person's (isTrusted)
   * click or key sends, through the host. The page can synthesize events, not trusted ones.
   */
  function composeWithEditor(target) {
    if (!(target instanceof Node)) return null;
    for (const [compose, state] of composes) {
      if (state.editor && compose.contains(target)) return [compose, state];
    }
    return null;
  }

  function onSendPointer(event) {
    const target = event.target instanceof Element ? event.target : null;
    if (!target?.closest(adapter.SELECTORS.send)) return;
    const found = composeWithEditor(target);
    if (!found) return;
    event.preventDefault();
    event.stopImmediatePropagation();
    if (event.type === 'click' && event.isTrusted) sendSecure(...found);
  }

  function onSendKey(event) {
    const found = composeWithEditor(event.target);
    if (!found) return;
    const shortcut = event.key === 'Enter' && (event.ctrlKey || event.metaKey);
    const onButton = (event.key === 'Enter' || event.key === ' ')
      && event.target instanceof Element && event.target.closest(adapter.SELECTORS.send);
    if (!shortcut && !onButton) return;
    event.preventDefault();
    event.stopImmediatePropagation();
    if (event.type === 'keydown' && event.isTrusted) sendSecure(...found);
  }

  for (const type of ['pointerdown', 'mousedown', 'pointerup', 'mouseup', 'click', 'auxclick']) {
    window.addEventListener(type, onSendPointer, true);
  }
  for (const type of ['keydown', 'keypress', 'keyup']) window.addEventListener(type, onSendKey, true);

  // ---- read ------------------------------------------------------------------------------------

  const opened = new WeakSet();

  /**
   * Encrypted (or opaque-signed) mail: the secure viewer takes the body's place. Mail signed but
   * not encrypted: the webmail renders it, and a status strip (the viewer in status mode) says
   * next to it whether the signature and its timestamp hold. The ciphertext is fetched while the
   * viewer page loads and goes to the worker, which opens it for the registered frame only.
   */
  function setUpMessage(message) {
    opened.add(message.element);
    const kind = message.smime === 'signed' ? 'status' : 'viewer';
    const holder = document.createElement('autosmime-secure-viewer');
    const shadow = holder.attachShadow({ mode: 'open' });
    if (kind === 'status') adapter.placeStatus(message, holder);
    else adapter.placeViewer(message, holder);
    const raw = adapter.fetchRaw(message);
    raw.catch(() => {});
    const show = (loaded) => {
      let bound = false;
      const frame = secureFrame(kind, { messageRef: message.id }, (event) => {
        if (event.event === 'bound') bound = true;
      }, loaded);
      Promise.all([raw, frame.registered]).then(
        ([bytes]) => tell('raw', frame.secret, { raw: bytes.toBase64() }),
        () => frame.registered.then(() => tell('raw', frame.secret, { failed: true })),
      ).catch(() => {});
      frame.iframe.title = kind === 'status' ? 'autosmime signature status' : 'autosmime secure viewer';
      frame.iframe.className = kind === 'status' ? 'autosmime-signature-status' : 'autosmime-viewer';
      if (!loaded) {
        shadow.append(frame.iframe);
        return;
      }
      setTimeout(() => {
        if (bound || !holder.isConnected) return;
        frameEvents.delete(frame.secret);
        frame.iframe.remove();
        show(null);
      }, SPARE_BIND_MS);
    };
    show(takeSpare(shadow));
  }

  // ---- the watcher -----------------------------------------------------------------------------

  function scan() {
    // Composes we set up stay ours while they are in the page, even once their own body is
    // hidden (the adapter finds only composes with a usable body).
    for (const [compose, state] of composes) {
      if (compose.isConnected) {
        // The webmail may redraw the part of its compose form our controls sat in (a compose is
        // set up right after the task that drew it): put the same controls back in place.
        if (!state.shadow.host.isConnected) adapter.insertControls(compose).host.replaceWith(state.shadow.host);
        refreshRecipients(compose, state);
      } else {
        composes.delete(compose);
        if (state.editor) frameEvents.delete(state.editor.secret);
      }
    }
    for (const compose of adapter.findComposeWindows()) {
      if (!composes.has(compose)) setUpCompose(compose);
    }
    for (const message of adapter.findOpenedMessages()) {
      if (message.smime && !opened.has(message.element)) setUpMessage(message);
    }
  }

  // A scan right after the task that began a burst of mutations (what it drew, its promise
  // continuations included, is in place by then), and one more 16 ms later for whatever the
  // rest of the burst drew: the webmail re-renders in bursts, and any wait is paid on every
  // message opened (bench browser: 16 of the 17 ms from the view drawn to the viewer placed).
  let pending = false;
  const observer = new MutationObserver(() => {
    if (pending) return;
    pending = true;
    setTimeout(scan, 0);
    setTimeout(() => {
      pending = false;
      scan();
    }, 16);
  });
  observer.observe(document.documentElement, { childList: true, subtree: true, attributes: true, attributeFilter: ['data-hovercard-id'] });
  scan();
})();
