// Gmail site adapter: every Gmail selector lives here (sources: /work/shared/GMAIL_DOM.md).
// A classic content script (content scripts cannot be modules): it registers itself on
// globalThis.autosmimeAdapters so content/webmail.js, and Node unit tests, can use it.
// The interface is shared by every adapter; see README.md in this folder.
(() => {
  const SELECTORS = Object.freeze({
    // Compose: pop-up dialogs and inline replies hold a div.M9 (GJ api.dom.compose; IS page-parser).
    composeRoot: 'div.M9',
    composeDialog: '[role=dialog]',
    // PeopleKit chips: address in data-hovercard-id (IS get-recipients; GJ tr.bzf div[name] ...).
    recipientField: (kind) => `.anm[name="${kind}"], div[name="${kind}"]`,
    recipientChip: '[data-hovercard-id]',
    subject: 'input[name=subjectbox]',
    fromInput: 'input[name=from]',
    body: 'div[contenteditable=true][role=textbox], div[aria-label="Message Body"][contenteditable=true]',
    // Send: div.T-I.aoO[role=button] with data-tooltip "Send (Ctrl-Enter)" (SNAP; FC tests).
    send: '.T-I.aoO[role=button], [role=button][data-tooltip^="Send"]',
    bottomBar: 'td.gU.Up, .btC',
    discard: '[aria-label^="Discard draft"], .gU .oh',
    close: 'button.Ha, .Ha',
    // Reading: div.adn.ads[data-message-id="#msg-f:<dec>"] (GJ api.dom.email; MV; FC).
    message: '[data-message-id]',
    messageBody: '.a3s.aiL, .a3s',
    attachmentName: '.aV3',
    // The account button: aria-label "Google Account: Alice (alice@example.test)" (MV).
    accountButton: 'a[aria-label^="Google Account"]',
    // Files attached with Gmail's own paperclip: div.dL › div.vI name (GJ).
    composeAttachmentName: 'div.dL div.vI',
    // A reply: the inline reply's .ip.adB sits in the message element it answers (IS), or after
    // it in the same thread item (FC: .gA.gt's previous sibling carries the message's ids).
    threadItem: '[role=listitem]',
  });

  const SMIME_ENCRYPTED = /(^|\.)p7m$/i; // smime.p7m: enveloped (or opaque-signed) data
  const SMIME_SIGNATURE = /(^|\.)p7s$/i; // smime.p7s: multipart/signed, detached signature

  const { EMAIL, uniqueAddresses } = globalThis.autosmimeAddresses;

  /** "#msg-f:1665118316230599953" -> "msg-f:1665118316230599953"; null when not that shape. */
  function permMessageId(dataMessageId) {
    const match = /^#?(msg-[af]:\d+)$/.exec(String(dataMessageId ?? '').trim());
    return match ? match[1] : null;
  }

  /** The account path of a Gmail URL path ("/mail/u/0/"), default "/mail/u/0/". */
  function accountPath(pathname) {
    const match = /^\/mail\/u\/\d+\//.exec(pathname ?? '');
    return match ? match[0] : '/mail/u/0/';
  }

  /** Show original for one message (IS getOriginalMessagePage): ?view=om&permmsgid=msg-f:<dec>. */
  function rawMessageUrlFor(origin, pathname, dataMessageId, ik = null) {
    const perm = permMessageId(dataMessageId);
    if (!perm) return null;
    const params = new URLSearchParams();
    if (ik) params.set('ik', ik);
    params.set('view', 'om');
    params.set('permmsgid', perm);
    return `${origin}${accountPath(pathname)}?${params}`;
  }

  /** Kinds of S/MIME part among attachment names: 'encrypted', 'signed' or null. */
  function smimeKind(names) {
    if (names.some((n) => SMIME_ENCRYPTED.test(n.trim()))) return 'encrypted';
    if (names.some((n) => SMIME_SIGNATURE.test(n.trim()))) return 'signed';
    return null;
  }

  /**
   * Show original answers an HTML page with the message in <pre id="raw_message_text">; the
   * exact-bytes download answers message/rfc822. Either way: the message's bytes.
   */
  function rawFromResponse(contentType, bytes, parseHtml) {
    if (!/text\/html/i.test(contentType ?? '')) return bytes;
    const text = new TextDecoder().decode(bytes);
    const doc = parseHtml(text);
    const pre = doc.querySelector('#raw_message_text') ?? doc.querySelector('pre');
    const source = pre ? pre.textContent : doc.body?.textContent ?? '';
    return new TextEncoder().encode(source.replace(/\r?\n/g, '\r\n'));
  }

  const MESSAGE_ID = /<[^<>\s]+>/g;
  const MAX_REFERENCES = 20;

  /**
   * In-Reply-To and References for a reply to the message whose header block this is (RFC 5322
   * 3.6.4): In-Reply-To its Message-ID; References its References (else its In-Reply-To) and
   * then its Message-ID, the first and the last ones kept when there are very many. Null when
   * the header names no Message-ID.
   */
  function replyHeadersFrom(headerText) {
    const unfolded = String(headerText ?? '').replace(/\r?\n[ \t]+/g, ' ');
    const field = (name) => {
      const match = new RegExp(`^${name}:(.*)$`, 'im').exec(unfolded);
      return match ? match[1].match(MESSAGE_ID) ?? [] : [];
    };
    const [messageId] = field('Message-ID');
    if (!messageId) return null;
    const earlier = field('References').length ? field('References') : field('In-Reply-To');
    let references = [...new Set([...earlier, messageId])];
    if (references.length > MAX_REFERENCES) {
      references = [references[0], ...references.slice(-(MAX_REFERENCES - 1))];
    }
    return { inReplyTo: messageId, references };
  }

  /** The header block of a raw message (bytes up to the first empty line), as text. */
  function headerBlock(bytes) {
    const text = new TextDecoder('latin1').decode(bytes);
    const end = text.search(/\r?\n\r?\n/);
    return end < 0 ? text : text.slice(0, end);
  }

  // ---- DOM side (needs a document) ----------------------------------------------------------

  function findComposeWindows(root = document) {
    return [...root.querySelectorAll(SELECTORS.composeRoot)].filter(
      (el) => el.querySelector(SELECTORS.body) && el.querySelector(SELECTORS.send),
    );
  }

  function readRecipients(compose) {
    const read = (kind) => {
      const values = [];
      for (const field of compose.querySelectorAll(SELECTORS.recipientField(kind))) {
        for (const chip of field.querySelectorAll(SELECTORS.recipientChip)) {
          values.push(chip.getAttribute('data-hovercard-id'));
        }
      }
      return uniqueAddresses(values);
    };
    return { to: read('to'), cc: read('cc'), bcc: read('bcc') };
  }

  function readSubject(compose) {
    return compose.querySelector(SELECTORS.subject)?.value ?? '';
  }

  function readFrom(compose, doc = document) {
    const value = compose.querySelector(SELECTORS.fromInput)?.value;
    if (value && EMAIL.test(value.trim())) return value.trim().toLowerCase();
    // The title reads "Inbox - alice@example.test - Gmail" (MV getUserInfo).
    const match = /[^\s@<>]+@[^\s@<>]+/.exec(doc.title ?? '');
    return match ? match[0].toLowerCase() : null;
  }

  /**
   * The element of the message an inline reply answers: the reply box sits inside it (or its
   * list item) in the thread (GMAIL_DOM.md, "Inline reply"); null for a new message.
   */
  function repliedMessageElement(compose) {
    if (compose.closest(SELECTORS.composeDialog)) return null;
    return compose.closest(SELECTORS.message)
      ?? compose.closest(SELECTORS.threadItem)?.querySelector(SELECTORS.message) ?? null;
  }

  /** The data-message-id of the message a reply answers (the viewer's messageRef), or null. */
  function repliedMessage(compose) {
    return repliedMessageElement(compose)?.getAttribute('data-message-id') ?? null;
  }

  function bodyOf(compose) {
    return compose.querySelector(SELECTORS.body);
  }

  function sendButtonOf(compose) {
    return compose.querySelector(SELECTORS.send);
  }

  /** A host element with an open shadow root, placed in the bottom bar (else above the body). */
  function insertControls(compose) {
    const host = document.createElement('autosmime-compose-controls');
    const shadow = host.attachShadow({ mode: 'open' });
    const bar = compose.querySelector(SELECTORS.bottomBar);
    if (bar) bar.after(host);
    else bodyOf(compose)?.before(host);
    return shadow;
  }

  /** Gmail acts on mouseup/click (GJ, FC): Discard draft, else the title bar's close. */
  function discardCompose(compose) {
    const button = compose.querySelector(SELECTORS.discard)
      ?? compose.closest(SELECTORS.composeDialog)?.querySelector(SELECTORS.close);
    if (!button) return false;
    for (const type of ['mousedown', 'mouseup', 'click']) {
      button.dispatchEvent(new MouseEvent(type, { bubbles: true, cancelable: true, view: window }));
    }
    return true;
  }

  function findOpenedMessages(root = document) {
    return [...root.querySelectorAll(SELECTORS.message)].map((element) => {
      const names = [...element.querySelectorAll(SELECTORS.attachmentName)].map((n) => n.textContent ?? '');
      return { element, id: element.getAttribute('data-message-id'), smime: smimeKind(names) };
    });
  }

  function rawMessageUrl(message, loc = location) {
    const ik = document.head?.getAttribute('data-inboxsdk-ik-value') ?? null;
    return rawMessageUrlFor(loc.origin, loc.pathname, message.id, ik);
  }

  async function fetchRaw(message) {
    const url = rawMessageUrl(message);
    if (!url) throw new Error('This message has no id Gmail can give the original for.');
    const response = await fetch(url, { credentials: 'include' });
    if (!response.ok) throw new Error(`Gmail did not give the original message (${response.status}).`);
    const bytes = new Uint8Array(await response.arrayBuffer());
    return rawFromResponse(response.headers.get('content-type'), bytes,
      (text) => new DOMParser().parseFromString(text, 'text/html'));
  }

  /**
   * {inReplyTo, references} for a reply compose, from the header of the replied message's Show
   * original (what InboxSDK reads Message-IDs from); null for a new message. Only the header is
   * read when Gmail answers the message itself; its HTML page is read whole.
   */
  async function threadHeaders(compose) {
    const message = repliedMessageElement(compose);
    if (!message) return null;
    const url = rawMessageUrl({ id: message.getAttribute('data-message-id') });
    if (!url) return null;
    const response = await fetch(url, { credentials: 'include' });
    if (!response.ok) return null;
    const contentType = response.headers.get('content-type');
    if (/text\/html/i.test(contentType ?? '') || !response.body) {
      const bytes = new Uint8Array(await response.arrayBuffer());
      return replyHeadersFrom(headerBlock(rawFromResponse(contentType, bytes,
        (text) => new DOMParser().parseFromString(text, 'text/html'))));
    }
    const reader = response.body.getReader();
    const chunks = [];
    let size = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      size += value.length;
      const seen = new TextDecoder('latin1').decode(value);
      if (/\r?\n\r?\n/.test(seen) || size > 256 * 1024) break;
    }
    reader.cancel().catch(() => {});
    const all = new Uint8Array(size);
    let at = 0;
    for (const chunk of chunks) {
      all.set(chunk, at);
      at += chunk.length;
    }
    return replyHeadersFrom(headerBlock(all));
  }

  /** Puts the viewer holder above the message body (which Gmail leaves empty for a p7m). */
  function placeViewer(message, holder) {
    const body = message.element.querySelector(SELECTORS.messageBody);
    if (body) body.before(holder);
    else message.element.append(holder);
  }

  /** Names of files attached with Gmail's own button (uploaded to Gmail, not in our message). */
  function composeAttachments(compose) {
    const root = compose.closest(SELECTORS.composeDialog) ?? compose;
    return [...root.querySelectorAll(SELECTORS.composeAttachmentName)].map((n) => n.textContent.trim());
  }

  /** Puts the signature status strip above the body Gmail renders itself (multipart/signed). */
  function placeStatus(message, holder) {
    const body = message.element.querySelector(SELECTORS.messageBody);
    if (body) body.before(holder);
    else message.element.prepend(holder);
  }

  /** Text that names the signed-in account, for onboarding's address hint. */
  function accountLabel(doc = document) {
    return doc.querySelector(SELECTORS.accountButton)?.getAttribute('aria-label') ?? null;
  }

  const adapter = {
    name: 'gmail',
    // Gmail shows every message in this one document: a viewer loaded ahead is used (webmail.js).
    spareViewer: true,
    matches: (loc) => loc.hostname === 'mail.google.com',
    SELECTORS,
    findComposeWindows,
    readRecipients,
    readSubject,
    readFrom,
    repliedMessage,
    bodyOf,
    sendButtonOf,
    insertControls,
    discardCompose,
    composeAttachments,
    findOpenedMessages,
    rawMessageUrl,
    fetchRaw,
    threadHeaders,
    placeViewer,
    placeStatus,
    accountLabel,
    // pure helpers, exported for tests
    replyHeadersFrom,
    headerBlock,
    uniqueAddresses,
    permMessageId,
    accountPath,
    rawMessageUrlFor,
    smimeKind,
    rawFromResponse,
  };
  globalThis.autosmimeAdapters ??= {};
  globalThis.autosmimeAdapters.gmail = adapter;
})();
