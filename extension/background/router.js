// Requests from content scripts and extension pages, checked before anything reaches the host.
// The webmail page is hostile: content scripts may ask only for the ops listed here.

import { SECURE_MESSAGE } from './secure_frames.js';

// Who may ask for which op is defined once, by each op's `callers` in native_host/protocol.json;
// tests/extension/router_callers.test.mjs fails when this file and it disagree.
// certs.lookup: addresses in, public certificates out; no secret, and shown as recipient badges.
export const CONTENT_SCRIPT_OPS = new Set(['hello', 'echo', 'certs.lookup']);

// The secure editor and viewer are our pages framed inside the webmail tab, where the page can
// frame them too: they ask for nothing here. The worker serves the frame the content script
// registered, over that frame's own port (secure_frames.js).
export const SECURE_FRAME_PAGES = ['ui/editor.html', 'ui/viewer.html'];

/** Whether sender is one of the secure frames (editor, viewer) of this extension. */
export function isSecureFrame(sender, extensionId, extensionBaseUrl) {
  if (sender.id !== extensionId || typeof sender.url !== 'string') return false;
  if (!sender.url.startsWith(extensionBaseUrl)) return false;
  const path = sender.url.slice(extensionBaseUrl.length).split(/[?#]/)[0];
  return SECURE_FRAME_PAGES.includes(path);
}

export function validateRequest(message) {
  if (!message || typeof message !== 'object' || message.type !== 'autosmime.request') {
    return 'not an autosmime request';
  }
  if (typeof message.op !== 'string' || message.op.length === 0) return 'op must be a non-empty string';
  if (message.params !== undefined && (typeof message.params !== 'object' || message.params === null || Array.isArray(message.params))) {
    return 'params must be an object';
  }
  return null;
}

// Our pages that open in a tab of their own and may ask for any op. None of them is web
// accessible, so no web page can frame or open them.
export const TAB_PAGES = ['ui/onboarding.html', 'ui/options.html', 'ui/popup.html'];

/**
 * Whether sender is an extension page the webmail cannot reach: a page with no tab (the
 * popup), or one of TAB_PAGES as the top frame of its tab. Our pages framed inside a webmail
 * tab are not trusted with every op.
 */
export function isTrustedExtensionPage(sender, extensionId, extensionBaseUrl) {
  if (sender.id !== extensionId || typeof sender.url !== 'string') return false;
  if (!sender.url.startsWith(extensionBaseUrl)) return false;
  if (!sender.tab) return true;
  const path = sender.url.slice(extensionBaseUrl.length).split(/[?#]/)[0];
  return sender.frameId === 0 && TAB_PAGES.includes(path);
}

/**
 * Whether sender may ask for op: our own tab pages anything, content scripts a few ops, the
 * secure frames nothing (a page-made copy of them must not reach the host).
 */
export function senderMayAsk(sender, op, extensionId, extensionBaseUrl) {
  if (sender.id !== extensionId) return false;
  if (isTrustedExtensionPage(sender, extensionId, extensionBaseUrl)) return true;
  if (isSecureFrame(sender, extensionId, extensionBaseUrl)) return false;
  return CONTENT_SCRIPT_OPS.has(op);
}

export function installRouter(runtime, nativePort) {
  runtime.onMessage.addListener((message, sender, sendResponse) => {
    if (message?.type === 'autosmime.accountHint') return false; // account_hint.js answers it
    if (message?.type === SECURE_MESSAGE) return false; // secure_frames.js answers it
    const problem = validateRequest(message);
    if (problem) {
      sendResponse({ ok: false, error: { code: 'bad_request', message: problem } });
      return false;
    }
    if (!senderMayAsk(sender, message.op, runtime.id, runtime.getURL(''))) {
      sendResponse({ ok: false, error: { code: 'forbidden_origin', message: `This page may not ask for ${message.op}.` } });
      return false;
    }
    nativePort.request(message.op, message.params ?? {}).then(
      (result) => sendResponse({ ok: true, result }),
      (error) => sendResponse({ ok: false, error: { code: error.code ?? 'internal', message: error.message } }),
    );
    return true;
  });
}

export const LONG_REQUEST_PORT = 'autosmime.long-request';

/**
 * Long requests from extension pages: the page opens a runtime Port named LONG_REQUEST_PORT,
 * posts one {type:'autosmime.request', op, params}, and receives {event:'progress', done,
 * total, stage} messages followed by one final {ok, result} or {ok:false, error}; then the
 * worker closes the port. Content scripts may not open such ports.
 */
export function installLongRequests(runtime, nativePort) {
  runtime.onConnect.addListener((port) => {
    if (port.name !== LONG_REQUEST_PORT) return;
    const sender = port.sender ?? {};
    let open = true;
    port.onDisconnect.addListener(() => { open = false; });
    const post = (message) => { if (open) port.postMessage(message); };
    const finish = (message) => {
      post(message);
      if (open) port.disconnect();
      open = false;
    };
    port.onMessage.addListener((message) => {
      const problem = validateRequest(message);
      if (problem) return finish({ ok: false, error: { code: 'bad_request', message: problem } });
      if (!isTrustedExtensionPage(sender, runtime.id, runtime.getURL(''))) {
        return finish({ ok: false, error: { code: 'forbidden_origin', message: `This page may not ask for ${message.op}.` } });
      }
      nativePort.request(message.op, message.params ?? {}, {
        onProgress: (p) => post({ event: 'progress', done: p.done, total: p.total, stage: p.stage }),
      }).then(
        (result) => finish({ ok: true, result }),
        (error) => finish({ ok: false, error: { code: error.code ?? 'internal', message: error.message } }),
      );
      return undefined;
    });
  });
}
