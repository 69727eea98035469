// Roundcube 1.6 (elastic skin) site adapter: every Roundcube selector lives here. Each was
// measured on the real Roundcube 1.6.5 from Debian 12 (see /work/shared/REFERENCE.md, "Roundcube
// 1.6.5 (elastic) DOM", and tests/e2e/test_roundcube.py, which runs this file against it).
// A classic content script (content scripts cannot be modules): it registers itself on
// globalThis.autosmimeAdapters so content/webmail.js, and Node unit tests, can use it.
// The interface is shared by every adapter; see README.md in this folder.
//
// Frames: Roundcube shows a message in the same-origin iframe#messagecontframe
// (?_action=preview&_framed=1) or full page (?_action=show). This script runs in every frame of
// a Roundcube origin (all_frames), and each frame serves only its own document: the preview
// frame finds its message and places the viewer in itself, the top frame finds compose.
(() => {
  const SELECTORS = Object.freeze({
    // Compose is a full page: <body class="task-mail action-compose">, its main column
    // #layout-content holds the form, the body and the Send button.
    composeRoot: 'body.action-compose #layout-content',
    // The recipient widgets (ul.recipient-input) mirror into these real fields, which the
    // form posts; they hold "Name <a@b>, c@d, " text.
    recipientField: (kind) => `textarea[name="_${kind}"]`,
    subject: 'input#compose-subject, input[name=_subject]',
    fromSelect: 'select#_from',
    // Plain text editor (htmleditor=0, the default); in HTML mode TinyMCE hides it and edits
    // iframe#composebody_ifr inside div.tox-tinymce.
    plainBody: 'textarea#composebody',
    htmlEditor: '#composebodycontainer .tox-tinymce, #composebodycontainer .mce-tinymce',
    htmlFrame: 'iframe#composebody_ifr',
    bodyContainer: '#composebodycontainer',
    // button.btn.btn-primary.send in .formbuttons; its onclick runs rcmail.command('send').
    send: '.formbuttons button.send, button.send[onclick*="send"], a.send[onclick*="send"]',
    draftUid: 'input[name=_draft_saveid]',
    // Leaving compose: the task menu's Mail link; if Roundcube asks about unsaved changes its
    // dialog's button.mainaction.discard discards them (rcmail.confirm_dialog 'discard').
    mailTask: '#taskmenu a.mail',
    discardButton: '.ui-dialog button.mainaction.discard, .ui-dialog .btn.discard',
    // Reading: body.action-preview (inside iframe#messagecontframe) or body.action-show.
    messageRoot: 'body.action-preview #layout-content, body.action-show #layout-content',
    messageBody: '#messagebody',
    messageHeader: '#message-header',
    // li classes are the MIME type's parts ("application pkcs7-mime p7m"); encrypted mail is
    // shown as an attachment smime.p7m, a detached signature as "Digital Signature".
    attachment: '#attachment-list li',
    attachmentName: '.attachment-name',
    // Roundcube's own notice "This is an encrypted message and can not be displayed. Sorry!"
    encryptedNotice: '#messagebody > .boxwarning',
    openInNewWindow: '#message-header a.extwin[href*="_uid="]',
    inlineScripts: 'script:not([src])',
    // The elastic menu's account line: <span class="header-title username">alice@...</span>.
    username: '.header-title.username',
  });

  const { EMAIL, uniqueAddresses } = globalThis.autosmimeAddresses;
  const ENCRYPTED_TYPES = new Set(['pkcs7-mime', 'x-pkcs7-mime']);
  const SIGNATURE_TYPES = new Set(['pkcs7-signature', 'x-pkcs7-signature']);

  /**
   * The addresses in a recipient field's text ("Bob <bob@x>, \"Doe, J\" <j@x>, c@x, ").
   * Quoted display names are dropped first, so a comma or an @ inside one is not an address.
   */
  function addressesFromField(text) {
    const unquoted = String(text ?? '').replace(/"(?:[^"\\]|\\.)*"/g, ' ');
    const found = [];
    for (const entry of unquoted.split(/[,;\n]/)) {
      const angle = /<([^<>\s]+@[^<>\s]+)>/.exec(entry);
      if (angle) found.push(angle[1]);
      else found.push(...(entry.match(/[^\s<>,;]+@[^\s<>,;]+/g) ?? []));
    }
    return uniqueAddresses(found);
  }

  /** The objects a Roundcube page passes to rcmail.set_env(...) in its inline scripts, merged. */
  function envFromScripts(texts) {
    const env = {};
    const marker = 'rcmail.set_env(';
    for (const text of texts) {
      let at = String(text ?? '').indexOf(marker);
      while (at >= 0) {
        const start = at + marker.length;
        const end = jsonObjectEnd(text, start);
        if (end > start) {
          try {
            Object.assign(env, JSON.parse(text.slice(start, end)));
          } catch {
            /* not JSON: set_env with a name and a value; not needed */
          }
        }
        at = text.indexOf(marker, start);
      }
    }
    return env;
  }

  /** Index just past the JSON object starting at text[start] ('{'), or -1. */
  function jsonObjectEnd(text, start) {
    if (text[start] !== '{') return -1;
    let depth = 0;
    let inString = false;
    for (let i = start; i < text.length; i += 1) {
      const c = text[i];
      if (inString) {
        if (c === '\\') i += 1;
        else if (c === '"') inString = false;
      } else if (c === '"') inString = true;
      else if (c === '{' || c === '[') depth += 1;
      else if (c === '}' || c === ']') {
        depth -= 1;
        if (depth === 0) return i + 1;
      }
    }
    return -1;
  }

  /** {uid, mbox} of the message a preview/show URL's query names, or null. */
  function messageRef(search) {
    const params = new URLSearchParams(String(search ?? ''));
    const uid = params.get('_uid');
    if (!uid || !/^\d+$/.test(uid)) return null;
    return { uid, mbox: params.get('_mbox') || 'INBOX' };
  }

  /**
   * Roundcube's own raw-message URL: "Download (.eml)" (viewsource with _save=1, exact bytes,
   * needs the request token) or, without a token, "View source" (lines end in LF).
   */
  function rawMessageUrlFor(origin, pathname, ref, token = null) {
    if (!ref) return null;
    const params = new URLSearchParams({ _task: 'mail', _action: 'viewsource', _uid: ref.uid, _mbox: ref.mbox });
    if (token) {
      params.set('_save', '1');
      params.set('_token', token);
    }
    const path = String(pathname ?? '/').replace(/[^/]*$/, '');
    return `${origin}${path}?${params}`;
  }

  /** View source (not _save) ends lines in LF: give the message its CRLFs back. */
  function rawFromResponse(bytes, exact) {
    if (exact) return bytes;
    const out = [];
    for (let i = 0; i < bytes.length; i += 1) {
      if (bytes[i] === 0x0a && bytes[i - 1] !== 0x0d) out.push(0x0d);
      out.push(bytes[i]);
    }
    return Uint8Array.from(out);
  }

  /**
   * 'encrypted', 'signed' or null from the attachment list: each entry's class list (MIME
   * subtype words) and name.
   */
  function smimeKind(entries) {
    const is = (entry, types, suffix) => entry.classes.some((c) => types.has(c))
      || suffix.test(String(entry.name ?? '').trim());
    if (entries.some((e) => is(e, ENCRYPTED_TYPES, /(^|\.)p7m$/i))) return 'encrypted';
    if (entries.some((e) => is(e, SIGNATURE_TYPES, /(^|\.)p7s$/i))) return 'signed';
    return null;
  }

  // ---- DOM side (needs a document) ----------------------------------------------------------

  function pageEnv(doc = document) {
    return envFromScripts([...doc.querySelectorAll(SELECTORS.inlineScripts)].map((s) => s.textContent));
  }

  function findComposeWindows(root = document) {
    return [...root.querySelectorAll(SELECTORS.composeRoot)].filter(
      (el) => el.querySelector(SELECTORS.plainBody) && el.querySelector(SELECTORS.send),
    );
  }

  function readRecipients(compose) {
    const read = (kind) => addressesFromField(compose.querySelector(SELECTORS.recipientField(kind))?.value);
    return { to: read('to'), cc: read('cc'), bcc: read('bcc') };
  }

  function readSubject(compose) {
    return compose.querySelector(SELECTORS.subject)?.value ?? '';
  }

  /** The chosen identity: its email from the page's env, else the option's text. */
  function readFrom(compose, doc = document) {
    const select = compose.querySelector(SELECTORS.fromSelect);
    if (!select) return null;
    const identity = pageEnv(doc).identities?.[select.value]?.email;
    const candidates = [identity, select.selectedOptions?.[0]?.textContent];
    for (const candidate of candidates) {
      const [address] = addressesFromField(candidate ?? '');
      if (address) return address;
    }
    return null;
  }

  function htmlEditorOf(compose) {
    const editor = compose.querySelector(SELECTORS.htmlEditor);
    return editor && editor.style.display !== 'none' ? editor : null;
  }

  /** The visible body editor: the TinyMCE box in HTML mode, else the plain textarea. */
  function bodyOf(compose) {
    return htmlEditorOf(compose) ?? compose.querySelector(SELECTORS.plainBody);
  }

  /**
   * Takes the text typed so far out of Roundcube's editor and leaves it empty and hidden, so its
   * autosave (IMAP Drafts) and local copy (localStorage) get nothing more. Returns the text.
   */
  function takeBody(compose) {
    const textarea = compose.querySelector(SELECTORS.plainBody);
    const editor = htmlEditorOf(compose);
    let text = '';
    if (editor) {
      const doc = editor.querySelector(SELECTORS.htmlFrame)?.contentDocument;
      text = doc?.body?.innerText ?? '';
      doc?.body?.replaceChildren();
      editor.style.display = 'none';
    } else if (textarea) {
      text = textarea.value;
    }
    if (textarea) {
      textarea.value = '';
      textarea.readOnly = true;
      textarea.style.display = 'none';
    }
    return text;
  }

  function sendButtonOf(compose) {
    return compose.querySelector(SELECTORS.send);
  }

  /** A host element with an open shadow root, placed above the body editor. */
  function insertControls(compose) {
    const host = document.createElement('autosmime-compose-controls');
    const shadow = host.attachShadow({ mode: 'open' });
    const container = compose.querySelector(SELECTORS.bodyContainer);
    if (container) container.before(host);
    else bodyOf(compose)?.before(host);
    return shadow;
  }

  /** Where the secure editor goes: in place of the body editor, inside its container. */
  function placeEditor(compose, holder) {
    const container = compose.querySelector(SELECTORS.bodyContainer);
    if (container) container.append(holder);
    else bodyOf(compose)?.after(holder);
  }

  /**
   * Discards the compose page the way Roundcube does after its own successful send: the saved
   * draft is deleted for good (POST _action=delete, the permanent delete Roundcube's send and
   * Shift+Del use, not a move to Trash), then the page goes back to the mailbox through the Mail
   * link, answering Roundcube's "discard your changes?" with Discard. An autosave that lands in
   * between replaces the draft with a new uid, so the delete is repeated until the id is stable.
   */
  async function discardCompose(compose, doc = document) {
    const env = pageEnv(doc);
    const token = env.request_token ?? doc.querySelector('input[name=_token]')?.value;
    const mbox = env.drafts_mailbox || 'Drafts';
    const deleted = new Set();
    for (let round = 0; round < 3; round += 1) {
      const uid = compose.querySelector(SELECTORS.draftUid)?.value;
      if (!uid || deleted.has(uid) || !token) break;
      deleted.add(uid);
      const body = new URLSearchParams({ _uid: uid, _mbox: mbox, _remote: '1', _unlock: '0' });
      const url = new URL('?_task=mail&_action=delete', location.href);
      await fetch(url, {
        method: 'POST',
        credentials: 'include',
        headers: { 'X-Roundcube-Request': token, 'Content-Type': 'application/x-www-form-urlencoded' },
        body,
      }).catch(() => null);
    }
    const mail = doc.querySelector(SELECTORS.mailTask);
    if (!mail) return false;
    mail.click();
    const deadline = Date.now() + 3000;
    while (Date.now() < deadline) {
      const discard = doc.querySelector(SELECTORS.discardButton);
      if (discard) {
        discard.click();
        return true;
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return true;
  }

  function attachmentEntries(element) {
    return [...element.querySelectorAll(SELECTORS.attachment)].map((li) => ({
      classes: [...li.classList],
      name: li.querySelector(SELECTORS.attachmentName)?.textContent ?? '',
    }));
  }

  /** The message this document shows (preview frame or full page), with its uid and folder. */
  function findOpenedMessages(root = document, loc = location) {
    return [...root.querySelectorAll(SELECTORS.messageRoot)].flatMap((element) => {
      const link = element.querySelector(SELECTORS.openInNewWindow)?.getAttribute('href');
      const ref = messageRef(loc.search) ?? (link ? messageRef(link.replace(/^[^?]*/, '')) : null);
      if (!ref || !element.querySelector(SELECTORS.messageBody)) return [];
      return [{ element, id: `${ref.mbox}/${ref.uid}`, ref, smime: smimeKind(attachmentEntries(element)) }];
    });
  }

  function rawMessageUrl(message, loc = location, doc = document) {
    const token = pageEnv(doc).request_token ?? null;
    return rawMessageUrlFor(loc.origin, loc.pathname, message.ref, token);
  }

  async function fetchRaw(message) {
    const url = rawMessageUrl(message);
    if (!url) throw new Error('Roundcube did not say which message this is.');
    const response = await fetch(url, { credentials: 'include' });
    if (!response.ok) throw new Error(`Roundcube did not give the message source (${response.status}).`);
    const bytes = new Uint8Array(await response.arrayBuffer());
    return rawFromResponse(bytes, new URL(url).searchParams.has('_save'));
  }

  /** The viewer takes the body's place (Roundcube shows only "can not be displayed" there). */
  function placeViewer(message, holder) {
    const body = message.element.querySelector(SELECTORS.messageBody);
    if (!body) {
      message.element.append(holder);
      return;
    }
    for (const notice of message.element.querySelectorAll(SELECTORS.encryptedNotice)) {
      notice.style.display = 'none';
    }
    body.before(holder);
  }

  /** Signed-only mail: the status strip above the body Roundcube renders itself. */
  function placeStatus(message, holder) {
    const body = message.element.querySelector(SELECTORS.messageBody);
    if (body) body.before(holder);
    else message.element.prepend(holder);
  }

  /** Text that names the signed-in account, for onboarding's address hint. */
  function accountLabel(doc = document) {
    return doc.querySelector(SELECTORS.username)?.textContent?.trim() || null;
  }

  /** Names of files attached with Roundcube's own button (uploaded to Roundcube, not ours). */
  function composeAttachments() {
    return [...document.querySelectorAll(SELECTORS.attachment)]
      .map((li) => (li.querySelector(SELECTORS.attachmentName) ?? li).textContent.trim());
  }

  const adapter = {
    name: 'roundcube',
    // This file is only injected on origins the user enabled for Roundcube; the page says
    // whether it is Roundcube (every page of it is <body class="task-...">, rcmail in scripts).
    matches: (loc, doc = globalThis.document) => Boolean(
      doc?.body?.className && /(^|\s)task-\w+/.test(doc.body.className)
        && doc.querySelector('script[src*="program/js/app"]'),
    ),
    SELECTORS,
    findComposeWindows,
    readRecipients,
    readSubject,
    readFrom,
    bodyOf,
    takeBody,
    sendButtonOf,
    insertControls,
    placeEditor,
    discardCompose,
    composeAttachments,
    findOpenedMessages,
    rawMessageUrl,
    fetchRaw,
    placeViewer,
    placeStatus,
    accountLabel,
    // pure helpers, exported for tests
    uniqueAddresses,
    addressesFromField,
    envFromScripts,
    messageRef,
    rawMessageUrlFor,
    rawFromResponse,
    smimeKind,
  };
  globalThis.autosmimeAdapters ??= {};
  globalThis.autosmimeAdapters.roundcube = adapter;
})();
