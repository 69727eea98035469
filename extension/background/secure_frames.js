// The secure editor and viewer as the worker sees them: each one the content script placed is a
// registration, and each registration is served by exactly one frame, the first to claim it.
//
// The webmail page is hostile (docs/SECURITY.md). It can frame ui/editor.html and ui/viewer.html
// itself, read every URL, post anything to any frame and watch what frames post back. So:
// - the content script (isolated world) draws a random secret per frame and registers it here
//   (kind, mode, envelope or raw message); the iframe's URL carries nothing;
// - the content script posts the secret into its own iframe (targetOrigin: the extension), and
//   the frame claims it over a runtime Port. A claim binds only if the secret is known, from the
//   same tab, from the page of that kind, and not claimed before: one frame per registration,
//   never again (a reloaded frame, or one the page made, stays inert);
// - commands reach a frame only over its bound port; frames ask the host for nothing
//   themselves. The worker makes the host calls (message.open, compose.send) with what the
//   registration says: the mode it holds (which only goes up), the recipients the frame showed.

export const SECURE_FRAME_PORT = 'autosmime.secure-frame';
/** Content script -> worker. */
export const SECURE_MESSAGE = 'autosmime.secure';
/** Worker -> content script (tabs.sendMessage to the frame of the page that registered). */
export const SECURE_EVENT = 'autosmime.secure-event';

export const PAGE_OF_KIND = Object.freeze({ editor: 'ui/editor.html', viewer: 'ui/viewer.html', status: 'ui/viewer.html' });
const MODE_LEVEL = Object.freeze({ sign: 1, encrypt: 2 });
export const MAX_CLAIMS_PER_PORT = 32;
export const UNCLAIMED_MS = 60_000; // a frame claims within a second; the page may remove it
export const DEAD_EDITOR_MS = 10 * 60_000; // the text of an interfered editor, for its reopening
const MAX_DRAFT_CHARS = 5_000_000;
const BODY_TIMEOUT_MS = 15_000;
const MAX_REMEMBERED = 200; // opened messages a reply can take its subject from, per worker
/**
 * How long a recipient list must have been on screen in the secure editor before a Send counts as
 * sending to it. The page can add a hidden recipient a moment before the person clicks, and the
 * editor would show it too late to be seen; such a Send stops and the list is shown as changed.
 * A second Send of the list shown with that stop goes at once (the person was told to check it).
 */
export const RECIPIENTS_SETTLE_MS = 3_000;

/** The sentence a viewer shows when the webmail gave no message (never the page's own words). */
export const NO_MESSAGE = 'The webmail did not give this message to the extension.';

export function isSecret(value) {
  return typeof value === 'string' && /^[0-9a-f]{64}$/.test(value);
}

/** The path of an extension URL ("ui/editor.html"), or null for any other URL. */
export function extensionPath(url, extensionBaseUrl) {
  if (typeof url !== 'string' || !url.startsWith(extensionBaseUrl)) return null;
  return url.slice(extensionBaseUrl.length).split(/[?#]/)[0];
}

/** A content script of this extension: our id, a tab, and a page that is not ours. */
export function isContentScript(sender, extensionId, extensionBaseUrl) {
  return sender?.id === extensionId && Boolean(sender.tab) && typeof sender.url === 'string'
    && !sender.url.startsWith(extensionBaseUrl);
}

/** {to, cc, bcc}: lists of lower-cased address strings (anything else dropped). */
export function recipientList(value) {
  const list = (items) => (Array.isArray(items) ? items : [])
    .filter((a) => typeof a === 'string' && a.length <= 320 && /^[^\s@<>]+@[^\s@<>]+$/.test(a.trim()))
    .map((a) => a.trim().toLowerCase());
  return { to: list(value?.to), cc: list(value?.cc), bcc: list(value?.bcc) };
}

export function sameRecipients(a, b) {
  const key = (r) => JSON.stringify([r.to, r.cc, r.bcc].map((l) => [...l].sort()));
  return key(recipientList(a)) === key(recipientList(b));
}

/** The mode after a request: the higher of the two; nothing lowers it. */
export function raisedMode(current, requested) {
  if (!(requested in MODE_LEVEL)) return current;
  if (!(current in MODE_LEVEL)) return requested;
  return MODE_LEVEL[requested] > MODE_LEVEL[current] ? requested : current;
}

/**
 * Why a claim may not bind (a short reason for tests), or null when it may: the registration
 * exists, is unclaimed, and the claiming frame is the page of its kind in the same tab.
 */
export function claimProblem(registration, sender, extensionId, extensionBaseUrl) {
  if (!registration) return 'unknown secret';
  if (registration.claimed) return 'already claimed';
  if (sender?.id !== extensionId) return 'not this extension';
  if (sender.tab?.id !== registration.tabId) return 'another tab';
  if (extensionPath(sender.url, extensionBaseUrl) !== PAGE_OF_KIND[registration.kind]) return 'wrong page';
  return null;
}

/** What compose.send must have done, or the sentence that says loudly what it did instead. */
export function sendMismatch(result, { encrypt, recipients }) {
  const problems = [];
  if (result?.encrypted !== encrypt) problems.push(encrypt ? 'it was NOT encrypted' : 'it was encrypted');
  if (result?.signed !== true) problems.push('it was NOT signed');
  if (!sameRecipients(result ?? {}, recipients)) problems.push('it went to other recipients than shown');
  return problems.length ? `The host did not send this message as you chose: ${problems.join(', ')}. `
    + 'This should never happen; please report it.' : null;
}

const MESSAGE_ID = /^<[!-;=?-~]{1,250}>$/; // printable, no spaces or angle brackets inside
const MAX_REFERENCES = 20;

/**
 * In-Reply-To and References of a reply, from what the content script read in the webmail: only
 * well-formed Message-IDs (nothing that could become another header field), at most
 * MAX_REFERENCES of them (the first and the last kept). {} for a new message.
 */
export function threadFields(envelope) {
  const fields = {};
  if (typeof envelope?.inReplyTo === 'string' && MESSAGE_ID.test(envelope.inReplyTo)) {
    fields.inReplyTo = envelope.inReplyTo;
  }
  let references = (Array.isArray(envelope?.references) ? envelope.references : [])
    .filter((id) => typeof id === 'string' && MESSAGE_ID.test(id));
  if (references.length > MAX_REFERENCES) {
    references = [references[0], ...references.slice(-(MAX_REFERENCES - 1))];
  }
  if (references.length) fields.references = references;
  return fields;
}

/** A webmail's id of a message (Gmail "#msg-f:…", Roundcube "INBOX/12"), or null. */
export function messageRef(value) {
  return typeof value === 'string' && /^[\x21-\x7e]{1,200}$/.test(value) ? value : null;
}

/**
 * What a reply takes from a message opened in this tab (message.open's view): its protected
 * Subject when the outside showed "[...]" (RFC 9788), its sender, its Message-ID and References
 * for threading. Kept in the worker's memory only.
 */
export function rememberedOf(view) {
  const headers = view?.headers ?? {};
  const protection = view?.headerProtection?.fields?.subject;
  const address = /<([^<>\s]+@[^<>\s]+)>/.exec(headers.from ?? '')?.[1] ?? (headers.from ?? '').trim();
  return {
    subject: typeof headers.subject === 'string' ? headers.subject : '',
    subjectHidden: protection === 'signed and encrypted' || protection === 'encrypted',
    from: address.toLowerCase(),
    messageId: typeof headers['message-id'] === 'string' ? headers['message-id'].trim() : null,
    references: String(headers.references ?? '').split(/\s+/).filter((r) => /^<[^<>\s]+>$/.test(r)),
  };
}

/**
 * The Subject of an encrypted reply: the webmail shows "Re: [...]" for a message whose subject
 * was hidden, and the "[...]" is the real one again (one "Re:"). A subject the person wrote
 * over is theirs.
 */
export function replySubject(webmailSubject, protectedSubject) {
  const typed = String(webmailSubject ?? '');
  if (!typed.includes('[...]')) return typed;
  if (typed.trim() === '[...]') return protectedSubject;
  const bare = protectedSubject.replace(/^\s*((re|aw|sv|antw)\s*:\s*)+/i, '');
  return typed.replace('[...]', bare).replace(/^\s*((re|aw|sv|antw)\s*:\s*)+/i, 'Re: ');
}

function failure(code, message) {
  return { ok: false, error: { code, message } };
}

export class SecureFrames {
  /**
   * @param {{id: string, getURL: Function}} runtime
   * @param {{sendMessage: Function}} tabs chrome.tabs (to tell a content script)
   * @param {{request: Function}} nativePort
   */
  constructor(runtime, tabs, nativePort, { timers = globalThis, now = () => Date.now() } = {}) {
    this.runtime = runtime;
    this.tabs = tabs;
    this.nativePort = nativePort;
    this.timers = timers;
    this.now = now;
    this.base = runtime.getURL('');
    this.registrations = new Map();
    this.opened = new Map(); // `${tabId} ${messageRef}` -> rememberedOf(view), newest last
  }

  remember(registration, view) {
    if (!registration.messageRef) return;
    const key = `${registration.tabId} ${registration.messageRef}`;
    this.opened.delete(key);
    this.opened.set(key, rememberedOf(view));
    while (this.opened.size > MAX_REMEMBERED) this.opened.delete(this.opened.keys().next().value);
  }

  /**
   * The opened message an editor replies to, or null. Only while the reply goes (To or Cc) to
   * that message's sender: the page chooses which message a compose names, and must not be
   * able to carry one message's hidden subject to people who never had it.
   */
  replyTo(registration, recipients = registration.recipients?.list) {
    if (!registration.replyTo) return null;
    const found = this.opened.get(`${registration.tabId} ${registration.replyTo}`);
    if (!found) return null;
    const list = recipientList(recipients);
    return [...list.to, ...list.cc].includes(found.from) ? found : null;
  }

  tellReply(registration) {
    const found = this.replyTo(registration);
    this.post(registration, { type: 'reply', subject: found?.subjectHidden ? found.subject : null });
  }

  // ---- from content scripts ------------------------------------------------------------------

  /** runtime.onMessage for SECURE_MESSAGE; answers through respond({ok, result|error}). */
  onMessage(message, sender, respond) {
    if (!isContentScript(sender, this.runtime.id, this.base)) {
      respond(failure('forbidden_origin', 'Only the extension\'s content scripts place secure frames.'));
      return;
    }
    const { action, secret } = message ?? {};
    if (!isSecret(secret)) {
      respond(failure('bad_request', 'A secure frame needs its secret.'));
      return;
    }
    if (action === 'register') {
      respond(this.register(message, sender));
      return;
    }
    const registration = this.registrations.get(secret);
    if (!registration || registration.tabId !== sender.tab.id || registration.frameId !== sender.frameId) {
      respond(failure('not_registered', 'This secure frame is not registered.'));
      return;
    }
    switch (action) {
      case 'raw': respond(this.provideRaw(registration, message)); break;
      case 'mode': respond(this.raiseMode(registration, message.mode)); break;
      case 'recipients': respond(this.updateRecipients(registration, message)); break;
      case 'send': this.send(registration, message.envelope).then(respond); break;
      case 'forget': this.forget(registration); respond({ ok: true, result: null }); break;
      default: respond(failure('bad_request', `Unknown secure frame action ${action}.`));
    }
  }

  register(message, sender) {
    const { secret, kind } = message;
    if (!(kind in PAGE_OF_KIND)) return failure('bad_request', 'kind must be editor, viewer or status.');
    if (this.registrations.has(secret)) return failure('bad_request', 'This secret is taken.');
    const registration = {
      secret, kind, tabId: sender.tab.id, frameId: sender.frameId ?? 0,
      claimed: false, port: null, dead: false,
    };
    if (kind === 'editor') {
      if (!(message.mode in MODE_LEVEL)) return failure('bad_request', 'An editor needs a mode: sign or encrypt.');
      registration.mode = message.mode;
      registration.draft = typeof message.text === 'string' ? message.text.slice(0, MAX_DRAFT_CHARS) : '';
      const previous = this.registrations.get(message.restoreFrom);
      if (previous?.kind === 'editor' && previous.dead && previous.tabId === registration.tabId
        && previous.frameId === registration.frameId) {
        // A reopened editor: what was typed before the old one was interfered with, and never a
        // lower mode than it had.
        registration.mode = raisedMode(registration.mode, previous.mode);
        registration.draft = [previous.draft, registration.draft].filter(Boolean).join('\n');
        this.registrations.delete(previous.secret);
      }
      registration.replyTo = messageRef(message.replyTo);
      registration.recipients = { version: 0, list: recipientList({}) };
      registration.shown = null;
      registration.confirmed = null; // the version of a list shown with a stopped Send
      registration.sending = false;
    } else {
      registration.messageRef = messageRef(message.messageRef);
    }
    this.registrations.set(secret, registration);
    registration.expiry = this.timers.setTimeout(() => {
      if (!registration.claimed) this.registrations.delete(secret);
    }, UNCLAIMED_MS);
    return { ok: true, result: { mode: registration.mode ?? null } };
  }

  provideRaw(registration, { raw, failed }) {
    if (registration.kind === 'editor' || registration.opened) return failure('bad_request', 'Not a viewer waiting for its message.');
    registration.opened = typeof raw === 'string' && raw && !failed
      ? this.open(registration, raw, false)
      : Promise.resolve({ type: 'failed', message: NO_MESSAGE });
    registration.raw = typeof raw === 'string' ? raw : null;
    registration.opened.then((answer) => this.deliver(registration, answer));
    return { ok: true, result: null };
  }

  open(registration, raw, allowRemote) {
    return this.nativePort.request('message.open', { raw, allowRemote }).then(
      (view) => {
        this.remember(registration, view);
        return { type: 'view', view, allowRemote };
      },
      (error) => ({ type: 'failed', message: error?.message ?? 'The message could not be opened.' }),
    );
  }

  raiseMode(registration, mode) {
    if (registration.kind !== 'editor') return failure('bad_request', 'Only an editor has a mode.');
    const raised = raisedMode(registration.mode, mode);
    if (raised !== registration.mode) {
      registration.mode = raised;
      this.post(registration, { type: 'mode', mode: raised });
    }
    return { ok: true, result: { mode: registration.mode } };
  }

  updateRecipients(registration, message) {
    if (registration.kind !== 'editor') return failure('bad_request', 'Only an editor has recipients.');
    const list = recipientList(message);
    if (!sameRecipients(list, registration.recipients.list)) {
      registration.recipients = { version: registration.recipients.version + 1, list };
      this.post(registration, { type: 'recipients', version: registration.recipients.version, ...list });
      if (registration.replyTo) this.tellReply(registration);
    }
    return { ok: true, result: null };
  }

  /** compose.send for a trusted Send: the shown recipients, the registration's mode. */
  async send(registration, envelope) {
    if (registration.kind !== 'editor') return failure('bad_request', 'Only an editor sends.');
    if (!registration.port || registration.dead) {
      return failure('editor_interfered', 'The secure editor was interfered with: nothing was sent from it.');
    }
    if (registration.sending) return failure('busy', 'This message is being sent.');
    const wanted = recipientList(envelope);
    const shownNow = registration.shown && registration.shown.version === registration.recipients.version
      && sameRecipients(registration.shown.list, wanted);
    if (!shownNow) {
      // The webmail's list is not the one the person saw in the secure editor: show it there and
      // send only on a second Send.
      this.updateRecipients(registration, wanted);
      registration.confirmed = registration.recipients.version;
      const message = 'Not sent: the recipients changed. Check them here, then press Send again.';
      this.post(registration, { type: 'failed', message });
      return failure('recipients_changed', 'Not sent: the recipients changed. Check them in the secure editor, then press Send again.');
    }
    const onScreen = this.now() - registration.shown.at;
    if (onScreen < RECIPIENTS_SETTLE_MS && registration.confirmed !== registration.shown.version) {
      // Shown, but only just: a list that changed a moment before the click was not seen.
      registration.confirmed = registration.shown.version;
      const message = 'Not sent: the recipients changed just now. Check them here, then press Send again.';
      this.post(registration, { type: 'failed', message });
      return failure('recipients_changed', 'Not sent: the recipients changed just now. Check them in the secure editor, then press Send again.');
    }
    const recipients = registration.shown.list;
    const encrypt = registration.mode === 'encrypt';
    registration.sending = true;
    try {
      const body = await this.collectBody(registration);
      const params = {
        from: String(envelope?.from ?? ''),
        ...recipients,
        subject: String(envelope?.subject ?? ''),
        text: body.text,
        attachments: body.attachments,
        sign: true,
        encrypt,
        ...threadFields(envelope),
      };
      const reply = this.replyTo(registration, recipients);
      if (reply?.messageId) {
        params.inReplyTo = reply.messageId;
        params.references = [...reply.references, reply.messageId];
      }
      if (reply?.subjectHidden && encrypt) {
        // The page showed "Re: [...]"; the reply carries the real subject, hidden again.
        params.subject = replySubject(params.subject, reply.subject);
        params.hideSubject = true;
      }
      this.post(registration, { type: 'progress', stage: encrypt ? 'Signing, timestamping, encrypting and sending…' : 'Signing, timestamping and sending…' });
      const result = await this.nativePort.request('compose.send', params, {
        onProgress: (p) => this.post(registration, { type: 'progress', stage: p.stage }),
      });
      const mismatch = sendMismatch(result, { encrypt, recipients });
      if (mismatch) {
        this.post(registration, { type: 'failed', message: mismatch });
        return failure('mode_mismatch', mismatch);
      }
      if (result.status !== 'sent' && result.status !== 'queued') throw Object.assign(new Error(result.problem ?? 'Not sent.'), { code: 'internal' });
      registration.sent = true;
      registration.draft = '';
      this.post(registration, { type: 'sent', status: result.status, encrypted: result.encrypted });
      return { ok: true, result: { status: result.status, encrypted: result.encrypted, signed: result.signed } };
    } catch (error) {
      const message = error?.message || 'Not sent.';
      this.post(registration, { type: 'failed', message });
      return failure(error?.code ?? 'internal', message);
    } finally {
      registration.sending = false;
    }
  }

  collectBody(registration) {
    return new Promise((resolve, reject) => {
      const id = `${Date.now()}-${Math.random()}`;
      const timer = this.timers.setTimeout(() => {
        registration.collect = null;
        reject(Object.assign(new Error('The secure editor did not answer.'), { code: 'editor_interfered' }));
      }, BODY_TIMEOUT_MS);
      registration.collect = { id, resolve: (body) => { this.timers.clearTimeout(timer); resolve(body); } };
      this.post(registration, { type: 'collect', id });
    });
  }

  forget(registration) {
    registration.port?.disconnect();
    this.registrations.delete(registration.secret);
  }

  // ---- from frames -----------------------------------------------------------------------------

  /** runtime.onConnect for SECURE_FRAME_PORT. */
  onConnect(port) {
    let registration = null;
    let claims = 0;
    port.onMessage.addListener((message) => {
      if (!registration) {
        if (message?.type !== 'claim' || !isSecret(message.secret) || ++claims > MAX_CLAIMS_PER_PORT) return;
        const candidate = this.registrations.get(message.secret);
        if (claimProblem(candidate, port.sender, this.runtime.id, this.base)) {
          // Said to this frame only (its own port): the page sees nothing of it.
          port.postMessage({ type: 'refused' });
          return;
        }
        registration = candidate;
        this.bind(registration, port);
        return;
      }
      this.fromFrame(registration, message);
    });
    port.onDisconnect.addListener(() => {
      if (registration) this.unbind(registration);
    });
  }

  bind(registration, port) {
    registration.claimed = true;
    registration.port = port;
    this.timers.clearTimeout(registration.expiry);
    this.tell(registration, { event: 'bound' }); // the content script stops handing the secret
    const bound = { type: 'bound', kind: registration.kind };
    if (registration.kind === 'editor') {
      Object.assign(bound, { mode: registration.mode, draft: registration.draft });
      const { version, list } = registration.recipients;
      this.post(registration, bound);
      this.post(registration, { type: 'recipients', version, ...list });
      if (registration.replyTo) this.tellReply(registration);
      return;
    }
    this.post(registration, bound);
    registration.opened?.then((answer) => this.deliver(registration, answer));
  }

  deliver(registration, answer) {
    if (!registration.port || registration.delivered === answer) return;
    registration.delivered = answer;
    this.post(registration, answer);
  }

  fromFrame(registration, message) {
    const type = message?.type;
    if (registration.kind === 'editor') {
      if (type === 'draft' && typeof message.text === 'string') {
        registration.draft = message.text.slice(0, MAX_DRAFT_CHARS);
      } else if (type === 'shown' && message.version === registration.recipients.version) {
        registration.shown = { version: message.version, list: registration.recipients.list, at: this.now() };
      } else if (type === 'body' && registration.collect?.id === message.id) {
        const collect = registration.collect;
        registration.collect = null;
        collect.resolve({
          text: typeof message.text === 'string' ? message.text : '',
          attachments: Array.isArray(message.attachments) ? message.attachments : [],
        });
      } else if (type === 'send-shortcut') {
        this.tell(registration, { event: 'send-shortcut' });
      }
    } else if (type === 'open' && message.allowRemote === true && registration.raw && registration.kind === 'viewer') {
      this.open(registration, registration.raw, true).then((answer) => this.deliver(registration, answer));
    }
  }

  unbind(registration) {
    registration.port = null;
    registration.dead = true;
    if (registration.kind !== 'editor' || registration.sent) {
      this.registrations.delete(registration.secret);
    } else {
      // Kept (in memory only) so a reopened editor gets the text back; then forgotten.
      this.timers.setTimeout(() => this.registrations.delete(registration.secret), DEAD_EDITOR_MS);
    }
    this.tell(registration, { event: 'disconnected' });
  }

  post(registration, message) {
    try {
      registration.port?.postMessage(message);
    } catch {
      /* the frame went away; unbind follows */
    }
  }

  tell(registration, payload) {
    Promise.resolve()
      .then(() => this.tabs.sendMessage(registration.tabId, { type: SECURE_EVENT, secret: registration.secret, ...payload }, { frameId: registration.frameId }))
      .catch(() => {});
  }
}

export function installSecureFrames(runtime, tabs, nativePort) {
  const frames = new SecureFrames(runtime, tabs, nativePort);
  runtime.onMessage.addListener((message, sender, sendResponse) => {
    if (message?.type !== SECURE_MESSAGE) return false;
    frames.onMessage(message, sender, sendResponse);
    return true;
  });
  runtime.onConnect.addListener((port) => {
    if (port.name === SECURE_FRAME_PORT) frames.onConnect(port);
  });
  return frames;
}
